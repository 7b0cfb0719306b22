"""The downstream stack under Pulumi mocks: cache role, rules, outputs and cross-stack checks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.inputs.errors import ConfigError
from tests.iam_check import SPEC_CACHE_WRITES, iam_problems
from tests.pulumi_run import (
    DOWNSTREAM_ACCOUNT,
    UPSTREAM_ACCOUNT,
    ProgramFailed,
    ProgramRun,
    RecordingMocks,
    expect_refusal,
    run_program,
)

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
UPSTREAM_STACK = "organization/ecr-ptc/upstream"
UPSTREAM_OUTPUTS: dict[str, Any] = {
    "upstreamAccountId": UPSTREAM_ACCOUNT,
    "upstreamRegion": "us-east-1",
    "upstreamRegistryUrl": f"{UPSTREAM_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com",
    "repositoryArnPattern": f"arn:aws:ecr:us-east-1:{UPSTREAM_ACCOUNT}:repository/*",
    "downstreamAccountIds": [DOWNSTREAM_ACCOUNT],
    "organizationId": None,
}
BASE: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "ecr-ptc:upstreamStack": UPSTREAM_STACK,
    "ecr-ptc:rules": [
        {"ecrRepositoryPrefix": "central"},
        {"ecrRepositoryPrefix": "golden", "upstreamRepositoryPrefix": "golden"},
    ],
    "ecr-ptc:regions": ["eu-west-1", "eu-central-1"],
}


def run(
    config: dict[str, Any],
    upstream: dict[str, Any] | None = None,
    account: str = DOWNSTREAM_ACCOUNT,
    preview: bool = False,
) -> ProgramRun:
    mocks = RecordingMocks(
        account, {UPSTREAM_STACK: UPSTREAM_OUTPUTS if upstream is None else upstream}
    )
    return run_program(config, "downstream", mocks, preview=preview)


def refused(
    config: dict[str, Any],
    upstream: dict[str, Any] | None = None,
    account: str = DOWNSTREAM_ACCOUNT,
) -> tuple[ConfigError, RecordingMocks]:
    mocks = RecordingMocks(
        account, {UPSTREAM_STACK: UPSTREAM_OUTPUTS if upstream is None else upstream}
    )
    # One clean message from the language host, and nothing registered in AWS.
    return expect_refusal(config, "downstream", mocks), mocks


@pytest.mark.parametrize("preview", [False, True])
def test_one_rule_per_prefix_and_region(preview: bool) -> None:
    result = run(BASE, preview=preview)
    rules = result.mocks.of_type(RULE)
    assert sorted((r.inputs["region"], r.inputs["ecrRepositoryPrefix"]) for r in rules) == [
        ("eu-central-1", "central"),
        ("eu-central-1", "golden"),
        ("eu-west-1", "central"),
        ("eu-west-1", "golden"),
    ]
    role_arn = f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:role/{result.mocks.one(ROLE).inputs.get('name', 'ecr-ptc-role-1234567')}"
    for rule in rules:
        assert rule.inputs["upstreamRegistryUrl"] == "111122223333.dkr.ecr.us-east-1.amazonaws.com"
        assert rule.inputs["customRoleArn"] == role_arn
    golden = [r for r in rules if r.inputs["ecrRepositoryPrefix"] == "golden"]
    assert {r.inputs["upstreamRepositoryPrefix"] for r in golden} == {"golden"}


def test_rules_wait_for_the_role_policy_and_delete_before_replace() -> None:
    result = run(BASE)
    policy = result.mocks.one(ROLE_POLICY).name
    for rule in result.mocks.of_type(RULE):
        registration = result.monitor.registrations[rule.name]
        assert policy in registration.depends_on, rule.name
        assert registration.delete_before_replace, rule.name


def test_role_trusts_only_the_pull_through_cache_service() -> None:
    role = run(BASE).mocks.one(ROLE)
    trust = json.loads(role.inputs["assumeRolePolicy"])
    [statement] = trust["Statement"]
    assert statement == {
        "Action": "sts:AssumeRole",
        "Effect": "Allow",
        "Principal": {"Service": "pullthroughcache.ecr.amazonaws.com"},
    }


def test_role_permissions_are_least_privilege() -> None:
    result = run(BASE)
    policy = json.loads(result.mocks.one(ROLE_POLICY).inputs["policy"])
    assert iam_problems(policy) == []
    star = [s for s in policy["Statement"] if s["Resource"] == "*"]
    assert [s["Action"] for s in star] == ["ecr:GetAuthorizationToken"]
    for statement in policy["Statement"]:
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        if SPEC_CACHE_WRITES & set(statement["Action"]):
            assert all(f":{DOWNSTREAM_ACCOUNT}:repository/" in r for r in resources), statement
    fill = next(s for s in policy["Statement"] if s["Sid"] == "FillCache")
    assert fill["Resource"] == [
        f"arn:aws:ecr:*:{DOWNSTREAM_ACCOUNT}:repository/{prefix}/*"
        for prefix in ("central", "golden")
    ]
    assert fill["Condition"] == {
        "StringEquals": {"aws:RequestedRegion": ["eu-central-1", "eu-west-1"]}
    }


def test_outputs() -> None:
    result = run({**BASE, "ecr-ptc:roleName": "ecr-ptc-cache"})
    assert result.outputs["roleArn"] == f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:role/ecr-ptc-cache"
    assert result.mocks.one(ROLE).inputs["name"] == "ecr-ptc-cache"
    assert {
        "ecrRepositoryPrefix": "central",
        "upstreamRepositoryPrefix": "ROOT",
        "region": "eu-central-1",
        "upstreamRegistryUrl": "111122223333.dkr.ecr.us-east-1.amazonaws.com",
        "imageUriPrefix": "444455556666.dkr.ecr.eu-central-1.amazonaws.com/central",
    } in result.outputs["rules"]
    assert len(result.outputs["rules"]) == 4


def test_root_rule_image_uri_prefix_is_the_registry() -> None:
    result = run(
        {**BASE, "ecr-ptc:rules": [{"ecrRepositoryPrefix": "ROOT"}], "ecr-ptc:regions": []}
    )
    assert result.outputs["rules"] == [
        {
            "ecrRepositoryPrefix": "ROOT",
            "upstreamRepositoryPrefix": "ROOT",
            "region": "eu-west-1",
            "upstreamRegistryUrl": "111122223333.dkr.ecr.us-east-1.amazonaws.com",
            "imageUriPrefix": "444455556666.dkr.ecr.eu-west-1.amazonaws.com",
        }
    ]


def test_one_invoke_at_most() -> None:
    assert len(run(BASE).mocks.calls) == 1


def test_upstream_managed_elsewhere() -> None:
    config = {k: v for k, v in BASE.items() if k != "ecr-ptc:upstreamStack"}
    config |= {"ecr-ptc:upstreamAccountId": "999988887777", "ecr-ptc:upstreamRegion": "us-west-2"}
    result = run(config)
    assert result.mocks.of_type("pulumi:pulumi:StackReference") == []
    assert {r.inputs["upstreamRegistryUrl"] for r in result.mocks.of_type(RULE)} == {
        "999988887777.dkr.ecr.us-west-2.amazonaws.com"
    }


def test_china_partition_registry_url() -> None:
    upstream = UPSTREAM_OUTPUTS | {
        "upstreamRegion": "cn-north-1",
        "repositoryArnPattern": f"arn:aws-cn:ecr:cn-north-1:{UPSTREAM_ACCOUNT}:repository/*",
    }
    result = run({**BASE, "aws:region": "cn-northwest-1", "ecr-ptc:regions": []}, upstream)
    [rule] = {r.inputs["upstreamRegistryUrl"] for r in result.mocks.of_type(RULE)}
    assert rule == "111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn"
    assert result.outputs["rules"][0]["imageUriPrefix"].startswith(
        "444455556666.dkr.ecr.cn-northwest-1.amazonaws.com.cn/"
    )


# --- cross-stack checks -------------------------------------------------------------------------


def test_refused_when_the_upstream_does_not_grant_this_account() -> None:
    error, _ = refused(BASE, UPSTREAM_OUTPUTS | {"downstreamAccountIds": ["777788889999"]})
    assert error.key == "ecr-ptc:upstreamStack"
    assert UPSTREAM_STACK in str(error) and DOWNSTREAM_ACCOUNT in str(error)
    assert "ecr-ptc:downstreamAccountIds" in str(error)


def test_an_organization_grant_serves_any_account() -> None:
    upstream = UPSTREAM_OUTPUTS | {"downstreamAccountIds": [], "organizationId": "o-abcdefghij"}
    assert len(run(BASE, upstream).mocks.of_type(RULE)) == 4


def test_refused_when_a_rule_reaches_outside_the_shared_namespace() -> None:
    upstream = UPSTREAM_OUTPUTS | {
        "repositoryArnPattern": f"arn:aws:ecr:us-east-1:{UPSTREAM_ACCOUNT}:repository/golden/*"
    }
    config = {
        **BASE,
        "ecr-ptc:rules": [{"ecrRepositoryPrefix": "team", "upstreamRepositoryPrefix": "other"}],
    }
    error, _ = refused(config, upstream)
    assert error.key == "ecr-ptc:rules[0].upstreamRepositoryPrefix"
    assert "'other'" in str(error) and "golden" in str(error)


def test_a_rule_inside_the_shared_namespace_reads_only_it() -> None:
    upstream = UPSTREAM_OUTPUTS | {
        "repositoryArnPattern": f"arn:aws:ecr:us-east-1:{UPSTREAM_ACCOUNT}:repository/golden/*"
    }
    config = {
        **BASE,
        "ecr-ptc:rules": [
            {"ecrRepositoryPrefix": "team", "upstreamRepositoryPrefix": "golden/base"}
        ],
    }
    policy = json.loads(run(config, upstream).mocks.one(ROLE_POLICY).inputs["policy"])
    read = next(s for s in policy["Statement"] if s["Sid"] == "ReadUpstream")
    assert read["Resource"] == f"arn:aws:ecr:us-east-1:{UPSTREAM_ACCOUNT}:repository/golden/base/*"


def test_refused_when_upstream_and_downstream_are_the_same_registry() -> None:
    upstream = UPSTREAM_OUTPUTS | {
        "upstreamRegion": "eu-west-1",
        "repositoryArnPattern": f"arn:aws:ecr:eu-west-1:{UPSTREAM_ACCOUNT}:repository/*",
        "downstreamAccountIds": [UPSTREAM_ACCOUNT],
    }
    error, _ = refused(BASE, upstream, account=UPSTREAM_ACCOUNT)
    assert error.key == "ecr-ptc:regions" and "same registry" in str(error)


def test_same_account_other_region_is_allowed() -> None:
    upstream = UPSTREAM_OUTPUTS | {"downstreamAccountIds": [UPSTREAM_ACCOUNT]}
    assert len(run(BASE, upstream, account=UPSTREAM_ACCOUNT).mocks.of_type(RULE)) == 4


@pytest.mark.parametrize(
    "missing", ["upstreamAccountId", "repositoryArnPattern", "downstreamAccountIds"]
)
def test_refused_when_the_upstream_stack_lacks_an_output(missing: str) -> None:
    upstream = {k: v for k, v in UPSTREAM_OUTPUTS.items() if k != missing}
    error, _ = refused(BASE, upstream)
    assert UPSTREAM_STACK in str(error) and missing in str(error) and "pulumi up" in str(error)


def test_refused_when_the_upstream_stack_exports_a_bad_region() -> None:
    error, _ = refused(BASE, UPSTREAM_OUTPUTS | {"upstreamRegion": "moon-1"})
    assert error.key == f"ecr-ptc:upstreamStack ({UPSTREAM_STACK}), output upstreamRegion"
    assert "'moon-1'" in str(error)


def test_refused_when_the_upstream_stack_was_never_deployed() -> None:
    error, _ = refused(BASE, {})
    assert "upstreamAccountId" in str(error) and "pulumi up" in str(error)


def test_bad_rules_declare_nothing() -> None:
    mocks = RecordingMocks(DOWNSTREAM_ACCOUNT, {UPSTREAM_STACK: UPSTREAM_OUTPUTS})
    expect_refusal(
        {
            **BASE,
            "ecr-ptc:rules": [{"ecrRepositoryPrefix": "ROOT", "upstreamRepositoryPrefix": "x1"}],
        },
        "downstream",
        mocks,
    )
    assert mocks.resources == [] and mocks.calls == []


def test_an_upstream_stack_the_backend_lacks_fails_before_anything_is_created() -> None:
    # The engine fails the stack reference's read and reports it; the program declares nothing.
    # (`make up` and the preview workflow check that the stack exists first.)
    mocks = RecordingMocks(DOWNSTREAM_ACCOUNT, {})
    with pytest.raises(ProgramFailed) as caught:
        run_program(BASE, "downstream", mocks)
    assert "unknown stack" in " ".join(caught.value.run.errors)
    assert [r.name for r in mocks.resources if r.typ.startswith("aws:")] == []


def test_one_allowed_account_needs_no_sts_call() -> None:
    result = run({**BASE, "aws:allowedAccountIds": [DOWNSTREAM_ACCOUNT]})
    assert result.mocks.calls == []
