"""Policy documents: least privilege, canonical text, and real IAM actions and ARN formats."""

from __future__ import annotations

import fnmatch
import json

import pytest

from components.inputs.stack_config import CacheRule, DownstreamConfig
from components.plan.contract import UpstreamFacts
from components.plan.policies import (
    CACHE_WRITE_ACTIONS,
    CacheReadGrant,
    PolicyTooLargeError,
    cache_role_permissions,
    cache_role_trust_policy,
    canonical_json,
    policy_document,
    require_within,
    upstream_read_statements,
)
from components.plan.stack_plan import role_permissions_text
from components.rules import quotas
from components.rules.aws_names import known_regions, region
from components.rules.policy_rules import CACHE_READ_ACTIONS
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
    [statement] = upstream_read_statements(CacheReadGrant("aws", ("444455556666",), None), PATTERN)
    assert statement["Principal"] == {"AWS": "arn:aws:iam::444455556666:root"}
    assert set(statement["Action"]) == SPEC_UPSTREAM_GRANT
    assert not any("*" in a for a in statement["Action"])
    assert statement["Resource"] == PATTERN
    assert iam_problems(policy_document([statement])) == []


def test_organization_grant_is_conditioned_on_the_org() -> None:
    [statement] = upstream_read_statements(CacheReadGrant("aws", (), "o-abcdefghij"), PATTERN)
    assert statement["Principal"] == {"AWS": "*"}
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}


def test_repository_policy_statement_has_no_resource() -> None:
    statements = upstream_read_statements(
        CacheReadGrant("aws", ("444455556666",), "o-abcdefghij"), None
    )
    assert len(statements) == 2
    assert all("Resource" not in s for s in statements)


def test_same_grants_give_identical_text_whatever_the_order() -> None:
    a = policy_document(
        upstream_read_statements(
            CacheReadGrant("aws", ("444455556666", "777788889999"), "o-abcdefghij"), PATTERN
        )
    )
    b = policy_document(
        list(
            reversed(
                upstream_read_statements(
                    CacheReadGrant("aws", ("777788889999", "444455556666"), "o-abcdefghij"),
                    PATTERN,
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


def _facts() -> UpstreamFacts:
    facts = UpstreamFacts("111122223333", UP, ("444455556666",), None, None)
    assert facts.repository_arn_pattern == PATTERN
    return facts


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
    # Writes only on this account's cache namespaces, in the configured regions: the region
    # is a wildcard in the ARN, narrowed by aws:RequestedRegion.
    fill = by_sid["FillCache"]
    assert set(fill["Action"]) >= SPEC_CACHE_WRITES
    assert fill["Resource"] == [
        f"arn:aws:ecr:*:444455556666:repository/{p}/*" for p in ("central", "mirror")
    ]
    assert fill["Condition"] == {
        "StringEquals": {"aws:RequestedRegion": ["eu-central-1", "eu-west-1"]}
    }
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
    assert fill["Resource"] == "arn:aws:ecr:*:444455556666:repository/*"
    assert fill["Condition"] == {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}


def test_china_partition_arns() -> None:
    cn = region("cn-north-1")
    facts = UpstreamFacts("111122223333", cn, None, None, None)
    assert facts.repository_arn_pattern == "arn:aws-cn:ecr:cn-north-1:111122223333:repository/*"
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


def test_fifty_rules_fit_in_every_region_of_the_partition() -> None:
    rules = tuple(
        CacheRule(f"team-{i:02d}-" + "c" * 22, f"upstream-{i:02d}-" + "u" * 18) for i in range(50)
    )
    assert {len(r.ecr_repository_prefix) for r in rules} == {30}
    assert {len(r.upstream_repository_prefix) for r in rules} == {30}
    every = tuple(r for r, partition in known_regions().items() if partition == "aws")
    text = role_permissions_text(_config(*rules, regions=every), _facts(), "444455556666")
    assert len(text) <= quotas.ROLE_INLINE_POLICIES_MAX_CHARS


def test_role_permissions_over_quota_is_refused_with_advice() -> None:
    # Past 50 rules AWS refuses anyway; the check still names the key if a policy grows.
    facts = _facts()
    long_upstreams = tuple(CacheRule(f"team-{i:02d}-" + "c" * 22) for i in range(50))
    config = _config(*long_upstreams)
    text = role_permissions_text(config, facts, "444455556666")
    with pytest.raises(PolicyTooLargeError) as caught:
        require_within(text, len(text) - 1, "cache role's permission policy", "ecr-ptc:rules",
                       config.size_summary, "advice")  # fmt: skip
    assert caught.value.key == "ecr-ptc:rules"
    assert "50 rules in 1 regions" in str(caught.value)


def _allows(statement: dict[str, object], requested_region: str, arn: str) -> bool:
    resources = statement["Resource"]
    patterns = resources if isinstance(resources, list) else [resources]
    if not any(fnmatch.fnmatchcase(arn, str(p)) for p in patterns):
        return False
    condition = statement.get("Condition")
    if not condition:
        return True
    wanted = condition["StringEquals"]["aws:RequestedRegion"]  # type: ignore[index]
    return requested_region in (wanted if isinstance(wanted, list) else [wanted])


@pytest.mark.parametrize("sid", ["FillCache"])
def test_region_wildcard_allows_exactly_the_requests_of_one_arn_per_region(sid: str) -> None:
    regions = ("eu-west-1", "eu-central-1")
    config = _config(CacheRule("central"), CacheRule("golden/base"), regions=regions)
    document = json.loads(role_permissions_text(config, _facts(), "444455556666"))
    statement = next(s for s in document["Statement"] if s["Sid"] == sid)
    enumerated = {
        f"arn:aws:ecr:{r}:444455556666:repository/{p}/*" for r in regions for p in ("central", "golden/base")
    }  # fmt: skip
    for requested in ("eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"):
        for account in ("444455556666", "777788889999"):
            for name in ("central/x", "golden/base/y", "golden/other", "mirror/z"):
                # ECR acts on a repository in the region the request is sent to.
                arn = f"arn:aws:ecr:{requested}:{account}:repository/{name}"
                expected = any(fnmatch.fnmatchcase(arn, e) for e in enumerated)
                assert _allows(statement, requested, arn) == expected, (requested, arn)


def test_cache_role_permissions_single_resource_is_a_string() -> None:
    document = cache_role_permissions(
        [PATTERN], ["arn:aws:ecr:*:444455556666:repository/x/*"], ["eu-west-1"]
    )
    assert all(isinstance(s["Resource"], str) for s in document["Statement"])
