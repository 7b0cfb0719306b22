"""fleet.yml: the members are resolved once, a matrix of batches runs them all exactly once,
after the upstream; pull requests preview (and the schedule checks drift) through the preview
roles in the preview environment, main, the schedule and a dispatch on main update through the
deploy roles in the deploy environment; one PR comment, posted by a job that runs nothing of the
pull request; a fork's pull request gets the offline plan and nothing that holds a credential;
a cancelled batch tells the driver at once."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scripts import fleet
from scripts.fleet_members import Member, batch, from_json, parse_batch, to_json
from tests.workflow_files import (
    DEPLOY_ENVIRONMENT,
    EITHER_ENVIRONMENT,
    FORK_PULL_REQUEST,
    PREVIEW_ENVIRONMENT,
    PULL_REQUEST,
    PUSH_TO_MAIN,
    SCHEDULE,
    WORKFLOWS,
    Event,
    actionlint,
    condition_holds,
    context_for,
    dispatch,
    evaluate,
    load,
    may_run,
    named,
    outcomes,
    run_step,
    runs,
    start_step,
    steps_using,
)

WORKFLOW = "fleet.yml"
TEMPLATE = "downstream"
# The matrix jobs, each with the driver's command it runs.
BATCH_JOBS = {"preview": "fleet-preview", "drift": "fleet-drift", "deploy": "fleet-up"}
# A fork's pull request, as GitHub runs it (no repository variable) and, should that change,
# with every variable set.
FORK_RUNS = (
    Event("pull_request", "refs/pull/7/merge", fork=True, variables={}),
    Event("pull_request", "refs/pull/7/merge", fork=True, variables={"FLEET_TEMPLATE": "fleet"}),
)


def members_file(tmp_path: Path, n: int) -> Path:
    """`n` members of the template, and the template they are of (the driver reads it)."""
    (tmp_path / "Pulumi.yaml").write_text("name: ecr-ptc\nruntime: python\n")
    template = {
        "aws:region": "eu-west-1",
        "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
        "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden"}],
        "ecr-ptc:accounts": ["210000000001"],
    }
    (tmp_path / f"Pulumi.{TEMPLATE}.yaml").write_text(json.dumps({"config": template}))
    path = tmp_path / "members.json"
    path.write_text(
        to_json(
            [Member(f"{TEMPLATE}-{i:012d}", f"{i:012d}", "arn", {}) for i in range(n)], TEMPLATE
        )
    )
    return path


def matrix_output(members: Path, per_batch: int) -> dict[str, Any]:
    out = io.StringIO()
    argv = ["matrix", "--template", TEMPLATE, "--members", str(members)]
    argv += ["--per-batch", str(per_batch), "--project-dir", str(members.parent)]
    assert fleet.main(argv, out=out) == 0
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


def expand(value: str, matrix_batch: int, count: int) -> str:
    """The BATCH expression of a matrix job, as GitHub would evaluate it."""
    return value.replace("${{ matrix.batch }}", str(matrix_batch)).replace(
        "${{ needs.members.outputs.count }}", str(count)
    )


def test_runs_on_pull_requests_merges_daily_and_by_hand() -> None:
    triggers = load(WORKFLOW)["on"]
    assert set(triggers) == {"pull_request", "push", "schedule", "workflow_dispatch"}
    assert triggers["push"]["branches"] == ["main"]
    assert len(triggers["schedule"]) == 1
    # One input: whether the update refreshes first. Off unless ticked.
    assert triggers["workflow_dispatch"]["inputs"] == {
        "refresh": {
            "description": triggers["workflow_dispatch"]["inputs"]["refresh"]["description"],
            "type": "boolean",
            "default": False,
        }
    }


@pytest.mark.parametrize(("size", "per_batch"), [(1, 25), (7, 2), (60, 25), (10000, 25)])
def test_the_matrix_built_from_the_members_runs_each_member_exactly_once(
    tmp_path: Path, size: int, per_batch: int
) -> None:
    workflow = load(WORKFLOW)
    resolve = workflow["jobs"]["members"]
    # The resolve job writes the members once and builds the matrix from that file ...
    assert "fleet-members" in runs(resolve) and "> members.json" in runs(resolve)
    assert "fleet-matrix" in runs(resolve) and "MEMBERS=members.json" in runs(resolve)
    assert resolve["outputs"]["matrix"] == "${{ steps.matrix.outputs.matrix }}"

    members = members_file(tmp_path, size)
    output = matrix_output(members, per_batch)
    jobs = output["matrix"]["batch"]
    assert len(jobs) == output["count"] <= 256
    everyone = from_json(members.read_text(), TEMPLATE)
    preview = workflow["jobs"]["preview"]
    # Previews, drift checks and updates cut the fleet into the same batches ...
    for name in BATCH_JOBS:
        job = workflow["jobs"][name]
        assert job["strategy"] == {
            "fail-fast": False,
            "matrix": "${{ fromJSON(needs.members.outputs.matrix) }}",
        }, name
        assert job["env"]["BATCH"] == preview["env"]["BATCH"], name
        assert job["env"]["FLEET_PARALLELISM"] == "${{ vars.FLEET_PARALLELISM }}", name
        # ... and every batch job runs from that same file.
        assert "MEMBERS=members.json" in runs(job), name
    ran: list[Member] = []
    for job in jobs:
        index, count = parse_batch(expand(preview["env"]["BATCH"], job, output["count"]))
        ran += batch(everyone, index, count)
    assert sorted(ran, key=lambda m: m.account_id) == everyone, "each member in one batch"


def test_members_follow_the_upstream_and_the_comment_follows_every_batch() -> None:
    jobs = load(WORKFLOW)["jobs"]
    assert jobs["upstream"]["needs"] == "test"
    assert jobs["upstream"]["concurrency"] == {
        "group": load("deploy.yml")["jobs"]["up-upstream"]["concurrency"]["group"],
        "cancel-in-progress": False,
    }, "shares deploy.yml's group: two updates of the upstream never overlap"
    [step] = steps_using(jobs["upstream"], "pulumi/actions")
    assert step["with"]["command"] == "up"
    assert jobs["members"]["needs"] == ["test", "upstream"]
    assert "needs.upstream.result != 'failure'" in jobs["members"]["if"]
    assert jobs["preview"]["needs"] == "members"
    assert jobs["drift"]["needs"] == "members"
    # On the schedule the drift check comes first; whatever it finds, the update goes on.
    assert jobs["deploy"]["needs"] == ["members", "drift"]
    assert "needs.drift" not in jobs["deploy"]["if"]
    assert jobs["comment-body"]["needs"] == ["members", "preview"]
    assert "github.event_name == 'pull_request'" in jobs["comment-body"]["if"]
    assert jobs["comment"]["needs"] == "comment-body"
    assert "fleet-comment" in runs(jobs["comment-body"]) and "gh api" in runs(jobs["comment"])


def test_previews_and_updates_run_apart_each_with_its_role_and_environment() -> None:
    jobs = load(WORKFLOW)["jobs"]
    expected = {
        # job: (events, environment, role variable)
        "preview": ("== 'pull_request'", PREVIEW_ENVIRONMENT, "FLEET_AWS_PREVIEW_ROLE_ARN"),
        "drift": ("== 'schedule'", PREVIEW_ENVIRONMENT, "FLEET_AWS_PREVIEW_ROLE_ARN"),
        "deploy": ("!= 'pull_request'", DEPLOY_ENVIRONMENT, "FLEET_AWS_ROLE_ARN"),
    }
    for name, (events, environment, role) in expected.items():
        job = jobs[name]
        assert f"github.event_name {events}" in job["if"], name
        assert job["environment"] == environment, name
        [creds] = steps_using(job, "aws-actions/configure-aws-credentials")
        assert creds["with"]["role-to-assume"] == f"${{{{ vars.{role} }}}}", name
        make = driver_step(job, BATCH_JOBS[name])
        assert make["env"]["FLEET_SUMMARY"] == "summary.json", name
    # The Organizations reader, read-only, serves both.
    assert jobs["members"]["environment"] == EITHER_ENVIRONMENT
    [creds] = steps_using(jobs["members"], "aws-actions/configure-aws-credentials")
    assert creds["with"]["role-to-assume"] == "${{ vars.FLEET_ORGANIZATIONS_ROLE_ARN }}"
    assert creds["if"] == "vars.FLEET_ORGANIZATIONS_ROLE_ARN != ''"
    # Summaries of a schedule's drift check and update do not collide.
    names = {
        name: next(s for s in jobs[name]["steps"] if "upload-artifact" in s.get("uses", ""))
        for name in BATCH_JOBS
    }
    assert {n: s["with"]["name"] for n, s in names.items()} == {
        "preview": "fleet-preview-summary-${{ matrix.batch }}",
        "drift": "fleet-drift-summary-${{ matrix.batch }}",
        "deploy": "fleet-up-summary-${{ matrix.batch }}",
    }
    assert jobs["comment-body"]["steps"][2]["with"]["pattern"] == (
        names["preview"]["with"]["name"].replace("${{ matrix.batch }}", "*")
    )


def test_least_privilege_per_job() -> None:
    workflow = load(WORKFLOW)
    assert workflow["permissions"] == {}
    assert workflow["env"] == {"TEMPLATE": "${{ vars.FLEET_TEMPLATE }}"}
    for name, job in workflow["jobs"].items():
        permissions = job["permissions"]
        uses_aws = bool(steps_using(job, "aws-actions/configure-aws-credentials"))
        assert ("id-token" in permissions) == uses_aws, name
        if name == "comment":
            assert permissions == {"pull-requests": "write"}
        elif name == "plan":
            assert permissions == {"contents": "read"}
        else:
            assert permissions["contents"] == "read", name
            assert set(permissions) <= {"contents", "id-token"}, name
        for step in steps_using(job, "aws-actions/configure-aws-credentials"):
            assert not {"aws-access-key-id", "aws-secret-access-key"} & set(step["with"]), name


def test_fleet_previews_load_the_base_branchs_pack_through_policy(tmp_path: Path) -> None:
    """The driver loads the pack at policy/; the preview job makes that the base branch's."""
    job = load(WORKFLOW)["jobs"]["preview"]
    trusted = named(job, "The policy pack of the base branch")
    assert trusted["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert trusted["with"]["path"] == "trusted"
    swap = named(job, "Preview with the base branch's pack")
    steps = job["steps"]
    install = next(i for i, s in enumerate(steps) if s.get("run") == "make install")
    # Swapped before `make install`, which then syncs the pack's environment from its lock.
    assert steps.index(trusted) < steps.index(swap) < install

    # As the runner leaves the workspace: the branch's checkout and the base branch's pack.
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "guardrails.py").write_text("weakened = True\n")
    (tmp_path / "trusted" / "policy").mkdir(parents=True)
    (tmp_path / "trusted" / "policy" / "guardrails.py").write_text("weakened = False\n")
    assert run_step(swap, tmp_path, {}).returncode == 0
    pack = tmp_path / "policy" / "guardrails.py"
    assert pack.read_text() == "weakened = False\n"
    # The pack finds its modules beside where it really is (policy/__main__.py: resolve()).
    assert os.path.realpath(tmp_path / "policy") == str((tmp_path / "trusted" / "policy").resolve())


def test_the_fleet_comment_merges_every_batch_and_fails_without_one(tmp_path: Path) -> None:
    job = load(WORKFLOW)["jobs"]["comment-body"]
    step = named(job, "Merge the batches' summaries into one comment")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make = bin_dir / "make"
    make.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    make.chmod(0o755)
    for batch_no in (2, 1, 10):
        summary = tmp_path / "summaries" / f"fleet-preview-summary-{batch_no}" / "summary.json"
        summary.parent.mkdir(parents=True)
        summary.write_text("{}")
    result = run_step(step, tmp_path, {}, path=(bin_dir,))
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "comment.md").read_text().splitlines()
    assert args[:2] == ["-s", "fleet-comment"]
    assert sorted(args[2].removeprefix("SUMMARIES=").split()) == sorted(
        f"summaries/fleet-preview-summary-{n}/summary.json" for n in (1, 2, 10)
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_step(step, empty, {}, path=(bin_dir,))
    assert result.returncode == 1 and "::error::no batch left a summary" in result.stdout


def test_actionlint_accepts_the_fleet_workflow_and_catches_a_broken_one(tmp_path: Path) -> None:
    text = (WORKFLOWS / WORKFLOW).read_text()
    result = actionlint(tmp_path, WORKFLOW, text)
    assert result.returncode == 0, result.stdout
    broken = re.sub(r"needs\.members\.outputs\.matrix", "needs.member.outputs.matrix", text)
    result = actionlint(tmp_path, WORKFLOW, broken)
    assert result.returncode == 1 and "member" in result.stdout


def test_fleets_are_opt_in_and_the_template_is_left_to_the_fleet_workflow() -> None:
    fleet = load(WORKFLOW)
    assert fleet["env"]["TEMPLATE"] == "${{ vars.FLEET_TEMPLATE }}"
    assert fleet["jobs"]["test"]["if"] == "vars.FLEET_TEMPLATE != ''"
    # Every job but the offline plan waits on `test`, directly or through another job ...
    for name, job in fleet["jobs"].items():
        if name not in ("test", "plan"):
            needs = job["needs"] if isinstance(job["needs"], list) else [job["needs"]]
            assert any(n in ("test", "members", "upstream", "comment-body") for n in needs), name
    for name in ("preview", "drift", "deploy", "comment-body"):
        assert "needs.members.result == 'success'" in fleet["jobs"][name]["if"], name
    assert "needs.comment-body.result == 'success'" in fleet["jobs"]["comment"]["if"]
    # ... so that a repository without a fleet runs none of them, whatever the event; only a
    # fork's pull request, whose run says nothing of the repository's variables, gets the plan.
    for event in (PULL_REQUEST, PUSH_TO_MAIN, SCHEDULE, dispatch(refresh=True)):
        assert may_run(fleet, Event(event.name, event.ref, inputs=event.inputs, variables={})) == (
            set()
        ), event
    for workflow, job in (("preview.yml", "preview-downstream"), ("deploy.yml", "up-downstream")):
        condition = load(workflow)["jobs"][job]["if"]
        assert condition == "vars.FLEET_TEMPLATE != (vars.DOWNSTREAM_STACK || 'downstream')"


def test_what_each_event_runs() -> None:
    fleet = load(WORKFLOW)
    expected = (
        (PULL_REQUEST, {"test", "plan", "members", "preview", "comment-body", "comment"}),
        (PUSH_TO_MAIN, {"test", "upstream", "members", "deploy"}),
        (SCHEDULE, {"test", "upstream", "members", "drift", "deploy"}),
        (dispatch(refresh=True), {"test", "upstream", "members", "deploy"}),
        (dispatch(refresh=False), {"test", "upstream", "members", "deploy"}),
        # Refused: `test` runs only to say so (and fails).
        (dispatch("refs/heads/feature", refresh=True), {"test"}),
        (dispatch("refs/tags/v1", refresh=False), {"test"}),
    )
    for event, jobs in expected:
        assert may_run(fleet, event) == jobs, event


def test_a_forks_pull_request_gets_the_offline_plan_and_no_credential() -> None:
    """GitHub gives a fork's run no secret, a read-only token and no repository variable: the
    jobs it can start ask for none of them, and the plan runs whatever the variables."""
    fleet = load(WORKFLOW)
    for event in (*FORK_RUNS, FORK_PULL_REQUEST):
        reachable = may_run(fleet, event)
        assert outcomes(fleet, event)["plan"] == {"success", "failure"}, "never skipped"
        assert reachable <= {"plan", "test"}, event
        for name in reachable:
            job = fleet["jobs"][name]
            assert job["permissions"] == {"contents": "read"}, name
            assert "environment" not in job, name
            assert "secrets." not in json.dumps(job), name
            assert not steps_using(job, "aws-actions/configure-aws-credentials"), name
    # The preview, its comment and everything after `members` exclude a fork themselves too,
    # not only through `members`.
    for name in ("members", "preview", "comment-body", "comment"):
        assert not condition_holds(
            fleet,
            name,
            FORK_PULL_REQUEST,
            {n: "success" for n in needs_of(fleet["jobs"][name])},
        ), name
    # A branch of the repository gets the plan too when the repository has a fleet.
    assert "plan" in may_run(fleet, Event(PULL_REQUEST.name, PULL_REQUEST.ref))
    no_fleet = Event(PULL_REQUEST.name, PULL_REQUEST.ref, variables={})
    assert "plan" not in may_run(fleet, no_fleet)


def test_the_plan_is_the_templates_or_every_stack_files(tmp_path: Path) -> None:
    job = load(WORKFLOW)["jobs"]["plan"]
    plan, summary = named(job, "make plan"), named(job, "The plan in the job summary")
    steps = job["steps"]
    assert steps.index(plan) < steps.index(summary) and summary["if"] == "${{ !cancelled() }}"
    assert "set -o pipefail" in plan["run"], "a refused stack fails the job"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text('#!/bin/sh\nprintf "%s|" "$@"; echo\n')
    (bin_dir / "make").chmod(0o755)
    for template, argument, heading in (
        ("fleet", "STACKS=fleet", "the members of the fleet template `fleet`"),
        # A fork's run: no variable, every stack file.
        ("", "STACKS=", "every stack file"),
    ):
        work = tmp_path / (template or "fork")
        work.mkdir()
        env = {"TEMPLATE": template, "GITHUB_STEP_SUMMARY": str(work / "summary.md")}
        result = run_step(plan, work, env, path=(bin_dir,))
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"-s|plan|{argument}|\n"
        assert run_step(summary, work, env).returncode == 0
        text = (work / "summary.md").read_text()
        assert text.startswith(f"### make plan: {heading}\n") and argument in text


def test_the_schedule_checks_drift_then_updates_without_refreshing() -> None:
    fleet = load(WORKFLOW)
    jobs = fleet["jobs"]
    drift = jobs["drift"]
    assert drift["environment"] == PREVIEW_ENVIRONMENT
    assert drift["permissions"] == {"contents": "read", "id-token": "write"}
    # The report: the driver's summary in the job summary and as an artifact, also when the
    # check failed or was cancelled.
    make = driver_step(drift, "fleet-drift")
    steps = drift["steps"]
    report = named(drift, "Batch summary")
    [upload] = steps_using(drift, "actions/upload-artifact")
    assert steps.index(make) < steps.index(report) < steps.index(upload)
    assert report["run"] == 'make -s fleet-comment SUMMARIES=summary.json >> "$GITHUB_STEP_SUMMARY"'
    assert upload["with"]["path"] == "summary.json"
    for step in (report, upload):
        assert step["if"] == "${{ always() && hashFiles('summary.json') != '' }}"
    # The update follows whatever the drift check found or failed to check ...
    for result in ("success", "failure", "skipped"):
        assert condition_holds(fleet, "deploy", SCHEDULE, {"members": "success", "drift": result})
    # ... and never refreshes on its own: only a dispatch with `refresh` ticked does.
    refresh = driver_step(jobs["deploy"], "fleet-up")["env"]["REFRESH"]
    for event, value in (
        (SCHEDULE, ""),
        (PUSH_TO_MAIN, ""),
        (dispatch(refresh=False), ""),
        (dispatch(refresh=True), "1"),
    ):
        assert evaluate(refresh, context_for(fleet, event)) == value, event
    # Drift is checked on the schedule only.
    for event in (PULL_REQUEST, PUSH_TO_MAIN, dispatch(refresh=True)):
        assert "drift" not in may_run(fleet, event), event


def test_a_dispatch_from_another_ref_is_refused(tmp_path: Path) -> None:
    fleet = load(WORKFLOW)
    for ref in ("refs/heads/feature", "refs/heads/main-2", "refs/tags/v1.0.0"):
        # Nothing but `test` can start, and nothing with a credential or an environment ...
        assert may_run(fleet, dispatch(ref, refresh=True)) == {"test"}, ref
        for name in ("upstream", "members", "deploy", "drift"):
            needs = {n: "success" for n in needs_of(fleet["jobs"][name])}
            assert not condition_holds(fleet, name, dispatch(ref, refresh=True), needs), name
    # ... and `test` fails first, saying why.
    guard = named(fleet["jobs"]["test"], "A dispatch runs on main only")
    assert fleet["jobs"]["test"]["steps"][0] is guard
    assert guard["if"] == "github.event_name == 'workflow_dispatch'"
    refused = run_step(guard, tmp_path, {"GITHUB_REF": "refs/heads/feature"})
    assert refused.returncode == 1
    assert "::error title=Dispatch refused::" in refused.stdout and "refs/heads/feature" in (
        refused.stdout
    )
    assert run_step(guard, tmp_path, {"GITHUB_REF": "refs/heads/main"}).returncode == 0


def test_updates_never_overlap_and_a_newer_push_cancels_a_preview() -> None:
    fleet = load(WORKFLOW)
    group, cancel = fleet["concurrency"]["group"], fleet["concurrency"]["cancel-in-progress"]
    updates = (PUSH_TO_MAIN, SCHEDULE, dispatch(refresh=True), dispatch(refresh=False))
    for event in updates:
        context = context_for(fleet, event)
        assert evaluate(group, context) == "fleet-update", event
        assert evaluate(cancel, context) is False, event
    context = context_for(fleet, PULL_REQUEST)
    assert evaluate(group, context) == "fleet-pr-7" and evaluate(cancel, context) is True
    # The upstream's update shares deploy.yml's group (checked above), never cancelled.
    assert fleet["jobs"]["upstream"]["concurrency"]["cancel-in-progress"] is False


def test_a_cancelled_batch_has_a_time_limit_and_a_short_grace() -> None:
    jobs = load(WORKFLOW)["jobs"]
    scripts = set()
    for name, target in BATCH_JOBS.items():
        job = jobs[name]
        assert 0 < job["timeout-minutes"] <= 360, name
        # Within GitHub's window (SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that): the
        # grace, then the CLIs' own cancel, with seconds left for the locks and the summary.
        grace = fleet.grace_seconds(job["env"])
        assert grace + fleet.kill_after(grace) <= 5, name
        scripts.add(driver_step(job, target)["run"].replace(target, "TARGET"))
    assert len(scripts) == 1, "every batch job runs the driver alike"
    # The update's batches only check the upstream: the upstream job updated it.
    assert jobs["deploy"]["env"]["FLEET_UPSTREAM"] == "check"


DRIVER = """
import os, pathlib, signal, sys, time
def stopped(signum, frame):
    pathlib.Path("signals").write_text(signal.Signals(signum).name)
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stopped)
ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
pathlib.Path("driver").write_text(f"{os.getpid()} {ignored}")
time.sleep(float(os.environ["DRIVER_SECONDS"]))
sys.exit(int(os.environ["DRIVER_STATUS"]))
"""


def driver_workspace(tmp_path: Path, name: str) -> Path:
    """A workspace whose `make fleet-up` (GNU make) runs a stand-in driver that records the
    signal it gets."""
    work = tmp_path / name
    work.mkdir()
    (work / "driver.py").write_text(DRIVER)
    (work / "Makefile").write_text(f"fleet-up:\n\t{sys.executable} driver.py\n")
    return work


def wait_for(path: Path, seconds: float = 10.0) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"no {path.name}"
        time.sleep(0.02)
    return path.read_text()


def test_a_cancelled_update_tells_the_driver_at_once(tmp_path: Path) -> None:
    """The runner signals the step's shell only; the step hands the first signal to the driver
    (through make) at once, and ends with the driver's own status."""
    step = driver_step(load(WORKFLOW)["jobs"]["deploy"], "fleet-up")
    env = {"TEMPLATE": "fleet"}
    # make's status: 0, or 2 when the driver failed.
    for status, expected in ((0, 0), (1, 2)):
        work = driver_workspace(tmp_path, f"exit-{status}")
        done = run_step(step, work, {**env, "DRIVER_SECONDS": "0", "DRIVER_STATUS": str(status)})
        assert done.returncode == expected, done.stderr
        assert not (work / "signals").exists()

    work = driver_workspace(tmp_path, "cancelled")
    process = start_step(step, work, {**env, "DRIVER_SECONDS": "60", "DRIVER_STATUS": "0"})
    try:
        _, ignored = wait_for(work / "driver").split()
        assert ignored == "False", "the driver can be interrupted (SIGINT not ignored)"
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 128 + signal.SIGTERM
        assert time.monotonic() - started < 2.5, "well before GitHub's SIGTERM (7.5 s)"
        assert (work / "signals").read_text() == "SIGTERM"
    finally:
        process.kill()
        process.wait()


def test_a_plain_make_step_would_leave_the_driver_unaware(tmp_path: Path) -> None:
    """Why the step passes the signal on: a shell waiting for make passes nothing on, and dies
    on SIGTERM, leaving the driver to be killed later without a word."""
    work = driver_workspace(tmp_path, "plain")
    plain = {"run": 'make fleet-up TEMPLATE="$TEMPLATE" MEMBERS=members.json\n'}
    process = start_step(
        plain, work, {"TEMPLATE": "fleet", "DRIVER_SECONDS": "60", "DRIVER_STATUS": "0"}
    )
    pid = int(wait_for(work / "driver").split()[0])
    try:
        process.send_signal(signal.SIGINT)
        time.sleep(1)
        assert process.poll() is None and not (work / "signals").exists()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=5)
        time.sleep(0.5)
        assert not (work / "signals").exists()
        os.kill(pid, 0)  # the driver still runs, unaware
    finally:
        process.kill()
        process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def needs_of(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def driver_step(job: dict[str, Any], target: str) -> dict[str, Any]:
    """The job's one step that runs `make <target>`, the driver."""
    [step] = [s for s in job["steps"] if f"make {target} " in s.get("run", "")]
    return step  # type: ignore[no-any-return]
