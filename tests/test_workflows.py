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


def test_pull_requests_test_then_preview_upstream_then_downstream() -> None:
    workflow = load("preview.yml")
    assert "pull_request" in workflow["on"]
    jobs = workflow["jobs"]
    assert jobs["test"]["steps"][-1]["run"] == "make test"
    assert jobs["preview-upstream"]["needs"] == "test"
    assert jobs["preview-downstream"]["needs"] == "preview-upstream"
    for name, job in pulumi_jobs(workflow).items():
        [step] = steps_using(job, "pulumi/actions")
        assert step["with"]["command"] == "preview", name
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
        [step] = steps_using(job, "pulumi/actions")
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
            if job_name == "test":
                assert creds == [] and "id-token" not in job["permissions"]
                continue
            [step] = creds
            side = "UPSTREAM" if "upstream" in job_name else "DOWNSTREAM"
            # Pull requests get a role that can only preview; merges get the deploy role.
            kind = "_PREVIEW" if name == "preview.yml" else ""
            assert step["with"]["role-to-assume"] == f"${{{{ vars.{side}_AWS{kind}_ROLE_ARN }}}}"
            assert not {"aws-access-key-id", "aws-secret-access-key"} & set(step["with"])
            assert job["permissions"]["id-token"] == "write"


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    actionlint = shutil.which("actionlint") or str(
        Path(__file__).resolve().parents[1] / ".venv" / "bin" / "actionlint"
    )
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    broken = (
        (WORKFLOWS / "deploy.yml").read_text().replace("needs: up-upstream", "needs: up-upstreem")
    )
    (tmp_path / ".github" / "workflows" / "deploy.yml").write_text(broken)
    result = subprocess.run([actionlint], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "up-upstreem" in result.stdout
    (tmp_path / ".github" / "workflows" / "deploy.yml").write_text(
        (WORKFLOWS / "deploy.yml").read_text()
    )
    assert subprocess.run([actionlint], cwd=tmp_path, check=False).returncode == 0
