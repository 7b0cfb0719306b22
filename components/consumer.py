"""CacheConsumerAccess: the managed policy that lets a principal pull through the cache."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import quotas
from components.aws_names import SIZING_ACCOUNT_ID
from components.config import RULES, DownstreamConfig
from components.policies import canonical_json, consumer_policy, require_within
from components.repositories import cache_repository_arns_any_region


def consumer_policy_text(config: DownstreamConfig, account_id: str) -> str:
    template = config.repository_template
    document = consumer_policy(
        cache_repository_arns_any_region(config, account_id),
        [r.name for r in config.regions],
        tags=bool(template and template.resource_tags),
    )
    return require_within(
        canonical_json(document),
        quotas.MANAGED_POLICY_MAX_CHARS,
        "consumer managed policy",
        RULES.full,
        config.size_summary,
        "configure fewer or shorter ecr-ptc:rules prefixes in this stack",
    )


@dataclass
class CacheConsumerAccessArgs:
    config: DownstreamConfig
    account_id: pulumi.Input[str]


class CacheConsumerAccess(pulumi.ComponentResource):
    """A managed policy for the principals that pull (EKS nodes, CI roles), attached to the
    roles named in ecr-ptc:consumerRoleNames. AWS's managed read-only policies lack the import
    and create actions, so without this the first pull fails with 403."""

    def __init__(
        self, name: str, args: CacheConsumerAccessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ecr-ptc:downstream:CacheConsumerAccess", name, None, opts)
        config = args.config
        # Sized now, so an oversized policy fails before anything is declared.
        consumer_policy_text(config, SIZING_ACCOUNT_ID)
        self.policy = aws.iam.Policy(
            f"{name}-policy",
            description="Pull images through the ECR pull-through cache of ecr-ptc",
            policy=pulumi.Output.from_input(args.account_id).apply(
                lambda account: consumer_policy_text(config, account)
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-{role}",
                role=role,
                policy_arn=self.policy.arn,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for role in config.consumer_role_names
        ]
        self.policy_arn = self.policy.arn
        self.register_outputs({"consumerPolicyArn": self.policy_arn})
