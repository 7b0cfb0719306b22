"""UpstreamRegistryAccess: the upstream account's grant to the downstream accounts."""

from enum import StrEnum
from typing import Any, NotRequired, TypedDict

import pulumi

from ..inputs import stack_config as keys
from ..inputs.arguments import (
    as_argument_error,
    caller_account,
    camel_keys,
    flat_config,
    known,
    to_camel,
)
from ..inputs.errors import ConfigError
from ..inputs.stack_config import UpstreamConfig, parse_upstream, valid_account_id
from ..plan import contract
from ..plan.contract import UpstreamFacts
from ..plan.stack_plan import ALERTS_GROUP, MAIN, plan_upstream, upstream_facts
from .downstream import Alerts, UpstreamRegistry
from .resources import declare
from .resources import outputs as resolve_outputs

TYPE = "ecr-ptc:index:UpstreamRegistryAccess"
ALERTS_TYPE = "ecr-ptc:upstream:GrantAlerts"


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
    """Optional. At least one grantee is required: this, organizationId or
    organizationalUnitPaths. 12-digit IDs of the accounts allowed to cache from this registry."""
    organization_id: NotRequired[pulumi.Input[str]]
    """Optional. At least one grantee is required: this, downstreamAccountIds or
    organizationalUnitPaths. AWS Organization ID (o-...) whose every account may cache from
    this registry."""
    organizational_unit_paths: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """Optional. At least one grantee is required: this, downstreamAccountIds or
    organizationId. Organization paths (o-.../r-.../ou-.../) whose accounts may cache;
    narrower than organizationId."""
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
    alerts: NotRequired[pulumi.Input[Alerts]]
    """Optional. An EventBridge rule in the registry's region for the calls that change what it
    grants (PutRegistryPolicy, DeleteRegistryPolicy, SetRepositoryPolicy,
    DeleteRepositoryPolicy, PutAccountSetting; a CloudTrail trail must log the account's
    management events), delivered to an SNS topic or an event bus. Default: no alerts."""
    permissions_boundary_arn: NotRequired[pulumi.Input[str]]
    """Optional. Permissions boundary (a managed policy ARN) of every role the component
    creates (the alert role, with alerts to an event bus)."""
    iam_path: NotRequired[pulumi.Input[str]]
    """Optional. IAM path of every role the component creates. Default: /."""
    tags: NotRequired[pulumi.Input[dict[str, pulumi.Input[str]]]]
    """Optional. Tags for every taggable resource the component creates (its alert rule, topic
    and role); at most 50."""


# Config key -> argument name, so a refusal names what the caller wrote.
# Either side's keys are arguments too (alerts, tags, the roles' boundary and path); `side` is not.
UPSTREAM_KEYS = [k for k in keys.KEYS if k.side in ("upstream", "both") and k is not keys.SIDE]
ARGUMENT_NAMES = {
    keys.AWS_REGION_KEY: "region",
    **{k.full: k.name for k in UPSTREAM_KEYS},
}


def upstream_config(values: dict[str, Any]) -> UpstreamConfig:
    """Known arguments, validated exactly like an upstream stack's config."""
    flat: dict[str, Any] = {keys.AWS_REGION_KEY: values.get("region")}
    for name, value in values.items():
        key = keys.KEYS_BY_NAME.get(to_camel(name))
        if key is not None and key in UPSTREAM_KEYS:
            flat[key.full] = camel_keys(value) if key is keys.ALERTS else value
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
    alert_topic_arns: pulumi.Output[dict[str, str]]
    """Region -> the ARN of the alert topic; empty unless alerts go to a topic."""

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
        parents: dict[str, pulumi.Resource] = {MAIN: self}
        if any(r.group == ALERTS_GROUP for r in planned.resources):
            parents[ALERTS_GROUP] = pulumi.ComponentResource(
                ALERTS_TYPE, f"{name}-alerts", None, pulumi.ResourceOptions(parent=self)
            )
        declared = declare(planned.resources, parents)
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
        # What the downstream reads; the alert topics are this stack's own business.
        self.outputs = pulumi.Output.from_input(
            {k: v for k, v in planned.outputs.items() if k in contract.UPSTREAM_OUTPUTS}
        )
        self.alert_topic_arns = pulumi.Output.from_input(
            resolve_outputs(planned.outputs, declared).get(contract.ALERT_TOPIC_ARNS, {})
        )
        self.register_outputs(
            {
                "accountId": self.account_id,
                "registryUrl": self.registry_url,
                "repositoryArnPattern": self.repository_arn_pattern,
                "upstream": self.upstream,
                "outputs": self.outputs,
                "alertTopicArns": self.alert_topic_arns,
            }
        )
