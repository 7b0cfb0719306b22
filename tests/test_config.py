"""Config parsing: every bad value is refused with the key, the value and what is valid."""

from __future__ import annotations

from typing import Any

import pytest

from components.inputs.errors import ConfigError
from components.inputs.stack_config import (
    DownstreamConfig,
    UpstreamConfig,
    parse,
    parse_downstream,
    parse_upstream,
    resolve_side,
)
from components.rules.aws_names import ROOT_PREFIX
from tests.pulumi_run import cli_config

UPSTREAM: dict[str, Any] = {
    "aws:region": "us-east-1",
    "ecr-ptc:downstreamAccountIds": ["444455556666"],
}
DOWNSTREAM: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
    "ecr-ptc:rules": [{"ecrRepositoryPrefix": "central"}],
}


def raw(values: dict[str, Any]) -> Any:
    """A RawConfig as the CLI would give it: Pulumi.yaml defaults under the stack's values."""
    merged = cli_config(values)
    return merged


def upstream(**changes: Any) -> UpstreamConfig:
    return parse_upstream(raw({**UPSTREAM, **{f"ecr-ptc:{k}": v for k, v in changes.items()}}))


def downstream(**changes: Any) -> DownstreamConfig:
    return parse_downstream(raw({**DOWNSTREAM, **{f"ecr-ptc:{k}": v for k, v in changes.items()}}))


def test_upstream_defaults() -> None:
    config = upstream()
    assert config.region.name == "us-east-1"
    assert config.downstream_account_ids == ("444455556666",)
    assert config.organization_id is None
    assert config.repository_prefix is None
    assert config.grant_via == "registry"
    assert config.manage_registry_policy_scope is True
    assert config.extra_registry_policy_statements == ()


def test_account_order_does_not_matter() -> None:
    a = upstream(downstreamAccountIds=["444455556666", "777788889999"])
    b = upstream(downstreamAccountIds=["777788889999", "444455556666"])
    assert a == b


def test_downstream_defaults_to_its_own_region_and_root_upstream_prefix() -> None:
    config = downstream()
    assert [r.name for r in config.regions] == ["eu-west-1"]
    assert config.rules[0].upstream_repository_prefix == ROOT_PREFIX
    assert config.upstream_stack == "organization/ecr-ptc/upstream"
    assert config.upstream is None
    assert config.role_name is None


def test_direct_upstream() -> None:
    config = parse_downstream(
        raw(
            {
                "aws:region": "eu-west-1",
                "ecr-ptc:upstreamAccountId": "111122223333",
                "ecr-ptc:upstreamRegion": "us-east-1",
                "ecr-ptc:rules": [{"ecrRepositoryPrefix": "central"}],
            }
        )
    )
    assert config.upstream is not None
    assert (config.upstream.account_id, config.upstream.region.name) == (
        "111122223333",
        "us-east-1",
    )


@pytest.mark.parametrize(
    ("stack", "side"),
    [("upstream", "upstream"), ("downstream", "downstream"), ("upstream-prod", "upstream"),
     ("downstream-eu", "downstream")],
)  # fmt: skip
def test_side_from_stack_name(stack: str, side: str) -> None:
    assert resolve_side(raw({}), stack) == side


def test_side_setting_wins_over_stack_name() -> None:
    assert resolve_side(raw({"ecr-ptc:side": "downstream"}), "upstream") == "downstream"
    assert isinstance(
        parse(raw({**DOWNSTREAM, "ecr-ptc:side": "downstream"}), "prod"), DownstreamConfig
    )


def expect_error(key: str, value: str, valid: str, build: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    message = str(caught.value)
    assert caught.value.key == key, message
    shown = "is not set" if value == "None" else value
    assert key in message and shown in message and valid in message, message


def test_unknown_side() -> None:
    expect_error("ecr-ptc:side", "'sideways'", "'upstream' or 'downstream'",
                 lambda: resolve_side(raw({"ecr-ptc:side": "sideways"}), "upstream"))  # fmt: skip


def test_stack_name_that_does_not_say_the_side() -> None:
    expect_error("ecr-ptc:side", "None", "'prod'", lambda: resolve_side(raw({}), "prod"))


UPSTREAM_ERRORS = [
    # (key, changes, value shown, part of what is valid)
    ("ecr-ptc:downstreamAccountIds[0]", {"downstreamAccountIds": ["12345"]}, "'12345'", "12 digits"),
    ("ecr-ptc:downstreamAccountIds[0]", {"downstreamAccountIds": [444455556666]}, "444455556666",
     "quoted"),
    ("ecr-ptc:downstreamAccountIds", {"downstreamAccountIds": "444455556666"}, "444455556666",
     "YAML list"),
    ("ecr-ptc:downstreamAccountIds[1]", {"downstreamAccountIds": ["444455556666", "444455556666"]},
     "'444455556666'", "once"),
    ("ecr-ptc:downstreamAccountIds", {"downstreamAccountIds": []}, "[]", "ecr-ptc:organizationId"),
    ("ecr-ptc:organizationId", {"organizationId": "org-1"}, "'org-1'", "'o-'"),
    ("ecr-ptc:repositoryPrefix", {"repositoryPrefix": "Golden"}, "'Golden'", "lower-case"),
    ("ecr-ptc:repositoryPrefix", {"repositoryPrefix": "g"}, "'g'", "2 to 30 characters"),
    ("ecr-ptc:repositoryPrefix", {"repositoryPrefix": "ROOT"}, "'ROOT'", "namespace"),
    ("ecr-ptc:grantVia", {"grantVia": "bucket"}, "'bucket'", "'registry' or 'repository'"),
    ("ecr-ptc:repositories", {"grantVia": "repository"}, "[]", "at least one repository"),
    ("ecr-ptc:repositories", {"repositories": ["golden/base"]}, "['golden/base']",
     "unless ecr-ptc:grantVia is 'repository'"),
    ("ecr-ptc:repositories[0]", {"grantVia": "repository", "repositories": ["Base"]}, "'Base'",
     "ECR repository name"),
    ("ecr-ptc:repositories[0]", {"grantVia": "repository", "repositoryPrefix": "golden",
                                 "repositories": ["other/base"]}, "'other/base'", "golden/"),
    ("ecr-ptc:manageRegistryPolicyScope", {"manageRegistryPolicyScope": "yes"}, "'yes'",
     "true or false"),
    ("ecr-ptc:extraRegistryPolicyStatements[0]", {"extraRegistryPolicyStatements": ["x"]}, "'x'",
     "a mapping with the fields Action, Condition, Effect"),
    ("ecr-ptc:extraRegistryPolicyStatements[0].Effect",
     {"extraRegistryPolicyStatements": [{"Effect": "Maybe", "Action": "ecr:ReplicateImage",
                                         "Principal": {"AWS": "111122223333"}}]}, "'Maybe'", "'Allow'"),
    ("ecr-ptc:extraRegistryPolicyStatements[0].Sid",
     {"extraRegistryPolicyStatements": [{"Sid": "EcrPtcDownstreamAccountsRead", "Effect": "Allow",
                                         "Action": "ecr:ReplicateImage", "Resource": "arn:aws:ecr:us-east-1:111122223333:repository/*",
                                         "Principal": {"AWS": "111122223333"}}]},
     "'EcrPtcDownstreamAccountsRead'", "owned by ecr-ptc"),
    ("aws:region", {}, "'mars-north-1'", "AWS region"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "changes", "value", "valid"), UPSTREAM_ERRORS)
def test_upstream_bad_input(key: str, changes: dict[str, Any], value: str, valid: str) -> None:
    if key == "aws:region":
        expect_error(key, value, valid,
                     lambda: parse_upstream(raw({**UPSTREAM, "aws:region": "mars-north-1"})))  # fmt: skip
        return
    expect_error(key, value, valid, lambda: upstream(**changes))


def _rules(*prefixes: str) -> list[dict[str, str]]:
    return [{"ecrRepositoryPrefix": p} for p in prefixes]


DOWNSTREAM_ERRORS = [
    ("ecr-ptc:rules", {"rules": []}, "'0 items'", "1 to 50 rules"),
    ("ecr-ptc:rules", {"rules": _rules(*(f"team-{i}" for i in range(51)))}, "'51 items'",
     "not adjustable"),
    ("ecr-ptc:rules[0].ecrRepositoryPrefix", {"rules": [{"upstreamRepositoryPrefix": "x1"}]},
     "None", "required"),
    ("ecr-ptc:rules[0].ecrPrefix", {"rules": [{"ecrPrefix": "central"}]}, "'central'",
     "ecrRepositoryPrefix"),
    ("ecr-ptc:rules[0].ecrRepositoryPrefix", {"rules": _rules("Central")}, "'Central'",
     "lower-case"),
    ("ecr-ptc:rules[0].ecrRepositoryPrefix", {"rules": _rules("c")}, "'c'", "2 to 30"),
    ("ecr-ptc:rules[0].ecrRepositoryPrefix", {"rules": _rules("a" * 31)}, "a" * 31, "2 to 30"),
    ("ecr-ptc:rules[0].ecrRepositoryPrefix", {"rules": _rules("team--/x")}, "'team--/x'",
     "lower-case"),
    ("ecr-ptc:rules[0].upstreamRepositoryPrefix",
     {"rules": [{"ecrRepositoryPrefix": "ROOT", "upstreamRepositoryPrefix": "golden"}]},
     "'golden'", "unset when ecrRepositoryPrefix is ROOT"),
    ("ecr-ptc:rules[1].ecrRepositoryPrefix", {"rules": _rules("central", "central/")},
     "'central/'", "repeats item 0"),
    ("ecr-ptc:rules[0]", {"rules": ["central"]}, "'central'", "ecrRepositoryPrefix"),
    ("ecr-ptc:rules", {"rules": "central"}, "'central'", "YAML list of rules"),
    ("ecr-ptc:regions[1]", {"regions": ["eu-west-1", "eu-wrong"]}, "'eu-wrong'", "AWS region"),
    ("ecr-ptc:regions[1]", {"regions": ["eu-west-1", "eu-west-1"]}, "'eu-west-1'", "once"),
    ("ecr-ptc:regions[1]", {"regions": ["eu-west-1", "cn-north-1"]}, "cn-north-1", "same partition"),
    ("ecr-ptc:regions[0]", {"regions": ["us-iso-east-1"]}, "'us-iso-east-1'",
     "supported partitions"),
    ("ecr-ptc:roleName", {"roleName": "a role"}, "'a role'", "IAM role name"),
    ("ecr-ptc:roleName", {"roleName": "r" * 65}, "r" * 65, "1 to 64"),
    ("ecr-ptc:upstreamStack", {"upstreamStack": "upstream"}, "'upstream'", "fully qualified"),
    ("ecr-ptc:upstreamStack", {"upstreamAccountId": "111122223333"}, "organization/ecr-ptc/upstream",
     "not both"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "changes", "value", "valid"), DOWNSTREAM_ERRORS)
def test_downstream_bad_input(key: str, changes: dict[str, Any], value: str, valid: str) -> None:
    expect_error(key, value, valid, lambda: downstream(**changes))


def without_upstream(**values: Any) -> DownstreamConfig:
    base = {k: v for k, v in DOWNSTREAM.items() if k != "ecr-ptc:upstreamStack"}
    return parse_downstream(raw({**base, **{f"ecr-ptc:{k}": v for k, v in values.items()}}))


def test_no_upstream_given() -> None:
    expect_error("ecr-ptc:upstreamStack", "None", "ecr-ptc:upstreamAccountId", without_upstream)


def test_direct_upstream_needs_both_account_and_region() -> None:
    expect_error("ecr-ptc:upstreamRegion", "None", "together",
                 lambda: without_upstream(upstreamAccountId="111122223333"))  # fmt: skip
    expect_error("ecr-ptc:upstreamAccountId", "None", "together",
                 lambda: without_upstream(upstreamRegion="us-east-1"))  # fmt: skip
    expect_error("ecr-ptc:upstreamAccountId", "'11112222'", "12 digits",
                 lambda: without_upstream(upstreamAccountId="11112222", upstreamRegion="us-east-1"))  # fmt: skip
    expect_error("ecr-ptc:upstreamRegion", "'cn-north-1'", "same partition",
                 lambda: without_upstream(upstreamAccountId="111122223333",
                                          upstreamRegion="cn-north-1"))  # fmt: skip


def test_malformed_json_list_names_the_key() -> None:
    get = {"aws:region": "us-east-1", "ecr-ptc:downstreamAccountIds": "[4444"}
    expect_error(
        "ecr-ptc:downstreamAccountIds", "'[4444'", "YAML list", lambda: parse_upstream(get)
    )


def test_missing_region() -> None:
    expect_error("aws:region", "None", "e.g. us-east-1",
                 lambda: parse_upstream({"ecr-ptc:downstreamAccountIds": '["444455556666"]'}))  # fmt: skip


def test_the_thirty_character_prefix_and_fifty_rules_are_accepted() -> None:
    assert len(downstream(rules=_rules("a" * 30)).rules) == 1
    assert len(downstream(rules=_rules(*(f"team-{i}" for i in range(50)))).rules) == 50


def test_keys_of_the_other_side_are_refused() -> None:
    expect_error("ecr-ptc:rules", "ecrRepositoryPrefix", "configures the downstream stack",
                 lambda: parse(raw({**UPSTREAM, "ecr-ptc:rules": [{"ecrRepositoryPrefix": "x1"}]}), "upstream"))  # fmt: skip
    expect_error("ecr-ptc:downstreamAccountIds", "444455556666", "configures the upstream stack",
                 lambda: parse(raw({**DOWNSTREAM, "ecr-ptc:downstreamAccountIds": ["444455556666"]}), "downstream"))  # fmt: skip


def test_project_defaults_of_the_other_side_are_not_mistakes() -> None:
    # Pulumi.yaml's defaults reach every stack; they must not trip the check above.
    assert isinstance(parse(raw(DOWNSTREAM), "downstream"), DownstreamConfig)
    assert isinstance(parse(raw(UPSTREAM), "upstream"), UpstreamConfig)


def test_numeric_and_boolean_condition_values_are_kept() -> None:
    statement = {
        "Sid": "KeepMfaGuard",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "ecr:DeleteRepository",
        "Condition": {
            "NumericGreaterThan": {"aws:MultiFactorAuthAge": 3600},
            "Bool": {"aws:SecureTransport": False},
        },
    }
    config = upstream(extraRegistryPolicyStatements=[statement])
    assert config.extra_registry_policy_statements == (statement,)
