"""A fleet driven as an operator drives it, through the stand-in `pulumi` (tests/fake_pulumi: a
real process per command, a self-managed backend's state, tags and locks, a cloud that can drift):
previews that write nothing, ownership and pruning, failure tolerance and the canary, drift found
and repaired, and a run stopped by SIGTERM or killed outright, then run again."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from scripts import fleet
from scripts.fleet_members import to_json
from scripts.fleet_report import change_text
from scripts.stack_files import PROJECT_DIR, cli_yaml_text
from tests.fake_cli import FakeCli, install
from tests.test_fleet_driver import UPSTREAM_OUTPUTS

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and sessions of POSIX")


LEASE = "downstream-fleet"  # the fleet's own stack: which run updates it


def accounts(n: int) -> list[str]:
    return [f"2100000000{i:02d}" for i in range(n)]


def stack(account: str) -> str:
    return f"downstream-{account}"


class Fleet:
    """A project directory with a fleet template, the stand-in CLI, and `make fleet-*`."""

    def __init__(self, root: Path, members: list[str], **template: Any) -> None:
        self.cli: FakeCli = install(root / "cli")
        self.project = root / "project"
        (self.project / "policy").mkdir(parents=True)
        (self.project / "Pulumi.yaml").write_text("name: ecr-ptc\nruntime: python\n")
        self.summary = root / "summary.json"
        self.template(members, **template)
        self.cli.create_stack("upstream", outputs=UPSTREAM_OUTPUTS)

    def template(self, members: list[str], **extra: Any) -> None:
        config = {
            "aws:region": "eu-west-1",
            "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
            "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden"}],
            "ecr-ptc:accounts": members,
            **extra,
        }
        (self.project / "Pulumi.downstream.yaml").write_text(cli_yaml_text({"config": config}))

    def env(self, **extra: str) -> dict[str, str]:
        defaults = {"FLEET_SUMMARY": str(self.summary), "FLEET_PARALLELISM": "4"}
        return self.cli.env(**{**defaults, **extra})

    def make(self, command: str, *args: str, **env: str) -> tuple[int, str]:
        """`make fleet-<command>` in-process (roles: assumable), the CLI a real process."""
        err = io.StringIO()
        code = fleet.main(
            [command, "--template", "downstream", "--project-dir", str(self.project), *args],
            env=self.env(**env),
            can_assume=lambda role, region: None,
            out=io.StringIO(),
            err=err,
            which=lambda name: str(self.cli.bin_dir / name),
        )
        return code, err.getvalue()

    def rows(self) -> dict[str, Mapping[str, Any]]:
        data = json.loads(self.summary.read_text())
        return {m["accountId"]: m for m in data["members"]}

    def ran(self, *command: str) -> list[str]:
        """The stacks of each call of `pulumi <command...>`, in order."""
        found = []
        for call in self.cli.calls():
            argv = [a for a in call["argv"] if a != "--non-interactive"]
            if argv[: len(command)] == list(command) and "--stack" in argv:
                found.append(argv[argv.index("--stack") + 1])
        return found


def test_previews_write_nothing_and_up_creates_tagged_members(tmp_path: Path) -> None:
    f = Fleet(tmp_path, accounts(3))
    code, err = f.make("preview")
    assert code == 0, err
    rows = f.rows()
    assert {r["result"] for r in rows.values()} == {fleet.PLANNED}
    assert all(r["changes"]["create"] > 3 for r in rows.values()), "the plan's resources"
    assert f.cli.stacks() == ["upstream"], "no stack created by a preview"
    assert f.ran("stack", "init") == [] and f.ran("preview") == []

    code, err = f.make("up")
    assert code == 0, err
    assert f.cli.stacks() == sorted(["upstream", LEASE, *(stack(a) for a in accounts(3))])
    for account in accounts(3):
        tags = f.cli.tags(stack(account))
        assert tags[fleet.TAG_TEMPLATE] == "downstream"
        assert tags[fleet.TAG_PROJECT] == "ecr-ptc"
        assert tags[fleet.TAG_RUN].endswith(fleet.DONE)
        assert f.cli.resources(stack(account)), "deployed"

    code, err = f.make("preview")
    assert code == 0, err
    assert {r["result"] for r in f.rows().values()} == {fleet.SUCCEEDED}
    assert {change_text(r["changes"]) for r in f.rows().values()} == {"none"}


def test_pruning_never_reaches_what_the_fleet_does_not_own(tmp_path: Path) -> None:
    four = accounts(4)
    f = Fleet(tmp_path, four)
    assert f.make("up")[0] == 0
    before = f.cli.stacks()

    empty = tmp_path / "empty.json"
    empty.write_text(to_json([], "downstream"))
    code, err = f.make("up", "--members", str(empty), PRUNE="1")
    assert code == 2 and "at least one member" in err

    other = tmp_path / "other.json"
    other.write_text(to_json([], "downstream-eu"))
    code, err = f.make("up", "--members", str(other), PRUNE="1")
    assert code == 2 and "'downstream-eu'" in err
    assert f.ran("destroy") == [] and f.cli.stacks() == before

    # Someone else's stack, named like a member: listed, never pruned.
    f.cli.create_stack(stack("777777777777"), deployed=True)
    # Three accounts leave at once: more than this run's cap.
    f.template(four[:1])
    code, err = f.make("up", PRUNE="1", PRUNE_MAX="2")
    assert code == 1 and "refused to prune 3 stack(s), more than the cap of 2" in err
    assert "never pruned: downstream-777777777777" in err
    assert f.ran("destroy") == [] and f.cli.stacks() == sorted([*before, stack("777777777777")])

    code, err = f.make("up", PRUNE="1", PRUNE_MAX="2", PRUNE_CONFIRM="3")
    assert code == 0, err
    assert sorted(f.ran("destroy")) == [stack(a) for a in four[1:]]
    assert f.cli.stacks() == sorted(["upstream", LEASE, stack(four[0]), stack("777777777777")])
    assert {f.rows()[a]["result"] for a in four[1:]} == {fleet.PRUNED}


def test_failure_tolerance_and_the_canary_stop_the_rollout(tmp_path: Path) -> None:
    ten = accounts(10)
    f = Fleet(tmp_path, ten)
    for account in ten[2:5]:
        f.cli.set_scenario(stack(account), fail=["up"], message="AccessDenied: iam:CreateRole")
    code, err = f.make(
        "up", FAILURE_TOLERANCE="1", CANARY="1", WAVE_SIZE="100%", FLEET_PARALLELISM="1"
    )
    assert code == 1, err
    rows = f.rows()
    assert [rows[a]["result"] for a in ten[:4]] == [
        fleet.SUCCEEDED,
        fleet.SUCCEEDED,
        fleet.FAILED,
        fleet.FAILED,
    ]
    assert "AccessDenied: iam:CreateRole" in rows[ten[2]]["reason"]
    assert {rows[a]["result"] for a in ten[4:]} == {fleet.NOT_STARTED}
    assert "failure tolerance exceeded (2 failed, tolerance 1" in rows[ten[9]]["reason"]
    assert f.ran("up") == [stack(a) for a in ten[:4]], "no member started after the stop"

    f.cli.clear_scenario()
    f.cli.set_scenario(stack(ten[0]), fail=["up"], message="boom")
    code, _ = f.make("up", FAILURE_TOLERANCE="50%", CANARY="1")
    assert code == 1
    assert f.ran("up")[4:] == [stack(ten[0])], "the canary alone, then nothing"
    assert "the canary wave failed" in f.rows()[ten[1]]["reason"]


def test_drift_is_reported_and_repaired_only_with_refresh(tmp_path: Path) -> None:
    f = Fleet(tmp_path, accounts(2))
    assert f.make("up")[0] == 0
    changed = f.cli.drift(stack(accounts(2)[0]), "cache-role", {"description": "edited by hand"})

    code, err = f.make("drift")
    assert code == 0, err
    rows = f.rows()
    [step] = rows[accounts(2)[0]]["steps"]
    assert step["op"] == "update" and step["urn"] == changed and step["keys"] == ["description"]
    assert rows[accounts(2)[1]]["steps"] == []
    assert "update aws:iam/role:Role cache-role [description]" in rows[accounts(2)[0]]["details"]
    assert f.ran("refresh") == [stack(a) for a in accounts(2)] or sorted(f.ran("refresh")) == [
        stack(a) for a in accounts(2)
    ]
    assert not any(f.cli.locked(stack(a)) for a in accounts(2))

    assert f.make("up")[0] == 0
    f.make("drift")
    assert f.rows()[accounts(2)[0]]["steps"], "a plain update compares with the state only"

    code, err = f.make("up", REFRESH="1")
    assert code == 0, err
    assert f.rows()[accounts(2)[0]]["changes"].get("update") == 1
    f.make("drift")
    assert all(r["steps"] == [] for r in f.rows().values()), "repaired"


DRIVER = (
    "import sys\n"
    "from scripts import fleet\n"
    "sys.exit(fleet.main(sys.argv[1:], can_assume=lambda role, region: None))\n"
)


def start_driver(f: Fleet, tmp: Path, **env: str) -> subprocess.Popen[str]:
    """`make fleet-up` as its own process, as CI runs it."""
    tmp.mkdir(exist_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            DRIVER,
            "up",
            "--template",
            "downstream",
            "--project-dir",
            str(f.project),
        ],
        cwd=PROJECT_DIR,
        env=f.env(TMPDIR=str(tmp), PYTHONPATH=str(PROJECT_DIR), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_stops_the_run_cleanly_and_the_next_run_completes(tmp_path: Path) -> None:
    six = accounts(6)
    f = Fleet(tmp_path, six)
    f.cli.set_scenario(sleep={"up": 60})
    tmp = tmp_path / "tmp"
    driver = start_driver(
        f, tmp, FLEET_PARALLELISM="2", CANARY="0", WAVE_SIZE="100%", FLEET_GRACE_SECONDS="0.2"
    )
    f.cli.wait_for(lambda: sum(f.cli.locked(stack(a)) for a in six) == 2, timeout=30)
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=30)
    assert driver.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received: no new member starts" in err
    rows = f.rows()
    results = sorted(r["result"] for r in rows.values())
    assert results == [fleet.INTERRUPTED] * 2 + [fleet.NOT_STARTED] * 4
    assert all("SIGTERM" in r["reason"] for r in rows.values())
    assert not any(f.cli.locked(stack(a)) for a in six), "the CLIs cancelled and unlocked"
    assert list(tmp.iterdir()) == [], "no temporary workspace left"
    interrupted = [a for a, r in rows.items() if r["result"] == fleet.INTERRUPTED]
    assert all(f.cli.pending_operations(stack(a)) == [] for a in interrupted)

    f.cli.clear_scenario()
    code, err = f.make("up")
    assert code == 0, err
    assert {r["result"] for r in f.rows().values()} == {fleet.SUCCEEDED}


def test_a_run_killed_outright_leaves_locks_the_next_run_clears(tmp_path: Path) -> None:
    four = accounts(4)
    f = Fleet(tmp_path, four)
    f.cli.set_scenario(sleep={"up": 60})
    driver = start_driver(
        f,
        tmp_path / "tmp",
        FLEET_PARALLELISM="2",
        CANARY="0",
        WAVE_SIZE="4",
        FLEET_HEARTBEAT_SECONDS="0.1",
    )
    f.cli.wait_for(lambda: sum(f.cli.locked(stack(a)) for a in four) == 2, timeout=30)
    # The machine is lost: the driver and every CLI it started die at once.
    clis = [c["pid"] for c in f.cli.calls() if "up" in c["argv"]]
    for pid in [driver.pid, *clis]:
        os.kill(pid, signal.SIGKILL)
    driver.communicate(timeout=10)
    locked = [a for a in four if f.cli.locked(stack(a))]
    assert len(locked) == 2

    f.cli.clear_scenario()
    # Its heartbeat stops: four missed beats, and it is known to be dead.
    time.sleep(0.5)
    code, err = f.make("up", FLEET_HEARTBEAT_SECONDS="0.1")
    assert code == 0, err
    for account in locked:
        assert "cleared the lock left by interrupted fleet run" in f.rows()[account]["reason"]
        assert f"fleet: {stack(account)}: cleared the lock" in err
    assert sorted(f.ran("cancel")) == sorted(stack(a) for a in locked)
    assert not any(f.cli.locked(stack(a)) for a in four)


def test_a_lock_that_no_fleet_run_left_is_not_cancelled(tmp_path: Path) -> None:
    f = Fleet(tmp_path, accounts(1))
    assert f.make("up")[0] == 0
    f.cli.lock(stack(accounts(1)[0]))  # someone's `pulumi up` in progress
    code, _ = f.make("up")
    assert code == 1 and f.ran("cancel") == []
    assert "not cancelled" in f.rows()[accounts(1)[0]]["reason"]


def test_a_cli_killed_under_a_running_driver_is_unlocked_at_once(tmp_path: Path) -> None:
    f = Fleet(tmp_path, accounts(2))
    f.cli.set_scenario(stack(accounts(2)[1]), exit_after_lock=True)
    code, _ = f.make("up", CANARY="0", FAILURE_TOLERANCE="1")
    assert code == 1
    row = f.rows()[accounts(2)[1]]
    assert row["result"] == fleet.FAILED and "killed by SIGKILL" in row["reason"]
    assert "lock it left was cleared" in row["reason"]
    assert not f.cli.locked(stack(accounts(2)[1]))


def test_a_missing_upstream_stops_before_any_member(tmp_path: Path) -> None:
    f = Fleet(tmp_path, accounts(3))
    f.template(accounts(3), **{"ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream-eu"})
    for command in ("preview", "up"):
        code, err = f.make(command)
        assert code == 2 and "'organization/ecr-ptc/upstream-eu'" in err
        assert "does not exist" in err
    assert f.ran("up") == [] and f.ran("stack", "init") == []


def test_a_second_run_while_one_updates_the_fleet_is_refused_and_cancels_nothing(
    tmp_path: Path,
) -> None:
    two = accounts(2)
    f = Fleet(tmp_path, two)
    assert f.make("up")[0] == 0
    f.cli.set_scenario(stack(two[0]), sleep={"up": 60})
    first = start_driver(
        f, tmp_path / "tmp", CANARY="0", FLEET_RUN_ID="run-a", FLEET_GRACE_SECONDS="0.1"
    )
    try:
        f.cli.wait_for(lambda: f.cli.locked(stack(two[0])), timeout=30)
        code, err = f.make("up", CANARY="0", FLEET_RUN_ID="run-b")
        assert code == 2 and "fleet run run-a is updating fleet 'downstream'" in err
        assert f.ran("cancel") == [], "the live run's lock is not touched"
        assert f.cli.locked(stack(two[0]))
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
