"""The upstream stack under Pulumi mocks: what it declares, invokes and exports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.plan import contract
from tests.iam_check import SPEC_UPSTREAM_GRANT, iam_problems
from tests.pulumi_run import (
    UPSTREAM_ACCOUNT,
    ProgramRun,
    RecordingMocks,
    expect_refusal,
    run_program,
)

REGISTRY_POLICY = "aws:ecr/registryPolicy:RegistryPolicy"
REPOSITORY_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
ACCOUNT_SETTING = "aws:ecr/accountSetting:AccountSetting"
BASE: dict[str, Any] = {
    "aws:region": "us-east-1",
    "ecr-ptc:downstreamAccountIds": ["444455556666", "777788889999"],
}


def run(config: dict[str, Any], stack: str = "upstream", preview: bool = False) -> ProgramRun:
    return run_program(config, stack, RecordingMocks(UPSTREAM_ACCOUNT), preview=preview)


def registry_policy(result: ProgramRun) -> dict[str, Any]:
    return json.loads(result.mocks.one(REGISTRY_POLICY).inputs["policy"])  # type: ignore[no-any-return]


@pytest.mark.parametrize("preview", [False, True])
def test_registry_policy_grants_the_accounts_read_on_the_pattern(preview: bool) -> None:
    result = run(BASE, preview=preview)
    policy = registry_policy(result)
    assert iam_problems(policy) == []
    [statement] = policy["Statement"]
    assert statement["Principal"]["AWS"] == [
        "arn:aws:iam::444455556666:root",
        "arn:aws:iam::777788889999:root",
    ]
    assert set(statement["Action"]) == SPEC_UPSTREAM_GRANT
    assert statement["Resource"] == "arn:aws:ecr:us-east-1:111122223333:repository/*"
    assert result.mocks.one(REGISTRY_POLICY).inputs["region"] == "us-east-1"


def test_registry_policy_scope_is_set_to_v2_before_the_policy() -> None:
    result = run(BASE)
    setting = result.mocks.one(ACCOUNT_SETTING)
    assert (setting.inputs["name"], setting.inputs["value"]) == ("REGISTRY_POLICY_SCOPE", "V2")
    policy_name = result.mocks.one(REGISTRY_POLICY).name
    assert setting.name in result.monitor.registrations[policy_name].depends_on


def test_registry_policy_scope_can_be_left_alone() -> None:
    result = run({**BASE, "ecr-ptc:manageRegistryPolicyScope": False})
    assert result.mocks.of_type(ACCOUNT_SETTING) == []
    assert len(result.mocks.of_type(REGISTRY_POLICY)) == 1


def test_outputs_follow_the_contract() -> None:
    result = run({**BASE, "ecr-ptc:repositoryPrefix": "golden"})
    assert set(result.outputs) == set(contract.UPSTREAM_OUTPUTS)
    assert result.outputs == {
        "upstreamAccountId": "111122223333",
        "upstreamRegion": "us-east-1",
        "upstreamRegistryUrl": "111122223333.dkr.ecr.us-east-1.amazonaws.com",
        "repositoryArnPattern": "arn:aws:ecr:us-east-1:111122223333:repository/golden/*",
        "downstreamAccountIds": ["444455556666", "777788889999"],
        "organizationId": None,
        "organizationalUnitPaths": [],
    }
    assert (
        registry_policy(result)["Statement"][0]["Resource"]
        == result.outputs["repositoryArnPattern"]
    )


def test_one_invoke_at_most() -> None:
    result = run(BASE)
    assert [c.token for c in result.mocks.calls] == [
        "aws:index/getCallerIdentity:getCallerIdentity"
    ]


def test_organization_grant_with_and_without_accounts() -> None:
    org_only = run({"aws:region": "us-east-1", "ecr-ptc:organizationId": "o-abcdefghij"})
    [statement] = registry_policy(org_only)["Statement"]
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}
    assert org_only.outputs["organizationId"] == "o-abcdefghij"
    assert org_only.outputs["downstreamAccountIds"] == []
    both = run({**BASE, "ecr-ptc:organizationId": "o-abcdefghij"})
    assert len(registry_policy(both)["Statement"]) == 2


def test_statements_owned_by_others_are_kept_in_the_registry_policy() -> None:
    replication = {
        "Sid": "ReplicationFromSource",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
        "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
        "Resource": "arn:aws:ecr:us-east-1:111122223333:repository/*",
    }
    policy = registry_policy(run({**BASE, "ecr-ptc:extraRegistryPolicyStatements": [replication]}))
    assert replication in policy["Statement"]
    assert len(policy["Statement"]) == 2
    assert iam_problems(policy) == []


def test_policy_text_is_independent_of_config_order() -> None:
    a = run({**BASE, "ecr-ptc:downstreamAccountIds": ["444455556666", "777788889999"]})
    b = run({**BASE, "ecr-ptc:downstreamAccountIds": ["777788889999", "444455556666"]})
    assert (
        a.mocks.one(REGISTRY_POLICY).inputs["policy"]
        == b.mocks.one(REGISTRY_POLICY).inputs["policy"]
    )


def test_grant_via_repository_policies() -> None:
    result = run(
        {
            **BASE,
            "ecr-ptc:grantVia": "repository",
            "ecr-ptc:repositoryPrefix": "golden",
            "ecr-ptc:repositories": ["golden/base", "golden/python"],
        }
    )
    assert result.mocks.of_type(REGISTRY_POLICY) == []
    assert result.mocks.of_type(ACCOUNT_SETTING) == []
    policies = result.mocks.of_type(REPOSITORY_POLICY)
    assert sorted(p.inputs["repository"] for p in policies) == ["golden/base", "golden/python"]
    for p in policies:
        document = json.loads(p.inputs["policy"])
        assert iam_problems(document) == []
        assert set(document["Statement"][0]["Action"]) == SPEC_UPSTREAM_GRANT
        assert p.inputs["region"] == "us-east-1"


def test_china_partition() -> None:
    result = run({"aws:region": "cn-north-1", "ecr-ptc:downstreamAccountIds": ["444455556666"]})
    assert (
        result.outputs["upstreamRegistryUrl"] == "111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn"
    )
    [statement] = registry_policy(result)["Statement"]
    assert statement["Principal"]["AWS"] == "arn:aws-cn:iam::444455556666:root"
    assert statement["Resource"].startswith("arn:aws-cn:ecr:cn-north-1:")


def test_govcloud_partition() -> None:
    result = run({"aws:region": "us-gov-west-1", "ecr-ptc:downstreamAccountIds": ["444455556666"]})
    assert (
        result.outputs["repositoryArnPattern"]
        == "arn:aws-us-gov:ecr:us-gov-west-1:111122223333:repository/*"
    )


def test_oversized_registry_policy_fails_before_any_resource() -> None:
    accounts = [f"{n:012d}" for n in range(100000000000, 100000000400)]
    mocks = RecordingMocks(UPSTREAM_ACCOUNT)
    error = expect_refusal({**BASE, "ecr-ptc:downstreamAccountIds": accounts}, "upstream", mocks)
    assert error.key == "ecr-ptc:downstreamAccountIds"
    assert "'400 accounts'" in str(error)
    assert "10240" in str(error) and "ecr-ptc:organizationId" in str(error)


def test_bad_config_declares_nothing() -> None:
    mocks = RecordingMocks(UPSTREAM_ACCOUNT)
    expect_refusal({**BASE, "ecr-ptc:downstreamAccountIds": ["1"]}, "upstream", mocks)
    assert mocks.resources == [] and mocks.calls == []
