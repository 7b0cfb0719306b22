"""The fleet driver: waves, failure tolerance, ownership, pruning, recovery of locked members,
previews that write nothing, summaries (checked without the Pulumi CLI: a runner in memory)."""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from components.inputs.errors import ConfigError
from components.inputs.stack_config import Amount
from scripts import fleet
from scripts.fleet import (
    FAILED,
    NOT_PRUNED,
    NOT_STARTED,
    PLANNED,
    PRUNED,
    RETAINED,
    SKIPPED,
    SUCCEEDED,
    Settings,
    Stop,
    parallelism,
    run_fleet,
    sts_assume_check,
)
from scripts.fleet_cli import CliFailed, Locked, RunReport, StackState, Step
from scripts.fleet_members import Member, batch, members
from scripts.fleet_report import comment, summary_table

TEMPLATE = "downstream"
# A template's own config: members run the ordinary downstream program, so it must be valid.
TEMPLATE_BASE: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
    "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden"}],
}


def fleet_of(n: int) -> list[Member]:
    config = {**TEMPLATE_BASE, "ecr-ptc:accounts": [f"2100000000{i:02d}" for i in range(n)]}
    return members(TEMPLATE, config)


class FakeRunner:
    """The backend and the members' commands in memory. Records calls, and the most members it
    saw running at once. `stacks`: stack -> its tags (a list: stacks tagged as this fleet's)."""

    def __init__(
        self,
        fail: Iterable[str] = (),
        stacks: Mapping[str, Mapping[str, str]] | Iterable[str] = (),
        hold: float = 0.0,
        locked: Iterable[str] = (),
        outputs: Mapping[str, Any] | None = None,
        on_run: Callable[[Member], None] | None = None,
    ) -> None:
        self.fail, self.hold, self.locked = set(fail), hold, set(locked)
        # Stacks by their short names, as `pulumi stack ls` in the project lists them.
        if isinstance(stacks, Mapping):
            self.backend = {k.rsplit("/", 1)[-1]: dict(v) for k, v in stacks.items()}
        else:
            self.backend = {s.rsplit("/", 1)[-1]: dict(OWNED) for s in stacks}
        self.upstream_outputs: Mapping[str, Any] | None = (
            UPSTREAM_OUTPUTS if outputs is None else outputs
        )
        self.on_run = on_run
        self.lock = threading.Lock()
        self.running = self.max_running = 0
        self.ran: list[tuple[str, str]] = []
        self.order: list[str] = []
        self.pruned: list[str] = []
        self.created: list[str] = []
        self.cancelled: list[str] = []

    def stacks(self) -> dict[str, StackState]:
        return {name: StackState(name) for name in self.backend}

    def tags(self, stack: str) -> dict[str, str]:
        return dict(self.backend[stack])

    def set_tags(self, stack: str, tags: Mapping[str, str], cleanup: bool = False) -> None:
        with self.lock:
            self.backend[stack].update(tags)

    def remove_tags(self, stack: str, keys: Sequence[str], cleanup: bool = False) -> None:
        for key in keys:
            self.backend[stack].pop(key, None)

    def create(self, stack: str) -> None:
        with self.lock:
            self.created.append(stack)
            self.backend[stack] = {}

    def cancel(self, stack: str) -> None:
        self.cancelled.append(stack)
        self.locked.discard(stack)

    def outputs(self, stack: str) -> dict[str, Any]:
        if self.upstream_outputs is None:
            raise CliFailed(f"error: no stack named '{stack}' found")
        return dict(self.upstream_outputs)

    def run(self, member: Member, command: str, refresh: bool = False) -> RunReport:
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.ran.append((member.stack, command))
            self.order.append(member.account_id)
        try:
            if self.on_run is not None:
                self.on_run(member)
            if self.hold:
                time.sleep(self.hold)  # long enough for the pool to fill up
            if member.stack in self.locked:
                raise Locked("error: the stack is currently locked by 1 lock(s).")
            if member.account_id in self.fail:
                raise CliFailed(f"update of {member.stack} failed: AccessDenied")
            steps = (Step("create", f"urn:pulumi:{member.stack}::ecr-ptc::aws:iam/role:Role::r"),)
            return RunReport({"create": 3, "same": 1}, f"+ 3 to create in {member.stack}", steps)
        finally:
            with self.lock:
                self.running -= 1

    def prune(self, stack: str) -> RunReport:
        self.pruned.append(stack)
        del self.backend[stack]
        return RunReport({"delete": 5})


OWNED = {fleet.TAG_TEMPLATE: "downstream", fleet.TAG_PROJECT: "ecr-ptc"}
UPSTREAM_OUTPUTS: dict[str, Any] = {
    "upstreamAccountId": "111111111111",
    "upstreamRegion": "eu-west-1",
    "upstreamRegistryUrl": "111111111111.dkr.ecr.eu-west-1.amazonaws.com",
    "repositoryArnPattern": "arn:aws:ecr:eu-west-1:111111111111:repository/*",
    "downstreamAccountIds": [],
    "organizationId": "o-abcdefghij",
}


def assume_all(role_arn: str, region: str) -> None:
    return None


def up(n: int, runner: FakeRunner, **settings: Any) -> fleet.FleetRun:
    """`make fleet-up` of n members with these settings (workers 1 unless given)."""
    options: dict[str, Any] = {"workers": 1, **settings}
    return run_fleet(
        TEMPLATE,
        fleet_of(n),
        "up",
        runner,
        assume_all,
        options["workers"],
        err=io.StringIO(),
        settings=Settings("up", **options),
    )


def results(run: fleet.FleetRun) -> dict[str, str]:
    return {o.account_id: o.result for o in run.outcomes}


def test_parallel_runs_never_exceed_the_bound_and_do_run_in_parallel() -> None:
    runner = FakeRunner(hold=0.02, stacks=[m.stack for m in fleet_of(12)])
    run = run_fleet(TEMPLATE, fleet_of(12), "preview", runner, assume_all, workers=3)
    assert runner.max_running == 3
    assert len(runner.ran) == 12 and run.exit_code == 0


def test_a_failing_preview_does_not_stop_the_others_and_fails_the_run() -> None:
    runner = FakeRunner(fail={"210000000001"}, stacks=[m.stack for m in fleet_of(4)])
    run = run_fleet(TEMPLATE, fleet_of(4), "preview", runner, assume_all, workers=2)
    assert results(run) == {
        "210000000000": SUCCEEDED,
        "210000000001": FAILED,
        "210000000002": SUCCEEDED,
        "210000000003": SUCCEEDED,
    }
    [failed] = [o for o in run.outcomes if o.result == FAILED]
    assert "AccessDenied" in failed.reason and run.exit_code == 1


def test_the_canary_goes_alone_first_and_a_failed_canary_stops_the_update() -> None:
    runner = FakeRunner(hold=0.01)
    run = up(6, runner, workers=4, canary=1, wave_size=Amount(2, None))
    assert runner.order[0] == "210000000000" and run.exit_code == 0
    assert runner.max_running == 2, "waves of 2: never more than a wave at once"

    runner = FakeRunner(fail={"210000000000"})
    run = up(6, runner, workers=4, failure_tolerance=Amount(3, None))
    assert runner.ran == [("downstream-210000000000", "up")], "a canary that fails stops all"
    assert results(run)["210000000000"] == FAILED
    not_started = [o for o in run.outcomes if o.result == NOT_STARTED]
    assert len(not_started) == 5
    assert "canary" in not_started[0].reason
    assert "canary" in run.stopped


def test_the_update_stops_starting_members_beyond_the_failure_tolerance() -> None:
    failing = {"210000000002", "210000000003", "210000000004"}
    runner = FakeRunner(fail=failing)
    run = up(
        10,
        runner,
        canary=1,
        wave_size=Amount(None, 100),
        failure_tolerance=Amount(1, None),
    )
    outcome = results(run)
    # Members run in account order: 0 (canary), 1, 2 fails, 3 fails: 2 > 1 tolerated; stop.
    assert [a for a, r in sorted(outcome.items()) if r != NOT_STARTED] == [
        f"2100000000{i:02d}" for i in range(4)
    ]
    assert sorted(a for a, r in outcome.items() if r == NOT_STARTED) == [
        f"2100000000{i:02d}" for i in range(4, 10)
    ]
    [reason] = {o.reason for o in run.outcomes if o.result == NOT_STARTED}
    assert "failure tolerance exceeded (2 failed, tolerance 1" in reason
    assert run.exit_code == 1
    table = summary_table(run.to_json())
    assert "not started" in table and "failure tolerance exceeded" in table
    assert "AccessDenied" in table, "the failed rows say why"


def test_a_percentage_tolerance_is_of_the_runs_members_rounded_down() -> None:
    runner = FakeRunner(fail={"210000000001", "210000000002"})
    run = up(10, runner, failure_tolerance=Amount(None, 20))  # 2 of 10 tolerated
    assert NOT_STARTED not in results(run).values() and len(runner.ran) == 10


def test_roles_that_cannot_be_assumed_are_skipped_before_any_change() -> None:
    regions: list[str] = []

    def refuse_one(role_arn: str, region: str) -> None:
        regions.append(region)
        if "210000000002" in role_arn:
            raise PermissionError("not authorized to perform sts:AssumeRole")

    runner = FakeRunner()
    run = run_fleet(
        TEMPLATE,
        fleet_of(3),
        "up",
        runner,
        refuse_one,
        workers=2,
        settings=Settings("up", 2, failure_tolerance=Amount(5, None)),
    )
    assert sorted(s for s, _ in runner.ran) == [
        "downstream-210000000000",
        "downstream-210000000001",
    ]
    [skipped] = [o for o in run.outcomes if o.result == SKIPPED]
    assert skipped.account_id == "210000000002" and "sts:AssumeRole" in skipped.reason
    assert set(regions) == {"eu-west-1"}, "each role is tried in its member's region"
    assert run.exit_code == 1
    assert "cannot assume" in summary_table(run.to_json())


# --- ownership ---------------------------------------------------------------------------------

FOREIGN = {fleet.TAG_TEMPLATE: "downstream-eu", fleet.TAG_PROJECT: "ecr-ptc"}
BACKEND = {
    "downstream-210000000000": OWNED,  # a member
    "organization/ecr-ptc/downstream-999999999999": OWNED,  # left the fleet
    "downstream-888888888888": OWNED,  # left the fleet
    "downstream-777777777777": {},  # named like one, made by someone else: no tags
    "downstream-666666666666": FOREIGN,  # another template's stack with this name
    "downstream": {},  # the template itself
    "upstream": {},
}


def test_only_stacks_tagged_as_the_fleets_own_are_former_members() -> None:
    runner, err = FakeRunner(stacks=BACKEND), io.StringIO()
    run = run_fleet(TEMPLATE, fleet_of(1), "up", runner, assume_all, workers=1, err=err)
    assert run.orphans == ["downstream-888888888888", "downstream-999999999999"]
    assert runner.pruned == []
    text = err.getvalue()
    assert "downstream-888888888888, downstream-999999999999" in text
    assert "PRUNE=1 make fleet-up TEMPLATE=downstream" in text
    assert "never pruned: downstream-666666666666, downstream-777777777777" in text
    assert run.exit_code == 0


def test_prune_destroys_only_owned_former_members_and_only_on_up() -> None:
    runner = FakeRunner(stacks=BACKEND)
    preview = run_fleet(
        TEMPLATE,
        fleet_of(1),
        "preview",
        runner,
        assume_all,
        1,
        settings=Settings("preview", prune=True),
    )
    assert runner.pruned == [] and preview.orphans
    run = up(1, runner, prune=True)
    assert sorted(runner.pruned) == ["downstream-888888888888", "downstream-999999999999"]
    assert {o.stack for o in run.outcomes if o.result == PRUNED} == set(runner.pruned)
    assert "downstream-777777777777" in runner.backend, "a stack it does not own is left alone"
    assert "downstream-666666666666" in runner.backend


def test_a_prune_over_the_cap_is_refused_whole_unless_its_count_is_confirmed() -> None:
    gone = {f"downstream-3000000000{i:02d}": OWNED for i in range(7)}
    runner = FakeRunner(stacks=gone)
    run = up(1, runner, prune=True)  # default cap: max(5, 10% of 1)
    assert runner.pruned == []
    assert [o.result for o in run.outcomes if o.stack in gone] == [NOT_PRUNED] * 7
    assert "refused to prune 7 stack(s), more than the cap of 5" in run.notes[0]
    assert "PRUNE=1 PRUNE_CONFIRM=7" in run.notes[0]
    assert run.exit_code == 1

    run = up(1, runner, prune=True, prune_confirm=6)
    assert runner.pruned == [], "a confirmation of another count is none"
    run = up(1, runner, prune=True, prune_confirm=7)
    assert sorted(runner.pruned) == sorted(gone) and run.exit_code == 0


def test_retained_members_leave_the_fleet_with_their_resources() -> None:
    runner = FakeRunner(stacks={"downstream-888888888888": OWNED})
    run = up(1, runner, prune=True, retain=True)
    assert runner.pruned == []
    assert results(run)["888888888888"] == RETAINED
    assert runner.backend["downstream-888888888888"] == {fleet.TAG_RETAINED: "downstream"}, (
        "untagged, so that no later run prunes it"
    )
    again = up(1, runner, prune=True)
    assert again.orphans == [] and runner.pruned == []


def test_a_member_stack_owned_by_another_fleet_is_not_updated() -> None:
    runner = FakeRunner(stacks={"downstream-210000000000": FOREIGN})
    run = up(2, runner, failure_tolerance=Amount(1, None))
    [owned] = [o for o in run.outcomes if o.account_id == "210000000000"]
    assert owned.result == FAILED and "belongs to fleet template 'downstream-eu'" in owned.reason
    assert ("downstream-210000000000", "up") not in runner.ran


def test_members_are_tagged_and_untagged_stacks_of_members_adopted() -> None:
    runner = FakeRunner(stacks={"downstream-210000000000": {}})
    run = up(2, runner, run_id="r1")
    assert runner.created == ["downstream-fleet", "downstream-210000000001"]
    for stack in ("downstream-210000000000", "downstream-210000000001"):
        assert runner.backend[stack] == {**OWNED, fleet.TAG_RUN: "r1:done"}
    [adopted] = [o for o in run.outcomes if o.account_id == "210000000000"]
    assert "adopted" in adopted.reason


def test_a_lock_left_by_an_interrupted_fleet_run_is_cleared_and_said() -> None:
    stack = "downstream-210000000000"
    runner = FakeRunner(stacks={stack: {**OWNED, fleet.TAG_RUN: "old"}}, locked={stack})
    run = up(1, runner, run_id="new")
    assert runner.cancelled == [stack] and results(run)["210000000000"] == SUCCEEDED
    assert "cleared the lock left by interrupted fleet run old" in run.outcomes[0].reason

    # A lock with no interrupted fleet run behind it is somebody's update: never cancelled.
    runner = FakeRunner(stacks={stack: {**OWNED, fleet.TAG_RUN: "old:done"}}, locked={stack})
    run = up(1, runner)
    assert runner.cancelled == [] and results(run)["210000000000"] == FAILED
    assert "not cancelled" in run.outcomes[0].reason


# --- previews and drift -------------------------------------------------------------------------


def test_a_preview_writes_nothing_and_shows_new_members_by_their_plan() -> None:
    one = fleet_of(2)
    runner = FakeRunner(stacks=[one[0].stack])
    planned = []

    def plan(member: Member) -> RunReport:
        planned.append(member.stack)
        return RunReport({"create": 9}, "create aws:iam/role:Role cache-role")

    run = run_fleet(TEMPLATE, one, "preview", runner, assume_all, 2, planner=plan)
    assert runner.created == [] and runner.ran == [(one[0].stack, "preview")]
    assert planned == [one[1].stack]
    assert results(run)["210000000001"] == PLANNED and run.exit_code == 0
    assert runner.backend[one[0].stack] == OWNED, "no tag written by a preview"


def test_drift_checks_deployed_members_only() -> None:
    one = fleet_of(2)
    runner = FakeRunner(stacks=[one[0].stack])
    run = run_fleet(TEMPLATE, one, "drift", runner, assume_all, 2)
    assert runner.ran == [(one[0].stack, "drift")]
    assert results(run) == {"210000000000": SUCCEEDED, "210000000001": fleet.NOT_DEPLOYED}
    assert run.exit_code == 0, "an account that joined is not a failure of the drift check"
    assert runner.created == [] and "downstream-fleet" not in runner.backend, "nothing written"


def test_unchanged_members_keep_no_text() -> None:
    class Quiet(FakeRunner):
        def run(self, member: Member, command: str, refresh: bool = False) -> RunReport:
            return RunReport({"same": 5}, "a long log " * 100)

    run = up(3, Quiet())
    assert all(o.details == "" and o.steps == () for o in run.outcomes)


# --- stopping --------------------------------------------------------------------------------


def test_a_signal_stops_new_members_and_the_run_says_so() -> None:
    stop = Stop(grace=0.0, err=io.StringIO())
    runner = FakeRunner(
        on_run=lambda m: stop.on_signal(signal.SIGTERM) if m.account_id == "210000000001" else None
    )
    run = run_fleet(
        TEMPLATE, fleet_of(5), "up", runner, assume_all, 1, stop=stop, settings=Settings("up", 1)
    )
    assert [o.result for o in run.outcomes] == [SUCCEEDED, SUCCEEDED] + [NOT_STARTED] * 3
    assert "stopped by SIGTERM" in run.outcomes[-1].reason
    assert run.exit_code == 128 + signal.SIGTERM
    assert run.orphans == [] and runner.pruned == []


def test_parallelism_from_memory_bounded_by_the_members_or_from_the_variable() -> None:
    assert parallelism(100, {}, memory_mb=1250) == 4
    assert parallelism(3, {}, memory_mb=64000) == 3
    assert parallelism(10, {}, memory_mb=100) == 1
    assert parallelism(10, {"FLEET_PARALLELISM": "7"}, memory_mb=100) == 7
    with pytest.raises(ConfigError) as caught:
        parallelism(10, {"FLEET_PARALLELISM": "0"}, memory_mb=None)
    assert caught.value.key == "FLEET_PARALLELISM" and caught.value.value == "0"


def write_template(tmp_path: Path, accounts: list[str], **extra: Any) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: ecr-ptc\nruntime: python\n")
    (tmp_path / "Pulumi.downstream.yaml").write_text(
        yaml.safe_dump({"config": {**TEMPLATE_BASE, "ecr-ptc:accounts": accounts, **extra}})
    )


def drive(tmp_path: Path, argv: list[str], runner: FakeRunner, **env: str) -> tuple[int, str]:
    err = io.StringIO()
    code = fleet.main(
        argv,
        env=env,
        runner=runner,
        can_assume=assume_all,
        project_dir=tmp_path,
        out=io.StringIO(),
        err=err,
    )
    return code, err.getvalue()


def test_a_batch_runs_only_its_members_and_writes_its_summary(tmp_path: Path) -> None:
    accounts = [f"2100000000{i:02d}" for i in range(5)]
    write_template(tmp_path, accounts)
    runner = FakeRunner(stacks=[f"downstream-{a}" for a in [*accounts, "999999999999"]])
    summaries = []
    for i in (1, 2):
        summary = tmp_path / f"summary-{i}.json"
        env = {"BATCH": f"{i}/2", "FLEET_SUMMARY": str(summary), "FLEET_PARALLELISM": "2"}
        code, err = drive(tmp_path, ["preview"], runner, **env)
        assert code == 0, err
        summaries.append(json.loads(summary.read_text()))
    assert sum(len(s["members"]) for s in summaries) == 5
    assert sorted(s for s, _ in runner.ran) == [f"downstream-{a}" for a in accounts]
    # Former members are reported by the first batch only.
    assert [s["orphans"] for s in summaries] == [["downstream-999999999999"], []]
    text = comment(summaries)
    rows = [line for line in text.splitlines() if line.startswith("| 2100")]
    assert [r.split(" | ")[0] for r in rows] == [f"| {a}" for a in accounts]
    assert text.count("<details>") == 5 and "+ 3 to create" in text
    assert "downstream-999999999999" in text


def test_bad_batch_and_bad_preferences_are_refused_before_anything_runs(tmp_path: Path) -> None:
    write_template(tmp_path, ["210000000000"])
    for env, key in (
        ({"BATCH": "3/2"}, "'3/2'"),
        ({"FAILURE_TOLERANCE": "150%"}, "FAILURE_TOLERANCE"),
        ({"PRUNE_CONFIRM": "all"}, "PRUNE_CONFIRM"),
        ({"FLEET_GRACE_SECONDS": "-1"}, "FLEET_GRACE_SECONDS"),
    ):
        runner = FakeRunner()
        code, err = drive(tmp_path, ["up"], runner, **env)
        assert code == 2 and runner.ran == [] and runner.created == []
        assert key in err


def test_an_empty_fleet_is_refused_before_anything_runs(tmp_path: Path) -> None:
    write_template(tmp_path, ["210000000000"], **{"ecr-ptc:excludeAccountIds": ["210000000000"]})
    runner = FakeRunner(stacks=["downstream-210000000000"])
    code, err = drive(tmp_path, ["up"], runner, PRUNE="1")
    assert code == 2 and runner.pruned == [] and runner.ran == []
    assert "at least one member" in err and "names none" in err


def test_a_missing_or_refusing_upstream_stops_the_run_before_any_member(tmp_path: Path) -> None:
    write_template(tmp_path, ["210000000000", "210000000001"])
    runner = FakeRunner()
    runner.upstream_outputs = None
    code, err = drive(tmp_path, ["up"], runner)
    assert code == 2 and runner.ran == [] and runner.created == []
    assert "upstream stack 'organization/ecr-ptc/upstream'" in err and "does not exist" in err
    assert err.count("\n") == 1, "one line"

    runner = FakeRunner(
        outputs={
            **UPSTREAM_OUTPUTS,
            "organizationId": None,
            "downstreamAccountIds": ["210000000000"],
        }
    )
    code, err = drive(tmp_path, ["preview"], runner)
    assert code == 2 and runner.ran == []
    assert "does not serve member downstream-210000000001" in err


def test_make_fleet_up_deploys_the_upstream_first_and_stops_when_it_fails(tmp_path: Path) -> None:
    write_template(tmp_path, ["210000000000"])
    calls: list[str] = []
    runner = FakeRunner()

    def deploy_upstream(env: Mapping[str, str]) -> int:
        calls.append("upstream")
        return 255

    code = fleet.main(
        ["up", "--upstream-stack", "upstream"],
        env={},
        runner=runner,
        can_assume=assume_all,
        project_dir=tmp_path,
        out=io.StringIO(),
        err=io.StringIO(),
        deploy_upstream=deploy_upstream,
    )
    assert code == 255 and calls == ["upstream"] and runner.ran == []
    code = fleet.main(
        ["up", "--upstream-stack", "upstream"],
        env={"FLEET_UPSTREAM": "check"},
        runner=runner,
        can_assume=assume_all,
        project_dir=tmp_path,
        out=io.StringIO(),
        err=io.StringIO(),
        deploy_upstream=deploy_upstream,
    )
    assert code == 0 and calls == ["upstream"], "CI's upstream job deployed it: only checked"


def test_preflight_assumes_each_role_with_sts_of_the_members_region() -> None:
    clients: dict[str, Any] = {}

    def client(region: str) -> Any:
        clients[region] = boto3.client(
            "sts", region_name=region, aws_access_key_id="x", aws_secret_access_key="x"
        )
        return clients[region]

    ok_arn = "arn:aws-cn:iam::210000000000:role/A"
    denied_arn = "arn:aws:iam::210000000001:role/A"
    credentials = {
        "AccessKeyId": "AKIAEXAMPLEEXAMPLE",
        "SecretAccessKey": "s",
        "SessionToken": "t",
        "Expiration": "2030-01-01T00:00:00Z",
    }
    check = sts_assume_check(client)
    check_cn = client("cn-north-1")
    clients.clear()
    with Stubber(check_cn) as stubber:
        stubber.add_response(
            "assume_role",
            {"Credentials": credentials},
            {
                "RoleArn": ok_arn,
                "RoleSessionName": "ecr-ptc-fleet-preflight",
                "DurationSeconds": 900,
            },
        )
        check = sts_assume_check(
            lambda region: check_cn if region == "cn-north-1" else client(region)
        )
        check(ok_arn, "cn-north-1")
        stubber.assert_no_pending_responses()
    with Stubber(client("eu-west-1")) as stubber:
        stubber.add_client_error("assume_role", "AccessDenied", "not authorized: sts:AssumeRole")
        check = sts_assume_check(lambda region: clients[region])
        with pytest.raises(Exception, match="AccessDenied"):
            check(denied_arn, "eu-west-1")


def test_bench_prints_the_overhead_for_each_fleet_size(capsys: pytest.CaptureFixture[str]) -> None:
    from scripts import bench_fleet

    bench_fleet.main(sizes=(10, 100), cli_members=0)
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows[:2]] == ["10", "100"]


def test_without_the_pulumi_cli_or_a_passphrase_nothing_runs(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: ecr-ptc\nruntime: python\nbackend:\n  url: file://./.pulumi-state\n"
    )
    (tmp_path / "Pulumi.downstream.yaml").write_text(
        yaml.safe_dump({"config": {**TEMPLATE_BASE, "ecr-ptc:accounts": ["210000000000"]}})
    )
    checked: list[str] = []

    def args(which: Any, env: dict[str, str]) -> int:
        err = io.StringIO()
        code = fleet.main(
            ["up"],
            env=env,
            can_assume=lambda role, region: checked.append(role),
            project_dir=tmp_path,
            err=err,
            which=which,
        )
        checked.append(err.getvalue())
        return code

    assert args(lambda _: None, {"PULUMI_CONFIG_PASSPHRASE": ""}) == 2
    assert "Pulumi CLI" in checked[-1]
    assert args(lambda _: "/bin/pulumi", {}) == 2
    assert "PULUMI_CONFIG_PASSPHRASE" in checked[-1]
    assert len(checked) == 2, "no role was tried"


def test_a_batch_never_takes_the_other_batches_members_for_former_ones(tmp_path: Path) -> None:
    accounts = [f"2100000000{i:02d}" for i in range(6)]
    write_template(tmp_path, accounts)
    deployed = [f"downstream-{a}" for a in accounts] + ["downstream-999999999999"]
    runner = FakeRunner(stacks=deployed)
    first = [m.stack for m in batch(fleet_of(6), 1, 3)]
    code, err = drive(tmp_path, ["up"], runner, BATCH="1/3", PRUNE="1", FLEET_PARALLELISM="2")
    assert code == 0, err
    assert runner.pruned == ["downstream-999999999999"], "only the account that left"
    assert sorted(s for s, _ in runner.ran) == sorted(first)


# --- one run at a time -------------------------------------------------------------------------


def test_a_fleet_updated_by_a_live_run_is_refused_and_a_dead_runs_lease_taken_over() -> None:
    now = time.time()
    live = {fleet.TAG_LEASE: "other", f"{fleet.TAG_BEAT}1of2": f"{now - 5:.0f}"}
    runner = FakeRunner(stacks={"downstream-fleet": live})
    with pytest.raises(fleet.FleetBusy) as refused:
        up(2, runner, run_id="mine", heartbeat_seconds=20)
    assert "fleet run other is updating fleet 'downstream'" in str(refused.value)
    assert runner.ran == [] and runner.created == []

    dead = {fleet.TAG_LEASE: "other", f"{fleet.TAG_BEAT}1of2": f"{now - 300:.0f}"}
    runner = FakeRunner(stacks={"downstream-fleet": dead})
    run = up(2, runner, run_id="mine", heartbeat_seconds=20)
    assert run.exit_code == 0 and len(runner.ran) == 2
    assert runner.backend["downstream-fleet"] == {fleet.TAG_LEASE: "mine"}, "its beat removed"


def test_the_batches_of_one_run_share_its_lease() -> None:
    now = time.time()
    batch_one = {fleet.TAG_LEASE: "ci-42", f"{fleet.TAG_BEAT}1of2": f"{now:.0f}"}
    runner = FakeRunner(stacks={"downstream-fleet": batch_one})
    run = up(2, runner, run_id="ci-42", batch_label="2of2")
    assert run.exit_code == 0
    assert runner.backend["downstream-fleet"] == batch_one, "batch 2's beat gone, batch 1's kept"


def test_a_lock_left_by_a_prune_that_was_killed_is_cleared_by_the_next_run() -> None:
    gone = "downstream-888888888888"
    runner = FakeRunner(stacks={gone: {**OWNED, fleet.TAG_RUN: "old"}}, locked={gone})

    def prune(stack: str) -> RunReport:
        if stack in runner.locked:
            raise Locked("error: the stack is currently locked by 1 lock(s).")
        runner.pruned.append(stack)
        return RunReport({"delete": 5})

    runner.prune = prune  # type: ignore[method-assign]
    run = up(1, runner, prune=True, run_id="new")
    assert runner.cancelled == [gone] and runner.pruned == [gone]
    assert results(run)["888888888888"] == PRUNED
