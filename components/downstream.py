"""PullThroughCache: the downstream account's cache role and its pull-through-cache rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components import quotas
from components.aws_names import image_uri_prefix
from components.cache_templates import CacheRepositoryTemplates, CacheRepositoryTemplatesArgs
from components.config import RULES, DownstreamConfig
from components.contract import UpstreamFacts, check_pairing, upstream_repository_arns
from components.policies import (
    cache_role_permissions,
    cache_role_trust_policy,
    canonical_json,
    require_within,
)
from components.repositories import cache_repository_arns


def role_permissions_text(config: DownstreamConfig, facts: UpstreamFacts, account_id: str) -> str:
    document = cache_role_permissions(
        upstream_repository_arns(facts, config.rules), cache_repository_arns(config, account_id)
    )
    return require_within(
        canonical_json(document),
        quotas.ROLE_INLINE_POLICIES_MAX_CHARS,
        "cache role's permission policy",
        RULES.full,
        config.size_summary,
        "configure fewer ecr-ptc:regions or ecr-ptc:rules in this stack, or split them "
        "across stacks",
    )


def rule_summaries(
    config: DownstreamConfig, facts: UpstreamFacts, account_id: str
) -> list[dict[str, str]]:
    return [
        {
            "ecrRepositoryPrefix": rule.ecr_repository_prefix,
            "upstreamRepositoryPrefix": rule.upstream_repository_prefix,
            "region": r.name,
            "upstreamRegistryUrl": facts.registry_url,
            "imageUriPrefix": image_uri_prefix(account_id, r, rule.ecr_repository_prefix),
        }
        for r in config.regions
        for rule in config.rules
    ]


@dataclass
class PullThroughCacheArgs:
    config: DownstreamConfig
    # The upstream registry, from the upstream stack's outputs or from config.
    upstream: pulumi.Output[UpstreamFacts]
    # This (downstream) account; the cache repositories' ARNs are built from it.
    account_id: pulumi.Input[str]


class PullThroughCache(pulumi.ComponentResource):
    """The role the pull-through-cache service assumes, and one rule per prefix and region.

    Every child takes an input derived from the checked upstream facts, so a downstream that the
    upstream does not serve fails the preview before anything is created.
    """

    def __init__(
        self, name: str, args: PullThroughCacheArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ecr-ptc:downstream:PullThroughCache", name, None, opts)
        config = args.config
        account_id = pulumi.Output.from_input(args.account_id)
        checked = pulumi.Output.all(args.upstream, account_id).apply(
            lambda a: (check_pairing(a[0], config, a[1]), a[1])
        )
        upstream = checked.apply(lambda c: c[0])
        # This account, released only once the pairing with the upstream is checked: resources
        # built from it (here and beside this component) are never created for a refused pairing.
        self.checked_account_id: pulumi.Output[str] = checked.apply(lambda c: c[1])

        self.role = aws.iam.Role(
            f"{name}-role",
            name=config.role_name,
            description=upstream.apply(
                lambda u: f"Assumed by ECR pull through cache to copy images from {u.registry_url}"
            ),
            assume_role_policy=canonical_json(cache_role_trust_policy()),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.role_policy = aws.iam.RolePolicy(
            f"{name}-role-policy",
            role=self.role.id,
            policy=checked.apply(lambda c: role_permissions_text(config, c[0], c[1])),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.templates: CacheRepositoryTemplates | None = None
        if config.repository_template is not None:
            self.templates = CacheRepositoryTemplates(
                f"{name}-template",
                CacheRepositoryTemplatesArgs(
                    config, config.repository_template, self.checked_account_id
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.rules: list[aws.ecr.PullThroughCacheRule] = []
        for r in config.regions:
            for rule in config.rules:
                upstream_prefix = rule.upstream_repository_prefix
                # A template applies only to repositories created after it exists.
                template = (
                    [self.templates.templates[(r.name, rule.ecr_repository_prefix)]]
                    if self.templates is not None
                    else []
                )
                self.rules.append(
                    aws.ecr.PullThroughCacheRule(
                        f"{name}-{r.name}-{rule.ecr_repository_prefix}",
                        region=r.name,
                        ecr_repository_prefix=rule.ecr_repository_prefix,
                        upstream_repository_prefix=upstream_prefix,
                        upstream_registry_url=upstream.apply(lambda u: u.registry_url),
                        custom_role_arn=self.role.arn,
                        opts=pulumi.ResourceOptions(
                            parent=self,
                            # ECR assumes the role when it first pulls; the permissions must be
                            # in place by then.
                            depends_on=[self.role_policy, *template],
                            # The rule's id is its prefix and the prefix and URL force
                            # replacement: the old rule must go before the new one can exist.
                            delete_before_replace=True,
                        ),
                    )
                )
        self.role_arn = self.role.arn
        self.rule_summaries: pulumi.Output[list[dict[str, Any]]] = checked.apply(
            lambda c: rule_summaries(config, c[0], c[1])
        )
        self.register_outputs({"roleArn": self.role_arn, "rules": self.rule_summaries})
