"""`make bench-fleet`: what the fleet driver itself costs for 10, 100 and 1,000 members.

The members do nothing here (a runner that returns at once, every role assumable), so the times
are the driver's own: deriving the members (from a list of accounts, and from OUs answered by an
in-memory Organizations), pre-flight, scheduling on the thread pool, the summary table, the JSON
summary and the PR comment. A real member's `pulumi up` takes about a minute; see README "Fleet".
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from scripts.fleet import FleetRun, RunReport, comment, run_fleet, summary_table
from scripts.fleet_members import Member, members, to_json

SIZES = (10, 100, 1000)
WORKERS = 16
OUS_PER_FLEET = 10


class InstantRunner:
    def run(self, member: Member, command: str) -> RunReport:
        return RunReport({"same": 7}, "")

    def list_stacks(self) -> list[str]:
        return []

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
    json_s, _ = timed(lambda: to_json(fleet))

    def drive() -> FleetRun:
        return run_fleet(
            "downstream", fleet, "up", InstantRunner(), lambda _: None, WORKERS, err=io.StringIO()
        )

    drive_s, run = timed(drive)

    def report() -> None:
        summary_table(run)
        comment([json.loads(json.dumps(run.to_json()))])

    report_s, _ = timed(report)
    return {
        "members": n,
        "derive_accounts_ms": listed_s * 1000,
        "derive_ous_ms": ou_s * 1000,
        "members_json_ms": json_s * 1000,
        "schedule_ms": drive_s * 1000,
        "summary_ms": report_s * 1000,
        "per_member_ms": (drive_s + report_s) * 1000 / n,
    }


def main() -> None:
    columns = (
        "members",
        "derive_accounts_ms",
        "derive_ous_ms",
        "members_json_ms",
        "schedule_ms",
        "summary_ms",
        "per_member_ms",
    )
    measure(SIZES[0])  # warm-up: botocore's endpoint data, thread start-up
    print(f"fleet driver overhead, {WORKERS} workers, members that return at once")
    print("  ".join(f"{c:>18}" for c in columns))
    for n in SIZES:
        row = measure(n)
        print("  ".join(f"{row[c]:>18.2f}" if c != "members" else f"{n:>18}" for c in columns))


if __name__ == "__main__":
    main()
