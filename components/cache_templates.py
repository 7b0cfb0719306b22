"""CacheRepositoryTemplates: settings for the repositories ECR creates on a rule's first pull."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import quotas
from components.aws_names import SIZING_ACCOUNT_ID
from components.config import RULES, DownstreamConfig, RepositoryTemplate
from components.policies import (
    canonical_json,
    lifecycle_policy,
    require_within,
    template_role_permissions,
    template_role_trust_policy,
)
from components.repositories import cache_repository_arns

APPLIED_FOR = "PULL_THROUGH_CACHE"


def template_role_permissions_text(
    config: DownstreamConfig, template: RepositoryTemplate, account_id: str
) -> str:
    document = template_role_permissions(
        cache_repository_arns(config, account_id), [arn for _, arn in template.kms_key_arns]
    )
    return require_within(
        canonical_json(document),
        quotas.ROLE_INLINE_POLICIES_MAX_CHARS,
        "repository template role's permission policy",
        RULES.full,
        config.size_summary,
        "configure fewer ecr-ptc:regions or ecr-ptc:rules in this stack",
    )


def lifecycle_policy_text(template: RepositoryTemplate) -> str | None:
    policy = lifecycle_policy(template.expire_untagged_after_days, template.keep_last_images)
    return None if policy is None else canonical_json(policy)


@dataclass
class CacheRepositoryTemplatesArgs:
    config: DownstreamConfig
    template: RepositoryTemplate
    account_id: pulumi.Input[str]


class CacheRepositoryTemplates(pulumi.ComponentResource):
    """One creation template per rule prefix and region, applied to pull through cache, and the
    role ECR needs on them only when they encrypt with KMS or add tags."""

    def __init__(
        self,
        name: str,
        args: CacheRepositoryTemplatesArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ecr-ptc:downstream:CacheRepositoryTemplates", name, None, opts)
        config, template = args.config, args.template
        account_id = pulumi.Output.from_input(args.account_id)
        role_arn: pulumi.Output[str] | None = None
        depends_on: list[pulumi.Resource] = []
        if template.needs_role:
            # Sized now, so an oversized policy fails before anything is declared.
            template_role_permissions_text(config, template, SIZING_ACCOUNT_ID)
            self.role = aws.iam.Role(
                f"{name}-role",
                # Derived from the checked account, so a refused pairing creates no role either.
                description=account_id.apply(
                    lambda account: (
                        f"Assumed by ECR to create cache repositories in {account} "
                        "from a creation template"
                    )
                ),
                assume_role_policy=canonical_json(template_role_trust_policy()),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.role_policy = aws.iam.RolePolicy(
                f"{name}-role-policy",
                role=self.role.id,
                policy=account_id.apply(
                    lambda account: template_role_permissions_text(config, template, account)
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            role_arn = self.role.arn
            depends_on.append(self.role_policy)
        lifecycle = lifecycle_policy_text(template)
        self.templates: dict[tuple[str, str], aws.ecr.RepositoryCreationTemplate] = {}
        for r in config.regions:
            key_arn = template.kms_key_arn(r.name)
            encryption = (
                aws.ecr.RepositoryCreationTemplateEncryptionConfigurationArgs(
                    encryption_type="KMS", kms_key=key_arn
                )
                if key_arn is not None
                else aws.ecr.RepositoryCreationTemplateEncryptionConfigurationArgs(
                    encryption_type="AES256"
                )
            )
            for rule in config.rules:
                prefix = rule.ecr_repository_prefix
                self.templates[(r.name, prefix)] = aws.ecr.RepositoryCreationTemplate(
                    f"{name}-{r.name}-{prefix}",
                    region=r.name,
                    prefix=prefix,
                    applied_fors=[APPLIED_FOR],
                    description=template.description
                    or f"Cache repositories of pull-through-cache rule {prefix} (ecr-ptc)",
                    image_tag_mutability=template.image_tag_mutability,
                    encryption_configurations=[encryption],
                    lifecycle_policy=lifecycle,
                    resource_tags=dict(template.resource_tags) or None,
                    custom_role_arn=role_arn,
                    opts=pulumi.ResourceOptions(
                        parent=self,
                        depends_on=depends_on,
                        # The template's id is its prefix, like the rule's.
                        delete_before_replace=True,
                    ),
                )
        self.register_outputs({})
