"""PullThroughCache: one downstream account's cache. The role ECR assumes to fill it, one rule
per prefix and region, the creation templates and their role, and the consumer policy."""

from enum import StrEnum
from typing import Any, NotRequired, TypedDict

import pulumi
from pydantic import ValidationError

from ..inputs import stack_config as keys
from ..inputs.arguments import (
    as_argument_error,
    caller_account,
    camel_keys,
    dependencies,
    flat_config,
    known,
)
from ..inputs.errors import ConfigError
from ..inputs.messages import config_error
from ..inputs.stack_config import (
    DownstreamConfig,
    UpstreamRegistryModel,
    parse_downstream,
    valid_account_id,
)
from ..plan import contract
from ..plan.contract import UpstreamFacts
from ..plan.stack_plan import (
    ALERTS_GROUP,
    CONSUMERS,
    MAIN,
    PULL_THROUGH_CACHE_RULE,
    TEMPLATES,
    StackPlan,
    plan_downstream,
)
from ..rules.aws_names import region
from .resources import declare
from .resources import outputs as resolve_outputs

TYPE = "ecr-ptc:index:PullThroughCache"
# The groups' types: part of their children's URNs since the first version.
TEMPLATES_TYPE = "ecr-ptc:downstream:CacheRepositoryTemplates"
CONSUMERS_TYPE = "ecr-ptc:downstream:CacheConsumerAccess"
ALERTS_TYPE = "ecr-ptc:downstream:CacheAlerts"


class ImageTagMutability(StrEnum):
    """Whether the tags of a cache repository's images can be overwritten."""

    MUTABLE = "MUTABLE"
    """Tags can be overwritten (the default)."""
    IMMUTABLE = "IMMUTABLE"
    """Tags cannot be overwritten."""
    MUTABLE_WITH_EXCLUSION = "MUTABLE_WITH_EXCLUSION"
    """Tags can be overwritten, except those matching imageTagMutabilityExclusionFilters."""
    IMMUTABLE_WITH_EXCLUSION = "IMMUTABLE_WITH_EXCLUSION"
    """Tags cannot be overwritten, except those matching imageTagMutabilityExclusionFilters."""


# The argument types are named without an `Args` suffix: the generated SDKs add their own
# (CacheRuleArgs in TypeScript, Python, Go and C#), and a type named CacheRuleArgs here would
# come out as CacheRuleArgsArgs there.
class CacheRule(TypedDict):
    """One pull-through-cache rule: a cache namespace and the upstream namespace it copies.
    Required: ecrRepositoryPrefix."""

    ecr_repository_prefix: pulumi.Input[str]
    """Required. The cache namespace in this account (2-30 characters, or ROOT)."""
    upstream_repository_prefix: NotRequired[pulumi.Input[str]]
    """Optional. The upstream namespace it copies from. Default ROOT."""


class UpstreamRegistry(TypedDict):
    """The upstream registry, as an UpstreamRegistryAccess's `upstream` output (or the upstream
    stack) gives it. Required: accountId and region."""

    account_id: pulumi.Input[str]
    """Required. The upstream registry's 12-digit account."""
    region: pulumi.Input[str]
    """Required. The upstream registry's region."""
    repository_prefix: NotRequired[pulumi.Input[str]]
    """Optional. The namespace the upstream shares; rules must stay inside it. Default: all."""
    downstream_account_ids: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """Optional. The accounts the upstream grants. When given, this account must be among them
    (unless the upstream grants an organization)."""
    organization_id: NotRequired[pulumi.Input[str]]
    """Optional. The organization the upstream grants, if it grants one."""
    organizational_unit_paths: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """Optional. The organization paths the upstream grants, if any."""


class RepositoryTemplate(TypedDict):
    """Settings for the repositories ECR creates on a rule's first pull. Every field is
    optional."""

    image_tag_mutability: NotRequired[pulumi.Input[ImageTagMutability]]
    """Optional. MUTABLE (default), IMMUTABLE, MUTABLE_WITH_EXCLUSION or
    IMMUTABLE_WITH_EXCLUSION."""
    image_tag_mutability_exclusion_filters: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """Optional. Wildcard tag filters exempt from the mutability setting; required by the
    *_WITH_EXCLUSION modes, refused by the others."""
    expire_untagged_after_days: NotRequired[pulumi.Input[int]]
    """Optional. Expire untagged images this many days after they arrived."""
    keep_last_images: NotRequired[pulumi.Input[int]]
    """Optional. Keep only this many images per repository."""
    kms_key_arns: NotRequired[pulumi.Input[dict[str, pulumi.Input[str]]]]
    """Optional. Region -> KMS key ARN, one for each region; unset: AES256."""
    kms_key_arn: NotRequired[pulumi.Input[dict[str, pulumi.Input[str]]]]
    """Optional. The former name of kmsKeyArns; set one of the two."""
    resource_tags: NotRequired[pulumi.Input[dict[str, pulumi.Input[str]]]]
    """Optional. Tags for the created repositories."""
    description: NotRequired[pulumi.Input[str]]
    """Optional. The template's description (1-256 characters). Default: generated."""


class SubscriptionProtocol(StrEnum):
    """How an alert topic delivers to a subscriber (SNS's Subscribe protocols this program
    subscribes)."""

    EMAIL = "email"
    """An email to the endpoint, an email address."""
    EMAIL_JSON = "email-json"
    """The event as JSON in an email to the endpoint, an email address."""
    HTTPS = "https"
    """An HTTPS POST to the endpoint, an https:// URL."""
    HTTP = "http"
    """An HTTP POST to the endpoint, an http:// URL."""
    SMS = "sms"
    """A text message to the endpoint, an E.164 phone number."""
    SQS = "sqs"
    """A message on the endpoint, an SQS queue ARN (its queue policy must let SNS send)."""
    LAMBDA = "lambda"
    """An invocation of the endpoint, a Lambda function ARN (it must let SNS invoke it)."""


class AlertSubscription(TypedDict):
    """One subscription of each region's alert topic. Required: protocol and endpoint."""

    protocol: pulumi.Input[SubscriptionProtocol]
    """Required. email, email-json, https, http, sms, sqs or lambda."""
    endpoint: pulumi.Input[str]
    """Required. The protocol's endpoint: an email address, a URL, an E.164 phone number, an
    SQS queue or Lambda function ARN."""


class AlertTopic(TypedDict):
    """An SNS topic in each region, created by the component, that receives the alerts. Every
    field is optional."""

    subscriptions: NotRequired[pulumi.Input[list[pulumi.Input[AlertSubscription]]]]
    """Optional. Up to 25 subscriptions of each region's topic. Default: none (subscribe
    outside the stack, to the alertTopicArns output)."""


class Alerts(TypedDict):
    """Where the alerts go: exactly one of topic and eventBusArn."""

    topic: NotRequired[pulumi.Input[AlertTopic]]
    """Optional. An SNS topic in each region, created by the component; not with
    eventBusArn."""
    event_bus_arn: NotRequired[pulumi.Input[str]]
    """Optional. An existing event bus (arn:<partition>:events:<region>:<account>:event-bus/
    <name>, e.g. a central monitoring account's) to send the alerts to, with a role the
    component creates per region; not with topic. The bus's policy must let this account put
    events."""


# The names of the first version, for programs that import them.
CacheRuleArgs = CacheRule
UpstreamRegistryArgs = UpstreamRegistry
RepositoryTemplateArgs = RepositoryTemplate


class RegionalCacheRule(TypedDict):
    """A pull-through-cache rule as created in one region. Its keys are camelCase in every
    language, as in the downstream stack's `rules` output."""

    ecrRepositoryPrefix: str
    """The cache namespace in this account."""
    upstreamRepositoryPrefix: str
    """The upstream namespace it copies from."""
    region: str
    """The region of this rule."""
    upstreamRegistryUrl: str
    """The upstream registry's host name."""
    imageUriPrefix: str
    """What to pull from: <account>.dkr.ecr.<region>.<suffix>/<ecrRepositoryPrefix>."""


class PullThroughCacheArgs(TypedDict):
    """One downstream account's pull-through cache of an upstream ECR registry. Required:
    regions, rules and upstream."""

    regions: pulumi.Input[list[pulumi.Input[str]]]
    """Required. Regions to create every rule in; one partition."""
    rules: pulumi.Input[list[pulumi.Input[CacheRule]]]
    """Required. 1 to 50 rules."""
    upstream: pulumi.Input[UpstreamRegistry]
    """Required. The upstream registry: an UpstreamRegistryAccess's `upstream` output, or its
    account and region."""
    account_id: NotRequired[pulumi.Input[str]]
    """Optional. This (downstream) account. Default: the account of the AWS provider's
    credentials."""
    role_name: NotRequired[pulumi.Input[str]]
    """Optional. Name of the cache role. Default: generated. Not with cacheRoleArn."""
    cache_role_arn: NotRequired[pulumi.Input[str]]
    """Optional. An existing role of this account for ECR to assume instead of creating one
    (no cache role and no role policy are created; the role's permissions are its owner's)."""
    consumer_role_names: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """Optional. Existing roles of this account to attach the consumer policy to."""
    repository_template: NotRequired[pulumi.Input[RepositoryTemplate]]
    """Optional. Settings for the cache repositories ECR creates; unset: no creation template."""
    permissions_boundary_arn: NotRequired[pulumi.Input[str]]
    """Optional. Permissions boundary (a managed policy ARN) of every role the component
    creates."""
    iam_path: NotRequired[pulumi.Input[str]]
    """Optional. IAM path of every role the component creates. Default: /."""
    tags: NotRequired[pulumi.Input[dict[str, pulumi.Input[str]]]]
    """Optional. Tags for every taggable resource the component creates (its roles, its
    managed policy, its alert rules and topics); at most 50."""
    alerts: NotRequired[pulumi.Input[Alerts]]
    """Optional. An EventBridge rule in each region for the cache fills of these rules that
    did not succeed, delivered to an SNS topic or an event bus. Default: no alerts."""


ARGUMENT_NAMES = {
    keys.AWS_REGION_KEY: "regions[0]",
    keys.UPSTREAM_ACCOUNT_ID.full: "upstream.accountId",
    keys.UPSTREAM_REGION.full: "upstream.region",
    **{
        k.full: k.name
        for k in keys.KEYS
        if k.side in ("downstream", "both")
        and k not in (keys.UPSTREAM_ACCOUNT_ID, keys.UPSTREAM_REGION, keys.SIDE)
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
                keys.CACHE_ROLE_ARN.full: values.get("cache_role_arn"),
                keys.TAGS.full: values.get("tags"),
                keys.ALERTS.full: camel_keys(values.get("alerts")),
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
    """The role the pull-through-cache service assumes (or an existing one), one rule per prefix
    and region, the creation templates (with their role when they encrypt with KMS or tag), and
    the managed policy that lets this account's principals pull through the cache."""

    role_arn: pulumi.Output[str]
    """The cache role ECR assumes to copy images from the upstream."""
    role_name: pulumi.Output[str]
    """The cache role's name."""
    rules: pulumi.Output[list[RegionalCacheRule]]
    """One entry per rule and region, sorted by region and prefix; known once the rules exist,
    so what reads imageUriPrefix waits for them."""
    consumer_policy_arn: pulumi.Output[str]
    """The managed policy to attach to the principals that pull through the cache."""
    alert_topic_arns: pulumi.Output[dict[str, str]]
    """Region -> the ARN of that region's alert topic; empty unless alerts go to a topic."""

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
        if any(r.group == ALERTS_GROUP for r in planned.resources):
            parents[ALERTS_GROUP] = pulumi.ComponentResource(
                ALERTS_TYPE, f"{name}-alerts", None, pulumi.ResourceOptions(parent=self)
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
        # The upstream's grant (an UpstreamRegistryAccess's `upstream` output) comes first.
        declared = declare(planned.resources, parents, dependencies(args.get("upstream")))
        outputs = resolve_outputs(planned.outputs, declared)
        self.role_arn = pulumi.Output.from_input(outputs[contract.ROLE_ARN])
        self.role_name = pulumi.Output.from_input(outputs[contract.ROLE_NAME])
        rule_resources = [declared[r.name] for r in planned.of_type(PULL_THROUGH_CACHE_RULE)]
        summaries: list[RegionalCacheRule] = outputs[contract.RULES_OUTPUT]
        self.rules = pulumi.Output.all(*(r.urn for r in rule_resources)).apply(lambda _: summaries)
        self.consumer_policy_arn = outputs[contract.CONSUMER_POLICY_ARN]
        self.alert_topic_arns = pulumi.Output.from_input(outputs.get(contract.ALERT_TOPIC_ARNS, {}))
        self.register_outputs(
            {
                "roleArn": self.role_arn,
                "roleName": self.role_name,
                "rules": self.rules,
                "consumerPolicyArn": self.consumer_policy_arn,
                "alertTopicArns": self.alert_topic_arns,
            }
        )
