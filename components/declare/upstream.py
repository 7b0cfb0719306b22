"""UpstreamRegistryAccess: the upstream account's grant to the downstream accounts."""

from enum import StrEnum
from typing import Any, NotRequired, TypedDict

import pulumi

from ..inputs import stack_config as keys
from ..inputs.arguments import (
    as_argument_error,
    caller_account,
    flat_config,
    known,
    to_camel,
)
from ..inputs.errors import ConfigError
from ..inputs.stack_config import UpstreamConfig, parse_upstream, valid_account_id
from ..plan import contract
from ..plan.contract import UpstreamFacts
from ..plan.stack_plan import MAIN, plan_upstream, upstream_facts
from .downstream import UpstreamRegistry
from .resources import declare

TYPE = "ecr-ptc:index:UpstreamRegistryAccess"


class GrantVia(StrEnum):
    """How the upstream grants the downstream accounts read access."""

    REGISTRY = "registry"
    """One registry policy over the shared repositories (the default)."""
    REPOSITORY = "repository"
    """One repository policy on each repository of `repositories`."""


class UpstreamRegistryAccessArgs(TypedDict):
    """Who may cache from this registry, and which of its repositories they may read. Required:
    region; and at least one grantee (downstreamAccountIds, organizationId or
    organizationalUnitPaths)."""

    region: pulumi.Input[str]
    """Required. The upstream registry's region, e.g. us-east-1."""
    account_id: NotRequired[pulumi.Input[str]]
    """Optional. The upstream registry's 12-digit account. Default: the account of the AWS
    provider's credentials."""
    downstream_account_ids: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """Optional. 12-digit IDs of the accounts allowed to cache from this registry."""
    organization_id: NotRequired[pulumi.Input[str]]
    """Optional. AWS Organization ID (o-...) whose every account may cache from this
    registry."""
    organizational_unit_paths: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """Optional. Organization paths (o-.../r-.../ou-.../) whose accounts may cache; narrower
    than organizationId."""
    repository_prefix: NotRequired[pulumi.Input[str]]
    """Optional. Share only repositories under this namespace (golden shares
    repository/golden/*)."""
    grant_via: NotRequired[pulumi.Input[GrantVia]]
    """Optional. registry (one registry policy, the default) or repository (one repository
    policy per entry of repositories)."""
    repositories: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """Optional. Repositories to grant; required when grantVia is repository, refused
    otherwise."""
    manage_registry_policy_scope: NotRequired[pulumi.Input[bool]]
    """Optional. Set REGISTRY_POLICY_SCOPE to V2, without which the registry policy is
    rejected. Default true."""
    extra_registry_policy_statements: NotRequired[pulumi.Input[list[dict[str, Any]]]]
    """Optional. IAM statements owned by others that the registry policy must keep."""


# Config key -> argument name, so a refusal names what the caller wrote.
ARGUMENT_NAMES = {
    keys.AWS_REGION_KEY: "region",
    **{k.full: k.name for k in keys.KEYS if k.side == "upstream"},
}


def upstream_config(values: dict[str, Any]) -> UpstreamConfig:
    """Known arguments, validated exactly like an upstream stack's config."""
    flat: dict[str, Any] = {keys.AWS_REGION_KEY: values.get("region")}
    for name, value in values.items():
        key = keys.KEYS_BY_NAME.get(to_camel(name))
        if key is not None and key.side == "upstream":
            flat[key.full] = value
    return parse_upstream(flat_config(flat))


def upstream_registry(facts: UpstreamFacts) -> UpstreamRegistry:
    """The upstream as PullThroughCache's `upstream` argument describes it."""
    registry: UpstreamRegistry = {
        "account_id": facts.account_id,
        "region": facts.region.name,
        "downstream_account_ids": list(facts.downstream_account_ids or ()),
        "organizational_unit_paths": list(facts.organizational_unit_paths),
    }
    if facts.repository_prefix is not None:
        registry["repository_prefix"] = facts.repository_prefix
    if facts.organization_id is not None:
        registry["organization_id"] = facts.organization_id
    return registry


class UpstreamRegistryAccess(pulumi.ComponentResource):
    """Lets the downstream accounts (or the organization, or some of its OUs) read this
    registry's images, through one registry policy or one repository policy per repository."""

    account_id: pulumi.Output[str]
    """The upstream registry's account."""
    registry_url: pulumi.Output[str]
    """The registry's host name, what the pull-through-cache rules point at."""
    repository_arn_pattern: pulumi.Output[str]
    """The ARN pattern of the shared repositories."""
    upstream: pulumi.Output[UpstreamRegistry]
    """This registry and whom it grants, exactly as PullThroughCache's `upstream` input takes
    it; known once the grant exists, so a cache given it waits for the grant."""
    outputs: pulumi.Output[dict[str, Any]]
    """Everything a downstream stack reads from the upstream (the stack outputs)."""

    def __init__(
        self,
        name: str,
        args: UpstreamRegistryAccessArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        try:
            values = known("arguments", dict(args))
            config = upstream_config(values)
            account_id = valid_account_id(
                "accountId", values.get("account_id") or caller_account(opts)
            )
            # Every check, size and policy text, before anything is declared.
            planned = plan_upstream(config, account_id, name)
        except ConfigError as err:
            raise as_argument_error(
                err, f"UpstreamRegistryAccess {name!r}", ARGUMENT_NAMES
            ) from None
        super().__init__(TYPE, name, None, opts)
        declared = declare(planned.resources, {MAIN: self})
        facts = upstream_facts(config, planned.account_id)
        self.upstream = pulumi.Output.all(*(r.urn for r in declared.values())).apply(
            lambda _: upstream_registry(facts)
        )
        self.account_id = pulumi.Output.from_input(planned.account_id)
        self.registry_url = pulumi.Output.from_input(
            planned.outputs[contract.UPSTREAM_REGISTRY_URL]
        )
        self.repository_arn_pattern = pulumi.Output.from_input(
            planned.outputs[contract.REPOSITORY_ARN_PATTERN]
        )
        self.outputs = pulumi.Output.from_input(dict(planned.outputs))
        self.register_outputs(
            {
                "accountId": self.account_id,
                "registryUrl": self.registry_url,
                "repositoryArnPattern": self.repository_arn_pattern,
                "upstream": self.upstream,
                "outputs": self.outputs,
            }
        )
