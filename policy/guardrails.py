"""Guardrails for ecr-ptc, as plain functions (tested with pytest) and the CrossGuard policies
that apply them to resources during `pulumi preview --policy-pack policy` and `pulumi up`.

Each validator takes plain values and returns the violations it found, one message each.
"""

from __future__ import annotations

import fnmatch
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

PULL_THROUGH_CACHE_SERVICE = "pullthroughcache.ecr.amazonaws.com"
ROLE = "aws:iam/role:Role"
REGISTRY_POLICY = "aws:ecr/registryPolicy:RegistryPolicy"
REPOSITORY_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
PULL_THROUGH_CACHE_RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"

# What an ECR registry or repository policy may grant: reading images, and the import that a
# pull-through cache asks for. IAM files BatchImportUpstreamImage under "Write", but it only lets
# the grantee copy images out, so it belongs with the reads.
READ_ACTIONS = frozenset(
    {
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:BatchImportUpstreamImage",
        "ecr:DescribeImages",
        "ecr:DescribeRepositories",
        "ecr:GetDownloadUrlForLayer",
        "ecr:GetImageCopyStatus",
        "ecr:ListImages",
    }
)
# Cross-account replication's own pair, which AWS allows in registry policies (even under V1)
# and which users keep there through ecr-ptc:extraRegistryPolicyStatements: the destination
# registry creating its repository and receiving images, not anyone writing to ours.
REPLICATION_ACTIONS = frozenset({"ecr:CreateRepository", "ecr:ReplicateImage"})
ORGANIZATION_CONDITION_KEY = "aws:principalorgid"
ORGANIZATION_PATHS_KEY = "aws:principalorgpaths"
# A path that pins an organization, a root and at least one OU before any wildcard.
PINNED_ORGANIZATION_PATH = re.compile(
    r"o-[a-z0-9]{10,32}/r-[0-9a-z]{4,32}/ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}/([^*]*/)?\*?", re.ASCII
)
# What a pull through the cache needs from the upstream: a Deny of any of these to everyone,
# with no condition, makes every pull fail.
CACHE_READS = ("ecr:BatchGetImage", "ecr:BatchImportUpstreamImage", "ecr:GetDownloadUrlForLayer",
               "ecr:GetImageCopyStatus")  # fmt: skip
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


def _conditioned_on_organization(statement: dict[str, Any]) -> bool:
    """A positive condition pinning a concrete organization (aws:PrincipalOrgID), or concrete
    OUs of one (aws:PrincipalOrgPaths, a multi-valued key: ForAnyValue)."""
    for operator, conditions in (statement.get("Condition") or {}).items():
        multi = operator.startswith("ForAnyValue:")
        base = operator.removeprefix("ForAnyValue:")
        if not base.startswith("String") or "Not" in base or "IfExists" in base:
            continue
        for key, values in conditions.items():
            found = _as_list(values)
            if not found or not all(isinstance(v, str) for v in found):
                continue
            if (
                not multi
                and key.lower() == ORGANIZATION_CONDITION_KEY
                and all(v.startswith("o-") and "*" not in v for v in found)
            ):
                return True
            if (
                multi
                and key.lower() == ORGANIZATION_PATHS_KEY
                and all(PINNED_ORGANIZATION_PATH.fullmatch(v) for v in found)
            ):
                return True
    return False


def _denies_cache_reads_to_everyone(statement: dict[str, Any]) -> list[str]:
    if statement.get("Effect") != "Deny" or statement.get("Condition"):
        return []
    everyone = "NotPrincipal" in statement or any(v == "*" for _, v in _principals(statement))
    if not everyone:
        return []
    if "NotAction" in statement:
        kept = [str(a).lower() for a in _as_list(statement["NotAction"])]
        return [a for a in CACHE_READS if not any(fnmatch.fnmatchcase(a.lower(), k) for k in kept)]
    patterns = [str(a).lower() for a in _as_list(statement.get("Action"))]
    return [a for a in CACHE_READS if any(fnmatch.fnmatchcase(a.lower(), p) for p in patterns)]


def resource_policy_violations(policy: str | dict[str, Any] | None, registry: bool) -> list[str]:
    """An ECR registry or repository policy grants reads only, and a wildcard principal only
    within an organization (aws:PrincipalOrgID)."""
    allowed = READ_ACTIONS | (REPLICATION_ACTIONS if registry else frozenset())
    violations = []
    for i, statement in enumerate(_statements(policy)):
        denied = _denies_cache_reads_to_everyone(statement)
        if denied:
            violations.append(
                f"{_label(statement, i)} denies {', '.join(denied)} to every principal with no "
                "condition: every pull through the cache would fail"
            )
        if statement.get("Effect") != "Allow":
            continue
        label = _label(statement, i)
        if "NotAction" in statement:
            violations.append(f"{label} uses NotAction: it grants every other action")
        for action in _as_list(statement.get("Action")):
            if action not in allowed:
                violations.append(
                    f"{label} grants {action}: a registry or repository policy may grant only "
                    f"{', '.join(sorted(allowed))}"
                )
        wildcard = "NotPrincipal" in statement or any(
            value == "*" for _, value in _principals(statement)
        )
        if wildcard and not _conditioned_on_organization(statement):
            violations.append(
                f"{label} grants a wildcard principal without an aws:PrincipalOrgID or "
                "aws:PrincipalOrgPaths condition pinning an organization"
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
        lambda typ, props: resource_policy_violations(props.get("policy"), typ == REGISTRY_POLICY),
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
