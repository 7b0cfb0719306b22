"""IAM and ECR policy documents as plain data, and their canonical text.

Every function here is pure: no Pulumi, no AWS. The same grants give the same text whatever the
order of the inputs, so a preview diff shows a change only when the grant changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..inputs.errors import ConfigError
from ..rules.aws_names import account_root_arn
from ..rules.policy_rules import (
    CACHE_READ_ACTIONS,
    ECR_SERVICE,
    EVENTS_SERVICE,
    PULL_THROUGH_CACHE_SERVICE,
    PUT_EVENTS_ACTION,
    SOURCE_ACCOUNT_KEY,
    SOURCE_ARN_KEY,
    TOPIC_PUBLISH_ACTION,
)

PolicyDocument = dict[str, Any]
Statement = dict[str, Any]

POLICY_VERSION = "2012-10-17"

# What the upstream grants the downstream accounts, and what the cache role may do with upstream
# images: read the image and its layers, and ask the upstream to export it to the cache
# (policy_rules.CACHE_READ_ACTIONS, which the policy pack shares).
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


# What ECR does, as the template's role, when it creates a cache repository from a template.
TEMPLATE_REPOSITORY_ACTIONS = ("ecr:CreateRepository", "ecr:ReplicateImage", "ecr:TagResource")
TEMPLATE_KMS_ACTIONS = ("kms:DescribeKey", "kms:RetireGrant")
# ECR creates a grant on the key for the repository it encrypts: only for an AWS resource
# (kms:GrantIsForAWSResource), so the role cannot hand the key to anyone else.
TEMPLATE_KMS_GRANT_ACTION = "kms:CreateGrant"
GRANT_FOR_AWS_RESOURCE = {"Bool": {"kms:GrantIsForAWSResource": "true"}}

# What a principal that pulls through the cache needs beyond a plain pull: the import that
# triggers the copy and, on a repository's first pull, its creation.
CONSUMER_PULL_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:BatchImportUpstreamImage",
    "ecr:CreateRepository",
    "ecr:GetDownloadUrlForLayer",
)
CONSUMER_TAG_ACTION = "ecr:TagResource"

# Sids of the statements this program owns in a registry policy. Statements supplied through
# extraRegistryPolicyStatements may not use them.
ACCOUNTS_READ_SID = "EcrPtcDownstreamAccountsRead"
ORGANIZATION_READ_SID = "EcrPtcOrganizationRead"
ORGANIZATIONAL_UNITS_READ_SID = "EcrPtcOrganizationalUnitsRead"
OWNED_SIDS = (ACCOUNTS_READ_SID, ORGANIZATION_READ_SID, ORGANIZATIONAL_UNITS_READ_SID)

# The condition every region-wildcard ARN of ours carries: it narrows `*` back to the configured
# regions. aws:RequestedRegion is a global condition key, present in every request.
REQUESTED_REGION_KEY = "aws:RequestedRegion"


@dataclass(frozen=True)
class CacheReadGrant:
    """Who the upstream lets read: listed accounts, and/or an organization or some of its OUs."""

    partition: str
    account_ids: tuple[str, ...]
    organization_id: str | None
    organizational_unit_paths: tuple[str, ...] = ()

    @property
    def any_principal(self) -> bool:
        """The grant names principals by organization, so any AWS principal may be a grantee."""
        return self.organization_id is not None or bool(self.organizational_unit_paths)


def canonical_json(document: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace: equal documents give byte-identical text."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _one_or_sorted(values: Iterable[str]) -> str | list[str]:
    unique = sorted(set(values))
    return unique[0] if len(unique) == 1 else unique


def _sorted_statements(statements: Iterable[Statement]) -> list[Statement]:
    return sorted(statements, key=lambda s: (str(s.get("Sid", "")), canonical_json(s)))


def upstream_read_statements(grant: CacheReadGrant, resource: str | None) -> list[Statement]:
    """The upstream's grant to the downstream accounts and/or the organization or its OUs.

    `resource` is the repository ARN pattern for a registry policy, or None for a repository
    policy (which applies to its own repository and takes no Resource element).
    """
    scope: Statement = {} if resource is None else {"Resource": resource}
    statements: list[Statement] = []
    if grant.account_ids:
        statements.append(
            {
                "Sid": ACCOUNTS_READ_SID,
                "Effect": "Allow",
                "Principal": {
                    "AWS": _one_or_sorted(
                        account_root_arn(grant.partition, a) for a in grant.account_ids
                    )
                },
                "Action": sorted(CACHE_READ_ACTIONS),
                **scope,
            }
        )
    if grant.organizational_unit_paths:
        # Narrower than the organization: principals of accounts under these OUs (nested OUs
        # included, hence the trailing `*`). The key is multi-valued: ForAnyValue.
        statements.append(
            {
                "Sid": ORGANIZATIONAL_UNITS_READ_SID,
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": sorted(CACHE_READ_ACTIONS),
                "Condition": {
                    "ForAnyValue:StringLike": {
                        "aws:PrincipalOrgPaths": _one_or_sorted(
                            f"{p}*" for p in grant.organizational_unit_paths
                        )
                    }
                },
                **scope,
            }
        )
    elif grant.organization_id is not None:
        statements.append(
            {
                "Sid": ORGANIZATION_READ_SID,
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": sorted(CACHE_READ_ACTIONS),
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": grant.organization_id}},
                **scope,
            }
        )
    return statements


def _canonical_values(values: Any) -> Any:
    """A list IAM reads as a set, sorted and without repeats; one value stays one value."""
    if not isinstance(values, list):
        return values
    unique = sorted({canonical_json({"v": v}): v for v in values}.items())
    return unique[0][1] if len(unique) == 1 else [v for _, v in unique]


def canonical_statement(statement: Mapping[str, Any]) -> Statement:
    """`statement` with every list that IAM treats as a set in one order: the same grant gives
    the same text whatever order a stack file lists actions, resources, principals or
    condition values in."""
    out: Statement = dict(statement)
    for element in ("Action", "NotAction", "Resource", "NotResource"):
        if element in out:
            out[element] = _canonical_values(out[element])
    for element in ("Principal", "NotPrincipal"):
        if isinstance(out.get(element), Mapping):
            out[element] = {k: _canonical_values(v) for k, v in out[element].items()}
    if isinstance(out.get("Condition"), Mapping):
        out["Condition"] = {
            operator: (
                {k: _canonical_values(v) for k, v in block.items()}
                if isinstance(block, Mapping)
                else block
            )
            for operator, block in out["Condition"].items()
        }
    return out


def policy_document(statements: Iterable[Statement]) -> PolicyDocument:
    return {"Version": POLICY_VERSION, "Statement": _sorted_statements(statements)}


def service_trust_policy(service: str) -> PolicyDocument:
    """Exactly one service principal. AWS documents no condition keys for these, so none is
    added: an unsupported condition would only stop the service from assuming the role."""
    return policy_document(
        [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]
    )


def cache_role_trust_policy() -> PolicyDocument:
    return service_trust_policy(PULL_THROUGH_CACHE_SERVICE)


def template_role_trust_policy() -> PolicyDocument:
    return service_trust_policy(ECR_SERVICE)


def in_regions(regions: Iterable[str]) -> dict[str, Any]:
    """The condition that narrows region-wildcard ARNs back to `regions`."""
    return {"StringEquals": {REQUESTED_REGION_KEY: _one_or_sorted(regions)}}


def template_role_permissions(
    cache_repository_arns_any_region: Iterable[str],
    regions: Iterable[str],
    kms_key_arns: Iterable[str],
) -> PolicyDocument:
    """What ECR needs, as the template's role, to create, tag and encrypt cache repositories.

    Like the cache role's, the repository ARNs carry `*` for the region, narrowed by an
    aws:RequestedRegion condition; each KMS key ARN names its own region already."""
    statements: list[Statement] = [
        {
            "Sid": "CreateCacheRepositories",
            "Effect": "Allow",
            "Action": sorted(TEMPLATE_REPOSITORY_ACTIONS),
            "Resource": _one_or_sorted(cache_repository_arns_any_region),
            "Condition": in_regions(regions),
        }
    ]
    keys = sorted(set(kms_key_arns))
    if keys:
        statements.append(
            {
                "Sid": "UseTemplateKey",
                "Effect": "Allow",
                "Action": sorted(TEMPLATE_KMS_ACTIONS),
                "Resource": _one_or_sorted(keys),
            }
        )
        statements.append(
            {
                "Sid": "GrantTemplateKeyToEcr",
                "Effect": "Allow",
                "Action": TEMPLATE_KMS_GRANT_ACTION,
                "Resource": _one_or_sorted(keys),
                "Condition": GRANT_FOR_AWS_RESOURCE,
            }
        )
    return policy_document(statements)


def consumer_policy(
    cache_repository_arns_any_region: Iterable[str], regions: Iterable[str], tags: bool
) -> PolicyDocument:
    """What a principal needs to pull through the cache, on the cache namespaces only.

    The repository ARNs carry `*` for the region and the regions are listed once in an
    aws:RequestedRegion condition: the same grant as one ARN per region and prefix, in a
    fraction of the characters, so 50 rules in several regions fit a managed policy.
    """
    actions = list(CONSUMER_PULL_ACTIONS) + ([CONSUMER_TAG_ACTION] if tags else [])
    return policy_document(
        [
            {
                "Sid": "RegistryLogin",
                "Effect": "Allow",
                "Action": REGISTRY_LOGIN_ACTION,
                "Resource": "*",
            },
            {
                "Sid": "PullThroughCache",
                "Effect": "Allow",
                "Action": sorted(actions),
                "Resource": _one_or_sorted(cache_repository_arns_any_region),
                "Condition": in_regions(regions),
            },
        ]
    )


def lifecycle_policy(
    expire_untagged_after_days: int | None, keep_last_images: int | None
) -> dict[str, Any] | None:
    """The cache repositories' lifecycle policy, or None when neither limit is set.

    ECR evaluates rules by rulePriority, lowest first, and a rule on tagStatus "any" must have
    the highest priority number: untagged expiry is 1, the image count 2.
    """
    rules: list[dict[str, Any]] = []
    if expire_untagged_after_days is not None:
        rules.append(
            {
                "rulePriority": 1,
                "description": f"Expire untagged images after {expire_untagged_after_days} days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": expire_untagged_after_days,
                },
                "action": {"type": "expire"},
            }
        )
    if keep_last_images is not None:
        rules.append(
            {
                "rulePriority": 2,
                "description": f"Keep the last {keep_last_images} images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": keep_last_images,
                },
                "action": {"type": "expire"},
            }
        )
    return {"rules": rules} if rules else None


def cache_role_permissions(
    upstream_repository_arns: Iterable[str],
    cache_repository_arns_any_region: Iterable[str],
    regions: Iterable[str],
) -> PolicyDocument:
    """What ECR needs, acting as the cache role, to copy upstream images into this account.

    The cache namespaces are listed once with `*` for the region and narrowed by an
    aws:RequestedRegion condition: the same requests are allowed as with one ARN per region and
    prefix, and 50 rules fit in any number of regions. The upstream's ARNs name its one region.
    """
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
                "Resource": _one_or_sorted(cache_repository_arns_any_region),
                "Condition": in_regions(regions),
            },
        ]
    )


def _from_rule(rule_arn: str, account_id: str) -> dict[str, Any]:
    """The condition that ties a grant to EventBridge to one rule of one account (AWS's
    confused-deputy advice: for a rule's target, aws:SourceArn is the rule's ARN)."""
    return {
        "ArnEquals": {SOURCE_ARN_KEY: rule_arn},
        "StringEquals": {SOURCE_ACCOUNT_KEY: account_id},
    }


def alert_topic_policy(topic_arn: str, rule_arn: str, account_id: str) -> PolicyDocument:
    """An alert topic's whole access policy: EventBridge may publish to it, for the one rule of
    its region, and nothing else is granted (the account's own principals act through their IAM
    policies)."""
    return policy_document(
        [
            {
                "Sid": "AlertRulePublishes",
                "Effect": "Allow",
                "Principal": {"Service": EVENTS_SERVICE},
                "Action": TOPIC_PUBLISH_ACTION,
                "Resource": topic_arn,
                "Condition": _from_rule(rule_arn, account_id),
            }
        ]
    )


def alert_role_trust_policy(rule_arn: str, account_id: str) -> PolicyDocument:
    """The alert role of one region: assumed by EventBridge for that region's alert rule only."""
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Service": EVENTS_SERVICE},
                "Action": "sts:AssumeRole",
                "Condition": _from_rule(rule_arn, account_id),
            }
        ]
    )


def alert_role_permissions(event_bus_arn: str) -> PolicyDocument:
    """What EventBridge may do as the alert role: put the alert on the one configured bus."""
    return policy_document(
        [
            {
                "Sid": "SendAlertsToTheBus",
                "Effect": "Allow",
                "Action": PUT_EVENTS_ACTION,
                "Resource": event_bus_arn,
            }
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
