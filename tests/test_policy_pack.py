"""The CrossGuard pack's validators, on passing and failing inputs, and on what the program
itself generates (the pack must never block ecr-ptc's own resources)."""

from __future__ import annotations

import json
import tomllib
from typing import Any, cast

import pytest
import yaml
from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy

from components.rules import quotas
from components.rules.policy_rules import READ_ACTIONS, REPLICATION_ACTIONS
from policy.guardrails import (
    POLICIES,
    attachment_violations,
    identity_policy_violations,
    policy_size_violations,
    resource_policy_violations,
    rule_violations,
    trust_policy_violations,
)
from tests.iam_check import resource_formats
from tests.pulumi_run import PROJECT_DIR
from tests.test_cache_repositories import with_template
from tests.test_downstream_stack import BASE
from tests.test_downstream_stack import run as run_downstream
from tests.test_upstream_stack import BASE as UPSTREAM_BASE
from tests.test_upstream_stack import run as run_upstream

PTC = {"Service": "pullthroughcache.ecr.amazonaws.com"}


def trust(*principals: Any) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": p, "Action": "sts:AssumeRole"} for p in principals
            ],
        }
    )


# --- trust policy -------------------------------------------------------------------------------


def test_trust_only_the_cache_service_passes() -> None:
    assert trust_policy_violations(trust(PTC)) == []


def test_a_role_trusted_by_anything_but_one_of_our_services_fails() -> None:
    # A cache role trusted only by an outside account (no service at all) is refused too.
    assert trust_policy_violations(trust({"AWS": "arn:aws:iam::999988887777:root"}))
    assert trust_policy_violations(trust({"Service": "ec2.amazonaws.com"}))
    assert trust_policy_violations(trust({"Federated": "cognito-identity.amazonaws.com"}))
    assert trust_policy_violations(trust({"Service": "ecr.amazonaws.com"})) == []
    # One service per role: the cache role never shares a template role's key access.
    both = trust(PTC, {"Service": "ecr.amazonaws.com"})
    assert any("one service per role" in v for v in trust_policy_violations(both))


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ({"AWS": "*"}, "wildcard principal"),
        ("*", "wildcard principal"),
        (
            {"Service": ["pullthroughcache.ecr.amazonaws.com", "ec2.amazonaws.com"]},
            "trusts Service: ec2.amazonaws.com",
        ),
        (
            {"AWS": "arn:aws:iam::111122223333:root"},
            "trusts AWS: arn:aws:iam::111122223333:root",
        ),
        ({"Federated": "cognito-identity.amazonaws.com"}, "trusts Federated"),
    ],
)
def test_trusting_anything_else_fails(other: Any, expected: str) -> None:
    violations = trust_policy_violations(trust(PTC, other))
    assert any(expected in v for v in violations), violations


def identity(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


REPO = "arn:aws:ecr:*:444455556666:repository/golden/*"


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"Effect": "Allow", "Action": "iam:CreateRole", "Resource": "*"}, "allows iam:CreateRole"),
        ({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}, "allows sts:AssumeRole"),
        ({"Effect": "Allow", "Action": "ecr:*", "Resource": REPO}, "allows ecr:*"),
        ({"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "*"}, 'on "*"'),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}, "s3:GetObject"),
        ({"Effect": "Allow", "NotAction": "iam:*", "Resource": REPO}, "uses NotAction"),
        ({"Effect": "Allow", "Action": "ecr:PutImage", "NotResource": REPO}, "uses NotResource"),
        ({"Effect": "Allow", "Action": "ecr:PutImage", "Resource": "arn:aws:s3:::b"}, "names arn:aws:s3:::b"),
    ],
)  # fmt: skip
def test_role_and_managed_policies_allow_ecr_only(statement: dict[str, Any], expected: str) -> None:
    violations = identity_policy_violations(identity(statement))
    assert any(expected in v for v in violations), violations


def test_what_the_program_writes_in_identity_policies_passes() -> None:
    login = {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}
    pull = {"Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:PutImage"], "Resource": REPO}
    key = {
        "Effect": "Allow",
        "Action": "kms:CreateGrant",
        "Resource": "arn:aws:kms:eu-west-1:444455556666:key/12345678-1234-1234-1234-123456789012",
    }
    assert identity_policy_violations(identity(login, pull, key)) == []


def test_an_aws_managed_policy_is_never_attached() -> None:
    assert attachment_violations("arn:aws:iam::aws:policy/AdministratorAccess")
    assert attachment_violations("arn:aws:iam::444455556666:policy/ecr-ptc-consumer-policy-1") == []
    assert attachment_violations(None) == []  # computed during a preview


# --- registry and repository policies ---------------------------------------------------------


def grant(actions: list[str], principal: Any = None, condition: Any = None) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": "S",
        "Effect": "Allow",
        "Principal": principal or {"AWS": "arn:aws:iam::444455556666:root"},
        "Action": actions,
        "Resource": "arn:aws:ecr:us-east-1:111122223333:repository/*",
    }
    if condition is not None:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


READS = [
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchImportUpstreamImage",
    "ecr:GetImageCopyStatus",
]
ORG = {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}


def test_read_grant_passes() -> None:
    assert resource_policy_violations(grant(READS), registry=True) == []


@pytest.mark.parametrize(
    "action",
    [
        "ecr:PutImage",
        "ecr:InitiateLayerUpload",
        "ecr:DeleteRepository",
        "ecr:SetRepositoryPolicy",
        "ecr:*",
        "*",
        "ecr:Put*",
    ],
)
def test_write_or_wildcard_actions_fail(action: str) -> None:
    violations = resource_policy_violations(grant([*READS, action]), registry=True)
    assert len(violations) == 1 and action in violations[0]


def test_replication_pair_is_allowed_in_registry_policies_only() -> None:
    replication = grant(["ecr:CreateRepository", "ecr:ReplicateImage"])
    assert resource_policy_violations(replication, registry=True) == []
    assert len(resource_policy_violations(replication, registry=False)) == 2


def test_not_action_fails() -> None:
    document = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::1:root"},
                "NotAction": "ecr:DeleteRepository",
            }
        ]
    }
    assert any("NotAction" in v for v in resource_policy_violations(document, registry=True))


@pytest.mark.parametrize(
    "principal", ["*", {"AWS": "*"}, {"AWS": ["arn:aws:iam::444455556666:root", "*"]}]
)
def test_wildcard_principal_needs_the_organization_condition(principal: Any) -> None:
    assert any(
        "wildcard principal" in v
        for v in resource_policy_violations(grant(READS, principal), registry=True)
    )
    assert resource_policy_violations(grant(READS, principal, ORG), registry=True) == []


@pytest.mark.parametrize(
    "condition",
    [
        {"StringNotEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}},
        {"StringLike": {"aws:PrincipalOrgID": "o-*"}},
        {"StringEquals": {"aws:SourceAccount": "444455556666"}},
        {"StringEqualsIfExists": {"aws:PrincipalOrgID": "o-abcdefghij"}},
    ],
)
def test_conditions_that_do_not_pin_an_organization_do_not_count(condition: Any) -> None:
    assert any(
        "wildcard principal" in v
        for v in resource_policy_violations(grant(READS, "*", condition), registry=True)
    )


def test_deny_statements_are_not_grants() -> None:
    guard = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "ecr:*",
        "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}},
    }
    assert resource_policy_violations({"Statement": [guard]}, registry=True) == []


@pytest.mark.parametrize(
    "deny",
    [
        {"Effect": "Deny", "Principal": "*", "Action": "ecr:*"},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "ecr:BatchGet*"},
        {"Effect": "Deny", "Principal": "*", "NotAction": "ecr:GetImageCopyStatus"},
    ],
)
def test_an_unconditional_deny_of_the_cache_reads_to_everyone_fails(deny: Any) -> None:
    policy = grant(READS)
    assert resource_policy_violations(policy, registry=True) == []
    policy["Statement"].append(deny)
    violations = resource_policy_violations(policy, registry=True)
    assert len(violations) == 1, violations
    assert (
        "to every grantee with no condition: every pull through their cache would fail"
        in (violations[0])
    )


@pytest.mark.parametrize(
    ("paths", "passes"),
    [
        (["o-abcdefghij/r-ab12/ou-ab12-11111111/*"], True),
        (["o-abcdefghij/r-ab12/ou-ab12-11111111/ou-ab12-22222222/*"], True),
        (["o-abcdefghij/r-ab12/*"], False),
        (["o-abcdefghij/*"], False),
        (["*"], False),
    ],
)
def test_organizational_unit_paths_pin_the_grant(paths: list[str], passes: bool) -> None:
    condition = {"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": paths}}
    violations = resource_policy_violations(grant(READS, "*", condition), registry=True)
    assert (violations == []) is passes, violations


def test_allowed_actions_are_real_and_writes_are_only_the_stated_exceptions() -> None:
    from policy_sentry.querying.actions import get_action_data

    for action in READ_ACTIONS | REPLICATION_ACTIONS:
        assert resource_formats(action), f"{action} is not an IAM action"
    writes = {
        a
        for a in READ_ACTIONS | REPLICATION_ACTIONS
        if get_action_data("ecr", a.split(":")[1])["ecr"][0]["access_level"] not in ("Read", "List")
    }
    assert writes == {"ecr:BatchImportUpstreamImage", "ecr:CreateRepository", "ecr:ReplicateImage"}


# --- size and rules -----------------------------------------------------------------------------


def test_policy_size_limit() -> None:
    assert policy_size_violations("x" * quotas.REGISTRY_POLICY_MAX_CHARS, "registry policy") == []
    [violation] = policy_size_violations(
        "x" * (quotas.REGISTRY_POLICY_MAX_CHARS + 1), "registry policy"
    )
    assert "10241" in violation and "10240" in violation


def test_ecr_upstream_rule_needs_a_custom_role() -> None:
    url = "111122223333.dkr.ecr.us-east-1.amazonaws.com"
    assert rule_violations(url, "arn:aws:iam::444455556666:role/ptc") == []
    assert "custom_role_arn" in rule_violations(url, None)[0]
    assert rule_violations("111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn", None)
    # Other upstreams (Docker Hub, ghcr.io, ECR Public) use credentials, not a role.
    assert rule_violations("registry-1.docker.io", None) == []
    assert rule_violations("public.ecr.aws", None) == []


# --- the pack as Pulumi runs it -----------------------------------------------------------------


class Args:
    def __init__(self, resource_type: str, props: dict[str, Any]) -> None:
        self.resource_type, self.props = resource_type, props


def pack_violations(resource_type: str, props: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for policy in POLICIES:
        assert isinstance(policy, ResourceValidationPolicy)

        def report(message: str, urn: str | None = None, name: str = policy.name) -> None:
            found.append(f"{name}: {message}")

        policy.validate(cast(ResourceValidationArgs, Args(resource_type, props)), report)
    return found


def test_pack_is_mandatory_and_runnable_as_a_python_pack() -> None:
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in POLICIES)
    manifest = yaml.safe_load((PROJECT_DIR / "policy" / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    pins = tomllib.loads((PROJECT_DIR / "policy" / "pyproject.toml").read_text())["project"]
    # The versions the program and its tests run: uv.lock's.
    lock = tomllib.loads((PROJECT_DIR / "uv.lock").read_text())
    ours = {f"{p['name']}=={p['version']}".lower() for p in lock["package"] if "version" in p}
    for pin in pins["dependencies"]:
        assert pin.lower() in ours, f"{pin} differs from the version the project locks"


def test_pack_reports_a_wildcard_grant_and_a_rule_without_role() -> None:
    assert pack_violations(
        "aws:ecr/registryPolicy:RegistryPolicy", {"policy": json.dumps(grant(["ecr:*"], "*"))}
    )
    assert pack_violations(
        "aws:ecr/pullThroughCacheRule:PullThroughCacheRule",
        {"upstreamRegistryUrl": "111122223333.dkr.ecr.us-east-1.amazonaws.com"},
    )
    assert pack_violations("aws:iam/role:Role", {"assumeRolePolicy": trust(PTC, {"AWS": "*"})})


def test_pack_passes_everything_ecr_ptc_generates() -> None:
    upstream = run_upstream({**UPSTREAM_BASE, "ecr-ptc:organizationId": "o-abcdefghij"})
    downstream = run_downstream(
        with_template(
            kmsKeyArn={
                "eu-west-1": "arn:aws:kms:eu-west-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "eu-central-1": "arn:aws:kms:eu-central-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            },
            resourceTags={"a": "b"},
        )
    )
    repository = run_upstream(
        {**UPSTREAM_BASE, "ecr-ptc:grantVia": "repository", "ecr-ptc:repositories": ["base"]}
    )
    organizational_units = run_upstream(
        {
            **UPSTREAM_BASE,
            "ecr-ptc:organizationalUnitPaths": ["o-abcdefghij/r-ab12/ou-ab12-11111111/"],
            "ecr-ptc:extraRegistryPolicyStatements": [
                {
                    "Sid": "DenyOutsideTheOrganization",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "ecr:*",
                    "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}},
                }
            ],
        }
    )
    consumers = run_downstream({**BASE, "ecr-ptc:consumerRoleNames": ["eks-node"]})
    assert consumers.mocks.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    checked = 0
    for result in (upstream, downstream, repository, organizational_units, consumers):
        for resource in result.mocks.resources:
            assert pack_violations(resource.typ, resource.inputs) == [], resource.name
            checked += 1
    assert checked > 10
    assert run_downstream(BASE).mocks.resources


def test_pack_checks_the_alert_resources_too() -> None:
    """Topic policies, alert roles and targets (tests/test_alerts.py tries each rule)."""
    wide_topic = {
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": "sns:Publish",
        "Resource": "arn:aws:sns:eu-west-1:444455556666:ecr-ptc-alerts-eu-west-1-topic-a1b2c3d",
    }
    assert pack_violations("aws:sns/topicPolicy:TopicPolicy", {"policy": identity(wide_topic)})
    unconditioned = trust({"Service": "events.amazonaws.com"})
    assert pack_violations("aws:iam/role:Role", {"assumeRolePolicy": unconditioned})
    bus = "arn:aws:events:us-east-1:999988887777:event-bus/central"
    assert pack_violations("aws:cloudwatch/eventTarget:EventTarget", {"arn": bus})
    put_anywhere = {"Effect": "Allow", "Action": "events:PutEvents", "Resource": "*"}
    assert pack_violations("aws:iam/rolePolicy:RolePolicy", {"policy": identity(put_anywhere)})
    # An alert role's policy, but as a managed policy: no alert branch there.
    put_on_bus = {"Effect": "Allow", "Action": "events:PutEvents", "Resource": bus}
    assert pack_violations("aws:iam/rolePolicy:RolePolicy", {"policy": identity(put_on_bus)}) == []
    assert pack_violations("aws:iam/policy:Policy", {"policy": identity(put_on_bus)})
    # A target that is neither a topic nor a bus, and a rule that matches more than ECR alerts.
    queue = "arn:aws:sqs:eu-west-1:444455556666:alerts"
    assert pack_violations("aws:cloudwatch/eventTarget:EventTarget", {"arn": queue})
    every_event = json.dumps({"account": ["444455556666"]})
    assert pack_violations("aws:cloudwatch/eventRule:EventRule", {"eventPattern": every_event})


def test_pack_entry_point_builds_a_mandatory_pack_with_every_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import runpy

    import pulumi_policy

    built: dict[str, Any] = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: built.update(kwargs))
    # Pulumi runs the pack from its own directory, which is first on sys.path.
    monkeypatch.syspath_prepend(str(PROJECT_DIR / "policy"))
    runpy.run_path(str(PROJECT_DIR / "policy" / "__main__.py"), run_name="__main__")
    assert built["name"] == "ecr-ptc-guardrails"
    assert built["enforcement_level"] == EnforcementLevel.MANDATORY
    assert [p.name for p in built["policies"]] == [p.name for p in POLICIES]
