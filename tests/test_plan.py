"""`make plan`: every stack file's resources and policies, offline, from the program's own plan."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import plan
from scripts.stack_files import PROJECT_DIR
from tests.pulumi_run import RecordingMocks, expect_refusal

UPSTREAM: dict[str, Any] = {
    "aws:region": "us-east-1",
    "aws:allowedAccountIds": ["111122223333"],
    "ecr-ptc:downstreamAccountIds": ["444455556666"],
    "ecr-ptc:repositoryPrefix": "golden",
}
DOWNSTREAM: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "aws:allowedAccountIds": ["444455556666"],
    "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
    "ecr-ptc:regions": ["eu-west-1", "eu-central-1"],
    "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden", "upstreamRepositoryPrefix": "golden"}],
}


@pytest.fixture(autouse=True)
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """make plan needs no credentials: any AWS client it tried to make would fail the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("make plan called AWS")

    monkeypatch.setattr("boto3.client", refuse)
    monkeypatch.setattr("boto3.Session", refuse)


def project(tmp_path: Path, **stacks: dict[str, Any]) -> Path:
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    for name, config in stacks.items():
        (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))
    return tmp_path


def run(
    project_dir: Path, *args: str, env: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = plan.main([*args, "--project-dir", str(project_dir)], out=out, err=err, env=env or {})
    return code, out.getvalue(), err.getvalue()


def test_plans_the_upstream_first_and_the_downstream_against_its_outputs(tmp_path: Path) -> None:
    code, out, err = run(project(tmp_path, downstream=DOWNSTREAM, upstream=UPSTREAM))
    assert code == 0, err
    assert out.index("=== stack upstream") < out.index("=== stack downstream")
    assert "2 of 2 stacks planned" in err
    # Every resource with its type, name, account and region.
    assert (
        "aws:ecr/pullThroughCacheRule:PullThroughCacheRule" in out
        and "ecr-ptc-eu-central-1-golden  (444455556666, eu-central-1)" in out
    )
    assert "ecr-ptc-registry-policy  (111122223333, us-east-1)" in out
    # Policies in full, pretty-printed, and the downstream reads the upstream's planned URL.
    assert '"Sid": "ReadUpstream"' in out and '"Sid": "EcrPtcDownstreamAccountsRead"' in out
    assert "111122223333.dkr.ecr.us-east-1.amazonaws.com" in out


def test_json_output_holds_every_resource_and_document(tmp_path: Path) -> None:
    code, out, _ = run(project(tmp_path, upstream=UPSTREAM, downstream=DOWNSTREAM), "--json")
    assert code == 0
    stacks = {s["stack"]: s for s in json.loads(out)}
    down = stacks["downstream"]
    assert down["account"] == "444455556666"
    role_policy = next(r for r in down["resources"] if r["name"] == "ecr-ptc-role-policy")
    assert role_policy["properties"]["role"] == "${ecr-ptc-role.id}"
    assert {s["Sid"] for s in role_policy["properties"]["policy"]["Statement"]} == {
        "FillCache",
        "ReadUpstream",
        "RegistryLogin",
    }
    rules = [r for r in down["resources"] if r["type"].endswith("PullThroughCacheRule")]
    assert sorted(r["region"] for r in rules) == ["eu-central-1", "eu-west-1"]
    assert all(r["dependsOn"] == ["ecr-ptc-role-policy"] for r in rules)


def test_a_refused_stack_prints_the_message_pulumi_up_prints(tmp_path: Path) -> None:
    bad = {**DOWNSTREAM, "ecr-ptc:rules": [{"ecrRepositoryPrefix": "Golden"}]}
    code, out, err = run(project(tmp_path, upstream=UPSTREAM, downstream=bad))
    assert code == 1
    refusal = expect_refusal(
        {k: v for k, v in bad.items() if k != "aws:allowedAccountIds"},
        "downstream",
        RecordingMocks("444455556666", {"organization/ecr-ptc/upstream": {}}),
    )
    assert f"stack downstream: {refusal}" in err
    assert f"REFUSED: {refusal}" in out
    assert "1 of 2 stacks planned; 1 refused" in err


def test_a_downstream_not_granted_by_the_planned_upstream_is_refused(tmp_path: Path) -> None:
    other = {**DOWNSTREAM, "aws:allowedAccountIds": ["777788889999"]}
    code, _, err = run(project(tmp_path, upstream=UPSTREAM, downstream=other))
    assert code == 1
    assert "an upstream that grants this account (777788889999)" in err


def test_the_account_comes_from_allowed_account_ids(tmp_path: Path) -> None:
    unpinned = {k: v for k, v in UPSTREAM.items() if k != "aws:allowedAccountIds"}
    code, _, err = run(project(tmp_path, upstream=unpinned))
    assert code == 1
    assert "config aws:allowedAccountIds is not set" in err


def test_only_the_stacks_asked_for(tmp_path: Path) -> None:
    code, out, _ = run(project(tmp_path, upstream=UPSTREAM, downstream=DOWNSTREAM), "upstream")
    assert code == 0
    assert "=== stack upstream" in out and "=== stack downstream" not in out


def test_a_fleet_template_is_planned_as_its_members(tmp_path: Path) -> None:
    template = {k: v for k, v in DOWNSTREAM.items() if k != "aws:allowedAccountIds"} | {
        "ecr-ptc:accounts": ["444455556666", "777788889999"]
    }
    upstream = UPSTREAM | {"ecr-ptc:downstreamAccountIds": ["444455556666", "777788889999"]}
    code, out, err = run(project(tmp_path, upstream=upstream, downstream=template), "--json")
    assert code == 0, err
    stacks = {s["stack"]: s for s in json.loads(out)}
    assert set(stacks) == {"upstream", "downstream-444455556666", "downstream-777788889999"}
    assert stacks["downstream-777788889999"]["account"] == "777788889999"
    assert stacks["downstream-777788889999"]["file"] == "Pulumi.downstream.yaml"


def test_a_fleet_over_ous_is_planned_with_one_sample_member(tmp_path: Path) -> None:
    template = {k: v for k, v in DOWNSTREAM.items() if k != "aws:allowedAccountIds"} | {
        "ecr-ptc:organizationalUnitIds": ["ou-ab12-11111111"]
    }
    upstream = UPSTREAM | {"ecr-ptc:organizationId": "o-abcdefghij"}
    code, out, err = run(project(tmp_path, upstream=upstream, downstream=template))
    assert code == 0, err
    assert "=== stack downstream-000000000000" in out
    assert "make fleet-members" in out


def test_the_shipped_stack_files_plan() -> None:
    code, out, err = run(PROJECT_DIR)
    assert code == 0, err
    assert "REFUSED" not in out


def test_one_downstream_alone_is_planned_against_its_upstream(tmp_path: Path) -> None:
    code, out, err = run(project(tmp_path, upstream=UPSTREAM, downstream=DOWNSTREAM), "downstream")
    assert code == 0, err
    assert "=== stack downstream" in out and "=== stack upstream" not in out
    assert "1 of 1 stacks planned" in err


def test_a_refused_upstream_is_named_once_and_its_downstream_says_why(tmp_path: Path) -> None:
    bad = {**UPSTREAM, "ecr-ptc:repositoryPrefx": "golden"}
    code, _, err = run(project(tmp_path, upstream=bad, downstream=DOWNSTREAM))
    assert code == 1
    assert "did you mean ecr-ptc:repositoryPrefix?" in err
    assert "Pulumi.upstream.yaml is refused" in err and "not planned" in err


def test_yaml_mistakes_name_the_file_and_line(tmp_path: Path) -> None:
    project(tmp_path, upstream=UPSTREAM)
    (tmp_path / "Pulumi.upstream.yaml").write_text(
        "config:\n  aws:region: us-east-1\n  aws:region: eu-west-1\n"
    )
    code, _, err = run(tmp_path)
    assert code == 1
    assert "Pulumi.upstream.yaml line 3" in err and "given twice" in err
    (tmp_path / "Pulumi.upstream.yaml").write_text("config:\n  aws:region: [us-east-1\n")
    code, _, err = run(tmp_path)
    assert code == 1 and "Pulumi.upstream.yaml line" in err and "Traceback" not in err


# ---- the upstream stack's organization, against the state backend ----------------------------

ACME = {**DOWNSTREAM, "ecr-ptc:upstreamStack": "acme/ecr-ptc/upstream"}


@pytest.mark.parametrize(
    "backend", ["file://./.pulumi-state", "s3://bucket/ecr-ptc", "gs://b", "azblob://c"]
)
def test_a_self_managed_backend_holds_no_other_organization(tmp_path: Path, backend: str) -> None:
    code, out, err = run(
        project(tmp_path, upstream=UPSTREAM, downstream=ACME), env={"PULUMI_BACKEND_URL": backend}
    )
    assert code == 1
    line = next(x for x in err.splitlines() if x.startswith("make plan: stack downstream:"))
    assert "config ecr-ptc:upstreamStack: 'acme/ecr-ptc/upstream' is not valid: " in line
    assert "'organization/ecr-ptc/upstream'" in line and "self-managed" in line
    assert "REFUSED" in out and "=== stack upstream" in out


def test_pulumi_cloud_or_an_unknown_backend_takes_any_organization(tmp_path: Path) -> None:
    project_dir = project(tmp_path, upstream=UPSTREAM, downstream=ACME)
    code, _, err = run(project_dir, env={"PULUMI_BACKEND_URL": "https://api.pulumi.com"})
    assert code == 0, err
    # No backend in Pulumi.yaml nor the environment: the one of `pulumi login`, unknown here.
    (project_dir / "Pulumi.yaml").write_text(
        (PROJECT_DIR / "Pulumi.yaml").read_text().replace("backend:", "unused:")
    )
    code, _, err = run(project_dir, env={})
    assert code == 0, err


def test_pulumi_yamls_own_backend_counts_without_the_variable(tmp_path: Path) -> None:
    code, _, err = run(project(tmp_path, upstream=UPSTREAM, downstream=ACME), env={})
    assert code == 1 and "config ecr-ptc:upstreamStack: 'acme/ecr-ptc/upstream'" in err


# ---- no AWS: a profile that does not exist changes nothing ------------------------------------


def plan_process(project_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`python -m scripts.plan` as make runs it, with AWS_PROFILE naming no profile, no AWS
    config or credentials, and the metadata service off: nothing to find, nothing to reach."""
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_PROFILE": "does-not-exist",
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", "scripts.plan", "--project-dir", str(project_dir)],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_make_plan_with_a_missing_aws_profile_plans_and_refuses_in_one_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "project").mkdir()
    project_dir = project(tmp_path / "project", upstream=UPSTREAM, downstream=DOWNSTREAM)
    planned = plan_process(project_dir, tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert planned.stderr == "2 of 2 stacks planned\n"
    (project_dir / "Pulumi.upstream.yaml").write_text("just a line of text\n")
    refused = plan_process(project_dir, tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        "make plan: Pulumi.upstream.yaml line 1: the file holds text ('just a line of text'), "
        "not a mapping; a stack file is a mapping: `config:` followed by indented `key: value` "
        "lines\n"
    )
