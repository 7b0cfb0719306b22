"""`make ci-roles` on a fleet template: the central roles, the Organizations reader, the member
roles as a StackSet template, and who can assume what."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts.ci_roles import main
from tests.iam_check import _as_list, access_levels, condition_problems, iam_problems
from tests.pulumi_run import drop_lines, fixture_project

REPOSITORY = "acme/ecr-ptc"
FLEET_ACCOUNT = "999999999999"
S3 = {"PULUMI_BACKEND_URL": "s3://acme-pulumi-state/ecr-ptc"}
MEMBER = "210000000001"
SOME_MEMBER = "123456789012"  # what CloudFormation puts in ${AWS::AccountId}
CENTRAL_PREVIEW = f"arn:aws:iam::{FLEET_ACCOUNT}:role/ecr-ptc-fleet-ci-preview"
CENTRAL_DEPLOY = f"arn:aws:iam::{FLEET_ACCOUNT}:role/ecr-ptc-fleet-ci-deploy"


def fleet_project(tmp_path: Path) -> Path:
    fixture_project(tmp_path)
    path = tmp_path / "Pulumi.downstream.yaml"
    lines = path.read_text().splitlines()
    # A template pins no account: each member is pinned to its own.
    kept = [x for x in lines if "allowedAccountIds" not in x and x.strip() != '- "444455556666"']
    kept += [
        "  ecr-ptc:accounts:",
        f'    - "{MEMBER}"',
        "  ecr-ptc:organizationalUnitIds:",
        "    - ou-ab12-11111111",
    ]
    path.write_text("\n".join(kept) + "\n")
    return tmp_path


def run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str, env: dict[str, str] = S3
) -> dict[str, Any]:
    project = fleet_project(tmp_path)
    argv = ["--repository", REPOSITORY, "--fleet-account", FLEET_ACCOUNT, *args]
    assert main(argv, env=env, project_dir=project) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    """A CloudFormation document as one member account would get it."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return value["Fn::Sub"].replace("${AWS::AccountId}", SOME_MEMBER)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def member_role(output: dict[str, Any], logical: str) -> dict[str, Any]:
    return _plain(output["memberStackSetTemplate"]["Resources"][logical]["Properties"])  # type: ignore[no-any-return]


def test_a_fleet_template_prints_every_role_and_both_templates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = run(tmp_path, capsys)
    assert set(output) == {
        "upstream-preview",
        "upstream-deploy",
        "fleet-preview",
        "fleet-deploy",
        "organizations-reader",
        "memberRoles",
        "memberStackSetTemplate",
        "fleetAccountTemplate",
    }
    members = output["memberStackSetTemplate"]["Resources"]
    assert {r["Type"] for r in members.values()} == {"AWS::IAM::Role", "AWS::IAM::ManagedPolicy"}
    central = output["fleetAccountTemplate"]["Resources"]
    assert central["GitHubOidcProvider"]["Properties"] == {
        "Url": "https://token.actions.githubusercontent.com",
        "ClientIdList": ["sts.amazonaws.com"],
    }
    assert {r["Properties"]["RoleName"] for k, r in central.items() if k.endswith("Role")} == {
        "ecr-ptc-fleet-ci-preview",
        "ecr-ptc-fleet-ci-deploy",
        "ecr-ptc-fleet-organizations-reader",
    }


def test_every_document_is_valid_iam(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = run(tmp_path, capsys)
    documents = {
        key: output[key]["permissionPolicy"]
        for key in ("fleet-preview", "fleet-deploy", "organizations-reader")
    }
    documents["member preview"] = member_role(output, "PreviewRole")["Policies"][0][
        "PolicyDocument"
    ]
    documents["member deploy"] = member_role(output, "DeployRole")["Policies"][0]["PolicyDocument"]
    for name, document in documents.items():
        assert iam_problems(document) == [], name
        assert condition_problems(document) == [], name


def test_a_preview_can_reach_only_read_only_member_roles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = run(tmp_path, capsys)
    preview = output["fleet-preview"]["permissionPolicy"]["Statement"]
    assumable = [
        r for s in preview if s["Action"] == ["sts:AssumeRole"] for r in _as_list(s["Resource"])
    ]
    assert assumable == [
        f"arn:aws:iam::{MEMBER}:role/ecr-ptc-fleet-preview",
        "arn:aws:iam::*:role/ecr-ptc-fleet-preview",
    ]
    [by_ou] = [s for s in preview if s["Resource"] == "arn:aws:iam::*:role/ecr-ptc-fleet-preview"]
    assert by_ou["Condition"] == {
        "ForAnyValue:StringLike": {"aws:ResourceOrgPaths": ["*/ou-ab12-11111111/*"]}
    }
    deploy = output["fleet-deploy"]["permissionPolicy"]["Statement"]
    assert all("fleet-preview" not in json.dumps(s["Resource"]) for s in deploy)
    # The member preview role itself holds no write action, and trusts only the preview role.
    role = member_role(output, "PreviewRole")
    levels = access_levels(role["Policies"][0]["PolicyDocument"])
    assert set(levels.values()) <= {"Read", "List"}, levels
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": CENTRAL_PREVIEW}


def test_member_deploy_roles_trust_only_the_central_deploy_role_and_keep_the_boundary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = run(tmp_path, capsys)
    role = member_role(output, "DeployRole")
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {
        "Effect": "Allow",
        "Principal": {"AWS": CENTRAL_DEPLOY},
        "Action": "sts:AssumeRole",
    }
    policy = role["Policies"][0]["PolicyDocument"]["Statement"]
    [bounded] = [s for s in policy if s["Sid"] == "StackRolesOnlyWithTheBoundary"]
    boundary = f"arn:aws:iam::{SOME_MEMBER}:policy/ecr-ptc-role-boundary"
    assert bounded["Condition"] == {"ArnEquals": {"iam:PermissionsBoundary": boundary}}
    # ... and the StackSet creates that boundary in the member account.
    created = output["memberStackSetTemplate"]["Resources"]["Boundary"]["Properties"]
    assert (created["ManagedPolicyName"], created["Path"]) == ("ecr-ptc-role-boundary", "/")


@pytest.mark.parametrize(
    ("role", "environments"),
    [
        ("fleet-preview", ["preview"]),
        ("fleet-deploy", ["production"]),
        ("organizations-reader", ["preview", "production"]),
    ],
)
def test_central_roles_trust_only_their_github_environments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], role: str, environments: list[str]
) -> None:
    output = run(tmp_path, capsys)
    [trust] = output[role]["trustPolicy"]["Statement"]
    subjects = _as_list(
        trust["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"]
    )
    assert subjects == [f"repo:{REPOSITORY}:environment:{e}" for e in environments]
    assert trust["Principal"] == {
        "Federated": f"arn:aws:iam::{FLEET_ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    }


def test_state_writes_only_the_members_stacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = run(tmp_path, capsys)
    state = "arn:aws:s3:::acme-pulumi-state/ecr-ptc/.pulumi"
    writes = [
        r
        for s in output["fleet-deploy"]["permissionPolicy"]["Statement"]
        if "s3:PutObject" in s["Action"]
        for r in _as_list(s["Resource"])
    ]
    assert sorted(writes) == sorted(
        [
            f"{state}/meta.yaml",
            f"{state}/stacks/ecr-ptc/downstream-*.json*",
            # The stack tags that say which fleet owns a member (and its last run).
            f"{state}/stacks/ecr-ptc/downstream-*.pulumi-tags",
            f"{state}/*/ecr-ptc/downstream-*/*",
        ]
    )
    preview_actions = {
        a for s in output["fleet-preview"]["permissionPolicy"]["Statement"] for a in s["Action"]
    }
    assert "s3:PutObject" not in preview_actions


def test_no_escalation_parliament_finds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from parliament import analyze_policy_string

    output = run(tmp_path, capsys)
    for key in ("fleet-preview", "fleet-deploy", "organizations-reader"):
        found = analyze_policy_string(
            json.dumps(output[key]["permissionPolicy"]), include_community_auditors=True
        ).findings
        assert not [f for f in found if f.issue == "PRIVILEGE_ESCALATION"], key


def test_the_fleet_account_is_required(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = fleet_project(tmp_path)
    assert main(["--repository", REPOSITORY], env={}, project_dir=project) == 2
    assert "--fleet-account" in capsys.readouterr().err


def test_a_template_without_a_boundary_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = fleet_project(tmp_path)
    path = project / "Pulumi.downstream.yaml"
    drop_lines(path, "permissionsBoundaryArn")
    argv = ["--repository", REPOSITORY, "--fleet-account", FLEET_ACCOUNT]
    assert main(argv, env={}, project_dir=project) == 2
    assert "ecr-ptc:permissionsBoundaryArn is not set" in capsys.readouterr().err


def test_the_members_boundary_sends_to_the_templates_bus_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The StackSet's boundary is the members' stack's: with the template's alerts to a bus,
    events:PutEvents on that bus only; --boundary-policy prints the same document."""
    bus = "arn:aws:events:us-east-1:999988887777:event-bus/central-monitoring"
    project = fleet_project(tmp_path)
    with (project / "Pulumi.downstream.yaml").open("a") as f:
        f.write(f"  ecr-ptc:alerts:\n    eventBusArn: {bus}\n")
    argv = ["--repository", REPOSITORY, "--fleet-account", FLEET_ACCOUNT]
    assert main(argv, env=S3, project_dir=project) == 0, capsys.readouterr().err
    output = json.loads(capsys.readouterr().out)
    boundary = output["memberStackSetTemplate"]["Resources"]["Boundary"]["Properties"]
    document = boundary["PolicyDocument"]
    put_events = [s for s in document["Statement"] if "events:PutEvents" in _as_list(s["Action"])]
    assert put_events == [
        {
            "Sid": "CeilingOfTheAlertRoles",
            "Effect": "Allow",
            "Action": "events:PutEvents",
            "Resource": bus,
        }
    ]
    assert main(["--boundary-policy"], env={}, project_dir=project) == 0
    assert json.loads(capsys.readouterr().out) == document
    # The members' deploy role targets that bus and no other.
    policy = member_role(output, "DeployRole")["Policies"][0]["PolicyDocument"]
    [targets] = [s for s in policy["Statement"] if "events:PutTargets" in s["Action"]]
    assert targets["Condition"] == {"ArnLike": {"events:TargetArn": bus}}


def _with_overrides(tmp_path: Path, overrides: str) -> Path:
    project = fleet_project(tmp_path)
    with (project / "Pulumi.downstream.yaml").open("a") as f:
        f.write(f"  ecr-ptc:accountOverrides:\n    '{MEMBER}':\n{overrides}")
    return project


def _member_policy(project: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    argv = ["--repository", REPOSITORY, "--fleet-account", FLEET_ACCOUNT]
    assert main(argv, env=S3, project_dir=project) == 0, capsys.readouterr().err
    output = json.loads(capsys.readouterr().out)
    deploy = member_role(output, "DeployRole")
    [policy] = deploy["Policies"]
    return policy["PolicyDocument"]  # type: ignore[no-any-return]


def test_member_roles_reach_the_regions_and_consumers_an_override_adds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One StackSet template serves every member: a member whose override adds a region or a
    consumer role must be able to deploy it."""
    project = _with_overrides(
        tmp_path, "      regions: [ap-southeast-2]\n      consumerRoleNames: [batch-puller]\n"
    )
    text = json.dumps(_member_policy(project, capsys))
    assert "ap-southeast-2" in text
    assert f"arn:aws:iam::{SOME_MEMBER}:role/batch-puller" in text


def test_a_role_name_for_one_member_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _with_overrides(tmp_path, "      roleName: special-cache-role\n")
    argv = ["--repository", REPOSITORY, "--fleet-account", FLEET_ACCOUNT]
    assert main(argv, env=S3, project_dir=project) == 2
    err = capsys.readouterr().err
    assert "ecr-ptc:accountOverrides sets roleName (special-cache-role)" in err
