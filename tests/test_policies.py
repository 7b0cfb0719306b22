"""Policy documents: least privilege, canonical text, and real IAM actions and ARN formats."""

from __future__ import annotations

import json

import pytest

from components import quotas
from components.aws_names import region
from components.config import CacheRule, DownstreamConfig
from components.contract import UpstreamFacts
from components.downstream import role_permissions_text
from components.policies import (
    CACHE_READ_ACTIONS,
    CACHE_WRITE_ACTIONS,
    PolicyTooLargeError,
    cache_role_permissions,
    cache_role_trust_policy,
    canonical_json,
    policy_document,
    upstream_read_statements,
)
from tests.iam_check import SPEC_CACHE_WRITES, SPEC_UPSTREAM_GRANT, iam_problems, resource_formats

UP = region("us-east-1")
EU = region("eu-west-1")
PATTERN = "arn:aws:ecr:us-east-1:111122223333:repository/*"


def test_every_action_is_a_real_ecr_action_on_repositories() -> None:
    for action in CACHE_READ_ACTIONS + CACHE_WRITE_ACTIONS:
        assert resource_formats(action) == [
            "arn:${Partition}:ecr:${Region}:${Account}:repository/${RepositoryName}"
        ], action


def test_upstream_grant_is_read_only_and_scoped() -> None:
    [statement] = upstream_read_statements("aws", ["444455556666"], None, PATTERN)
    assert statement["Principal"] == {"AWS": "arn:aws:iam::444455556666:root"}
    assert set(statement["Action"]) == SPEC_UPSTREAM_GRANT
    assert not any("*" in a for a in statement["Action"])
    assert statement["Resource"] == PATTERN
    assert iam_problems(policy_document([statement])) == []


def test_organization_grant_is_conditioned_on_the_org() -> None:
    [statement] = upstream_read_statements("aws", [], "o-abcdefghij", PATTERN)
    assert statement["Principal"] == {"AWS": "*"}
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}


def test_repository_policy_statement_has_no_resource() -> None:
    statements = upstream_read_statements("aws", ["444455556666"], "o-abcdefghij", None)
    assert len(statements) == 2
    assert all("Resource" not in s for s in statements)


def test_same_grants_give_identical_text_whatever_the_order() -> None:
    a = policy_document(
        upstream_read_statements("aws", ["444455556666", "777788889999"], "o-abcdefghij", PATTERN)
    )
    b = policy_document(
        list(
            reversed(
                upstream_read_statements(
                    "aws", ["777788889999", "444455556666"], "o-abcdefghij", PATTERN
                )
            )
        )
    )
    assert canonical_json(a) == canonical_json(b)
    assert " " not in canonical_json(a) and "\n" not in canonical_json(a)


def test_trust_policy_is_exactly_the_pull_through_cache_service() -> None:
    document = cache_role_trust_policy()
    assert document["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "pullthroughcache.ecr.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    assert iam_problems(document) == []
    assert len(canonical_json(document)) <= quotas.ROLE_TRUST_POLICY_MAX_CHARS


def _facts(pattern: str = PATTERN) -> UpstreamFacts:
    return UpstreamFacts("111122223333", UP, pattern, ("444455556666",), None, None)


def _config(*rules: CacheRule, regions: tuple[str, ...] = ("eu-west-1",)) -> DownstreamConfig:
    return DownstreamConfig(EU, tuple(region(r) for r in regions), rules, None, "o/p/s", None)


def test_role_permissions_least_privilege() -> None:
    config = _config(
        CacheRule("central", "golden"), CacheRule("mirror"), regions=("eu-west-1", "eu-central-1")
    )
    document = json.loads(role_permissions_text(config, _facts(), "444455556666"))
    assert iam_problems(document) == []
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    # Only GetAuthorizationToken is on "*", and it has no resource type to scope it to.
    star = [s for s in document["Statement"] if s["Resource"] == "*"]
    assert star == [by_sid["RegistryLogin"]]
    assert by_sid["RegistryLogin"]["Action"] == "ecr:GetAuthorizationToken"
    # Upstream: read only, the rule's upstream namespace and (for the ROOT rule) the shared pattern.
    assert set(by_sid["ReadUpstream"]["Action"]) == SPEC_UPSTREAM_GRANT
    assert by_sid["ReadUpstream"]["Resource"] == sorted(
        [PATTERN, "arn:aws:ecr:us-east-1:111122223333:repository/golden/*"]
    )
    # Writes only on this account's cache namespaces, in every configured region.
    fill = by_sid["FillCache"]
    assert set(fill["Action"]) >= SPEC_CACHE_WRITES
    assert fill["Resource"] == sorted(
        f"arn:aws:ecr:{r}:444455556666:repository/{p}/*"
        for r in ("eu-west-1", "eu-central-1")
        for p in ("central", "mirror")
    )
    writes = [
        s
        for s in document["Statement"]
        if SPEC_CACHE_WRITES & set(s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]
    assert writes == [fill]


def test_root_cache_prefix_covers_every_repository_of_the_account() -> None:
    document = json.loads(
        role_permissions_text(_config(CacheRule("ROOT")), _facts(), "444455556666")
    )
    fill = next(s for s in document["Statement"] if s["Sid"] == "FillCache")
    assert fill["Resource"] == "arn:aws:ecr:eu-west-1:444455556666:repository/*"


def test_china_partition_arns() -> None:
    cn = region("cn-north-1")
    facts = UpstreamFacts(
        "111122223333", cn, "arn:aws-cn:ecr:cn-north-1:111122223333:repository/*", None, None, None
    )
    config = DownstreamConfig(
        region("cn-northwest-1"),
        (region("cn-northwest-1"),),
        (CacheRule("central"),),
        None,
        None,
        None,
    )
    document = json.loads(role_permissions_text(config, facts, "444455556666"))
    assert iam_problems(document) == []
    resources = [
        r
        for s in document["Statement"]
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    ]
    assert all(r == "*" or r.startswith("arn:aws-cn:ecr:") for r in resources), resources
    assert facts.registry_url == "111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn"


def test_role_permissions_over_quota_is_refused_with_advice() -> None:
    rules = tuple(CacheRule(f"team-number-{i:02d}-cache") for i in range(50))
    regions = ("eu-west-1", "eu-central-1", "us-east-1", "ap-southeast-1")
    with pytest.raises(PolicyTooLargeError) as caught:
        role_permissions_text(_config(*rules, regions=regions), _facts(), "444455556666")
    message = str(caught.value)
    assert caught.value.key == "ecr-ptc:rules"
    assert "50 rules in 4 regions" in message
    assert str(quotas.ROLE_INLINE_POLICIES_MAX_CHARS) in message
    assert "fewer ecr-ptc:regions or ecr-ptc:rules" in message


def test_cache_role_permissions_single_resource_is_a_string() -> None:
    document = cache_role_permissions(
        [PATTERN], ["arn:aws:ecr:eu-west-1:444455556666:repository/x/*"]
    )
    assert all(isinstance(s["Resource"], str) for s in document["Statement"])
