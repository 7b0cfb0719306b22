"""fleet.yml: the members are resolved once, a matrix of batches runs them all exactly once,
after the upstream; pull requests (and the daily drift report) preview through the preview
roles in the preview environment, main and the schedule update through the deploy roles in the
deploy environment; one PR comment, posted by a job that runs nothing of the pull request."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from scripts import fleet
from scripts.fleet_members import Member, batch, from_json, parse_batch, to_json
from tests.workflow_files import (
    DEPLOY_ENVIRONMENT,
    EITHER_ENVIRONMENT,
    PREVIEW_ENVIRONMENT,
    WORKFLOWS,
    actionlint,
    load,
    named,
    run_step,
    runs,
    steps_using,
)

WORKFLOW = "fleet.yml"
BATCH_JOBS = ("preview", "deploy")


def members_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "members.json"
    path.write_text(
        to_json([Member(f"downstream-{i:012d}", f"{i:012d}", "arn", {}) for i in range(n)])
    )
    return path


def matrix_output(members: Path, per_batch: int) -> dict[str, Any]:
    out = io.StringIO()
    argv = ["matrix", "--members", str(members), "--per-batch", str(per_batch)]
    assert fleet.main(argv, out=out) == 0
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


def expand(value: str, matrix_batch: int, count: int) -> str:
    """The BATCH expression of a matrix job, as GitHub would evaluate it."""
    return value.replace("${{ matrix.batch }}", str(matrix_batch)).replace(
        "${{ needs.members.outputs.count }}", str(count)
    )


def test_runs_on_pull_requests_merges_and_daily() -> None:
    triggers = load(WORKFLOW)["on"]
    assert set(triggers) == {"pull_request", "push", "schedule"}
    assert triggers["push"]["branches"] == ["main"]
    assert len(triggers["schedule"]) == 1


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
    everyone = from_json(members.read_text())
    preview, deploy = (workflow["jobs"][name] for name in BATCH_JOBS)
    # Previews and updates cut the fleet into the same batches ...
    assert (preview["strategy"], preview["env"]) == (deploy["strategy"], deploy["env"])
    assert preview["strategy"]["matrix"] == "${{ fromJSON(needs.members.outputs.matrix) }}"
    assert preview["strategy"]["fail-fast"] is False
    # ... and every batch job runs from that same file.
    assert "MEMBERS=members.json" in runs(preview) and "MEMBERS=members.json" in runs(deploy)
    ran: list[Member] = []
    for job in jobs:
        index, count = parse_batch(expand(preview["env"]["BATCH"], job, output["count"]))
        ran += batch(everyone, index, count)
    assert ran == everyone


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
    # On the schedule the drift report comes first; whatever it finds, the update goes on.
    assert jobs["deploy"]["needs"] == ["members", "preview"]
    assert "needs.preview" not in jobs["deploy"]["if"]
    assert jobs["comment-body"]["needs"] == ["members", "preview"]
    assert "github.event_name == 'pull_request'" in jobs["comment-body"]["if"]
    assert jobs["comment"]["needs"] == "comment-body"
    assert "fleet-comment" in runs(jobs["comment-body"]) and "gh api" in runs(jobs["comment"])


def test_previews_and_updates_run_apart_each_with_its_role_and_environment() -> None:
    jobs = load(WORKFLOW)["jobs"]
    expected = {
        # job: (events, environment, role variable, make target)
        "preview": (
            "!= 'push'",
            PREVIEW_ENVIRONMENT,
            "FLEET_AWS_PREVIEW_ROLE_ARN",
            "fleet-preview",
        ),
        "deploy": ("!= 'pull_request'", DEPLOY_ENVIRONMENT, "FLEET_AWS_ROLE_ARN", "fleet-up"),
    }
    for name, (events, environment, role, target) in expected.items():
        job = jobs[name]
        assert f"github.event_name {events}" in job["if"], name
        assert job["environment"] == environment, name
        [creds] = steps_using(job, "aws-actions/configure-aws-credentials")
        assert creds["with"]["role-to-assume"] == f"${{{{ vars.{role} }}}}", name
        [make] = [s for s in job["steps"] if f"make {target} " in s.get("run", "")]
        assert make["run"] == f'make {target} TEMPLATE="$TEMPLATE" MEMBERS=members.json', name
        assert make["env"]["FLEET_SUMMARY"] == "summary.json", name
    # The Organizations reader, read-only, serves both.
    assert jobs["members"]["environment"] == EITHER_ENVIRONMENT
    [creds] = steps_using(jobs["members"], "aws-actions/configure-aws-credentials")
    assert creds["with"]["role-to-assume"] == "${{ vars.FLEET_ORGANIZATIONS_ROLE_ARN }}"
    assert creds["if"] == "vars.FLEET_ORGANIZATIONS_ROLE_ARN != ''"
    # Summaries of a schedule's preview and update do not collide.
    names = {
        name: next(s for s in jobs[name]["steps"] if "upload-artifact" in s.get("uses", ""))
        for name in BATCH_JOBS
    }
    assert names["preview"]["with"]["name"] != names["deploy"]["with"]["name"]
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
        else:
            assert permissions["contents"] == "read", name
            assert set(permissions) <= {"contents", "id-token"}, name
        for step in steps_using(job, "aws-actions/configure-aws-credentials"):
            assert not {"aws-access-key-id", "aws-secret-access-key"} & set(step["with"]), name


def test_fleet_previews_load_the_base_branchs_pack_through_policy(tmp_path: Path) -> None:
    """The driver loads the pack at policy/; the preview job makes that the base branch's."""
    job = load(WORKFLOW)["jobs"]["preview"]
    trusted = named(job, "The policy pack of the base branch")
    assert trusted["with"]["ref"] == "${{ github.event.pull_request.base.sha || github.sha }}"
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
    # Every other job waits on `test`, directly or through another job, so none runs for a
    # repository without a fleet.
    for name, job in fleet["jobs"].items():
        if name != "test":
            needs = job["needs"] if isinstance(job["needs"], list) else [job["needs"]]
            assert any(n in ("test", "members", "upstream", "comment-body") for n in needs), name
    for name in ("preview", "deploy", "comment-body"):
        assert "needs.members.result == 'success'" in fleet["jobs"][name]["if"], name
    assert "needs.comment-body.result == 'success'" in fleet["jobs"]["comment"]["if"]
    for workflow, job in (("preview.yml", "preview-downstream"), ("deploy.yml", "up-downstream")):
        condition = load(workflow)["jobs"][job]["if"]
        assert condition == "vars.FLEET_TEMPLATE != (vars.DOWNSTREAM_STACK || 'downstream')"


def test_forks_get_no_fleet_preview() -> None:
    condition = load(WORKFLOW)["jobs"]["members"]["if"]
    assert (
        "(github.event_name != 'pull_request' || "
        "github.event.pull_request.head.repo.full_name == github.repository)"
    ) in condition
