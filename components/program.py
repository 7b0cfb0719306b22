"""The whole program for either side: validated config in, stack outputs out."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from components import contract
from components.config import DownstreamConfig, StackConfig, UpstreamConfig
from components.consumer import CacheConsumerAccess, CacheConsumerAccessArgs
from components.contract import UpstreamFacts
from components.downstream import PullThroughCache, PullThroughCacheArgs
from components.upstream import UpstreamRegistryAccess, UpstreamRegistryAccessArgs

COMPONENT_NAME = "ecr-ptc"


def _this_account_id() -> pulumi.Output[str]:
    # The stack's only provider invoke: every ARN needs the account the credentials belong to.
    return aws.get_caller_identity_output().account_id


def upstream_program(config: UpstreamConfig) -> dict[str, Any]:
    account_id = _this_account_id()
    UpstreamRegistryAccess(COMPONENT_NAME, UpstreamRegistryAccessArgs(config, account_id))
    facts = account_id.apply(
        lambda account: UpstreamFacts(
            account_id=account,
            region=config.region,
            repository_arn_pattern=contract.shared_repository_arn_pattern(
                config.region, account, config.repository_prefix
            ),
            downstream_account_ids=config.downstream_account_ids,
            organization_id=config.organization_id,
            repository_prefix=config.repository_prefix,
        )
    )
    outputs = facts.apply(lambda f: f.to_outputs())
    return {name: outputs[name] for name in contract.UPSTREAM_OUTPUTS}


def _upstream_facts(config: DownstreamConfig) -> pulumi.Output[UpstreamFacts]:
    if config.upstream_stack is not None:
        stack = config.upstream_stack
        reference = pulumi.StackReference(f"{COMPONENT_NAME}-upstream", stack_name=stack)
        return reference.outputs.apply(lambda o: UpstreamFacts.from_outputs(stack, o))
    direct = config.upstream
    assert direct is not None, "config parsing guarantees an upstream"
    return pulumi.Output.from_input(
        UpstreamFacts(
            account_id=direct.account_id,
            region=direct.region,
            repository_arn_pattern=contract.shared_repository_arn_pattern(
                direct.region, direct.account_id, None
            ),
            downstream_account_ids=None,
            organization_id=None,
            repository_prefix=None,
        )
    )


def downstream_program(config: DownstreamConfig) -> dict[str, Any]:
    account_id = _this_account_id()
    cache = PullThroughCache(
        COMPONENT_NAME, PullThroughCacheArgs(config, _upstream_facts(config), account_id)
    )
    consumers = CacheConsumerAccess(
        f"{COMPONENT_NAME}-consumer", CacheConsumerAccessArgs(config, cache.checked_account_id)
    )
    return {
        contract.ROLE_ARN: cache.role_arn,
        contract.RULES_OUTPUT: cache.rule_summaries,
        contract.CONSUMER_POLICY_ARN: consumers.policy_arn,
    }


def program(config: StackConfig) -> dict[str, Any]:
    if isinstance(config, UpstreamConfig):
        return upstream_program(config)
    return downstream_program(config)
