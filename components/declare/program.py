"""The whole program for either side: stack config in, the public components declared, stack
outputs out. Everything config and the upstream's outputs can tell is checked first, by
computing the stack's plan, so a refused stack declares nothing."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from ..inputs.stack_config import (
    Alerts,
    DownstreamConfig,
    RawConfig,
    StackConfig,
    UpstreamConfig,
    allowed_account_id,
    parse,
)
from ..plan import contract
from ..plan.contract import UpstreamFacts
from ..plan.stack_plan import StackPlan, plan_downstream, plan_upstream
from .downstream import Alerts as AlertArguments
from .downstream import (
    ImageTagMutability,
    PullThroughCache,
    PullThroughCacheArgs,
    RepositoryTemplateArgs,
    SubscriptionProtocol,
    UpstreamRegistryArgs,
)
from .upstream import GrantVia, UpstreamRegistryAccess, UpstreamRegistryAccessArgs

COMPONENT_NAME = "ecr-ptc"
# The first version's component types: the aliases keep every resource's URN, so upgrading
# replaces nothing.
V1_TYPES = {
    "upstream": "ecr-ptc:upstream:UpstreamRegistryAccess",
    "downstream": "ecr-ptc:downstream:PullThroughCache",
}


def alerts_args(alerts: Alerts) -> AlertArguments:
    """The alerts config as the components' `alerts` argument."""
    if alerts.event_bus_arn is not None:
        return {"event_bus_arn": alerts.event_bus_arn}
    return {
        "topic": {
            "subscriptions": [
                {"protocol": SubscriptionProtocol(s.protocol), "endpoint": s.endpoint}
                for s in alerts.subscriptions
            ]
        }
    }


def upstream_args(config: UpstreamConfig, account_id: str) -> UpstreamRegistryAccessArgs:
    args: UpstreamRegistryAccessArgs = {
        "region": config.region.name,
        "account_id": account_id,
        "downstream_account_ids": list(config.downstream_account_ids),
        "organization_id": config.organization_id or "",
        "organizational_unit_paths": list(config.organizational_unit_paths),
        "repository_prefix": config.repository_prefix or "",
        "grant_via": GrantVia(config.grant_via),
        "repositories": list(config.repositories),
        "manage_registry_policy_scope": config.manage_registry_policy_scope,
        "extra_registry_policy_statements": [
            dict(s) for s in config.extra_registry_policy_statements
        ],
    }
    # Only what is set: a stack without these passes the component what it always did.
    if config.alerts is not None:
        args["alerts"] = alerts_args(config.alerts)
    if config.permissions_boundary_arn is not None:
        args["permissions_boundary_arn"] = config.permissions_boundary_arn
    if config.iam_path is not None:
        args["iam_path"] = config.iam_path
    if config.tags:
        args["tags"] = dict(config.tags)
    return args


def downstream_args(
    config: DownstreamConfig, facts: UpstreamFacts, account_id: str
) -> PullThroughCacheArgs:
    template = config.repository_template
    upstream: UpstreamRegistryArgs = {
        "account_id": facts.account_id,
        "region": facts.region.name,
        "repository_prefix": facts.repository_prefix or "",
        "organization_id": facts.organization_id or "",
        "organizational_unit_paths": list(facts.organizational_unit_paths),
    }
    if facts.downstream_account_ids is not None:
        upstream["downstream_account_ids"] = list(facts.downstream_account_ids)
    args: PullThroughCacheArgs = {
        "account_id": account_id,
        "regions": [r.name for r in config.regions],
        "rules": [
            {
                "ecr_repository_prefix": r.ecr_repository_prefix,
                "upstream_repository_prefix": r.upstream_repository_prefix,
            }
            for r in config.rules
        ],
        "upstream": upstream,
        "consumer_role_names": list(config.consumer_role_names),
    }
    if config.role_name is not None:
        args["role_name"] = config.role_name
    if config.permissions_boundary_arn is not None:
        args["permissions_boundary_arn"] = config.permissions_boundary_arn
    if config.iam_path is not None:
        args["iam_path"] = config.iam_path
    if config.cache_role_arn is not None:
        args["cache_role_arn"] = config.cache_role_arn
    if config.tags:
        args["tags"] = dict(config.tags)
    if config.alerts is not None:
        args["alerts"] = alerts_args(config.alerts)
    if template is not None:
        settings: RepositoryTemplateArgs = {
            "image_tag_mutability": ImageTagMutability(template.image_tag_mutability),
            "image_tag_mutability_exclusion_filters": list(
                template.image_tag_mutability_exclusion_filters
            ),
        }
        if template.expire_untagged_after_days is not None:
            settings["expire_untagged_after_days"] = template.expire_untagged_after_days
        if template.keep_last_images is not None:
            settings["keep_last_images"] = template.keep_last_images
        if template.kms_key_arns:
            settings["kms_key_arns"] = dict(template.kms_key_arns)
        if template.resource_tags:
            settings["resource_tags"] = dict(template.resource_tags)
        if template.description is not None:
            settings["description"] = template.description
        args["repository_template"] = settings
    return args


async def account_id_of(raw: RawConfig) -> str:
    """The account this stack deploys to: the one `aws:allowedAccountIds` pins (the provider
    refuses any other), else the account of the credentials."""
    pinned = allowed_account_id(raw)
    if pinned is not None:
        return pinned
    return str(await aws.get_caller_identity_output().account_id.future())


async def read_upstream(config: DownstreamConfig) -> UpstreamFacts:
    direct = direct_upstream(config)
    if direct is not None:
        return direct
    stack = config.upstream_stack
    assert stack is not None, "config parsing guarantees an upstream"
    reference = pulumi.StackReference(f"{COMPONENT_NAME}-upstream", stack_name=stack)
    # A stack the backend does not hold fails the engine's read of this reference, and the
    # engine reports it ("unknown stack"); `make up` and CI check that it exists beforehand.
    outputs = await reference.outputs.future()
    return UpstreamFacts.from_outputs(stack, outputs or {})


def plan_stack(config: StackConfig, account_id: str, upstream: UpstreamFacts | None) -> StackPlan:
    """The stack's whole plan: every check, every resource and policy, before declaring any.
    `upstream` is what the downstream reads from its upstream (unused for an upstream)."""
    if isinstance(config, UpstreamConfig):
        return plan_upstream(config, account_id, COMPONENT_NAME)
    assert upstream is not None, "a downstream is planned against its upstream"
    return plan_downstream(config, upstream, account_id, COMPONENT_NAME)


def direct_upstream(config: DownstreamConfig) -> UpstreamFacts | None:
    """The upstream given by account and region in config, or None when it is a stack."""
    direct = config.upstream
    if direct is None:
        return None
    return UpstreamFacts(
        account_id=direct.account_id,
        region=direct.region,
        downstream_account_ids=None,
        organization_id=None,
        repository_prefix=None,
    )


async def program(raw: RawConfig, stack_name: str) -> dict[str, Any]:
    config = parse(raw, stack_name)
    account_id = await account_id_of(raw)
    if isinstance(config, UpstreamConfig):
        planned = plan_stack(config, account_id, None)
        access = UpstreamRegistryAccess(
            COMPONENT_NAME, upstream_args(config, account_id), _v1_alias("upstream")
        )
        exported = {name: planned.outputs[name] for name in contract.UPSTREAM_OUTPUTS}
        if contract.ALERT_TOPIC_ARNS in planned.outputs:
            exported[contract.ALERT_TOPIC_ARNS] = access.alert_topic_arns
        return exported
    facts = await read_upstream(config)
    # The pairing and every quota, checked naming the stack's config keys; the component then
    # declares exactly this plan.
    planned = plan_stack(config, account_id, facts)
    cache = PullThroughCache(
        COMPONENT_NAME, downstream_args(config, facts, account_id), _v1_alias("downstream")
    )
    outputs: dict[str, Any] = {
        contract.ROLE_ARN: cache.role_arn,
        contract.ROLE_NAME: cache.role_name,
        contract.RULES_OUTPUT: cache.rules,
        contract.CONSUMER_POLICY_ARN: cache.consumer_policy_arn,
    }
    # Only with a topic: a stack without alerts exports what it always did.
    if contract.ALERT_TOPIC_ARNS in planned.outputs:
        outputs[contract.ALERT_TOPIC_ARNS] = cache.alert_topic_arns
    return outputs


def _v1_alias(side: str) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=V1_TYPES[side])])
