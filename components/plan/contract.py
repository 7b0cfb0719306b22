"""The contract between the upstream and downstream stacks: output names and their meaning.

The upstream exports `UpstreamFacts.to_outputs()`; the downstream reads them back with
`UpstreamFacts.from_outputs()` from a StackReference. Both sides import this module, so a renamed
output cannot drift between them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..inputs.errors import ConfigError
from ..inputs.messages import config_error
from ..inputs.stack_config import (
    REGIONS,
    REPOSITORY_PREFIX,
    RULES,
    UPSTREAM_STACK,
    CacheRule,
    DownstreamConfig,
)
from ..inputs.stack_config import UPSTREAM_ACCOUNT_ID as UPSTREAM_ACCOUNT_ID_KEY
from ..inputs.values import (
    REPOSITORY_NAME_PATTERN,
    AccountId,
    OrganizationalUnitPath,
    OrganizationId,
    RegionName,
)
from ..rules import quotas
from ..rules.aws_names import (
    ROOT_PREFIX,
    Region,
    region,
    registry_host,
    repositories_under,
    repository_arn,
)

# Upstream stack outputs.
UPSTREAM_ACCOUNT_ID = "upstreamAccountId"
UPSTREAM_REGION = "upstreamRegion"
UPSTREAM_REGISTRY_URL = "upstreamRegistryUrl"
REPOSITORY_ARN_PATTERN = "repositoryArnPattern"
DOWNSTREAM_ACCOUNT_IDS = "downstreamAccountIds"
ORGANIZATION_ID = "organizationId"
ORGANIZATIONAL_UNIT_PATHS = "organizationalUnitPaths"
# Read by the downstream; organizationId may be null (or dropped by the engine when null), and
# upstreams deployed before organizationalUnitPaths existed do not export it.
REQUIRED_UPSTREAM_OUTPUTS = (
    UPSTREAM_ACCOUNT_ID,
    UPSTREAM_REGION,
    UPSTREAM_REGISTRY_URL,
    REPOSITORY_ARN_PATTERN,
    DOWNSTREAM_ACCOUNT_IDS,
)
UPSTREAM_OUTPUTS = (*REQUIRED_UPSTREAM_OUTPUTS, ORGANIZATION_ID, ORGANIZATIONAL_UNIT_PATHS)

# Downstream stack outputs.
ROLE_ARN = "roleArn"
ROLE_NAME = "roleName"
RULES_OUTPUT = "rules"
CONSUMER_POLICY_ARN = "consumerPolicyArn"
DOWNSTREAM_OUTPUTS = (ROLE_ARN, ROLE_NAME, RULES_OUTPUT, CONSUMER_POLICY_ARN)

# Either side, only when ecr-ptc:alerts sends to a topic the stack creates: region -> the ARN of
# that region's alert topic (for subscriptions made outside the stack, such as a chat channel's).
# Not part of what the downstream reads from the upstream, and absent otherwise, so a stack
# without alerts exports what it always did.
ALERT_TOPIC_ARNS = "alertTopicArns"


class UpstreamStackError(ConfigError):
    """The upstream stack's outputs cannot be used."""

    @staticmethod
    def of_output(stack: str, output: str, value: object, valid: str) -> UpstreamStackError:
        return UpstreamStackError(f"{UPSTREAM_STACK.full} ({stack}), output {output}", value, valid)


class _UpstreamOutputs(BaseModel):
    """The upstream's outputs, validated like config: they flow into policies."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    upstreamAccountId: AccountId
    upstreamRegion: RegionName
    upstreamRegistryUrl: str
    repositoryArnPattern: str
    downstreamAccountIds: list[AccountId]
    organizationId: OrganizationId | None = None
    organizationalUnitPaths: list[OrganizationalUnitPath] = []


@dataclass(frozen=True)
class UpstreamFacts:
    """What the downstream needs to know about the upstream registry."""

    account_id: str
    region: Region
    downstream_account_ids: tuple[str, ...] | None  # None: not known (registry managed elsewhere)
    organization_id: str | None
    repository_prefix: str | None  # the shared namespace; None: everything
    organizational_unit_paths: tuple[str, ...] = ()

    @property
    def registry_url(self) -> str:
        return registry_host(self.account_id, self.region)

    @property
    def repository_arn_pattern(self) -> str:
        """The shared repositories: `repository/*`, or `repository/<prefix>/*`."""
        return shared_repository_arn_pattern(self.region, self.account_id, self.repository_prefix)

    @property
    def grants_by_organization(self) -> bool:
        return self.organization_id is not None or bool(self.organizational_unit_paths)

    def to_outputs(self) -> dict[str, Any]:
        return {
            UPSTREAM_ACCOUNT_ID: self.account_id,
            UPSTREAM_REGION: self.region.name,
            UPSTREAM_REGISTRY_URL: self.registry_url,
            REPOSITORY_ARN_PATTERN: self.repository_arn_pattern,
            DOWNSTREAM_ACCOUNT_IDS: list(self.downstream_account_ids or ()),
            ORGANIZATION_ID: self.organization_id,
            ORGANIZATIONAL_UNIT_PATHS: list(self.organizational_unit_paths),
        }

    @staticmethod
    def from_outputs(stack: str, outputs: Mapping[str, Any]) -> UpstreamFacts:
        missing = [name for name in REQUIRED_UPSTREAM_OUTPUTS if outputs.get(name) is None]
        if missing:
            raise UpstreamStackError(
                UPSTREAM_STACK.full,
                stack,
                f"a stack that exports {', '.join(missing)}; it has no such output. Run "
                f"`pulumi up` on {stack} first (and check that it is the upstream stack)",
            )
        present = {k: v for k, v in outputs.items() if v is not None}
        try:
            parsed = _UpstreamOutputs.model_validate(present)
        except ValidationError as err:
            # Worded like a config error; the key becomes the stack and its output.
            error = config_error(err, _UpstreamOutputs, {}, present)
            raise UpstreamStackError(
                f"{UPSTREAM_STACK.full} ({stack}), output {error.key}", error.value, error.valid
            ) from None
        where = region(parsed.upstreamRegion)
        account = parsed.upstreamAccountId
        pattern = parsed.repositoryArnPattern
        head = repository_arn(where, account, "")
        resource = pattern.removeprefix(head)
        shared = resource.removesuffix("/*")
        if not pattern.startswith(head) or not (
            resource == "*"
            or (
                resource.endswith("/*")
                # A namespace as the upstream writes it: no trailing '/', so no '//' before
                # the '*', and not ROOT.
                and re.fullmatch(REPOSITORY_NAME_PATTERN, shared, re.ASCII) is not None
                and len(shared) <= quotas.PREFIX_MAX_CHARS
            )
        ):
            raise UpstreamStackError.of_output(
                stack,
                REPOSITORY_ARN_PATTERN,
                pattern,
                f"an ECR repository ARN pattern of the upstream's own account and region, "
                f"{head}* or {head}<prefix>/*",
            )
        return UpstreamFacts(
            account_id=account,
            region=where,
            downstream_account_ids=tuple(parsed.downstreamAccountIds),
            organization_id=parsed.organizationId,
            repository_prefix=None if resource == "*" else shared,
            organizational_unit_paths=tuple(parsed.organizationalUnitPaths),
        )


def shared_repository_arn_pattern(where: Region, account_id: str, prefix: str | None) -> str:
    return repository_arn(where, account_id, repositories_under(prefix))


def upstream_repository_arns(facts: UpstreamFacts, rules: tuple[CacheRule, ...]) -> list[str]:
    """The upstream repositories the cache role reads: each rule's upstream namespace, or all
    that the upstream shares when the rule's upstream prefix is ROOT."""
    arns = set()
    for rule in rules:
        if rule.upstream_repository_prefix == ROOT_PREFIX:
            arns.add(facts.repository_arn_pattern)
        else:
            arns.add(
                repository_arn(
                    facts.region,
                    facts.account_id,
                    repositories_under(rule.upstream_repository_prefix),
                )
            )
    return sorted(arns)


def check_pairing(facts: UpstreamFacts, config: DownstreamConfig, account_id: str) -> UpstreamFacts:
    """Refuse a downstream that the upstream does not serve. Returns `facts` when it does."""
    if config.upstream_stack is not None:
        where, what = UPSTREAM_STACK.full, config.upstream_stack
    else:
        where, what = UPSTREAM_ACCOUNT_ID_KEY.full, facts.account_id
    for r in config.regions:
        if account_id == facts.account_id and r.name == facts.region.name:
            raise ConfigError(
                REGIONS.full,
                r.name,
                f"a region other than the upstream's own ({facts.region.name}) in account "
                f"{account_id}: upstream and downstream would be the same registry",
            )
    if config.region.partition != facts.region.partition:
        raise ConfigError(
            where,
            what,
            f"an upstream in this stack's partition ({config.region.partition})",
        )
    if (
        facts.downstream_account_ids is not None
        and not facts.grants_by_organization
        and account_id not in facts.downstream_account_ids
    ):
        raise ConfigError(
            where,
            what,
            f"an upstream that grants this account ({account_id}); it grants "
            + (
                f"only {', '.join(facts.downstream_account_ids)}"
                if facts.downstream_account_ids
                else "no account and no organization"
            )
            + f". Add {account_id} to the upstream's "
            "ecr-ptc:downstreamAccountIds (or grant the organization) and `pulumi up` it first",
        )
    if facts.repository_prefix is not None:
        shared = facts.repository_prefix.rstrip("/")
        for i, rule in enumerate(config.rules):
            upstream = rule.upstream_repository_prefix.rstrip("/")
            if (
                upstream != ROOT_PREFIX
                and upstream != shared
                and not upstream.startswith(f"{shared}/")
            ):
                raise ConfigError(
                    f"{RULES.full}[{i}].upstreamRepositoryPrefix",
                    rule.upstream_repository_prefix,
                    f"a prefix inside the upstream's {REPOSITORY_PREFIX.full} '{shared}' (e.g. "
                    f"'{shared}'): the upstream shares nothing else",
                )
    return facts
