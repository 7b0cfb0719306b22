"""What a policy document lets through, as `make doctor` reads it: a role's trust, the
upstream's registry or repository policy, and IAM's policy simulator for identity policies.

Pure functions of documents and answers (the simulator's client aside): the rules of what a
grant is come from components/rules/policy_rules.py, the program's and the policy pack's own.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.plan.policies import REQUESTED_REGION_KEY
from components.rules.policy_rules import (
    CACHE_READ_ACTIONS,
    ORGANIZATION_ID_KEY,
    ORGANIZATION_PATHS_KEY,
    Grant,
    as_list,
    conditioned_on_organization,
    denied_reads,
    glob_covers,
    grants_in,
)

# A link's verdict.
OK, BROKEN, UNKNOWN = "ok", "BROKEN", "UNKNOWN"


def policy_document_of(value: Any) -> dict[str, Any]:
    """A policy document as IAM returns it: boto3 decodes it; a raw answer is URL-encoded."""
    if isinstance(value, Mapping):
        return dict(value)
    text = str(value or "{}")
    if text.lstrip().startswith("%") or not text.lstrip().startswith("{"):
        text = urllib.parse.unquote(text)
    parsed = json.loads(text)
    return parsed if isinstance(parsed, dict) else {}


def statements_of(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for s in as_list(document.get("Statement")) if isinstance(s, dict)]


def _action_matches(patterns: Iterable[Any], action: str) -> bool:
    return any(isinstance(p, str) and glob_covers(p.lower(), action.lower()) for p in patterns)


def trust_verdict(document: Mapping[str, Any], service: str) -> tuple[str, str]:
    """(status, detail) of a role's trust policy for `service` assuming it."""
    allows, conditioned, denies = False, False, False
    others: set[str] = set()
    for statement in statements_of(document):
        principal = statement.get("Principal")
        services = as_list(principal.get("Service")) if isinstance(principal, Mapping) else []
        if principal == "*":
            services = ["*"]
        names = service in services or "*" in services
        if not _action_matches(as_list(statement.get("Action")), "sts:AssumeRole"):
            continue
        if statement.get("Effect") == "Deny" and names:
            denies = True
        elif statement.get("Effect") == "Allow":
            if names:
                allows = True
                conditioned = conditioned or bool(statement.get("Condition"))
            else:
                others.update(str(p) for p in services)
                if isinstance(principal, Mapping):
                    others.update(str(p) for p in as_list(principal.get("AWS")))
    if denies:
        return BROKEN, f"its trust policy denies {service} sts:AssumeRole"
    if not allows:
        trusted = ", ".join(sorted(others)) or "no one"
        return BROKEN, f"it trusts {trusted}, not {service}: ECR cannot assume it"
    if conditioned:
        return UNKNOWN, (
            f"it trusts {service} only under a Condition, and AWS documents no condition keys "
            "for it: ECR may be refused. Drop the Condition (the stack's role has none)"
        )
    return OK, f"trusts {service}"


# --- the upstream's grant -----------------------------------------------------------------------


@dataclass(frozen=True)
class GrantFinding:
    status: str
    detail: str
    needs_organization: bool = False  # the answer depends on this account's organization


def _grantees(statements: Iterable[Mapping[str, Any]]) -> list[str]:
    found: set[str] = set()
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        for grant in grants_in([statement]):
            found.update(grant.account_ids)
            if grant.everyone:
                condition = statement.get("Condition") or {}
                pinned = sorted(
                    str(v)
                    for block in condition.values()
                    if isinstance(block, Mapping)
                    for key, values in block.items()
                    if key.lower() in (ORGANIZATION_ID_KEY.lower(), ORGANIZATION_PATHS_KEY.lower())
                    for v in as_list(values)
                )
                found.add(f"organization {', '.join(pinned)}" if pinned else "everyone")
    return sorted(found)


def grant_finding(
    statements: Sequence[Mapping[str, Any]],
    account_id: str,
    needed: Sequence[str],
    organization_id: str | None,
    what: str,
) -> GrantFinding:
    """Whether the upstream's policy statements let `account_id` read every repository glob in
    `needed` with each of CACHE_READ_ACTIONS. `organization_id`: the account's organization
    ("" when it is in none, None when not known)."""
    covered: dict[str, set[str]] = {a: set() for a in CACHE_READ_ACTIONS}
    how: set[str] = set()
    by_organization_unknown = False
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        for grant in grants_in([statement]):
            if account_id in grant.account_ids:
                how.add("by account")
            elif grant.everyone and not statement.get("Condition"):
                how.add("to everyone")
            elif grant.everyone and conditioned_on_organization(statement):
                if organization_id is None:
                    by_organization_unknown = True
                    continue
                if not organization_id or not conditioned_on_organization(
                    statement, organization_id
                ):
                    continue
                ous = ORGANIZATION_PATHS_KEY.lower() in json.dumps(statement).lower()
                how.add(
                    f"by OU paths of {organization_id} (this account's OU is not checked)"
                    if ous
                    else f"by organization {organization_id}"
                )
            else:
                continue
            for glob in needed:
                if any(glob_covers(r, glob) for r in grant.repositories):
                    for action in grant.actions:
                        covered[action].add(glob)
    missing = {a: [g for g in needed if g not in covered[a]] for a in CACHE_READ_ACTIONS}
    missing = {a: g for a, g in missing.items() if g}
    whole = Grant((account_id,), False, tuple(needed), CACHE_READ_ACTIONS)
    for statement in statements:
        grantees, actions = denied_reads(statement, whole)
        if grantees:
            sid = statement.get("Sid", "<no Sid>")
            return GrantFinding(
                BROKEN,
                f"{what} denies {account_id} {', '.join(actions)} (statement {sid}): remove "
                "that Deny or narrow it, then pulls of new images can fill the cache again",
            )
    if not missing:
        return GrantFinding(OK, f"{what} grants {account_id} {', '.join(sorted(how))}")
    if by_organization_unknown:
        return GrantFinding(UNKNOWN, "", needs_organization=True)
    fix = (
        f"Add {account_id} to the upstream stack's ecr-ptc:downstreamAccountIds (or grant its "
        "organization, ecr-ptc:organizationId) and `make up` the upstream"
    )
    if len(missing) == len(CACHE_READ_ACTIONS) and not how:
        others = _grantees(statements)
        return GrantFinding(
            BROKEN,
            f"{what} grants this account ({account_id}) nothing; it grants "
            f"{', '.join(others) or 'no one'}. The cache cannot copy any image. {fix}",
        )
    gaps = "; ".join(f"{a} on {', '.join(g)}" for a, g in sorted(missing.items()))
    return GrantFinding(
        BROKEN,
        f"{what} grants {account_id} too little: missing {gaps}. {fix} (its grant covers "
        "every action a cache fill needs)",
    )


# --- IAM's simulator ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Denial:
    action: str
    resource: str
    decision: str
    missing_context: tuple[str, ...] = ()

    def text(self) -> str:
        extra = (
            f", missing context {', '.join(self.missing_context)}" if self.missing_context else ""
        )
        return f"{self.action} on {self.resource} ({self.decision}{extra})"


def _context(values: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"ContextKeyName": key, "ContextKeyValues": [value], "ContextKeyType": kind}
        for key, (value, kind) in sorted(values.items())
    ]


def simulate(
    iam: Any,
    role_arn: str,
    actions: Sequence[str],
    resources: Sequence[str] | None,
    context: Mapping[str, tuple[str, str]],
) -> list[Denial]:
    """What IAM's policy simulator denies the role among `actions` on `resources` (None: "*"),
    with `context` (key -> (value, type)): the conditions of our policies need
    aws:RequestedRegion, which the simulator does not fill in itself."""
    params: dict[str, Any] = {
        "PolicySourceArn": role_arn,
        "ActionNames": sorted(set(actions)),
        "ContextEntries": _context(context),
    }
    if resources is not None:
        params["ResourceArns"] = sorted(set(resources))
    denials: list[Denial] = []
    while True:
        page = iam.simulate_principal_policy(**params)
        for result in page.get("EvaluationResults", []):
            if result.get("EvalDecision") != "allowed":
                denials.append(
                    Denial(
                        result["EvalActionName"],
                        result.get("EvalResourceName", "*"),
                        result.get("EvalDecision", "implicitDeny"),
                        tuple(result.get("MissingContextValues") or ()),
                    )
                )
        if not page.get("IsTruncated"):
            return denials
        params["Marker"] = page["Marker"]


def region_context(region: str) -> dict[str, tuple[str, str]]:
    return {REQUESTED_REGION_KEY: (region, "string")}


def denials_text(denials: Sequence[Denial], show: Callable[[str], str] = lambda r: r) -> str:
    by_resource: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for d in denials:
        key = (show(d.resource), d.decision, d.missing_context)
        by_resource.setdefault(key, []).append(d.action)
    parts = []
    for (resource, decision, missing), actions in sorted(by_resource.items()):
        extra = f", missing context {', '.join(missing)}" if missing else ""
        parts.append(f"{', '.join(sorted(set(actions)))} on {resource} ({decision}{extra})")
    return "; ".join(parts)
