"""fleet.yml: the members are resolved once, a matrix of batches runs them all exactly once,
after the upstream, with the least permissions; pull requests get one summary comment."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from scripts import fleet
from scripts.fleet_members import Member, batch, from_json, parse_batch, to_json
from tests.test_workflows import WORKFLOWS, actionlint, load, steps_using

WORKFLOW = "fleet.yml"


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


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
    resolve, matrix_job = workflow["jobs"]["members"], workflow["jobs"]["fleet"]
    # The resolve job writes the members once and builds the matrix from that file ...
    assert "fleet-members" in runs(resolve) and "> members.json" in runs(resolve)
    assert "fleet-matrix" in runs(resolve) and "MEMBERS=members.json" in runs(resolve)
    assert resolve["outputs"]["matrix"] == "${{ steps.matrix.outputs.matrix }}"
    assert matrix_job["strategy"]["matrix"] == "${{ fromJSON(needs.members.outputs.matrix) }}"
    assert matrix_job["strategy"]["fail-fast"] is False
    # ... and every batch job runs from that same file.
    assert "MEMBERS=members.json" in runs(matrix_job)

    members = members_file(tmp_path, size)
    output = matrix_output(members, per_batch)
    jobs = output["matrix"]["batch"]
    assert len(jobs) == output["count"] <= 256
    everyone = from_json(members.read_text())
    ran: list[Member] = []
    for job in jobs:
        index, count = parse_batch(expand(matrix_job["env"]["BATCH"], job, output["count"]))
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
    assert jobs["fleet"]["needs"] == "members"
    assert jobs["comment"]["needs"] == ["members", "fleet"]
    assert "github.event_name == 'pull_request'" in jobs["comment"]["if"]
    assert "fleet-comment" in runs(jobs["comment"]) and "gh api" in runs(jobs["comment"])


def test_least_privilege_per_job() -> None:
    workflow = load(WORKFLOW)
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        permissions = job["permissions"]
        assert permissions["contents"] == "read", name
        uses_aws = bool(steps_using(job, "aws-actions/configure-aws-credentials"))
        assert ("id-token" in permissions) == uses_aws, name
        assert ("pull-requests" in permissions) == (name == "comment"), name
        assert set(permissions) <= {"contents", "id-token", "pull-requests"}, name
        for step in steps_using(job, "aws-actions/configure-aws-credentials"):
            assert not {"aws-access-key-id", "aws-secret-access-key"} & set(step["with"]), name


def test_pull_requests_only_preview_with_the_preview_role() -> None:
    job = load(WORKFLOW)["jobs"]["fleet"]
    [creds] = steps_using(job, "aws-actions/configure-aws-credentials")
    assert creds["with"]["role-to-assume"] == (
        "${{ github.event_name == 'pull_request' && vars.FLEET_AWS_PREVIEW_ROLE_ARN "
        "|| vars.FLEET_AWS_ROLE_ARN }}"
    )
    [run] = [s for s in job["steps"] if "fleet-$COMMAND" in s.get("run", "")]
    assert (
        run["env"]["COMMAND"] == "${{ github.event_name == 'pull_request' && 'preview' || 'up' }}"
    )
    assert run["env"]["FLEET_SUMMARY"] == "summary.json"


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
    # Every other job waits on `test`, so none runs for a repository without a fleet.
    for name, job in fleet["jobs"].items():
        if name != "test":
            needs = job["needs"] if isinstance(job["needs"], list) else [job["needs"]]
            assert any(n in ("test", "members", "upstream") for n in needs), name
    assert "needs.members.result == 'success'" in fleet["jobs"]["comment"]["if"]
    for workflow, job in (("preview.yml", "preview-downstream"), ("deploy.yml", "up-downstream")):
        condition = load(workflow)["jobs"][job]["if"]
        assert condition == "vars.FLEET_TEMPLATE != (vars.DOWNSTREAM_STACK || 'downstream')"
