"""Guardrails for ecr-ptc, as plain functions (tested with pytest) and the CrossGuard policies
that apply them to resources during `pulumi preview --policy-pack policy` and `pulumi up`.

Each validator takes plain values and returns the violations it found, one message each.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from components.rules import quotas
from components.rules.policy_rules import (
    ECR_ACTIONS,
    EVENTS_SERVICE,
    PULL_THROUGH_CACHE_SERVICE,
    ROLE_SERVICES,
    Problem,
    Registry,
    alert_role_policy_problems,
    alert_rule_pattern_problems,
    alert_target_problems,
    alert_topic_policy_problems,
    denied_reads,
    events_source_problems,
    grants_in,
    is_alert_role_policy,
    statement_problems,
)

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MANAGED_POLICY = "aws:iam/policy:Policy"
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
REGISTRY_POLICY = "aws:ecr/registryPolicy:RegistryPolicy"
REPOSITORY_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
PULL_THROUGH_CACHE_RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"

ECR_REGISTRY_URL = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")


def _document(policy: str | dict[str, Any] | None) -> dict[str, Any]:
    if policy is None:
        return {}
    if isinstance(policy, str):
        parsed = json.loads(policy)
        return parsed if isinstance(parsed, dict) else {}
    return policy


def _statements(policy: str | dict[str, Any] | None) -> list[dict[str, Any]]:
    statements = _document(policy).get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _principals(statement: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, value) pairs; a bare "*" principal is ("*", "*")."""
    principal = statement.get("Principal")
    if principal == "*":
        return [("*", "*")]
    if isinstance(principal, dict):
        return [(kind, v) for kind, values in principal.items() for v in _as_list(values)]
    return []


def _label(statement: dict[str, Any], index: int) -> str:
    return f"statement {statement.get('Sid') or index}"


def _problem_texts(label: str, problems: list[Problem]) -> list[str]:
    return [f"{label}{p.path}: {p.value!r} is not valid: {p.valid}" for p in problems]


def trust_policy_violations(assume_role_policy: str | dict[str, Any] | None) -> list[str]:
    """Every role of an ecr-ptc stack is assumed by one AWS service, pull through cache or ECR
    (creation templates) or EventBridge (alerts to an event bus, only for the rules its
    aws:SourceArn and aws:SourceAccount conditions name), and by nothing else: no account, no
    federated identity, no wildcard, no NotPrincipal, only sts:AssumeRole."""
    violations = []
    statements = _statements(assume_role_policy)
    services: set[str] = set()
    for i, statement in enumerate(statements):
        if statement.get("Effect") != "Allow":
            continue
        label = _label(statement, i)
        if "NotPrincipal" in statement:
            violations.append(f"{label} uses NotPrincipal: it trusts almost anyone")
        if _as_list(statement.get("Action")) != ["sts:AssumeRole"]:
            violations.append(
                f"{label} allows {statement.get('Action') or statement.get('NotAction')!r}: a "
                "service role is assumed with sts:AssumeRole only"
            )
        for kind, value in _principals(statement):
            if value == "*" or "*" in value:
                violations.append(f"{label} trusts a wildcard principal ({kind}: {value})")
            elif kind != "Service" or value not in ROLE_SERVICES:
                violations.append(
                    f"{label} trusts {kind}: {value}; a role of ecr-ptc is assumed only by "
                    f"{' or '.join(ROLE_SERVICES)}"
                )
            else:
                services.add(value)
                if value == EVENTS_SERVICE:
                    violations += _problem_texts(label, events_source_problems(statement))
    if len(services) > 1:
        violations.append(
            f"the role trusts {' and '.join(sorted(services))}: one service per role, so that "
            f"{PULL_THROUGH_CACHE_SERVICE} can never act with a template role's key access"
        )
    return violations


# What the roles and the consumer policy of a stack may be allowed: ECR's actions, and the KMS
# use of a creation template's key (components/plan/policies.py writes nothing else).
IDENTITY_KMS_ACTIONS = frozenset({"kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant"})
# The one action that has no resource type: it alone may be granted on "*".
REGISTRY_LOGIN_ACTION = "ecr:GetAuthorizationToken"
_ECR_REPOSITORY = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov):ecr:[a-z0-9*-]+:[0-9]{12}:repository/[a-z0-9._/*-]+", re.ASCII
)
_KMS_KEY = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov):kms:[a-z0-9-]+:[0-9]{12}:key/[a-z0-9-]+", re.ASCII
)


def identity_policy_violations(
    policy: str | dict[str, Any] | None, managed: bool = False
) -> list[str]:
    """A role policy or managed policy of an ecr-ptc stack allows ECR and a template key's KMS
    use only, on repository and key ARNs (ecr:GetAuthorizationToken alone on "*"): no IAM, no
    STS, no other service, no NotAction or NotResource. An alert role's inline policy (one that
    allows events:PutEvents) allows exactly that, on event bus ARNs, and nothing else; a managed
    policy (`managed`, the consumer policy, attached to roles the stack does not own) is never
    an alert role's."""
    if not managed and is_alert_role_policy(_document(policy)):
        return _problem_texts(
            "the alert role's policy ", alert_role_policy_problems(_document(policy))
        )
    violations = []
    for i, statement in enumerate(_statements(policy)):
        if statement.get("Effect") != "Allow":
            continue
        label = _label(statement, i)
        for element in ("NotAction", "NotResource"):
            if element in statement:
                violations.append(f"{label} uses {element}: it allows everything it does not list")
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        for action in actions:
            if action not in ECR_ACTIONS and action not in IDENTITY_KMS_ACTIONS:
                violations.append(
                    f"{label} allows {action}: an ecr-ptc role or consumer policy allows only ECR "
                    "actions (named, no wildcard) and kms:CreateGrant, DescribeKey, RetireGrant"
                )
        for resource in (str(r) for r in _as_list(statement.get("Resource"))):
            if resource == "*":
                if set(actions) != {REGISTRY_LOGIN_ACTION}:
                    violations.append(
                        f'{label} allows {", ".join(actions)} on "*": only '
                        f"{REGISTRY_LOGIN_ACTION} has no resource to name"
                    )
            elif not (_ECR_REPOSITORY.fullmatch(resource) or _KMS_KEY.fullmatch(resource)):
                violations.append(f"{label} names {resource}: only ECR repository and KMS key ARNs")
    return violations


def attachment_violations(policy_arn: Any) -> list[str]:
    """A stack attaches only its own consumer policy: never an AWS managed policy (known once
    the ARN is; an ARN computed during the preview is checked at the update)."""
    if isinstance(policy_arn, str) and ":iam::aws:policy/" in policy_arn:
        return [
            f"the attachment names the AWS managed policy {policy_arn}: an ecr-ptc stack attaches "
            "only its consumer policy"
        ]
    return []


def resource_policy_violations(
    policy: str | dict[str, Any] | None, registry: bool, region: str | None = None
) -> list[str]:
    """An ECR registry or repository policy breaks none of components/rules/policy_rules.py's rules
    (the ones `make plan` applies to ecr-ptc:extraRegistryPolicyStatements), and no Deny without
    a Condition takes a cache read from every grantee of one of its own Allow statements."""
    statements = _statements(policy)
    problems = [statement_problems(s, Registry(region=region), registry) for s in statements]
    # Only statements that break no rule are compared: a refused one is reported as such, and
    # its patterns are not worth the time of comparing.
    grants = grants_in(s for s, found in zip(statements, problems, strict=True) if not found)
    violations = []
    for i, (statement, found) in enumerate(zip(statements, problems, strict=True)):
        label = _label(statement, i)
        for problem in found:
            violations.append(
                f"{label}{problem.path}: {problem.value!r} is not valid: {problem.valid}"
            )
        if found:
            continue
        for grant in grants:
            grantees, denied = denied_reads(statement, grant)
            if denied:
                violations.append(
                    f"{label} denies {', '.join(denied)} to {', '.join(grantees)} with no "
                    "condition: every pull through their cache would fail"
                )
    return violations


def policy_size_violations(policy: str | None, what: str) -> list[str]:
    limit = quotas.REGISTRY_POLICY_MAX_CHARS
    if policy is not None and len(policy) > limit:
        return [f"the {what} is {len(policy)} characters, over AWS's limit of {limit}"]
    return []


def rule_violations(upstream_registry_url: str | None, custom_role_arn: str | None) -> list[str]:
    """A rule caching from an ECR registry names the role ECR assumes to read it."""
    is_ecr = bool(upstream_registry_url and ECR_REGISTRY_URL.match(upstream_registry_url))
    if is_ecr and not custom_role_arn:
        return [
            f"the rule caches from the ECR registry {upstream_registry_url} but has no "
            "custom_role_arn: ECR needs a role to read another account's registry"
        ]
    return []


def topic_policy_violations(policy: str | dict[str, Any] | None) -> list[str]:
    """An ecr-ptc topic (an alert topic) lets EventBridge publish to it for the rules its
    conditions name, and nobody anything else."""
    if policy is None:
        return []
    return _problem_texts("the topic policy's ", alert_topic_policy_problems(_document(policy)))


def event_target_violations(arn: Any, role_arn: Any) -> list[str]:
    """A target is an SNS topic or an event bus; a bus is sent to with a role, a topic takes
    none."""
    return _problem_texts("the target", alert_target_problems(arn, role_arn))


def event_rule_violations(event_pattern: Any) -> list[str]:
    """An ecr-ptc rule (an alert rule) matches ECR's events of the alert kinds only."""
    try:
        pattern = json.loads(event_pattern) if isinstance(event_pattern, str) else event_pattern
    except json.JSONDecodeError:
        pattern = event_pattern
    return _problem_texts("the event pattern", alert_rule_pattern_problems(pattern))


def _policy(
    name: str,
    description: str,
    resource_types: Iterable[str],
    check: Callable[[str, Mapping[str, Any]], list[str]],
) -> ResourceValidationPolicy:
    types = frozenset(resource_types)

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type in types:
            for message in check(args.resource_type, args.props):
                report_violation(message, None)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=validate,
    )


POLICIES: list[Policy] = [
    _policy(
        "ptc-role-trusts-only-the-cache-service",
        "Every role is assumed by one service, pull through cache, ECR or (an alert role, for its "
        "rule only) EventBridge, and nothing else.",
        [ROLE],
        lambda _, props: trust_policy_violations(props.get("assumeRolePolicy")),
    ),
    _policy(
        "ecr-ptc-identity-policies-allow-ecr-only",
        "Role and managed policies allow only ECR and a template key's KMS use, on ARNs; an "
        "alert role's inline policy only events:PutEvents on event bus ARNs.",
        [ROLE_POLICY, MANAGED_POLICY],
        lambda typ, props: identity_policy_violations(
            props.get("policy"), managed=typ == MANAGED_POLICY
        ),
    ),
    _policy(
        "ecr-ptc-attaches-only-its-consumer-policy",
        "No AWS managed policy is attached to a role.",
        [ROLE_POLICY_ATTACHMENT],
        lambda _, props: attachment_violations(props.get("policyArn")),
    ),
    _policy(
        "ecr-policy-grants-reads-only",
        "An ECR registry or repository policy grants no write action and no wildcard principal "
        "outside an aws:PrincipalOrgID condition.",
        [REGISTRY_POLICY, REPOSITORY_POLICY],
        lambda typ, props: resource_policy_violations(
            props.get("policy"),
            typ == REGISTRY_POLICY,
            props.get("region") if isinstance(props.get("region"), str) else None,
        ),
    ),
    _policy(
        "ecr-upstream-rule-has-custom-role",
        "A pull-through-cache rule whose upstream is an ECR registry has custom_role_arn.",
        [PULL_THROUGH_CACHE_RULE],
        lambda _, props: rule_violations(
            props.get("upstreamRegistryUrl"), props.get("customRoleArn")
        ),
    ),
    _policy(
        "ecr-ptc-alert-topics-let-only-eventbridge-publish",
        "An SNS topic policy allows only events.amazonaws.com sns:Publish on the topic, for the "
        "rules its aws:SourceArn and aws:SourceAccount conditions name.",
        [TOPIC_POLICY, TOPIC],
        lambda _, props: topic_policy_violations(props.get("policy")),
    ),
    _policy(
        "ecr-ptc-alert-targets-send-to-a-bus-with-a-role",
        "An EventBridge target is an SNS topic or an event bus; a bus target names the role it "
        "is sent with, a topic target none.",
        [EVENT_TARGET],
        lambda _, props: event_target_violations(props.get("arn"), props.get("roleArn")),
    ),
    _policy(
        "ecr-ptc-alert-rules-match-only-ecr-alerts",
        "An EventBridge rule's pattern pins source to aws.ecr and detail-type to the alerts' "
        "kinds (ECR Pull Through Cache Action, AWS API Call via CloudTrail).",
        [EVENT_RULE],
        lambda _, props: event_rule_violations(props.get("eventPattern")),
    ),
    _policy(
        "ecr-policy-within-quota",
        "ECR registry and repository policy text is within 10,240 characters.",
        [REGISTRY_POLICY, REPOSITORY_POLICY],
        lambda typ, props: policy_size_violations(
            props.get("policy"),
            "registry policy" if typ == REGISTRY_POLICY else "repository policy",
        ),
    ),
]
