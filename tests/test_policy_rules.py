"""components/rules/policy_rules.py: its data checked against the IAM libraries, its globs, and the
promise that `make plan` refuses whatever the policy pack would refuse at deploy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from policy_sentry.querying.actions import get_actions_for_service

from components.declare.program import plan_stack
from components.inputs.errors import ConfigError
from components.inputs.stack_config import parse
from components.plan.stack_plan import REGISTRY_POLICY
from components.rules.policy_rules import (
    CONDITION_OPERATORS,
    ECR_ACTIONS,
    READ_ACTIONS,
    REPLICATION_ACTIONS,
    glob_covers,
    globs_intersect,
    operator_problem,
)
from policy.guardrails import resource_policy_violations
from tests.pulumi_run import UPSTREAM_ACCOUNT
from tests.test_refusals import ARN_HEAD, X
from tests.test_strict_inputs import STATEMENTS, deny


def test_ecr_actions_are_every_action_iam_defines_for_ecr() -> None:
    assert set(ECR_ACTIONS) == set(get_actions_for_service("ecr"))
    assert READ_ACTIONS | REPLICATION_ACTIONS <= ECR_ACTIONS


def test_condition_operators_are_the_ones_iam_documents() -> None:
    from parliament.statement import OPERATORS

    assert set(CONDITION_OPERATORS) == set(OPERATORS)


@pytest.mark.parametrize(
    "operator",
    [
        "StringEquals",
        "StringEqualsIfExists",
        "ForAnyValue:StringLike",
        "ForAllValues:ArnLikeIfExists",
        "Null",
        "Bool",
    ],
)
def test_operators_iam_takes(operator: str) -> None:
    assert operator_problem(operator) is None


@pytest.mark.parametrize(
    "operator",
    [
        "StringEqualz",
        "StringNotEqual",
        "stringequals",
        "NullIfExists",
        "ForAnyValue:ForAllValues:StringLike",
        "IfExists",
        "ForSomeValues:StringLike",
    ],
)
def test_operators_iam_refuses(operator: str) -> None:
    assert operator_problem(operator) is not None


@pytest.mark.parametrize(
    ("a", "b", "intersect"),
    [
        ("golden/*", "golden/base", True),
        ("golden", "golden/*", False),
        ("gold*", "golden/*", True),
        ("*/private/*", "golden/*", True),
        ("other/*", "golden/*", False),
        ("golden/?", "golden/ab", False),
        ("a*b*c", "*x*", True),
    ],
)
def test_globs_intersect(a: str, b: str, intersect: bool) -> None:
    assert globs_intersect(a, b) is intersect
    assert globs_intersect(b, a) is intersect


@pytest.mark.parametrize(
    ("outer", "inner", "covers"),
    [
        ("*", "golden/*", True),
        ("golden/*", "golden/*", True),
        ("gold*/*", "golden/*", True),
        ("golden/a*", "golden/*", False),
        ("golden", "golden/*", False),
        ("golden/*", "golden", False),
        ("?*", "a*", True),
        ("*a", "*", False),
        ("ecr:batch*", "ecr:batchgetimage", True),
    ],
)
def test_glob_covers(outer: str, inner: str, covers: bool) -> None:
    assert glob_covers(outer, inner) is covers


# --- make plan refuses whatever the pack refuses ----------------------------------------------

UPSTREAM: dict[str, str] = {
    "aws:region": "us-east-1",
    "ecr-ptc:downstreamAccountIds": json.dumps(["444455556666"]),
    "ecr-ptc:organizationId": "o-abcdefghij",
}


def program_refuses(statement: dict[str, Any]) -> bool:
    try:
        config = parse(
            {**UPSTREAM, X: json.dumps([statement])},
            "upstream",
        )
        plan_stack(config, UPSTREAM_ACCOUNT, None)
    except ConfigError:
        return True
    return False


def pack_refuses(statement: dict[str, Any]) -> bool:
    """What the pack says of the registry policy the program would write with `statement`."""
    config = parse(UPSTREAM, "upstream")
    planned = plan_stack(config, UPSTREAM_ACCOUNT, None)
    [policy] = planned.of_type(REGISTRY_POLICY)
    document = json.loads(policy.properties["policy"])
    document["Statement"].append(statement)
    return bool(resource_policy_violations(document, registry=True, region="us-east-1"))


PACK_CASES = [
    *(case.changes[X][0] for case in STATEMENTS if X in case.changes),
    deny(),
    deny(Condition={"StringNotEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}),
    deny(Resource=f"{ARN_HEAD}golden/private/*"),
    {
        "Effect": "Allow",
        "Principal": {"AWS": "999988887777"},
        "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
        "Resource": f"{ARN_HEAD}*",
    },
]


@pytest.mark.parametrize("statement", PACK_CASES, ids=lambda s: json.dumps(s)[:60])
def test_what_the_pack_refuses_make_plan_refuses_first(statement: dict[str, Any]) -> None:
    if pack_refuses(statement):
        assert program_refuses(statement), statement


def test_the_pack_and_the_program_agree_on_most_cases() -> None:
    both = sum(pack_refuses(s) and program_refuses(s) for s in PACK_CASES)
    # The program refuses more (it knows the account, the organization granted and the share);
    # the pack still catches most of what a change could slip past review.
    assert both >= len(PACK_CASES) // 2, both
