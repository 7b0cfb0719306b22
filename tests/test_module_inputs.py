"""The inputs a module is expected to take, as stack config and as component arguments alike:
tags for every taggable resource, an existing cache role, kmsKeyArns (kmsKeyArn's new name),
and the enums GrantVia and ImageTagMutability."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.declare.downstream import ImageTagMutability, PullThroughCache, PullThroughCacheArgs
from components.declare.upstream import GrantVia, UpstreamRegistryAccess, UpstreamRegistryAccessArgs
from components.inputs.errors import ConfigError
from components.inputs.stack_config import apply_override, parse_downstream
from components.plan.contract import UpstreamFacts
from components.plan.stack_plan import (
    MANAGED_POLICY,
    PULL_THROUGH_CACHE_RULE,
    ROLE,
    ROLE_POLICY,
    Ref,
    plan_downstream,
)
from tests.pulumi_run import DOWNSTREAM_ACCOUNT, UPSTREAM_ACCOUNT, RecordingMocks, cli_config
from tests.test_package import cache_args, run_with_mocks, upstream_args

DOWNSTREAM: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "ecr-ptc:upstreamAccountId": UPSTREAM_ACCOUNT,
    "ecr-ptc:upstreamRegion": "us-east-1",
    "ecr-ptc:rules": [{"ecrRepositoryPrefix": "central"}],
}
CACHE_ROLE = f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:role/platform/ecr-cache"
KMS_KEY = "arn:aws:kms:eu-west-1:444455556666:key/0123abcd-0123-0123-0123-0123456789ab"


def config(**changes: Any) -> Any:
    return parse_downstream(
        cli_config({**DOWNSTREAM, **{f"ecr-ptc:{k}": v for k, v in changes.items()}})
    )


def planned(**changes: Any) -> Any:
    parsed = config(**changes)
    assert parsed.upstream is not None
    facts = UpstreamFacts(
        account_id=parsed.upstream.account_id,
        region=parsed.upstream.region,
        downstream_account_ids=None,
        organization_id=None,
        repository_prefix=None,
    )
    return plan_downstream(parsed, facts, DOWNSTREAM_ACCOUNT, "ecr-ptc")


def refusal(build: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        build()
    return caught.value


# --- tags -----------------------------------------------------------------------------------------


def test_tags_reach_every_role_and_the_managed_policy() -> None:
    plan = planned(
        tags={"team": "platform", "cost-center": "42"},
        repositoryTemplate={"resourceTags": {"owner": "cache"}},
    )
    tagged = {ROLE, MANAGED_POLICY}
    roles = plan.of_type(ROLE)
    assert len(roles) == 2  # the cache role and the template's role
    for resource in plan.resources:
        if resource.type in tagged:
            assert resource.properties["tags"] == {"cost-center": "42", "team": "platform"}
        else:
            assert "tags" not in resource.properties, resource.type


def test_no_tags_no_tags_property() -> None:
    assert all("tags" not in r.properties for r in planned().resources)


@pytest.mark.parametrize(
    ("tags", "key", "valid"),
    [
        ({f"k{i}": "v" for i in range(51)}, "ecr-ptc:tags", "at most 50 tags"),
        ({"k" * 129: "v"}, "ecr-ptc:tags." + "k" * 129, "a tag key of 1 to 128"),
        ({"aws:team": "v"}, "ecr-ptc:tags.aws:team", "not starting with 'aws:'"),
        ({"team": "v" * 257}, "ecr-ptc:tags.team", "a tag value of at most 256"),
        ({"team": "a\u0000b"}, "ecr-ptc:tags.team", "is not allowed"),
    ],
)
def test_bad_tags_are_refused(tags: dict[str, str], key: str, valid: str) -> None:
    error = refusal(lambda: config(tags=tags))
    assert error.key == key and valid in error.valid, str(error)


def test_fifty_tags_of_the_longest_are_accepted() -> None:
    tags = {f"{i:02d}".ljust(128, "k"): "v" * 256 for i in range(50)}
    assert len(config(tags=tags).tags) == 50


# --- an existing cache role -----------------------------------------------------------------------


def test_an_existing_cache_role_replaces_the_created_one() -> None:
    plan = planned(cacheRoleArn=CACHE_ROLE)
    assert plan.of_type(ROLE) == [] and plan.of_type(ROLE_POLICY) == []
    rules = plan.of_type(PULL_THROUGH_CACHE_RULE)
    assert rules and all(r.properties["custom_role_arn"] == CACHE_ROLE for r in rules)
    assert all(r.depends_on == () for r in rules)
    assert plan.outputs["roleArn"] == CACHE_ROLE
    assert plan.outputs["roleName"] == "ecr-cache"


def test_a_created_cache_role_is_named_by_its_output() -> None:
    plan = planned()
    assert plan.outputs["roleArn"] == Ref("ecr-ptc-role", "arn")
    assert plan.outputs["roleName"] == Ref("ecr-ptc-role", "name")


def test_a_cache_role_of_another_account_is_refused() -> None:
    other = f"arn:aws:iam::{UPSTREAM_ACCOUNT}:role/ecr-cache"
    error = refusal(lambda: planned(cacheRoleArn=other))
    assert error.key == "ecr-ptc:cacheRoleArn"
    assert f"a role of this account ({DOWNSTREAM_ACCOUNT})" in error.valid


@pytest.mark.parametrize(
    ("changes", "key", "valid"),
    [
        ({"roleName": "cache"}, "ecr-ptc:roleName", "unset when ecr-ptc:cacheRoleArn is set"),
        (
            {"consumerRoleNames": ["ECR-Cache"]},
            "ecr-ptc:consumerRoleNames[0]",
            "a role other than the cache role (ecr-ptc:cacheRoleArn",
        ),
    ],
)
def test_cache_role_conflicts(changes: dict[str, Any], key: str, valid: str) -> None:
    error = refusal(lambda: config(cacheRoleArn=CACHE_ROLE, **changes))
    assert error.key == key and valid in error.valid, str(error)


@pytest.mark.parametrize(
    "arn",
    ["arn:aws:iam::444455556666:policy/x", "role/ecr-cache", "arn:aws-cn:iam::444455556666:role/x"],
)
def test_bad_cache_role_arns_are_refused(arn: str) -> None:
    assert refusal(lambda: config(cacheRoleArn=arn)).key == "ecr-ptc:cacheRoleArn"


# --- kmsKeyArns, kmsKeyArn's new name -------------------------------------------------------------


def test_kms_key_arns_and_its_former_name_mean_the_same() -> None:
    new = config(repositoryTemplate={"kmsKeyArns": {"eu-west-1": KMS_KEY}})
    old = config(repositoryTemplate={"kmsKeyArn": {"eu-west-1": KMS_KEY}})
    assert new.repository_template == old.repository_template
    assert new.repository_template is not None
    assert new.repository_template.kms_key_arns == (("eu-west-1", KMS_KEY),)


def test_kms_key_arns_and_its_former_name_together_are_refused() -> None:
    both = {"kmsKeyArns": {"eu-west-1": KMS_KEY}, "kmsKeyArn": {"eu-west-1": KMS_KEY}}
    error = refusal(lambda: config(repositoryTemplate=both))
    assert error.key == "ecr-ptc:repositoryTemplate.kmsKeyArn"


# --- the components ----------------------------------------------------------------------------


def test_the_component_takes_tags_cache_role_and_enums() -> None:
    mocks = RecordingMocks(DOWNSTREAM_ACCOUNT)
    args = cache_args(
        tags={"team": "platform"},
        cache_role_arn=CACHE_ROLE,
        repository_template={"image_tag_mutability": ImageTagMutability.IMMUTABLE},
    )

    def declare() -> None:
        component = PullThroughCache("cache", PullThroughCacheArgs(**args))  # type: ignore[typeddict-item]
        pulumi.export("roleArn", component.role_arn)
        pulumi.export("roleName", component.role_name)
        pulumi.export("rules", component.rules)

    outputs = run_with_mocks(declare, mocks)
    assert outputs["roleArn"] == CACHE_ROLE and outputs["roleName"] == "ecr-cache"
    assert mocks.of_type("aws:iam/role:Role") == []
    [policy] = mocks.of_type("aws:iam/policy:Policy")
    assert policy.inputs["tags"] == {"team": "platform"}
    templates = mocks.of_type("aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate")
    assert {t.inputs["imageTagMutability"] for t in templates} == {"IMMUTABLE"}
    assert sorted(r["region"] for r in outputs["rules"]) == ["eu-central-1", "eu-west-1"]


def test_a_bad_tag_argument_is_refused_naming_the_argument() -> None:
    mocks = RecordingMocks(DOWNSTREAM_ACCOUNT)
    args = cache_args(tags={"aws:team": "x"})

    def declare() -> None:
        PullThroughCache("cache", PullThroughCacheArgs(**args))  # type: ignore[typeddict-item]

    with pytest.raises(ConfigError) as caught:
        run_with_mocks(declare, mocks)
    assert str(caught.value).startswith("PullThroughCache 'cache' argument tags.aws:team:")


def test_the_upstream_output_feeds_the_cache() -> None:
    """One line composes the two, and the cache's resources come after the grant."""
    mocks = RecordingMocks(UPSTREAM_ACCOUNT)

    def declare() -> None:
        access = UpstreamRegistryAccess(
            "registry",
            UpstreamRegistryAccessArgs(**upstream_args(grant_via=GrantVia.REGISTRY)),  # type: ignore[typeddict-item]
        )
        pulumi.export("upstream", access.upstream)
        cache = PullThroughCache(
            "cache",
            PullThroughCacheArgs(**cache_args(upstream=access.upstream)),  # type: ignore[typeddict-item]
        )
        pulumi.export("rules", cache.rules)

    outputs = run_with_mocks(declare, mocks)
    assert outputs["upstream"] == {
        "account_id": UPSTREAM_ACCOUNT,
        "region": "us-east-1",
        "downstream_account_ids": [DOWNSTREAM_ACCOUNT],
        "organizational_unit_paths": [],
    }
    assert {r["upstreamRegistryUrl"] for r in outputs["rules"]} == {
        f"{UPSTREAM_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
    }


def test_an_account_override_of_the_kms_keys_replaces_kms_key_arns() -> None:
    template = {"repositoryTemplate": {"kmsKeyArns": {"eu-west-1": KMS_KEY}}}
    other = KMS_KEY.replace("0123abcd", "4567abcd")
    merged = apply_override(
        {f"ecr-ptc:{k}": v for k, v in template.items()}, {"kmsKeyArn": {"eu-west-1": other}}
    )
    assert merged["ecr-ptc:repositoryTemplate"] == {"kmsKeyArn": {"eu-west-1": other}}
