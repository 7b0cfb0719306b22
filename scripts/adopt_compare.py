"""How what exists differs from what the stack declares (`make adopt`), field by field, in the
terms `pulumi preview` will show: the pulumi-aws argument, what AWS holds, what the stack sets,
and whether the change replaces the resource.

These comparisons predict pulumi-aws's diff; they are not it. They follow what its Terraform
resources compare: policies by meaning rather than text (SuppressEquivalentPolicyDiffs on
aws_ecr_registry_policy's `policy`), lifecycle policies as JSON, and the fields that force
replacement (a rule's upstream URL and upstream prefix, a role's path).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from components.plan.stack_plan import Ref

ROOT = "ROOT"
NONE = "(none)"
_ROOT_PRINCIPAL = re.compile(r"^arn:[a-z-]+:iam::(\d{12}):root$")

# A Ref the stack resolves itself: the value an adopted resource already has, or None when the
# resource is one the stack creates.
Resolve = Callable[[Ref], str | None]


@dataclass(frozen=True)
class Difference:
    field: str  # the pulumi-aws argument, as `pulumi preview` names it
    have: str
    want: str
    replaces: bool = False
    hint: str = ""

    def text(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.field}: {self.have} -> {self.want}{hint}"


def _want(value: Any, resolve: Resolve, what: Mapping[str, str]) -> str:
    if isinstance(value, Ref):
        existing = resolve(value)
        if existing is not None:
            return existing
        return f"the {what.get(value.resource, 'resource')} this stack creates ({value.resource})"
    return NONE if value in (None, "") else str(value)


def _same(have: Any, want: Any, resolve: Resolve) -> bool:
    if isinstance(want, Ref):
        existing = resolve(want)
        return existing is not None and existing == have
    return (have or None) == (want or None)


# --- policies ------------------------------------------------------------------------------------


def _canonical(value: Any, key: str = "") -> Any:
    """A policy element in a form where IAM-equivalent spellings are equal: a one-element list
    and its element, any order of a list, an account ID and its root ARN as principal."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, _canonical(v, k)) for k, v in value.items()))
    if isinstance(value, list):
        items = sorted({_canonical(v, key) for v in value}, key=repr)
        return items[0] if len(items) == 1 else tuple(items)
    if key == "AWS" and isinstance(value, str):
        root = _ROOT_PRINCIPAL.match(value)
        return root.group(1) if root else value
    return value


def policy_document(text: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(text, Mapping):
        return dict(text)
    try:
        return dict(json.loads(text))
    except ValueError:
        # IAM hands some documents URL-encoded.
        return dict(json.loads(urllib.parse.unquote(text)))


def statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = document.get("Statement") or []
    return [found] if isinstance(found, Mapping) else list(found)


def _statement_key(statement: Mapping[str, Any]) -> Any:
    return _canonical(dict(statement))


def policy_changes(have: str | Mapping[str, Any], want: str) -> tuple[list[Any], list[Any]]:
    """The statements the stack adds and those it removes, equivalent spellings counted equal."""
    have_doc, want_doc = policy_document(have), policy_document(want)
    ours = [_statement_key(s) for s in statements(want_doc)]
    theirs = [_statement_key(s) for s in statements(have_doc)]
    added = [s for s, key in zip(statements(want_doc), ours, strict=True) if key not in theirs]
    removed = [s for s, key in zip(statements(have_doc), theirs, strict=True) if key not in ours]
    return added, removed


def policy_difference(
    field: str, have: str | Mapping[str, Any], want: str, keep_hint: str = ""
) -> Difference | None:
    added, removed = policy_changes(have, want)
    version_differs = policy_document(have).get("Version") != policy_document(want).get("Version")
    if not added and not removed and not version_differs:
        return None
    names = [str(s.get("Sid") or f"#{i}") for i, s in enumerate(removed)]
    removing = f", removes {len(removed)} ({', '.join(names)})" if removed else ""
    return Difference(
        field,
        f"{len(statements(policy_document(have)))} statements",
        f"adds {len(added)}{removing}",
        hint=keep_hint if removed else "",
    )


def _lifecycle(text: str | None) -> Any:
    if not text:
        return None
    document = json.loads(text)
    rules = sorted(document.get("rules") or [], key=lambda r: r.get("rulePriority", 0))
    return _canonical({**document, "rules": [_canonical(r) for r in rules]})


# --- resources -----------------------------------------------------------------------------------


def rule_differences(
    planned: Mapping[str, Any], found: Mapping[str, Any], resolve: Resolve, what: Mapping[str, str]
) -> list[Difference]:
    diffs = []
    url, have_url = planned["upstream_registry_url"], found.get("upstreamRegistryUrl") or NONE
    if have_url != url:
        diffs.append(Difference("upstreamRegistryUrl", have_url, url, replaces=True))
    want_prefix = planned.get("upstream_repository_prefix") or ROOT
    have_prefix = found.get("upstreamRepositoryPrefix") or ROOT
    if have_prefix != want_prefix:
        diffs.append(Difference("upstreamRepositoryPrefix", have_prefix, want_prefix, True))
    role = planned.get("custom_role_arn")
    if not _same(found.get("customRoleArn"), role, resolve):
        keep = "or set ecr-ptc:cacheRoleArn to keep the role it has"
        have_role = found.get("customRoleArn") or NONE
        want_role = _want(role, resolve, what)
        diffs.append(Difference("customRoleArn", have_role, want_role, hint=keep))
    if found.get("credentialArn") and not planned.get("credential_arn"):
        diffs.append(Difference("credentialArn", found["credentialArn"], NONE))
    return diffs


def _encryption(planned: Any) -> tuple[str, str]:
    first = (planned or [{}])[0]
    return (first.get("encryption_type") or "AES256", first.get("kms_key") or "")


def _compared(field: str, have: Any, want: Any) -> list[Difference]:
    return [] if have == want else [Difference(field, _shown(have), _shown(want))]


def template_differences(
    planned: Mapping[str, Any], found: Mapping[str, Any], resolve: Resolve, what: Mapping[str, str]
) -> list[Difference]:
    encryption = found.get("encryptionConfiguration") or {}
    have_filters = found.get("imageTagMutabilityExclusionFilters") or []
    want_filters = planned.get("image_tag_mutability_exclusion_filters") or []
    diffs = [
        *_compared(
            "appliedFors", sorted(found.get("appliedFor") or []), sorted(planned["applied_fors"])
        ),
        *_compared("description", found.get("description") or "", planned.get("description") or ""),
        *_compared(
            "encryptionConfigurations",
            [encryption.get("encryptionType") or "AES256", encryption.get("kmsKey") or ""],
            list(_encryption(planned.get("encryption_configurations"))),
        ),
        *_compared(
            "imageTagMutability",
            found.get("imageTagMutability") or "MUTABLE",
            str(planned.get("image_tag_mutability") or "MUTABLE"),
        ),
        *_compared(
            "imageTagMutabilityExclusionFilters",
            [[f["filterType"], f["filter"]] for f in have_filters],
            [[f["filter_type"], f["filter"]] for f in want_filters],
        ),
    ]
    have_lifecycle, want_lifecycle = found.get("lifecyclePolicy"), planned.get("lifecycle_policy")
    if _lifecycle(have_lifecycle) != _lifecycle(want_lifecycle):
        diffs.append(Difference("lifecyclePolicy", _brief(have_lifecycle), _brief(want_lifecycle)))
    if found.get("repositoryPolicy") and not planned.get("repository_policy"):
        diffs.append(Difference("repositoryPolicy", "set", NONE))
    diffs += _compared(
        "resourceTags",
        {t["Key"]: t["Value"] for t in found.get("resourceTags") or []},
        dict(planned.get("resource_tags") or {}),
    )
    role = planned.get("custom_role_arn")
    if not _same(found.get("customRoleArn"), role, resolve):
        have_role = found.get("customRoleArn") or NONE
        diffs.append(Difference("customRoleArn", have_role, _want(role, resolve, what)))
    return diffs


def role_differences(planned: Mapping[str, Any], found: Mapping[str, Any]) -> list[Difference]:
    diffs = []
    trust = policy_difference(
        "assumeRolePolicy", found["AssumeRolePolicyDocument"], planned["assume_role_policy"]
    )
    if trust is not None:
        diffs.append(trust)
    have_path, want_path = found.get("Path") or "/", planned.get("path") or "/"
    if have_path != want_path:
        diffs.append(Difference("path", have_path, want_path, replaces=True))
    boundary = (found.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
    return [
        *diffs,
        *_compared("description", found.get("Description") or "", planned.get("description") or ""),
        *_compared("permissionsBoundary", boundary, planned.get("permissions_boundary")),
        *_compared(
            "tags",
            {t["Key"]: t["Value"] for t in found.get("Tags") or []},
            dict(planned.get("tags") or {}),
        ),
    ]


def _shown(value: Any) -> str:
    if value in (None, "", [], {}):
        return NONE
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _brief(text: str | None) -> str:
    if not text:
        return NONE
    compact = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    return compact if len(compact) <= 80 else compact[:77] + "..."
