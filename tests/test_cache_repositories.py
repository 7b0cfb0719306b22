"""Issue 3: creation templates for the cache repositories and the consumer policy, under mocks;
their config validation; the managed-policy quota."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.rules import quotas
from tests.iam_check import iam_problems
from tests.pulumi_run import (
    DOWNSTREAM_ACCOUNT,
    ProgramRun,
    RecordingMocks,
    expect_refusal,
    run_program,
)
from tests.test_config import downstream, expect_error
from tests.test_downstream_stack import BASE, UPSTREAM_OUTPUTS, UPSTREAM_STACK, refused

TEMPLATE = "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
POLICY = "aws:iam/policy:Policy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
KEY_EU_WEST = "arn:aws:kms:eu-west-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_EU_CENTRAL = "arn:aws:kms:eu-central-1:444455556666:key/mrk-1234abcd12ab34cd56ef1234567890ab"
SPEC_CONSUMER = {
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchImportUpstreamImage",
    "ecr:CreateRepository",
}


def run(config: dict[str, Any]) -> ProgramRun:
    mocks = RecordingMocks(DOWNSTREAM_ACCOUNT, {UPSTREAM_STACK: UPSTREAM_OUTPUTS})
    return run_program(config, "downstream", mocks)


def with_template(**template: Any) -> dict[str, Any]:
    return {**BASE, "ecr-ptc:repositoryTemplate": template}


def template_roles(result: ProgramRun) -> list[Any]:
    return [
        r
        for r in result.mocks.of_type(ROLE)
        if "ecr.amazonaws.com" in r.inputs["assumeRolePolicy"]
        and "pullthroughcache" not in r.inputs["assumeRolePolicy"]
    ]


# --- creation templates -------------------------------------------------------------------------


def test_no_template_without_the_key() -> None:
    assert run(BASE).mocks.of_type(TEMPLATE) == []


def test_one_template_per_prefix_and_region_with_defaults() -> None:
    result = run(with_template(expireUntaggedAfterDays=14, keepLastImages=50))
    templates = result.mocks.of_type(TEMPLATE)
    assert sorted((t.inputs["region"], t.inputs["prefix"]) for t in templates) == [
        ("eu-central-1", "central"), ("eu-central-1", "golden"), ("eu-west-1", "central"), ("eu-west-1", "golden"),
    ]  # fmt: skip
    for t in templates:
        assert t.inputs["appliedFors"] == ["PULL_THROUGH_CACHE"]
        assert t.inputs["imageTagMutability"] == "MUTABLE"
        assert t.inputs["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
        assert "customRoleArn" not in t.inputs
    # Neither KMS nor tags: ECR needs no role of ours, so none exists.
    assert template_roles(result) == []
    assert len(result.mocks.of_type(ROLE)) == 1


def test_lifecycle_policy_expires_untagged_first_then_keeps_the_last_images() -> None:
    result = run(with_template(expireUntaggedAfterDays=14, keepLastImages=50))
    texts = {t.inputs["lifecyclePolicy"] for t in result.mocks.of_type(TEMPLATE)}
    assert len(texts) == 1
    policy = json.loads(texts.pop())
    untagged, anything = sorted(policy["rules"], key=lambda r: r["rulePriority"])
    assert untagged["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 14,
    }
    assert anything["selection"] == {
        "tagStatus": "any",
        "countType": "imageCountMoreThan",
        "countNumber": 50,
    }
    # ECR: a rule on tagStatus "any" must have the highest rulePriority; priorities are unique.
    assert anything["rulePriority"] > untagged["rulePriority"] >= 1
    assert all(r["action"] == {"type": "expire"} for r in policy["rules"])


def test_only_one_lifecycle_limit_and_none() -> None:
    only_keep = run(with_template(keepLastImages=5)).mocks.of_type(TEMPLATE)[0]
    rules = json.loads(only_keep.inputs["lifecyclePolicy"])["rules"]
    assert [r["selection"]["tagStatus"] for r in rules] == ["any"]
    none = run(with_template(imageTagMutability="IMMUTABLE")).mocks.of_type(TEMPLATE)[0]
    assert "lifecyclePolicy" not in none.inputs
    assert none.inputs["imageTagMutability"] == "IMMUTABLE"


def test_kms_template_gets_a_role_trusted_by_ecr_with_that_key_only() -> None:
    result = run(
        with_template(kmsKeyArn={"eu-west-1": KEY_EU_WEST, "eu-central-1": KEY_EU_CENTRAL})
    )
    [role] = template_roles(result)
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "ecr.amazonaws.com"},
        }
    ]
    policies = [p for p in result.mocks.of_type(ROLE_POLICY) if "kms:" in p.inputs["policy"]]
    [policy] = policies
    document = json.loads(policy.inputs["policy"])
    assert iam_problems(document) == []
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert set(by_sid["UseTemplateKey"]["Action"]) == {"kms:RetireGrant", "kms:DescribeKey"}
    assert sorted(by_sid["UseTemplateKey"]["Resource"]) == sorted([KEY_EU_WEST, KEY_EU_CENTRAL])
    # A grant only for an AWS resource (the repository ECR encrypts), on the same keys.
    grant = by_sid["GrantTemplateKeyToEcr"]
    assert grant["Action"] == "kms:CreateGrant"
    assert sorted(grant["Resource"]) == sorted([KEY_EU_WEST, KEY_EU_CENTRAL])
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert [s for s in document["Statement"] if "kms:CreateGrant" in str(s["Action"])] == [grant]
    assert set(by_sid["CreateCacheRepositories"]["Action"]) == {
        "ecr:CreateRepository",
        "ecr:ReplicateImage",
        "ecr:TagResource",
    }
    assert all(
        f":{DOWNSTREAM_ACCOUNT}:repository/" in r
        for r in by_sid["CreateCacheRepositories"]["Resource"]
    )
    role_arn = f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:role/{role.name}-1234567"
    for t in result.mocks.of_type(TEMPLATE):
        key = KEY_EU_WEST if t.inputs["region"] == "eu-west-1" else KEY_EU_CENTRAL
        assert t.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": key}]
        assert t.inputs["customRoleArn"] == role_arn
        assert policy.name in result.monitor.registrations[t.name].depends_on


def test_tags_get_the_role_without_kms_and_the_consumer_may_tag() -> None:
    result = run(with_template(resourceTags={"team": "platform", "cost-center": "42"}))
    assert len(template_roles(result)) == 1
    [policy] = [
        p for p in result.mocks.of_type(ROLE_POLICY) if "ecr:ReplicateImage" in p.inputs["policy"]
    ]
    assert "kms:" not in policy.inputs["policy"]
    for t in result.mocks.of_type(TEMPLATE):
        assert t.inputs["resourceTags"] == {"team": "platform", "cost-center": "42"}
    consumer = json.loads(result.mocks.one(POLICY).inputs["policy"])
    pull = next(s for s in consumer["Statement"] if s["Sid"] == "PullThroughCache")
    assert "ecr:TagResource" in pull["Action"]


def test_rules_wait_for_their_template() -> None:
    result = run(with_template(keepLastImages=5))
    templates = {
        (t.inputs["region"], t.inputs["prefix"]): t.name for t in result.mocks.of_type(TEMPLATE)
    }
    for rule in result.mocks.of_type(RULE):
        wanted = templates[(rule.inputs["region"], rule.inputs["ecrRepositoryPrefix"])]
        assert wanted in result.monitor.registrations[rule.name].depends_on, rule.name


def test_refused_pairing_creates_no_template_role_and_no_consumer_policy() -> None:
    config = with_template(resourceTags={"team": "platform"})
    refused(config, UPSTREAM_OUTPUTS | {"downstreamAccountIds": ["777788889999"]})


TEMPLATE_ERRORS = [
    ("ecr-ptc:repositoryTemplate.imageTagMutability", {"imageTagMutability": "SOMETIMES"}, "'SOMETIMES'", "MUTABLE"),
    ("ecr-ptc:repositoryTemplate.expireUntaggedAfterDays", {"expireUntaggedAfterDays": 0}, "0", "from 1 to 2,147,483,647"),
    ("ecr-ptc:repositoryTemplate.expireUntaggedAfterDays", {"expireUntaggedAfterDays": -3}, "-3", "from 1 to 2,147,483,647"),
    ("ecr-ptc:repositoryTemplate.keepLastImages", {"keepLastImages": "10"}, "'10'", "whole number"),
    ("ecr-ptc:repositoryTemplate.keepLastImages", {"keepLastImages": True}, "True", "whole number"),
    ("ecr-ptc:repositoryTemplate.kmsKeyArn", {"kmsKeyArn": KEY_EU_WEST}, KEY_EU_WEST, "map of region to key ARN"),
    ("ecr-ptc:repositoryTemplate.kmsKeyArn", {"kmsKeyArn": {"eu-west-1": KEY_EU_WEST}}, "['eu-west-1']", "eu-central-1"),
    ("ecr-ptc:repositoryTemplate.kmsKeyArn.eu-central-1", {"kmsKeyArn": {"eu-west-1": KEY_EU_WEST, "eu-central-1": KEY_EU_WEST}}, KEY_EU_WEST, "key in eu-central-1"),
    ("ecr-ptc:repositoryTemplate.kmsKeyArn.eu-central-1", {"kmsKeyArn": {"eu-west-1": KEY_EU_WEST, "eu-central-1": "alias/ecr"}}, "alias/ecr", "not an alias"),
    ("ecr-ptc:repositoryTemplate.resourceTags", {"resourceTags": {f"k{i}": "v" for i in range(51)}}, "51 tags", "at most 50"),
    ("ecr-ptc:repositoryTemplate.resourceTags." + "k" * 129, {"resourceTags": {"k" * 129: "v"}}, "k" * 129, "1 to 128"),
    ("ecr-ptc:repositoryTemplate.resourceTags.team", {"resourceTags": {"team": "v" * 257}}, "v" * 257, "at most 256"),
    ("ecr-ptc:repositoryTemplate.resourceTags.aws:team", {"resourceTags": {"aws:team": "x"}}, "aws:team", "not starting with 'aws:'"),
    ("ecr-ptc:repositoryTemplate.description", {"description": "d" * 257}, "d" * 257, "1 to 256 characters"),
    ("ecr-ptc:repositoryTemplate.encryption", {"encryption": "KMS"}, "'KMS'", "kmsKeyArn"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "template", "value", "valid"), TEMPLATE_ERRORS)
def test_template_bad_input(key: str, template: dict[str, Any], value: str, valid: str) -> None:
    regions = ["eu-west-1", "eu-central-1"]
    expect_error(
        key, value, valid, lambda: downstream(regions=regions, repositoryTemplate=template)
    )


def test_single_region_takes_a_plain_key_arn_and_refuses_another_region() -> None:
    config = downstream(regions=["eu-west-1"], repositoryTemplate={"kmsKeyArn": KEY_EU_WEST})
    assert config.repository_template is not None
    assert config.repository_template.kms_key_arn("eu-west-1") == KEY_EU_WEST
    other = "arn:aws:kms:us-east-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    expect_error("ecr-ptc:repositoryTemplate.kmsKeyArn", other, "key in eu-west-1",
                 lambda: downstream(regions=["eu-west-1"], repositoryTemplate={"kmsKeyArn": other}))  # fmt: skip
    china = "arn:aws-cn:kms:eu-west-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    expect_error("ecr-ptc:repositoryTemplate.kmsKeyArn", china, "(aws)",
                 lambda: downstream(regions=["eu-west-1"], repositoryTemplate={"kmsKeyArn": china}))  # fmt: skip


# --- consumer policy ----------------------------------------------------------------------------


def test_consumer_policy_grants_pull_through_the_cache_only() -> None:
    result = run(BASE)
    policy = result.mocks.one(POLICY)
    document = json.loads(policy.inputs["policy"])
    assert iam_problems(document) == []
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["RegistryLogin"] == {
        "Sid": "RegistryLogin",
        "Effect": "Allow",
        "Action": "ecr:GetAuthorizationToken",
        "Resource": "*",
    }
    pull = by_sid["PullThroughCache"]
    assert set(pull["Action"]) == SPEC_CONSUMER
    assert pull["Resource"] == [
        f"arn:aws:ecr:*:{DOWNSTREAM_ACCOUNT}:repository/central/*",
        f"arn:aws:ecr:*:{DOWNSTREAM_ACCOUNT}:repository/golden/*",
    ]
    # The region wildcard is bounded to the configured regions.
    assert pull["Condition"] == {
        "StringEquals": {"aws:RequestedRegion": ["eu-central-1", "eu-west-1"]}
    }
    assert (
        result.outputs["consumerPolicyArn"]
        == f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:policy/{policy.name}-7654321"
    )
    assert result.mocks.of_type(ATTACHMENT) == []


def test_consumer_policy_attached_to_the_named_roles() -> None:
    result = run({**BASE, "ecr-ptc:consumerRoleNames": ["eks-node", "ci-builder"]})
    attachments = result.mocks.of_type(ATTACHMENT)
    assert sorted(a.inputs["role"] for a in attachments) == ["ci-builder", "eks-node"]
    assert {a.inputs["policyArn"] for a in attachments} == {result.outputs["consumerPolicyArn"]}


def test_consumer_role_names_are_validated() -> None:
    expect_error("ecr-ptc:consumerRoleNames[1]", "'bad role'", "IAM role name",
                 lambda: downstream(consumerRoleNames=["eks-node", "bad role"]))  # fmt: skip
    expect_error("ecr-ptc:consumerRoleNames[1]", "'eks-node'", "once",
                 lambda: downstream(consumerRoleNames=["eks-node", "eks-node"]))  # fmt: skip


def test_fifty_long_rules_in_four_regions_fit_the_managed_policy_quota() -> None:
    rules = [{"ecrRepositoryPrefix": f"team-{i:02d}-" + "x" * 22} for i in range(50)]
    assert all(len(r["ecrRepositoryPrefix"]) == 30 for r in rules)
    regions = ["eu-west-1", "eu-central-1", "us-east-1", "ap-southeast-1"]
    from components.plan.stack_plan import consumer_policy_text

    config = downstream(
        rules=rules, regions=regions, repositoryTemplate={"resourceTags": {"a": "b"}}
    )
    text = consumer_policy_text(config, DOWNSTREAM_ACCOUNT)
    assert len(text) <= quotas.MANAGED_POLICY_MAX_CHARS
    assert iam_problems(json.loads(text)) == []


def test_consumer_policy_over_quota_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # 50 rules of 30 characters fit; a lower quota shows the error path users would meet.
    monkeypatch.setattr(quotas, "MANAGED_POLICY_MAX_CHARS", 500)
    mocks = RecordingMocks(DOWNSTREAM_ACCOUNT, {UPSTREAM_STACK: UPSTREAM_OUTPUTS})
    error = expect_refusal(BASE, "downstream", mocks)
    assert error.key == "ecr-ptc:rules"
    assert "consumer managed policy" in str(error) and "500" in str(error)


def test_tag_keys_reach_the_templates_exactly_as_written() -> None:
    tags = {"cost_center": "42", "Team_Name": "platform", "app:tier": "cache"}
    result = run(with_template(resourceTags=tags))
    for template in result.mocks.of_type(TEMPLATE):
        assert template.inputs["resourceTags"] == tags, template.name
