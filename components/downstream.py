"""PullThroughCache: one downstream account's cache. The role ECR assumes to fill it, one rule
per prefix and region, the creation templates and their role, and the consumer policy."""

from typing import Any, NotRequired, TypedDict

import pulumi
from pydantic import ValidationError

from components import config as keys
from components import contract
from components.arguments import (
    as_argument_error,
    caller_account,
    camel_keys,
    flat_config,
    known,
)
from components.aws_names import region
from components.config import (
    DownstreamConfig,
    UpstreamRegistryModel,
    parse_downstream,
    valid_account_id,
)
from components.config_error import ConfigError
from components.config_messages import config_error
from components.contract import UpstreamFacts
from components.declare import declare
from components.declare import outputs as resolve_outputs
from components.plan import CONSUMERS, MAIN, TEMPLATES, StackPlan, plan_downstream

TYPE = "ecr-ptc:index:PullThroughCache"
# The groups' types: part of their children's URNs since the first version.
TEMPLATES_TYPE = "ecr-ptc:downstream:CacheRepositoryTemplates"
CONSUMERS_TYPE = "ecr-ptc:downstream:CacheConsumerAccess"


class CacheRuleArgs(TypedDict):
    """One pull-through-cache rule: a cache namespace and the upstream namespace it copies."""

    ecr_repository_prefix: pulumi.Input[str]
    """The cache namespace in this account (2-30 characters, or ROOT)."""
    upstream_repository_prefix: NotRequired[pulumi.Input[str]]
    """The upstream namespace it copies from. Default ROOT."""


class UpstreamRegistryArgs(TypedDict):
    """The upstream registry, as an UpstreamRegistryAccess (or the upstream stack) exports it."""

    account_id: pulumi.Input[str]
    """The upstream registry's 12-digit account."""
    region: pulumi.Input[str]
    """The upstream registry's region."""
    repository_prefix: NotRequired[pulumi.Input[str]]
    """The namespace the upstream shares; rules must stay inside it. Default: all."""
    downstream_account_ids: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """The accounts the upstream grants. When given, this account must be among them."""
    organization_id: NotRequired[pulumi.Input[str]]
    """The organization the upstream grants, if it grants one."""
    organizational_unit_paths: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """The organization paths the upstream grants, if any."""


class RepositoryTemplateArgs(TypedDict):
    """Settings for the repositories ECR creates on a rule's first pull."""

    image_tag_mutability: NotRequired[pulumi.Input[str]]
    """MUTABLE (default), IMMUTABLE, MUTABLE_WITH_EXCLUSION or IMMUTABLE_WITH_EXCLUSION."""
    image_tag_mutability_exclusion_filters: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """Wildcard tag filters exempt from the mutability setting (the *_WITH_EXCLUSION modes)."""
    expire_untagged_after_days: NotRequired[pulumi.Input[int]]
    """Expire untagged images this many days after they arrived."""
    keep_last_images: NotRequired[pulumi.Input[int]]
    """Keep only this many images per repository."""
    kms_key_arn: NotRequired[pulumi.Input[dict[str, pulumi.Input[str]]]]
    """Region -> KMS key ARN, one per region; unset: AES256."""
    resource_tags: NotRequired[pulumi.Input[dict[str, pulumi.Input[str]]]]
    """Tags for the created repositories."""
    description: NotRequired[pulumi.Input[str]]
    """The template's description (1-256 characters). Default: generated."""


class PullThroughCacheArgs(TypedDict):
    """One downstream account's pull-through cache of an upstream ECR registry."""

    regions: pulumi.Input[list[pulumi.Input[str]]]
    """Regions to create every rule in; one partition."""
    rules: pulumi.Input[list[pulumi.Input[CacheRuleArgs]]]
    """1 to 50 rules."""
    upstream: pulumi.Input[UpstreamRegistryArgs]
    """The upstream registry."""
    account_id: NotRequired[pulumi.Input[str]]
    """This (downstream) account. Default: the account of the AWS provider's credentials."""
    role_name: NotRequired[pulumi.Input[str]]
    """Name of the cache role. Default: generated."""
    consumer_role_names: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """Existing roles of this account to attach the consumer policy to."""
    repository_template: NotRequired[pulumi.Input[RepositoryTemplateArgs]]
    """Settings for the cache repositories ECR creates; unset: no creation template."""
    permissions_boundary_arn: NotRequired[pulumi.Input[str]]
    """Permissions boundary (a managed policy ARN) of every role the component creates."""
    iam_path: NotRequired[pulumi.Input[str]]
    """IAM path of every role the component creates. Default: /."""


ARGUMENT_NAMES = {
    keys.AWS_REGION_KEY: "regions[0]",
    keys.UPSTREAM_ACCOUNT_ID.full: "upstream.accountId",
    keys.UPSTREAM_REGION.full: "upstream.region",
    **{
        k.full: k.name
        for k in keys.KEYS
        if k.side == "downstream" and k not in (keys.UPSTREAM_ACCOUNT_ID, keys.UPSTREAM_REGION)
    },
}


def downstream_config(values: dict[str, Any]) -> DownstreamConfig:
    """Known arguments, validated exactly like a downstream stack's config."""
    regions = values.get("regions") or []
    upstream = values.get("upstream") or {}
    return parse_downstream(
        flat_config(
            {
                keys.AWS_REGION_KEY: regions[0] if regions else None,
                keys.REGIONS.full: regions,
                keys.RULES.full: camel_keys(values.get("rules")),
                keys.UPSTREAM_ACCOUNT_ID.full: upstream.get("account_id"),
                keys.UPSTREAM_REGION.full: upstream.get("region"),
                keys.ROLE_NAME.full: values.get("role_name"),
                keys.CONSUMER_ROLE_NAMES.full: values.get("consumer_role_names"),
                keys.REPOSITORY_TEMPLATE.full: camel_keys(values.get("repository_template")),
                keys.PERMISSIONS_BOUNDARY_ARN.full: values.get("permissions_boundary_arn"),
                keys.IAM_PATH.full: values.get("iam_path"),
            }
        )
    )


_UPSTREAM_FIELDS = UpstreamRegistryModel.model_fields


def upstream_facts(values: dict[str, Any]) -> UpstreamFacts:
    """The upstream as the `upstream` argument describes it, validated like config."""
    try:
        upstream = UpstreamRegistryModel.model_validate(camel_keys(values.get("upstream") or {}))
    except ValidationError as err:
        fields = {f.alias or n: f"upstream.{f.alias or n}" for n, f in _UPSTREAM_FIELDS.items()}
        raise config_error(err, UpstreamRegistryModel, fields, values.get("upstream")) from None
    where = region(upstream.region)
    accounts = upstream.downstream_account_ids
    return UpstreamFacts(
        account_id=upstream.account_id,
        region=where,
        # None: not told whom the upstream grants, so nothing to check this account against.
        downstream_account_ids=None if accounts is None else tuple(accounts),
        organization_id=upstream.organization_id,
        repository_prefix=upstream.repository_prefix,
        organizational_unit_paths=tuple(upstream.organizational_unit_paths),
    )


def plan(name: str, args: PullThroughCacheArgs, account_id: str | None = None) -> StackPlan:
    """The component's whole plan from its arguments: every check, size and policy text."""
    values = known("arguments", dict(args))
    config = downstream_config(values)
    account = valid_account_id("accountId", values.get("account_id") or account_id)
    return plan_downstream(config, upstream_facts(values), account, name)


class PullThroughCache(pulumi.ComponentResource):
    """The role the pull-through-cache service assumes, one rule per prefix and region, the
    creation templates (with their role when they encrypt with KMS or tag), and the managed
    policy that lets this account's principals pull through the cache."""

    role_arn: pulumi.Output[str]
    """The cache role ECR assumes to copy images from the upstream."""
    rules: pulumi.Output[list[dict[str, str]]]
    """One entry per rule and region: ecrRepositoryPrefix, upstreamRepositoryPrefix, region,
    upstreamRegistryUrl and imageUriPrefix (what to pull from)."""
    consumer_policy_arn: pulumi.Output[str]
    """The managed policy to attach to the principals that pull through the cache."""

    def __init__(
        self,
        name: str,
        args: PullThroughCacheArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        try:
            caller = None if dict(args).get("account_id") else caller_account(opts)
            planned = plan(name, args, caller)
        except ConfigError as err:
            raise as_argument_error(err, f"PullThroughCache {name!r}", ARGUMENT_NAMES) from None
        super().__init__(TYPE, name, None, opts)
        parents: dict[str, pulumi.Resource] = {MAIN: self}
        if any(r.group == TEMPLATES for r in planned.resources):
            parents[TEMPLATES] = pulumi.ComponentResource(
                TEMPLATES_TYPE, f"{name}-template", None, pulumi.ResourceOptions(parent=self)
            )
        parents[CONSUMERS] = pulumi.ComponentResource(
            CONSUMERS_TYPE,
            f"{name}-consumer",
            None,
            # The first version declared the consumer policy beside this component, not under it.
            pulumi.ResourceOptions(
                parent=self, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)]
            ),
        )
        declared = declare(planned.resources, parents)
        outputs = resolve_outputs(planned.outputs, declared)
        self.role_arn = outputs[contract.ROLE_ARN]
        self.rules = pulumi.Output.from_input(outputs[contract.RULES_OUTPUT])
        self.consumer_policy_arn = outputs[contract.CONSUMER_POLICY_ARN]
        self.register_outputs(
            {
                "roleArn": self.role_arn,
                "rules": self.rules,
                "consumerPolicyArn": self.consumer_policy_arn,
            }
        )
