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

from components import quotas
from components.policy_rules import Registry, denied_reads, grants_in, statement_problems

PULL_THROUGH_CACHE_SERVICE = "pullthroughcache.ecr.amazonaws.com"
ROLE = "aws:iam/role:Role"
REGISTRY_POLICY = "aws:ecr/registryPolicy:RegistryPolicy"
REPOSITORY_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
PULL_THROUGH_CACHE_RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"

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


def trust_policy_violations(assume_role_policy: str | dict[str, Any] | None) -> list[str]:
    """A role that the pull-through-cache service may assume must trust that service alone."""
    statements = _statements(assume_role_policy)
    trusts_cache = any(
        ("Service", PULL_THROUGH_CACHE_SERVICE) in _principals(s)
        for s in statements
        if s.get("Effect") == "Allow"
    )
    if not trusts_cache:
        return []
    violations = []
    for i, statement in enumerate(statements):
        if statement.get("Effect") != "Allow":
            continue
        if "NotPrincipal" in statement:
            violations.append(f"{_label(statement, i)} uses NotPrincipal: it trusts almost anyone")
        for kind, value in _principals(statement):
            if value == "*" or "*" in value:
                violations.append(
                    f"{_label(statement, i)} trusts a wildcard principal ({kind}: {value})"
                )
            elif (kind, value) != ("Service", PULL_THROUGH_CACHE_SERVICE):
                violations.append(
                    f"{_label(statement, i)} also trusts {kind}: {value}; a pull-through-cache "
                    f"role must trust only {PULL_THROUGH_CACHE_SERVICE}"
                )
    return violations


def resource_policy_violations(
    policy: str | dict[str, Any] | None, registry: bool, region: str | None = None
) -> list[str]:
    """An ECR registry or repository policy breaks none of components/policy_rules.py's rules
    (the ones `make plan` applies to ecr-ptc:extraRegistryPolicyStatements), and no Deny without
    a Condition takes a cache read from every grantee of one of its own Allow statements."""
    statements = _statements(policy)
    grants = grants_in(statements)
    violations = []
    for i, statement in enumerate(statements):
        label = _label(statement, i)
        for problem in statement_problems(statement, Registry(region=region), registry):
            violations.append(
                f"{label}{problem.path}: {problem.value!r} is not valid: {problem.valid}"
            )
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
        "A role trusted by pullthroughcache.ecr.amazonaws.com trusts nothing else, no wildcard.",
        [ROLE],
        lambda _, props: trust_policy_violations(props.get("assumeRolePolicy")),
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
        "ecr-policy-within-quota",
        "ECR registry and repository policy text is within 10,240 characters.",
        [REGISTRY_POLICY, REPOSITORY_POLICY],
        lambda typ, props: policy_size_violations(
            props.get("policy"),
            "registry policy" if typ == REGISTRY_POLICY else "repository policy",
        ),
    ),
]
