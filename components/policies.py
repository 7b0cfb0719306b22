"""IAM and ECR policy documents as plain data, and their canonical text.

Every function here is pure: no Pulumi, no AWS. The same grants give the same text whatever the
order of the inputs, so a preview diff shows a change only when the grant changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from components.aws_names import account_root_arn
from components.config_error import ConfigError

PolicyDocument = dict[str, Any]
Statement = dict[str, Any]

POLICY_VERSION = "2012-10-17"

# What the upstream grants the downstream accounts, and what the cache role may do with upstream
# images: read the image and its layers, and ask the upstream to export it to the cache.
CACHE_READ_ACTIONS = (
    "ecr:BatchGetImage",
    "ecr:BatchImportUpstreamImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:GetImageCopyStatus",
)
# What the cache role may do to the cache repositories of its own account: write the copied image.
CACHE_WRITE_ACTIONS = (
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
)
# The one action the cache role holds on "*": GetAuthorizationToken has no resource type in IAM,
# so it cannot be scoped to a repository.
REGISTRY_LOGIN_ACTION = "ecr:GetAuthorizationToken"

PULL_THROUGH_CACHE_SERVICE = "pullthroughcache.ecr.amazonaws.com"

# Sids of the statements this program owns in a registry policy. Statements supplied through
# extraRegistryPolicyStatements may not use them.
ACCOUNTS_READ_SID = "EcrPtcDownstreamAccountsRead"
ORGANIZATION_READ_SID = "EcrPtcOrganizationRead"
OWNED_SIDS = (ACCOUNTS_READ_SID, ORGANIZATION_READ_SID)


def canonical_json(document: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace: equal documents give byte-identical text."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _one_or_sorted(values: Iterable[str]) -> str | list[str]:
    unique = sorted(set(values))
    return unique[0] if len(unique) == 1 else unique


def _sorted_statements(statements: Iterable[Statement]) -> list[Statement]:
    return sorted(statements, key=lambda s: (str(s.get("Sid", "")), canonical_json(s)))


def upstream_read_statements(
    partition: str,
    downstream_account_ids: Sequence[str],
    organization_id: str | None,
    resource: str | None,
) -> list[Statement]:
    """The upstream's grant to the downstream accounts and/or the organization.

    `resource` is the repository ARN pattern for a registry policy, or None for a repository
    policy (which applies to its own repository and takes no Resource element).
    """
    scope: Statement = {} if resource is None else {"Resource": resource}
    statements: list[Statement] = []
    if downstream_account_ids:
        statements.append(
            {
                "Sid": ACCOUNTS_READ_SID,
                "Effect": "Allow",
                "Principal": {
                    "AWS": _one_or_sorted(
                        account_root_arn(partition, a) for a in downstream_account_ids
                    )
                },
                "Action": sorted(CACHE_READ_ACTIONS),
                **scope,
            }
        )
    if organization_id is not None:
        statements.append(
            {
                "Sid": ORGANIZATION_READ_SID,
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": sorted(CACHE_READ_ACTIONS),
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": organization_id}},
                **scope,
            }
        )
    return statements


def policy_document(statements: Iterable[Statement]) -> PolicyDocument:
    return {"Version": POLICY_VERSION, "Statement": _sorted_statements(statements)}


def cache_role_trust_policy() -> PolicyDocument:
    """Exactly the pull-through-cache service principal. AWS documents no condition keys for it,
    so none is added: an unsupported condition would only stop the service from assuming it."""
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Service": PULL_THROUGH_CACHE_SERVICE},
                "Action": "sts:AssumeRole",
            }
        ]
    )


def cache_role_permissions(
    upstream_repository_arns: Iterable[str], cache_repository_arns: Iterable[str]
) -> PolicyDocument:
    """What ECR needs, acting as the cache role, to copy upstream images into this account."""
    return policy_document(
        [
            {
                "Sid": "RegistryLogin",
                "Effect": "Allow",
                "Action": REGISTRY_LOGIN_ACTION,
                "Resource": "*",
            },
            {
                "Sid": "ReadUpstream",
                "Effect": "Allow",
                "Action": sorted(CACHE_READ_ACTIONS),
                "Resource": _one_or_sorted(upstream_repository_arns),
            },
            {
                "Sid": "FillCache",
                "Effect": "Allow",
                "Action": sorted(CACHE_READ_ACTIONS + CACHE_WRITE_ACTIONS),
                "Resource": _one_or_sorted(cache_repository_arns),
            },
        ]
    )


class PolicyTooLargeError(ConfigError):
    """The config asks for a grant larger than AWS accepts."""


def require_within(text: str, limit: int, what: str, key: str, value: object, advice: str) -> str:
    """Return `text`, or fail naming the config key behind it, the sizes and what to do."""
    if len(text) > limit:
        raise PolicyTooLargeError(
            key,
            value,
            f"the {what} would be {len(text)} characters, over the AWS quota of {limit}; {advice}",
        )
    return text
