"""`make bench-fleet`: what the fleet driver itself costs, and what it keeps.

(a) For 10 to 5,000 members that do nothing (a runner that returns at once, every role
    assumable, every member unchanged): deriving the members (from a list of accounts, and from
    OUs answered by an in-memory Organizations), pre-flight, scheduling, the summary table, the
    JSON summary and the PR comment; the driver's peak memory while it runs (tracemalloc) and the
    size of the JSON summary and of the comment.
(b) The wall time of a 200-member `up` through the stand-in `pulumi` of the tests
    (tests/fake_pulumi: a real process per command, a DIY-like state with locks), at
    parallelism 8 and 16: the driver with real processes, without a real engine.

A real member's `pulumi up` takes about a minute; see README "Fleet".
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from scripts.fleet import FleetRun, Settings, run_fleet
from scripts.fleet_cli import RunReport, StackState
from scripts.fleet_members import Member, members, to_json
from scripts.fleet_report import comment, summary_table

SIZES = (10, 100, 1000, 5000)
WORKERS = 16
OUS_PER_FLEET = 10


class InstantRunner:
    """Every member's stack exists and is unchanged; nothing else is asked."""

    def __init__(self, fleet: list[Member]) -> None:
        self.existing = {m.stack: StackState(m.stack) for m in fleet}

    def stacks(self) -> dict[str, StackState]:
        return self.existing

    def tags(self, stack: str) -> dict[str, str]:
        return {"ecr-ptc:fleet-template": "downstream", "ecr-ptc:fleet-project": "ecr-ptc"}

    def set_tags(self, stack: str, tags: Any, cleanup: bool = False) -> None:
        return None

    def remove_tags(self, stack: str, keys: Any, cleanup: bool = False) -> None:
        return None

    def create(self, stack: str) -> None:
        return None

    def cancel(self, stack: str) -> None:
        return None

    def outputs(self, stack: str) -> dict[str, Any]:
        return {}

    def run(self, member: Member, command: str, refresh: bool = False) -> RunReport:
        # What an unchanged member's preview prints, and what the driver must not keep.
        return RunReport({"same": 7}, "")

    def prune(self, stack: str) -> RunReport:
        return RunReport()


class InMemoryOrganizations:
    """Answers ListAccountsForParent / ListOrganizationalUnitsForParent from a dict."""

    def __init__(self, accounts_by_ou: dict[str, list[str]]) -> None:
        self.accounts_by_ou = accounts_by_ou

    def get_paginator(self, operation: str) -> Any:
        outer = self

        class Paginator:
            def paginate(self, ParentId: str) -> Iterator[dict[str, Any]]:
                if operation == "list_accounts_for_parent":
                    accounts = outer.accounts_by_ou.get(ParentId, [])
                    yield {"Accounts": [{"Id": a, "State": "ACTIVE"} for a in accounts]}
                else:
                    yield {"OrganizationalUnits": []}

        return Paginator()


def template(n: int, by_ou: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "aws:region": "eu-west-1",
        "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
        "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden", "upstreamRepositoryPrefix": "golden"}],
    }
    if by_ou:
        config["ecr-ptc:organizationalUnitIds"] = [f"ou-ab12-{i:08d}" for i in range(OUS_PER_FLEET)]
    else:
        config["ecr-ptc:accounts"] = [f"{200000000000 + i}" for i in range(n)]
    return config


def organizations(n: int) -> InMemoryOrganizations:
    by_ou: dict[str, list[str]] = {}
    for i in range(n):
        by_ou.setdefault(f"ou-ab12-{i % OUS_PER_FLEET:08d}", []).append(f"{200000000000 + i}")
    return InMemoryOrganizations(by_ou)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def measure(n: int) -> dict[str, float]:
    listed_s, fleet = timed(lambda: members("downstream", template(n, by_ou=False)))
    ou_s, _ = timed(lambda: members("downstream", template(n, True), organizations(n)))
    json_s, _ = timed(lambda: to_json(fleet, "downstream"))
    runner = InstantRunner(fleet)

    def drive() -> FleetRun:
        return run_fleet(
            "downstream",
            fleet,
            "preview",
            runner,
            lambda role, region: None,
            WORKERS,
            err=io.StringIO(),
            settings=Settings("preview", WORKERS),
        )

    tracemalloc.start()
    drive_s, run = timed(drive)
    summary = json.dumps(run.to_json(), indent=2, sort_keys=True)

    def report() -> str:
        summary_table(run.to_json())
        return comment([json.loads(summary)])

    report_s, text = timed(report)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "members": n,
        "derive_accounts_ms": listed_s * 1000,
        "derive_ous_ms": ou_s * 1000,
        "members_json_ms": json_s * 1000,
        "schedule_ms": drive_s * 1000,
        "summary_ms": report_s * 1000,
        "peak_memory_mb": peak / 2**20,
        "summary_kb": len(summary) / 1000,
        "comment_chars": len(text),
    }


COLUMNS = (
    "members",
    "derive_accounts_ms",
    "derive_ous_ms",
    "members_json_ms",
    "schedule_ms",
    "summary_ms",
    "peak_memory_mb",
    "summary_kb",
    "comment_chars",
)


def cli_run(n: int, workers: int) -> float:
    """Seconds for `fleet up` of n members through the stand-in `pulumi` (real processes)."""
    from scripts import fleet
    from tests.fake_cli import install

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        cli = install(root)
        project = root / "project"
        project.mkdir()
        (project / "Pulumi.yaml").write_text("name: ecr-ptc\nruntime: python\n")
        config = template(n, by_ou=False)
        config["ecr-ptc:upstreamAccountId"] = "111111111111"
        config["ecr-ptc:upstreamRegion"] = "eu-west-1"
        del config["ecr-ptc:upstreamStack"]
        from scripts.stack_files import cli_yaml_text

        (project / "Pulumi.downstream.yaml").write_text(cli_yaml_text({"config": config}))
        env = {**cli.env(), "FLEET_PARALLELISM": str(workers), "WAVE_SIZE": "100%"}
        env["CANARY"] = "0"
        start = time.perf_counter()
        code = fleet.main(
            ["up"],
            env=env,
            can_assume=lambda role, region: None,
            project_dir=project,
            out=io.StringIO(),
            err=io.StringIO(),
            which=lambda name: str(cli.bin_dir / name),
        )
        elapsed = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"the stand-in run failed ({code})")
        return elapsed


def main(sizes: tuple[int, ...] = SIZES, cli_members: int = 200) -> None:
    measure(SIZES[0])  # warm-up: botocore's endpoint data, thread start-up
    print(f"(a) fleet driver overhead, {WORKERS} workers, members that return at once, unchanged")
    print("  ".join(f"{c:>18}" for c in COLUMNS))
    for n in sizes:
        row = measure(n)
        print("  ".join(f"{row[c]:>18.2f}" if c != "members" else f"{n:>18}" for c in COLUMNS))
    if cli_members and os.name == "posix":
        print(f"(b) {cli_members}-member `up` through the stand-in pulumi CLI")
        for workers in (8, 16):
            seconds = cli_run(cli_members, workers)
            print(f"parallelism {workers:>2}: {seconds:6.1f} s")


if __name__ == "__main__":
    main()
