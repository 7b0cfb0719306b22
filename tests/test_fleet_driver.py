"""The fleet driver: bounded parallelism, per-account failures, pre-flight, pruning, summaries,
and the Automation API runner's workspaces (checked without the Pulumi CLI)."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from components.config_error import ConfigError
from scripts import fleet
from scripts.fleet import (
    FAILED,
    PRUNED,
    SKIPPED,
    SUCCEEDED,
    AutomationRunner,
    RunReport,
    backend_url,
    parallelism,
    run_fleet,
    sts_assume_check,
    summary_table,
)
from scripts.fleet_members import Member, members

TEMPLATE = "downstream"
# A template's own config: members run the ordinary downstream program, so it must be valid.
TEMPLATE_BASE: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
    "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden"}],
}


def fleet_of(n: int) -> list[Member]:
    config = {
        "aws:region": "eu-west-1",
        "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
        "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden"}],
        "ecr-ptc:accounts": [f"2100000000{i:02d}" for i in range(n)],
    }
    return members(TEMPLATE, config)


class FakeRunner:
    """Records calls and the most members it saw running at once."""

    def __init__(
        self,
        fail: set[str] = frozenset(),  # type: ignore[assignment]
        stacks: list[str] | None = None,
        hold: float = 0.0,
    ) -> None:
        self.fail, self.stacks, self.hold = fail, stacks or [], hold
        self.lock = threading.Lock()
        self.running = self.max_running = 0
        self.ran: list[tuple[str, str]] = []
        self.pruned: list[str] = []

    def run(self, member: Member, command: str) -> RunReport:
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.ran.append((member.stack, command))
        try:
            if self.hold:
                time.sleep(self.hold)  # long enough for the pool to fill up
            if member.account_id in self.fail:
                raise RuntimeError(f"update of {member.stack} failed: AccessDenied")
            return RunReport({"create": 3, "same": 1}, f"+ 3 to create in {member.stack}")
        finally:
            with self.lock:
                self.running -= 1

    def list_stacks(self) -> list[str]:
        return self.stacks

    def prune(self, stack: str) -> RunReport:
        self.pruned.append(stack)
        return RunReport({"delete": 5})


def assume_all(role_arn: str) -> None:
    return None


def test_parallel_runs_never_exceed_the_bound_and_do_run_in_parallel() -> None:
    runner = FakeRunner(hold=0.02)
    run = run_fleet(TEMPLATE, fleet_of(12), "up", runner, assume_all, workers=3)
    assert runner.max_running == 3
    assert len(runner.ran) == 12 and run.exit_code == 0


def test_one_failing_account_does_not_stop_the_others_and_fails_the_run() -> None:
    runner = FakeRunner(fail={"210000000001"})
    run = run_fleet(TEMPLATE, fleet_of(4), "up", runner, assume_all, workers=2)
    results = {o.account_id: o.result for o in run.outcomes}
    assert results == {
        "210000000000": SUCCEEDED,
        "210000000001": FAILED,
        "210000000002": SUCCEEDED,
        "210000000003": SUCCEEDED,
    }
    [failed] = [o for o in run.outcomes if o.result == FAILED]
    assert "AccessDenied" in failed.details
    assert run.exit_code == 1


def test_summary_has_a_row_per_account_with_result_changes_and_duration() -> None:
    ticks = iter(float(i) for i in range(100))
    run = run_fleet(
        TEMPLATE,
        fleet_of(2),
        "preview",
        FakeRunner(fail={"210000000001"}),
        assume_all,
        workers=1,
        clock=lambda: next(ticks),
    )
    lines = summary_table(run).splitlines()
    assert lines[0].split() == ["account", "stack", "result", "changes", "duration"]
    assert lines[1].split() == [
        "210000000000",
        "downstream-210000000000",
        "succeeded",
        "create",
        "3",
        "1.0s",
    ]
    assert lines[2].split() == ["210000000001", "downstream-210000000001", "failed", "-", "1.0s"]
    assert "2 stacks, 1 ok, 1 not" in lines[3]


def test_roles_that_cannot_be_assumed_are_skipped_before_any_change() -> None:
    def refuse_one(role_arn: str) -> None:
        if "210000000002" in role_arn:
            raise PermissionError("not authorized to perform sts:AssumeRole")

    runner = FakeRunner()
    run = run_fleet(TEMPLATE, fleet_of(3), "up", runner, refuse_one, workers=2)
    assert sorted(s for s, _ in runner.ran) == [
        "downstream-210000000000",
        "downstream-210000000001",
    ]
    [skipped] = [o for o in run.outcomes if o.result == SKIPPED]
    assert skipped.account_id == "210000000002" and "sts:AssumeRole" in skipped.details
    assert run.exit_code == 1
    assert "skipped: cannot assume role" in summary_table(run)


STACKS = [
    "downstream-210000000000",  # a member
    "organization/ecr-ptc/downstream-999999999999",  # left the fleet
    "downstream-888888888888",  # left the fleet
    "downstream-eu-777777777777",  # another template's member
    "downstream",  # the template itself
    "upstream",
]


def test_former_members_are_only_listed_with_the_prune_command_unless_prune_is_set() -> None:
    runner, err = FakeRunner(stacks=STACKS), io.StringIO()
    run = run_fleet(TEMPLATE, fleet_of(1), "up", runner, assume_all, workers=1, err=err)
    assert run.orphans == ["downstream-888888888888", "downstream-999999999999"]
    assert runner.pruned == []
    assert "downstream-888888888888, downstream-999999999999" in err.getvalue()
    assert "PRUNE=1 make fleet-up TEMPLATE=downstream" in err.getvalue()
    assert run.exit_code == 0

    preview = run_fleet(
        TEMPLATE, fleet_of(1), "preview", runner, assume_all, 1, prune=True, err=err
    )
    assert runner.pruned == [] and preview.orphans


def test_prune_destroys_former_members_on_up() -> None:
    runner = FakeRunner(stacks=STACKS)
    run = run_fleet(TEMPLATE, fleet_of(1), "up", runner, assume_all, workers=2, prune=True)
    assert sorted(runner.pruned) == ["downstream-888888888888", "downstream-999999999999"]
    assert {o.stack: o.result for o in run.outcomes if o.result == PRUNED} == {
        "downstream-888888888888": PRUNED,
        "downstream-999999999999": PRUNED,
    }


def test_parallelism_from_memory_bounded_by_the_members_or_from_the_variable() -> None:
    assert parallelism(100, {}, memory_mb=1250) == 4
    assert parallelism(3, {}, memory_mb=64000) == 3
    assert parallelism(10, {}, memory_mb=100) == 1
    assert parallelism(10, {"FLEET_PARALLELISM": "7"}, memory_mb=100) == 7
    with pytest.raises(ConfigError) as caught:
        parallelism(10, {"FLEET_PARALLELISM": "0"}, memory_mb=None)
    assert caught.value.key == "FLEET_PARALLELISM" and caught.value.value == "0"


def test_a_batch_runs_only_its_members_and_writes_its_summary(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.downstream.yaml").write_text(
        yaml.safe_dump(
            {
                "config": {
                    **TEMPLATE_BASE,
                    "ecr-ptc:accounts": [f"2100000000{i:02d}" for i in range(5)],
                }
            }
        )
    )
    runner, out, summaries = FakeRunner(stacks=["downstream-999999999999"]), io.StringIO(), []
    for i in (1, 2):
        summary = tmp_path / f"summary-{i}.json"
        env = {"BATCH": f"{i}/2", "FLEET_SUMMARY": str(summary), "FLEET_PARALLELISM": "2"}
        code = fleet.main(
            ["preview"],
            env=env,
            runner=runner,
            can_assume=assume_all,
            project_dir=tmp_path,
            out=out,
            err=io.StringIO(),
        )
        assert code == 0
        summaries.append(json.loads(summary.read_text()))
    assert [len(s["members"]) for s in summaries] == [2, 3]
    assert sorted(s for s, _ in runner.ran) == [f"downstream-2100000000{i:02d}" for i in range(5)]
    # Former members are reported by the first batch only.
    assert [s["orphans"] for s in summaries] == [["downstream-999999999999"], []]

    comment = fleet.comment(summaries)
    assert comment.startswith(fleet.COMMENT_MARKER)
    rows = [line for line in comment.splitlines() if line.startswith("| 2100")]
    assert [r.split(" | ")[0] for r in rows] == [f"| 2100000000{i:02d}" for i in range(5)]
    assert comment.count("<details>") == 5 and "+ 3 to create" in comment
    assert "downstream-999999999999" in comment


def test_bad_batch_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.downstream.yaml").write_text(
        yaml.safe_dump({"config": {**TEMPLATE_BASE, "ecr-ptc:accounts": ["210000000000"]}})
    )
    runner, err = FakeRunner(), io.StringIO()
    code = fleet.main(
        ["up"],
        env={"BATCH": "3/2"},
        runner=runner,
        can_assume=assume_all,
        project_dir=tmp_path,
        err=err,
    )
    assert code == 2 and runner.ran == []
    assert "BATCH" in err.getvalue() and "'3/2'" in err.getvalue()


def test_preflight_assumes_each_role_with_sts() -> None:
    sts = boto3.client(
        "sts", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    ok_arn, denied_arn = "arn:aws:iam::210000000000:role/A", "arn:aws:iam::210000000001:role/A"
    credentials = {
        "AccessKeyId": "AKIAEXAMPLEEXAMPLE",
        "SecretAccessKey": "s",
        "SessionToken": "t",
        "Expiration": "2030-01-01T00:00:00Z",
    }
    with Stubber(sts) as stubber:
        stubber.add_response(
            "assume_role",
            {"Credentials": credentials},
            {
                "RoleArn": ok_arn,
                "RoleSessionName": "ecr-ptc-fleet-preflight",
                "DurationSeconds": 900,
            },
        )
        stubber.add_client_error(
            "assume_role", "AccessDenied", "not authorized to perform: sts:AssumeRole"
        )
        check = sts_assume_check(sts)
        check(ok_arn)
        with pytest.raises(Exception, match="AccessDenied"):
            check(denied_arn)
        stubber.assert_no_pending_responses()


# --- the Automation API runner, without the CLI ---------------------------------------------


class FakeWorkspace:
    def __init__(self, work_dir: str, env_vars: dict[str, str]) -> None:
        self.work_dir, self.env_vars = Path(work_dir), env_vars
        self.removed: list[str] = []


class FakeStack:
    def __init__(self, name: str, workspace: FakeWorkspace, seen: list[dict[str, Any]]) -> None:
        self.name, self.workspace, self.seen = name, workspace, seen
        # What `pulumi stack init` does to the stack file: add the secrets provider's salt.
        path = workspace.work_dir / f"Pulumi.{name}.yaml"
        document = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump(document | {"encryptionsalt": "v1:salt"}))

    def preview(self, **kwargs: Any) -> Any:
        work_dir = self.workspace.work_dir
        self.seen.append(
            {
                "kwargs": kwargs,
                "work_dir": work_dir,
                "project": yaml.safe_load((work_dir / "Pulumi.yaml").read_text()),
                "stack_file": yaml.safe_load((work_dir / f"Pulumi.{self.name}.yaml").read_text()),
                "program": (work_dir / fleet.PROGRAM_LINK).resolve(),
                "env": self.workspace.env_vars,
            }
        )
        kwargs["on_output"]("+ 2 to create\n")
        return type("Preview", (), {"change_summary": {"create": 2, "same": 0}})()


def test_each_member_gets_its_own_workspace_running_the_project_program(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        "name: ecr-ptc\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: .venv\n"
        "config:\n  ecr-ptc:side:\n    type: string\n    default: ''\n"
    )
    seen: list[dict[str, Any]] = []
    runner = AutomationRunner(
        project,
        env={"PULUMI_BACKEND_URL": "s3://state/ecr-ptc"},
        workspace_factory=FakeWorkspace,
        stack_factory=lambda name, ws: FakeStack(name, ws, seen),
    )
    two = fleet_of(2)
    reports = [runner.run(m, "preview") for m in two]
    assert reports[0].changes == {"create": 2, "same": 0} and "+ 2 to create" in reports[0].details
    first, second = seen
    assert first["work_dir"] != second["work_dir"], "no two members share workspace files"
    assert not first["work_dir"].exists(), "the workspace is removed afterwards"
    project_settings = first["project"]
    assert project_settings["name"] == "ecr-ptc"
    assert project_settings["main"] == "program" and first["program"] == project.resolve()
    assert project_settings["runtime"]["options"] == {
        "toolchain": "pip",
        "virtualenv": str(project.resolve() / ".venv"),
    }
    assert project_settings["backend"] == {"url": "s3://state/ecr-ptc"}
    assert project_settings["config"] == {"ecr-ptc:side": {"type": "string", "default": ""}}
    assert first["env"]["PULUMI_BACKEND_URL"] == "s3://state/ecr-ptc"
    # All of the member's config, and nothing else, beside what `stack init` wrote.
    # The preview's provider assumes the member's read-only role, not the deploy role.
    assert first["stack_file"] == {
        "config": two[0].config_for("preview"),
        "encryptionsalt": "v1:salt",
    }
    assert first["stack_file"]["config"]["aws:assumeRoles"] == [
        {"roleArn": two[0].preview_role_arn}
    ]
    assert two[0].preview_role_arn != two[0].role_arn
    assert first["kwargs"]["policy_packs"] == [str(project.resolve() / "policy")]


def test_backend_from_the_environment_then_pulumi_yaml_then_the_local_state(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: ecr-ptc\nruntime: python\n")
    assert backend_url(tmp_path, {}) is None, "no backend declared: the one of `pulumi login`"
    (tmp_path / "Pulumi.yaml").write_text(
        "name: ecr-ptc\nruntime: python\nbackend:\n  url: s3://b/p\n"
    )
    assert backend_url(tmp_path, {}) == "s3://b/p"
    assert backend_url(tmp_path, {"PULUMI_BACKEND_URL": "file:///x"}) == "file:///x"


def test_bench_prints_the_overhead_for_each_fleet_size(capsys: pytest.CaptureFixture[str]) -> None:
    from scripts import bench_fleet

    bench_fleet.main()
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[0] for row in rows] == ["10", "100", "1000"]
    assert all(float(value) >= 0 for row in rows for value in row[1:])


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
            ["up"], env=env, can_assume=checked.append, project_dir=tmp_path, err=err, which=which
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
    (tmp_path / "Pulumi.downstream.yaml").write_text(
        yaml.safe_dump({"config": {**TEMPLATE_BASE, "ecr-ptc:accounts": accounts}})
    )
    deployed = [f"downstream-{a}" for a in accounts] + ["downstream-999999999999"]
    runner, err = FakeRunner(stacks=deployed), io.StringIO()
    code = fleet.main(
        ["up"],
        env={"BATCH": "1/3", "PRUNE": "1", "FLEET_PARALLELISM": "2"},
        runner=runner,
        can_assume=assume_all,
        project_dir=tmp_path,
        out=io.StringIO(),
        err=err,
    )
    assert code == 0, err.getvalue()
    assert runner.pruned == ["downstream-999999999999"], "only the account that left"
    assert sorted(s for s, _ in runner.ran) == [
        "downstream-210000000000",
        "downstream-210000000001",
    ]
