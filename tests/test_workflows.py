"""The GitHub workflows: what runs when, with which credentials and permissions. (actionlint
checks their syntax and expressions in `make test`; these check the deploy contract.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.pulumi_run import PROJECT_DIR

WORKFLOWS = PROJECT_DIR / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True)
    return document  # type: ignore[no-any-return]


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(f"{action}@")]


def pulumi_jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: j for n, j in workflow["jobs"].items() if steps_using(j, "pulumi/actions")}


def pulumi_command_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The pulumi/actions steps that run a command (without one, the action only installs)."""
    return [s for s in steps_using(job, "pulumi/actions") if "command" in s.get("with", {})]


def test_pull_requests_test_then_preview_upstream_then_downstream() -> None:
    workflow = load("preview.yml")
    assert "pull_request" in workflow["on"]
    jobs = workflow["jobs"]
    assert jobs["test"]["steps"][-1]["run"] == "make test"
    assert jobs["preview-upstream"]["needs"] == "test"
    assert jobs["preview-downstream"]["needs"] == "preview-upstream"
    for name, job in pulumi_jobs(workflow).items():
        [step] = pulumi_command_steps(job)
        assert step["with"]["command"] == "preview", name
        # The first pull request comes before any deploy: the preview creates a missing stack.
        assert step["with"]["upsert"] is True, name
        assert step["with"]["comment-on-pr"] is True, name
        assert step["with"]["policyPacks"] == "policy", name
        assert job["permissions"]["pull-requests"] == "write", name


def test_merges_deploy_upstream_then_downstream_one_at_a_time() -> None:
    workflow = load("deploy.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    assert jobs["up-upstream"]["needs"] == "test"
    assert jobs["up-downstream"]["needs"] == "up-upstream"
    groups = set()
    for name, job in pulumi_jobs(workflow).items():
        [step] = pulumi_command_steps(job)
        assert step["with"]["command"] == "up", name
        assert step["with"]["policyPacks"] == "policy", name
        assert job["concurrency"]["cancel-in-progress"] is False, name
        groups.add(job["concurrency"]["group"])
    assert len(groups) == 2, "one concurrency group per stack"


def test_aws_credentials_come_from_oidc_per_stack_with_least_permissions() -> None:
    for name in ("preview.yml", "deploy.yml"):
        workflow = load(name)
        assert workflow["permissions"] == {}, f"{name}: no default permissions"
        assert "PULUMI_BACKEND_URL" in workflow["env"]
        for job_name, job in workflow["jobs"].items():
            assert job["permissions"]["contents"] == "read"
            creds = steps_using(job, "aws-actions/configure-aws-credentials")
            if job_name in ("test", "plan"):
                assert creds == [] and "id-token" not in job["permissions"]
                continue
            [step] = creds
            side = "UPSTREAM" if "upstream" in job_name else "DOWNSTREAM"
            # Pull requests get a role that can only preview; merges get the deploy role.
            kind = "_PREVIEW" if name == "preview.yml" else ""
            assert step["with"]["role-to-assume"] == f"${{{{ vars.{side}_AWS{kind}_ROLE_ARN }}}}"
            assert not {"aws-access-key-id", "aws-secret-access-key"} & set(step["with"])
            assert job["permissions"]["id-token"] == "write"


def actionlint(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    """actionlint's verdict on `text` as the workflow `name` of a fresh repository, from the
    pinned actionlint `make lint` runs (whichever one this machine's PATH may hold)."""
    pinned = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "actionlint"
    binary = str(pinned) if pinned.exists() else shutil.which("actionlint") or "actionlint"
    workflows = tmp_path / ".github" / "workflows"
    if not workflows.is_dir():
        workflows.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (workflows / name).write_text(text)
    return subprocess.run([binary], cwd=tmp_path, capture_output=True, text=True, check=False)


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    text = (WORKFLOWS / "deploy.yml").read_text()
    broken = actionlint(
        tmp_path, "deploy.yml", text.replace("needs: up-upstream", "needs: up-upstreem")
    )
    assert broken.returncode == 1 and "up-upstreem" in broken.stdout
    assert actionlint(tmp_path, "deploy.yml", text).returncode == 0


def run_upstream_check(tmp_path: Path, script_status: int) -> tuple[int, str, str]:
    """Runs the downstream preview job's check step with a stand-in for scripts.deploy that
    exits `script_status`; returns the step's status, its outputs and the job summary."""
    job = load("preview.yml")["jobs"]["preview-downstream"]
    [check] = [s for s in job["steps"] if "upstream-deployed" in s.get("run", "")]
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\nexit {script_status}\n")
    python.chmod(0o755)
    outputs, summary = tmp_path / "outputs", tmp_path / "summary"
    outputs.touch()
    summary.touch()
    env = {
        "PATH": "/usr/bin:/bin",
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(summary),
        "DOWNSTREAM_STACK": "downstream",
    }
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", check["run"]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, outputs.read_text(), summary.read_text()


def test_downstream_preview_waits_for_the_first_upstream_deploy(tmp_path: Path) -> None:
    job = load("preview.yml")["jobs"]["preview-downstream"]
    steps = job["steps"]
    [check] = [s for s in steps if "upstream-deployed" in s.get("run", "")]
    [preview] = pulumi_command_steps(job)
    # The CLI the check needs is installed before it; the preview runs only when it passed.
    install = next(i for i, s in enumerate(steps) if s.get("uses", "").startswith("pulumi/"))
    assert install < steps.index(check) < steps.index(preview)
    assert preview["if"] == f"steps.{check['id']}.outputs.deployed == 'true'"

    assert run_upstream_check(tmp_path / "deployed", 0) == (0, "deployed=true\n", "")

    status, outputs, summary = run_upstream_check(tmp_path / "first", 1)
    assert (status, outputs) == (0, "deployed=false\n")
    assert (
        "can be previewed after the first deploy of the upstream" in summary
        and "`make plan`" in summary
    )

    # A backend or credentials error is not "not deployed yet": the job fails.
    status, outputs, summary = run_upstream_check(tmp_path / "broken", 2)
    assert status == 2 and outputs == "" and summary == ""


def test_every_pull_request_gets_the_offline_plan_and_forks_skip_the_previews() -> None:
    workflow = load("preview.yml")
    plan = workflow["jobs"]["plan"]
    assert plan["permissions"] == {"contents": "read"}, "the plan needs no AWS and no secrets"
    assert "needs" not in plan and "if" not in plan
    runs = " ".join(step.get("run", "") for step in plan["steps"])
    assert "scripts.plan" in runs and "GITHUB_STEP_SUMMARY" in runs
    assert "pipefail" in runs, "a refused stack must fail the job, not only tee's exit status"
    for name in ("preview-upstream",):
        condition = workflow["jobs"][name]["if"]
        assert "head.repo.full_name == github.repository" in condition
