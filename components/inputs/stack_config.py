"""Stack configuration: read once, validated by pydantic models, frozen.

Components receive the typed values below, never raw config. Every error names the config key,
the value it got and what is valid, and is raised before any resource is declared.

The program reads config as the Pulumi CLI hands it over: a flat mapping of every key
(`ecr-ptc:rules`, `aws:region`, ...) to a string, JSON for lists, objects and booleans. The same
code runs under the CLI, in tests and in `make plan`.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeAlias

import pulumi
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ..plan.policies import OWNED_SIDS, CacheReadGrant, canonical_statement
from ..rules import quotas
from ..rules.aws_names import ROOT_PREFIX, Region, region, repositories_under
from ..rules.policy_rules import (
    CACHE_READ_ACTIONS,
    Grant,
    Registry,
    denied_reads,
    statement_problems,
)
from .errors import ConfigError
from .messages import config_error
from .values import (
    ACCOUNT_ID_PATTERN,
    TAG_CHARACTERS,
    AccountId,
    EventBusArn,
    IamPath,
    KmsKeyArn,
    OrganizationalUnitId,
    OrganizationalUnitPath,
    OrganizationId,
    PolicyArn,
    Prefix,
    RegionName,
    RepositoryName,
    RoleArn,
    RoleName,
    SharedPrefix,
    StackName,
    StatementId,
    SubscriptionEndpoint,
    SubscriptionProtocolName,
    TagFilter,
    Unset,
    invalid,
    subscription_endpoint_problem,
    tag_text_problem,
)

NAMESPACE = "ecr-ptc"
RawConfig = Mapping[str, str]
Side = Literal["upstream", "downstream"]
SIDES: tuple[Side, ...] = ("upstream", "downstream")
AWS_REGION_KEY = "aws:region"
ALLOWED_ACCOUNT_IDS_KEY = "aws:allowedAccountIds"


@dataclass(frozen=True)
class Key:
    """A project config key: its type as Pulumi.yaml declares it, and its default.

    `pulumi_type` is None for keys holding objects: Pulumi.yaml's schema can only type strings,
    integers, booleans and arrays of those, so such keys are documented there in a comment and
    validated here.
    """

    name: str
    side: Literal["both", "upstream", "downstream"]
    pulumi_type: Literal["string", "boolean", "array"] | None
    default: Any
    items: Literal["string"] | None = None

    @property
    def full(self) -> str:
        return f"{NAMESPACE}:{self.name}"


SIDE = Key("side", "both", "string", "")
DOWNSTREAM_ACCOUNT_IDS = Key("downstreamAccountIds", "upstream", "array", [], "string")
ORGANIZATION_ID = Key("organizationId", "upstream", "string", "")
ORGANIZATIONAL_UNIT_PATHS = Key("organizationalUnitPaths", "upstream", "array", [], "string")
REPOSITORY_PREFIX = Key("repositoryPrefix", "upstream", "string", "")
GRANT_VIA_KEY = Key("grantVia", "upstream", "string", "registry")
REPOSITORIES = Key("repositories", "upstream", "array", [], "string")
MANAGE_REGISTRY_POLICY_SCOPE = Key("manageRegistryPolicyScope", "upstream", "boolean", True)
EXTRA_REGISTRY_POLICY_STATEMENTS = Key("extraRegistryPolicyStatements", "upstream", None, [])
UPSTREAM_STACK = Key("upstreamStack", "downstream", "string", "")
UPSTREAM_ACCOUNT_ID = Key("upstreamAccountId", "downstream", "string", "")
UPSTREAM_REGION = Key("upstreamRegion", "downstream", "string", "")
RULES = Key("rules", "downstream", None, [])
REGIONS = Key("regions", "downstream", "array", [], "string")
ROLE_NAME = Key("roleName", "downstream", "string", "")
REPOSITORY_TEMPLATE = Key("repositoryTemplate", "downstream", None, None)
CONSUMER_ROLE_NAMES = Key("consumerRoleNames", "downstream", "array", [], "string")
# Every role the program creates gets this permissions boundary and this path, so that a deploy
# role allowed to create roles only with the boundary cannot escalate (`make ci-roles`). Either
# side: the upstream creates a role too when its alerts go to an event bus.
PERMISSIONS_BOUNDARY_ARN = Key("permissionsBoundaryArn", "both", "string", "")
IAM_PATH = Key("iamPath", "both", "string", "")
# An existing role of the downstream account for ECR to assume instead of one the stack creates.
CACHE_ROLE_ARN = Key("cacheRoleArn", "downstream", "string", "")
# Tags of every taggable resource the stack creates (its roles, its managed policy, its alert
# rules and topics).
TAGS = Key("tags", "both", None, {})
# EventBridge alerts: failed cache fills (downstream) or changes to the grant (upstream), to an
# SNS topic per region that the stack creates or to an existing event bus. Unset: no alerts.
ALERTS = Key("alerts", "both", None, None)
# A downstream stack file that sets ACCOUNTS or ORGANIZATIONAL_UNIT_IDS is a fleet template: it
# is never deployed itself; `make fleet-up` deploys one member stack per account from it.
ACCOUNTS = Key("accounts", "downstream", None, [])
ORGANIZATIONAL_UNIT_IDS = Key("organizationalUnitIds", "downstream", "array", [], "string")
EXCLUDE_ACCOUNT_IDS = Key("excludeAccountIds", "downstream", "array", [], "string")
ACCOUNT_ROLE_NAME = Key("accountRoleName", "downstream", "string", "")
ACCOUNT_PREVIEW_ROLE_NAME = Key("accountPreviewRoleName", "downstream", "string", "")
# How a fleet run rolls out (waves, failure tolerance, pruning), as CloudFormation StackSets'
# operation preferences; and per-account values that replace the template's for one member.
OPERATION_PREFERENCES = Key("operationPreferences", "downstream", None, {})
ACCOUNT_OVERRIDES = Key("accountOverrides", "downstream", None, {})
FLEET_KEYS = (
    ACCOUNTS,
    ORGANIZATIONAL_UNIT_IDS,
    EXCLUDE_ACCOUNT_IDS,
    ACCOUNT_ROLE_NAME,
    ACCOUNT_PREVIEW_ROLE_NAME,
    OPERATION_PREFERENCES,
    ACCOUNT_OVERRIDES,
)
# The member roles `make ci-roles` emits as a StackSet template: a deploy role and a read-only
# preview role, each trusted only by the fleet's central role of its kind.
DEFAULT_ACCOUNT_ROLE_NAME = "ecr-ptc-fleet-deploy"
DEFAULT_ACCOUNT_PREVIEW_ROLE_NAME = "ecr-ptc-fleet-preview"

KEYS: tuple[Key, ...] = (
    SIDE,
    DOWNSTREAM_ACCOUNT_IDS,
    ORGANIZATION_ID,
    ORGANIZATIONAL_UNIT_PATHS,
    REPOSITORY_PREFIX,
    GRANT_VIA_KEY,
    REPOSITORIES,
    MANAGE_REGISTRY_POLICY_SCOPE,
    EXTRA_REGISTRY_POLICY_STATEMENTS,
    UPSTREAM_STACK,
    UPSTREAM_ACCOUNT_ID,
    UPSTREAM_REGION,
    RULES,
    REGIONS,
    ROLE_NAME,
    REPOSITORY_TEMPLATE,
    CONSUMER_ROLE_NAMES,
    PERMISSIONS_BOUNDARY_ARN,
    IAM_PATH,
    CACHE_ROLE_ARN,
    TAGS,
    ALERTS,
    *FLEET_KEYS,
)
KEYS_BY_NAME = {k.name: k for k in KEYS}


# --- models: the shape and the value rules of each side's config --------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
    )


class Statement(BaseModel):
    """An IAM policy statement, as a registry policy takes it. Field names are IAM's."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    Sid: StatementId | None = None
    Effect: Literal["Allow", "Deny"]
    Principal: Literal["*"] | dict[str, Any] | None = None
    NotPrincipal: dict[str, Any] | None = None
    Action: str | list[str] | None = None
    NotAction: str | list[str] | None = None
    Resource: str | list[str] | None = None
    NotResource: str | list[str] | None = None
    # Operators, keys and values (strings, numbers, booleans) are checked by policy_rules, which
    # the policy pack shares, with messages that say which operator or value is wrong.
    Condition: dict[str, Any] | None = None

    @field_validator("Principal", "NotPrincipal", mode="before")
    @classmethod
    def _principal_shape(cls, value: object, info: ValidationInfo) -> object:
        # Without this, a bare ARN is refused as "one of '*'", pydantic's first union branch.
        if (
            value is None
            or isinstance(value, dict)
            or (value == "*" and info.field_name == "Principal")
        ):
            return value
        star = "'*' or " if info.field_name == "Principal" else ""
        raise invalid(
            f"{star}a mapping of principal type to ARNs, e.g. "
            "{AWS: [arn:aws:iam::<account>:root]}"
        )

    @model_validator(mode="after")
    def _one_of_each(self) -> Statement:
        if (self.Action is None) == (self.NotAction is None):
            raise ValueError("a statement with exactly one of Action or NotAction")
        if (self.Principal is None) == (self.NotPrincipal is None):
            raise ValueError(
                "a statement with exactly one of Principal or NotPrincipal "
                "(registry policies need one)"
            )
        if self.Resource is not None and self.NotResource is not None:
            raise ValueError("a statement with Resource or NotResource, not both")
        return self


# A lifecycle rule's countNumber: a positive 32-bit integer.
LifecycleCount = Annotated[
    int | None,
    Field(
        ge=1,
        le=quotas.LIFECYCLE_COUNT_MAX,
        description=f"a whole number from 1 to {quotas.LIFECYCLE_COUNT_MAX:,}: a lifecycle "
        "rule's countNumber",
    ),
]


# The keys every role the stack creates takes, on either side (the same types in both models, so
# the JSON Schema describes each key once).
BoundaryArn = Annotated[PolicyArn | None, Unset]
RolePath = Annotated[IamPath | None, Unset]
Tags = Annotated[
    dict[str, str],
    Field(
        description=f"at most {quotas.MAX_TAGS_PER_RESOURCE} tags (keys of 1 to "
        f"{quotas.TAG_KEY_MAX_CHARS} characters, not starting with 'aws:'; values of at most "
        f"{quotas.TAG_VALUE_MAX_CHARS}) for every role, policy, alert rule and topic the stack "
        "creates"
    ),
]


class AlertSubscriptionModel(_Model):
    """One subscription of each region's alert topic."""

    protocol: SubscriptionProtocolName
    endpoint: SubscriptionEndpoint


class AlertTopicModel(_Model):
    """An SNS topic in each region of the stack, created by it."""

    subscriptions: Annotated[
        list[AlertSubscriptionModel],
        Field(
            max_length=quotas.MAX_ALERT_SUBSCRIPTIONS,
            description=f"at most {quotas.MAX_ALERT_SUBSCRIPTIONS} subscriptions of each "
            "region's topic, each {protocol, endpoint} (more can be added outside the stack)",
        ),
    ] = []


class AlertsModel(_Model):
    """Where the stack's alerts go: exactly one of topic and eventBusArn."""

    topic: Annotated[
        AlertTopicModel | None,
        Field(
            description="an SNS topic in each region of the stack, created by it, with these "
            "subscriptions; {} for a topic without subscriptions"
        ),
    ] = None
    event_bus_arn: Annotated[
        EventBusArn | None,
        Field(
            description="an existing event bus to send the alerts to (a central monitoring "
            "account's): the stack creates the role EventBridge sends with"
        ),
    ] = None


class UpstreamModel(_Model):
    region: RegionName
    downstream_account_ids: list[AccountId] = []
    organization_id: Annotated[OrganizationId | None, Unset] = None
    organizational_unit_paths: list[OrganizationalUnitPath] = []
    repository_prefix: Annotated[SharedPrefix | None, Unset] = None
    grant_via: Literal["registry", "repository"] = "registry"
    repositories: list[RepositoryName] = []
    manage_registry_policy_scope: bool = True
    extra_registry_policy_statements: list[Statement] = []
    permissions_boundary_arn: BoundaryArn = None
    iam_path: RolePath = None
    tags: Tags = {}
    alerts: AlertsModel | None = None
    side: Literal["upstream", "downstream", ""] = ""


class RuleModel(_Model):
    ecr_repository_prefix: Prefix
    upstream_repository_prefix: Prefix = ROOT_PREFIX


# The per-account keys an accountOverrides entry may set, with the types of the same keys at the
# top of a downstream stack file (DownstreamModel and TemplateModel use these too).
Regions = list[RegionName]
RoleNames = list[RoleName]
KmsKeyArns: TypeAlias = KmsKeyArn | dict[str, KmsKeyArn]


class TemplateModel(_Model):
    image_tag_mutability: Literal[
        "MUTABLE", "IMMUTABLE", "MUTABLE_WITH_EXCLUSION", "IMMUTABLE_WITH_EXCLUSION"
    ] = "MUTABLE"
    image_tag_mutability_exclusion_filters: Annotated[
        list[TagFilter],
        Field(
            max_length=quotas.EXCLUSION_FILTERS_MAX,
            description=f"{quotas.EXCLUSION_FILTERS_MIN} to {quotas.EXCLUSION_FILTERS_MAX} tag "
            "filters: what ECR's CreateRepositoryCreationTemplate takes",
        ),
    ] = []
    expire_untagged_after_days: LifecycleCount = None
    keep_last_images: LifecycleCount = None
    kms_key_arns: KmsKeyArns | None = None
    # The former name of kmsKeyArns, still accepted.
    kms_key_arn: KmsKeyArns | None = None
    resource_tags: dict[str, str] | None = None
    description: (
        Annotated[str, Field(min_length=1, max_length=quotas.TEMPLATE_DESCRIPTION_MAX_CHARS)] | None
    ) = None


class UpstreamRegistryModel(_Model):
    """The upstream registry as a PullThroughCache component's `upstream` argument gives it."""

    account_id: AccountId
    region: RegionName
    repository_prefix: Annotated[SharedPrefix | None, Unset] = None
    downstream_account_ids: list[AccountId] | None = None
    organization_id: Annotated[OrganizationId | None, Unset] = None
    organizational_unit_paths: list[OrganizationalUnitPath] = []


class FleetAccountModel(_Model):
    account_id: AccountId
    role_arn: RoleArn
    preview_role_arn: RoleArn | None = None


# --- amounts: counts or percentages of a fleet run's members (operationPreferences, env) -------

# The largest count an amount takes: more than any organization holds accounts.
AMOUNT_COUNT_MAX = 1_000_000
# Anchored, ASCII-only and linear: each alternative starts with a different digit or length, so
# a text matches one way at most. No sign, no spaces, no leading zeros.
COUNT_PATTERN = "0|[1-9][0-9]{0,6}"
PERCENT_PATTERN = "(100|[1-9]?[0-9])%"
_COUNT = re.compile(COUNT_PATTERN, re.ASCII)
_PERCENT = re.compile(PERCENT_PATTERN, re.ASCII)


@dataclass(frozen=True)
class Amount:
    """A number of members: a count, or a percentage of the members at hand (rounded down, as
    StackSets' MaxConcurrentPercentage and FailureTolerancePercentage are)."""

    count: int | None = None
    percent: int | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.percent is None):
            raise ValueError("an Amount is a count or a percentage, exactly one")

    def of(self, total: int, at_least: int = 0) -> int:
        """How many of `total` members: the count, or the percentage rounded down; never fewer
        than `at_least`."""
        n = self.count if self.count is not None else total * (self.percent or 0) // 100
        return max(n, at_least)

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent}%"


def amount_valid(minimum: int, percent: bool = True) -> str:
    """What an amount of at least `minimum` may be, in words."""
    count = f"a whole number from {minimum} to {AMOUNT_COUNT_MAX:,}"
    if not percent:
        return count
    return f"{count}, or a percentage from {minimum}% to 100% (e.g. 25%)"


def _amount(value: object, minimum: int, percent: bool = True) -> Amount | None:
    """The one rule for amounts, from config (a YAML number or string) or the environment (a
    string): None when `value` is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        whole = _PERCENT.fullmatch(value) if percent else None
        if whole is not None:
            share = int(whole[1])
            return Amount(percent=share) if share >= minimum else None
        if _COUNT.fullmatch(value) is None:
            return None
        value = int(value)
    if not isinstance(value, int) or not minimum <= value <= AMOUNT_COUNT_MAX:
        return None
    return Amount(count=value)


def parse_amount(key: str, raw: str, minimum: int, *, percent: bool = True) -> Amount:
    """An amount given as text (an environment variable such as WAVE_SIZE): a count of at least
    `minimum`, or (unless `percent` is False) a percentage 'N%' from `minimum` to 100. The same
    rule as operationPreferences in a fleet template."""
    amount = _amount(raw, minimum, percent)
    if amount is None:
        raise ConfigError(key, raw, amount_valid(minimum, percent))
    return amount


def default_max_prune(fleet_size: int) -> int:
    """The most stacks one run prunes without confirmation when maxPrune is unset: 5, or 10% of
    the fleet (rounded down) when that is more."""
    return max(5, fleet_size * 10 // 100)


def _amount_check(minimum: int, percent: bool = True) -> Any:
    """The validator of a field holding an amount as the stack file gives it (kept as given)."""
    valid = amount_valid(minimum, percent)

    def check(value: object) -> object:
        if _amount(value, minimum, percent) is None:
            raise invalid(valid)
        return value

    return PlainValidator(check)


def _amount_schema(minimum: int, percent: bool = True) -> WithJsonSchema:
    # The schema's patterns also leave out 0 where the minimum is 1 (the program checks the
    # bounds of any minimum).
    counts, shares = (
        (COUNT_PATTERN, PERCENT_PATTERN)
        if minimum < 1
        else ("[1-9][0-9]{0,6}", "(100|[1-9][0-9]?)%")
    )
    forms: list[dict[str, Any]] = [
        {"type": "integer", "minimum": minimum, "maximum": AMOUNT_COUNT_MAX},
        {"type": "string", "pattern": f"^({counts})$"},
    ]
    if percent:
        forms.append({"type": "string", "pattern": f"^{shares}$"})
    return WithJsonSchema({"anyOf": forms, "description": amount_valid(minimum, percent)})


CanaryCount = Annotated[
    int | str, _amount_check(0, percent=False), _amount_schema(0, percent=False)
]
WaveSize = Annotated[int | str, _amount_check(1), _amount_schema(1)]
Tolerance = Annotated[int | str, _amount_check(0), _amount_schema(0)]


class OperationPreferencesModel(_Model):
    """A fleet run's rollout, as CloudFormation StackSets' operation preferences."""

    canary: Annotated[
        CanaryCount,
        Field(description="members of the first wave, run alone before the others; 0: none"),
    ] = 1
    wave_size: Annotated[
        WaveSize,
        Field(
            description="members per later wave; a percentage of the run's members, rounded "
            "down, at least 1"
        ),
    ] = "25%"
    failure_tolerance: Annotated[
        Tolerance,
        Field(
            description="the run starts no more members once more than this many have "
            "failed; a percentage rounded down"
        ),
    ] = 0
    max_prune: Annotated[
        Tolerance | None,
        Field(
            description="the most stacks of former members one run prunes without "
            "confirmation; default: 5, or 10% of the fleet (rounded down) when more"
        ),
    ] = None
    retain_stacks_on_account_removal: Annotated[
        bool,
        Field(
            description="a former member's resources stay in its account when it leaves the "
            "fleet, as StackSets' RetainStacksOnAccountRemoval; false: pruning destroys them"
        ),
    ] = False


class AccountOverrideModel(_Model):
    """What one member sets differently from the template."""

    regions: Regions | None = None
    role_name: RoleName | None = None
    consumer_role_names: RoleNames | None = None
    kms_key_arn: KmsKeyArns | None = None


class _OverrideEntry(_Model):
    """One accountOverrides value, validated under its own key name."""

    override: AccountOverrideModel


_OVERRIDES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "account ID (quoted, 12 digits) -> what that member sets differently from "
    "the template: regions, roleName, consumerRoleNames, kmsKeyArn (the member's "
    "repositoryTemplate.kmsKeyArn)",
    "propertyNames": {"pattern": "^[0-9]{12}$"},
    # Inline: the override's fields are plain types, so its schema has no definitions.
    "additionalProperties": AccountOverrideModel.model_json_schema(by_alias=True),
}


class DownstreamModel(_Model):
    region: RegionName
    upstream_stack: Annotated[StackName | None, Unset] = None
    upstream_account_id: Annotated[AccountId | None, Unset] = None
    upstream_region: Annotated[RegionName | None, Unset] = None
    rules: Annotated[
        list[RuleModel],
        Field(
            min_length=1,
            max_length=quotas.MAX_RULES_PER_REGISTRY,
            description=f"1 to {quotas.MAX_RULES_PER_REGISTRY} rules: AWS's quota of "
            "pull-through-cache rules per registry, not adjustable",
        ),
    ]
    regions: Regions = []
    role_name: Annotated[RoleName | None, Unset] = None
    repository_template: TemplateModel | None = None
    consumer_role_names: RoleNames = []
    permissions_boundary_arn: BoundaryArn = None
    iam_path: RolePath = None
    cache_role_arn: Annotated[RoleArn | None, Unset] = None
    tags: Tags = {}
    alerts: AlertsModel | None = None
    accounts: list[AccountId | FleetAccountModel] = []
    organizational_unit_ids: list[OrganizationalUnitId] = []
    exclude_account_ids: list[AccountId] = []
    account_role_name: Annotated[RoleName | None, Unset] = None
    account_preview_role_name: Annotated[RoleName | None, Unset] = None
    operation_preferences: Annotated[
        OperationPreferencesModel | None,
        Field(
            description="a fleet template's rollout, as CloudFormation StackSets' operation "
            "preferences: canary, waveSize, failureTolerance, maxPrune, "
            "retainStacksOnAccountRemoval"
        ),
    ] = None
    # Validated entry by entry in parse_fleet, so that errors name `accountOverrides["<id>"]`.
    account_overrides: Annotated[dict[str, Any], WithJsonSchema(_OVERRIDES_SCHEMA)] = {}
    side: Literal["upstream", "downstream", ""] = ""


# --- typed, validated values the components receive ----------------------------------------------


@dataclass(frozen=True)
class CacheRule:
    ecr_repository_prefix: str
    upstream_repository_prefix: str = ROOT_PREFIX


@dataclass(frozen=True, order=True)
class Subscription:
    """A subscription of the alert topics: SNS's protocol and the endpoint."""

    protocol: str
    endpoint: str


@dataclass(frozen=True)
class Alerts:
    """Where a stack's alerts go: an SNS topic per region, created by the stack, with these
    subscriptions; or, with `event_bus_arn`, an existing event bus."""

    subscriptions: tuple[Subscription, ...] = ()
    event_bus_arn: str | None = None

    @property
    def to_topic(self) -> bool:
        return self.event_bus_arn is None


@dataclass(frozen=True)
class UpstreamConfig:
    region: Region
    downstream_account_ids: tuple[str, ...]
    organization_id: str | None
    repository_prefix: str | None
    grant_via: Literal["registry", "repository"]
    repositories: tuple[str, ...]
    manage_registry_policy_scope: bool
    extra_registry_policy_statements: tuple[Mapping[str, Any], ...]
    organizational_unit_paths: tuple[str, ...] = ()
    permissions_boundary_arn: str | None = None
    iam_path: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    alerts: Alerts | None = None

    @property
    def grant(self) -> CacheReadGrant:
        return CacheReadGrant(
            self.region.partition,
            self.downstream_account_ids,
            self.organization_id,
            self.organizational_unit_paths,
        )


@dataclass(frozen=True)
class DirectUpstream:
    """An upstream registry managed elsewhere, given by account and region."""

    account_id: str
    region: Region


@dataclass(frozen=True)
class RepositoryTemplate:
    """Settings for the repositories ECR creates on a rule's first pull."""

    image_tag_mutability: str = "MUTABLE"
    image_tag_mutability_exclusion_filters: tuple[str, ...] = ()
    expire_untagged_after_days: int | None = None
    keep_last_images: int | None = None
    # Region name -> KMS key ARN, one per configured region; empty: AES256.
    kms_key_arns: tuple[tuple[str, str], ...] = ()
    resource_tags: tuple[tuple[str, str], ...] = ()
    description: str | None = None

    def kms_key_arn(self, region_name: str) -> str | None:
        return dict(self.kms_key_arns).get(region_name)

    @property
    def needs_role(self) -> bool:
        """ECR needs a role of ours on the template only to use a KMS key or to tag."""
        return bool(self.kms_key_arns or self.resource_tags)


@dataclass(frozen=True)
class DownstreamConfig:
    region: Region
    regions: tuple[Region, ...]
    rules: tuple[CacheRule, ...]
    role_name: str | None
    upstream_stack: str | None
    upstream: DirectUpstream | None
    repository_template: RepositoryTemplate | None = None
    consumer_role_names: tuple[str, ...] = ()
    permissions_boundary_arn: str | None = None
    iam_path: str | None = None
    # An existing role ECR assumes; None: the stack creates the cache role.
    cache_role_arn: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    alerts: Alerts | None = None

    @property
    def cache_role_name(self) -> str | None:
        """The cache role's name when known before deploying: given, or of cacheRoleArn."""
        if self.cache_role_arn is not None:
            return self.cache_role_arn.rsplit("/", 1)[1]
        return self.role_name

    @property
    def size_summary(self) -> str:
        """What drives the size of the policies that list the cache repositories."""
        return f"{len(self.rules)} rules in {len(self.regions)} regions"


StackConfig = UpstreamConfig | DownstreamConfig


class FleetTemplateError(ConfigError):
    """A fleet template was run as a stack of its own."""


# --- reading the flat config ---------------------------------------------------------------------


_SHAPES = {
    "rules": "a YAML list of rules, each {ecrRepositoryPrefix: <prefix>, "
    "upstreamRepositoryPrefix: <prefix, optional>}",
    "extraRegistryPolicyStatements": "a YAML list of IAM statements",
    "repositoryTemplate": "a mapping of template settings",
    "accounts": "a YAML list of account IDs or {accountId, roleArn} mappings",
    "operationPreferences": "a mapping of canary, waveSize, failureTolerance, maxPrune and "
    "retainStacksOnAccountRemoval",
    "accountOverrides": "a mapping of account ID (quoted) to {regions, roleName, "
    "consumerRoleNames, kmsKeyArn}",
    "alerts": "a mapping with exactly one of topic ({subscriptions: [{protocol, endpoint}]}) "
    "or eventBusArn",
}


def _decode(key: Key, raw: str) -> Any:
    """The CLI hands lists, objects and booleans as JSON text; strings as they are."""
    if key.pulumi_type == "string":
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        if key.pulumi_type == "boolean":
            raise ConfigError(key.full, raw, "true or false") from None
        shape = _SHAPES.get(key.name, "a YAML list, as the stack file gives it")
        raise ConfigError(key.full, raw, shape) from None


def _holds_default(key: Key, raw: str) -> bool:
    if isinstance(key.default, str):
        return raw == key.default
    try:
        return bool(json.loads(raw) == key.default)
    except json.JSONDecodeError:
        return False


def resolve_side(config: RawConfig, stack_name: str) -> Side:
    configured = config.get(SIDE.full) or None
    if configured is not None:
        if configured not in SIDES:
            raise ConfigError(SIDE.full, configured, "'upstream' or 'downstream'")
        return "upstream" if configured == "upstream" else "downstream"
    for side in SIDES:
        if stack_name == side or stack_name.startswith(f"{side}-"):
            return side
    raise ConfigError(
        SIDE.full,
        None,
        f"set it to 'upstream' or 'downstream': the stack name {stack_name!r} does not say "
        "(stacks named upstream, downstream, upstream-* or downstream-* need no setting)",
    )


# Namespaces whose keys are not ours to check: the providers' and Pulumi's own.
OTHER_NAMESPACES = ("aws", "pulumi")


def resembles_namespace(namespace: str) -> bool:
    """Whether `namespace` looks like a misspelling of ecr-ptc: another case, `_` or nothing for
    `-`, or a letter or two off (ecr_ptc, ECR-PTC, ecrptc, ecr-ptx)."""
    if namespace == NAMESPACE or namespace in OTHER_NAMESPACES:
        return False
    normal = namespace.lower().replace("_", "-")
    return (
        normal.replace("-", "") == NAMESPACE.replace("-", "")
        or difflib.SequenceMatcher(None, normal, NAMESPACE).ratio() >= NAMESPACE_LIKENESS
    )


# How alike (difflib's ratio, 0 to 1) a namespace must be to ecr-ptc to be taken for a typo of
# it: ecr-ptx and ecr-pct are 0.86, ecr 0.6, aws-native 0.24.
NAMESPACE_LIKENESS = 0.75


def refuse_unknown_keys(config: RawConfig) -> None:
    """A misspelled key would otherwise be silently ignored (a typo in repositoryPrefix would
    widen the grant to every repository), and so would a key of a misspelled namespace."""
    known = sorted(k.full for k in KEYS)
    ours = {k.name.lower(): k.full for k in KEYS}

    def hint(key: str) -> str:
        # Compared by name: every full key shares the namespace, which would make any name
        # look close.
        names = {k.name: k.full for k in KEYS}
        close = difflib.get_close_matches(key.partition(":")[2], list(names), n=1, cutoff=0.6)
        if close:
            return f"did you mean {names[close[0]]}?"
        return f"the known keys are {', '.join(known)}"

    for full in sorted(config):
        namespace, _, name = full.partition(":")
        # A namespace like ours, or any other namespace (but the providers') holding one of our
        # key names, is a typo whose setting would be ignored: `ecr:repositoryPrefix`.
        if resembles_namespace(namespace) or (
            namespace not in (NAMESPACE, *OTHER_NAMESPACES) and name.lower() in ours
        ):
            meant = ours.get(name.lower()) or f"{NAMESPACE}:{name}"
            raise ConfigError(
                full,
                config[full],
                f"a key of the namespace {NAMESPACE}: ({hint(meant)}); a key of "
                f"{namespace}: is not read by this program, so its setting would be ignored",
            )
        if namespace != NAMESPACE or full in known:
            continue
        raise ConfigError(full, config[full], f"a key this program knows; {hint(full)}")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _refuse_other_side_keys(config: RawConfig, side: Side) -> None:
    """A key of the other side set here is a mistake that would otherwise be silently ignored
    (rules in an upstream stack create no rule)."""
    for key in KEYS:
        if key.side in ("both", side):
            continue
        raw = config.get(key.full)
        if raw not in (None, "") and not _holds_default(key, raw):
            raise ConfigError(
                key.full,
                raw,
                f"unset in {_article(side)} {side} stack: it configures the {key.side} stack",
            )


def _model_input(config: RawConfig, side: Side) -> tuple[dict[str, Any], dict[str, str]]:
    """The side's keys as the model takes them, and each model field's config key."""
    data: dict[str, Any] = {}
    name_of: dict[str, str] = {"region": AWS_REGION_KEY}
    region_value = config.get(AWS_REGION_KEY)
    if region_value:
        data["region"] = region_value
    for key in KEYS:
        if key.side not in ("both", side):
            continue
        name_of[key.name] = key.full
        raw = config.get(key.full)
        if raw is None or raw == "":
            continue
        value = _decode(key, raw)
        if value is None:
            continue
        data[key.name] = value
    return data, name_of


def _validate(model: type[_Model], config: RawConfig, side: Side) -> Any:
    data, name_of = _model_input(config, side)
    if "region" not in data:
        raise ConfigError(
            AWS_REGION_KEY, None, "the region of this stack's registry, e.g. us-east-1"
        )
    try:
        return model.model_validate(data, by_alias=True)
    except ValidationError as err:
        raise config_error(err, model, name_of, data) from None


def _no_duplicates(
    key: str, values: Sequence[str], field: str = "", ignore_case: bool = False
) -> None:
    """Each value once; with `ignore_case`, where AWS reads two spellings as one name (IAM role
    names: App and app are one role)."""
    seen: dict[str, int] = {}
    for i, v in enumerate(values):
        n = v.rstrip("/").lower() if ignore_case else v.rstrip("/")
        if n in seen:
            same = " (IAM names ignore case)" if ignore_case and values[seen[n]] != v else ""
            raise ConfigError(
                f"{key}[{i}]{field}", v, f"each value once; it repeats item {seen[n]}{same}"
            )
        seen[n] = i


# --- upstream ------------------------------------------------------------------------------------


def _namespace(prefix: str) -> str:
    return prefix.rstrip("/")


def statement_registry(
    region_here: Region,
    organization_id: str | None,
    organizational_unit_paths: Sequence[str] = (),
    account_id: str | None = None,
) -> Registry:
    """The registry an upstream's extra statements belong to, as far as the stack knows it. A
    grant of OUs only is a grant within their organization."""
    paths = tuple(sorted(organizational_unit_paths))
    if organization_id is None and paths:
        organization_id = paths[0].split("/", 1)[0]
    return Registry(
        partition=region_here.partition,
        region=region_here.name,
        account_id=account_id,
        knows_grant=True,
        organization_id=organization_id,
        organizational_unit_paths=paths,
    )


def refuse_statement_problems(statements: Sequence[Mapping[str, Any]], registry: Registry) -> None:
    """The first rule of policy_rules (shared with the policy pack) that a statement breaks."""
    key = EXTRA_REGISTRY_POLICY_STATEMENTS.full
    for i, statement in enumerate(statements):
        for problem in statement_problems(statement, registry):
            raise ConfigError(f"{key}[{i}]{problem.path}", problem.value, problem.valid)


def _extra_statements(
    model: UpstreamModel, grant: CacheReadGrant, registry: Registry
) -> tuple[dict[str, Any], ...]:
    key = EXTRA_REGISTRY_POLICY_STATEMENTS.full
    sids: dict[str, int] = {}
    documents = [s.model_dump(exclude_none=True) for s in model.extra_registry_policy_statements]
    refuse_statement_problems(documents, registry)
    granted = Grant(
        account_ids=grant.account_ids,
        everyone=grant.any_principal,
        repositories=(repositories_under(model.repository_prefix),),
        actions=CACHE_READ_ACTIONS,
    )
    statements = []
    for i, (s, document) in enumerate(
        zip(model.extra_registry_policy_statements, documents, strict=True)
    ):
        here = f"{key}[{i}]"
        if s.Sid is not None:
            if s.Sid in OWNED_SIDS:
                raise ConfigError(
                    f"{here}.Sid",
                    s.Sid,
                    f"a Sid other than {', '.join(OWNED_SIDS)} (owned by ecr-ptc)",
                )
            if s.Sid in sids:
                raise ConfigError(
                    f"{here}.Sid", s.Sid, f"a unique Sid; item {sids[s.Sid]} has it too"
                )
            sids[s.Sid] = i
        grantees, denied = denied_reads(document, granted)
        if denied:
            whom = (
                "every account this stack grants"
                if grantees == ["every grantee"]
                else f"the granted account {', '.join(grantees)}"
            )
            raise ConfigError(
                here,
                document,
                f"a statement that does not deny {', '.join(denied)} to {whom} on the shared "
                f"repositories ({granted.repositories[0]}) without a Condition: it would break "
                "pulls through the cache. A Deny guard needs a Condition (e.g. StringNotEquals "
                "aws:PrincipalOrgID); a Deny of named roles, of some repositories, or of accounts "
                "outside the grant is kept",
            )
        statements.append(canonical_statement(document))
    return tuple(statements)


def _boundary(arn: str | None, here: Region) -> str | None:
    if arn is not None and arn.split(":")[1] != here.partition:
        raise ConfigError(
            PERMISSIONS_BOUNDARY_ARN.full,
            arn,
            f"a policy of this stack's partition ({here.partition})",
        )
    return arn


def _alerts(model: AlertsModel | None, here: Region) -> Alerts | None:
    """Where the alerts go: exactly one of a topic (with its subscriptions) and an event bus, of
    this stack's partition. None (the key unset): no alerts."""
    if model is None:
        return None
    key = ALERTS.full
    if (model.topic is None) == (model.event_bus_arn is None):
        raise ConfigError(
            key,
            # What was written: not the defaults it was filled in with.
            model.model_dump(by_alias=True, exclude_none=True, exclude_unset=True),
            "a mapping with exactly one of topic ({subscriptions: [{protocol, endpoint}]}: an SNS "
            "topic in each region, created by the stack) or eventBusArn (an existing event bus, "
            "e.g. of a central monitoring account)",
        )
    if model.event_bus_arn is not None:
        arn = model.event_bus_arn
        if arn.split(":")[1] != here.partition:
            raise ConfigError(
                f"{key}.eventBusArn",
                arn,
                f"an event bus of this stack's partition ({here.partition}): EventBridge sends "
                "events only within a partition",
            )
        return Alerts(event_bus_arn=arn)
    assert model.topic is not None
    subscriptions: list[Subscription] = []
    seen: dict[tuple[str, str], int] = {}
    for i, item in enumerate(model.topic.subscriptions):
        where = f"{key}.topic.subscriptions[{i}]"
        problem = subscription_endpoint_problem(item.protocol, item.endpoint)
        if problem is not None:
            raise ConfigError(f"{where}.endpoint", item.endpoint, problem)
        if item.protocol in ("sqs", "lambda") and item.endpoint.split(":")[1] != here.partition:
            raise ConfigError(
                f"{where}.endpoint",
                item.endpoint,
                f"an endpoint of this stack's partition ({here.partition})",
            )
        pair = (item.protocol, item.endpoint)
        if pair in seen:
            raise ConfigError(
                where,
                {"protocol": item.protocol, "endpoint": item.endpoint},
                f"each subscription once; it repeats item {seen[pair]}",
            )
        seen[pair] = i
        subscriptions.append(Subscription(*pair))
    return Alerts(subscriptions=tuple(sorted(subscriptions)))


def parse_upstream(config: RawConfig) -> UpstreamConfig:
    model: UpstreamModel = _validate(UpstreamModel, config, "upstream")
    accounts = list(model.downstream_account_ids)
    _no_duplicates(DOWNSTREAM_ACCOUNT_IDS.full, accounts)
    _no_duplicates(ORGANIZATIONAL_UNIT_PATHS.full, model.organizational_unit_paths)
    if model.organizational_unit_paths:
        organizations = {p.split("/", 1)[0] for p in model.organizational_unit_paths}
        if model.organization_id is not None and organizations != {model.organization_id}:
            raise ConfigError(
                ORGANIZATIONAL_UNIT_PATHS.full,
                list(model.organizational_unit_paths),
                f"paths in the organization {model.organization_id} "
                f"({ORGANIZATION_ID.full}); the paths narrow that grant to these OUs",
            )
    if not accounts and model.organization_id is None and not model.organizational_unit_paths:
        raise ConfigError(
            DOWNSTREAM_ACCOUNT_IDS.full,
            accounts,
            f"at least one account ID, or set {ORGANIZATION_ID.full} or "
            f"{ORGANIZATIONAL_UNIT_PATHS.full}: otherwise the upstream grants nothing and no "
            "downstream can cache from it",
        )
    prefix = model.repository_prefix
    repositories = list(model.repositories)
    for i, name in enumerate(repositories):
        if prefix is not None and not name.startswith(f"{_namespace(prefix)}/"):
            raise ConfigError(
                f"{REPOSITORIES.full}[{i}]",
                name,
                f"a repository under {REPOSITORY_PREFIX.full} '{prefix}' "
                f"(e.g. '{_namespace(prefix)}/{name}'), since only that namespace is shared",
            )
    _no_duplicates(REPOSITORIES.full, repositories)
    if model.grant_via == "repository" and not repositories:
        raise ConfigError(
            REPOSITORIES.full,
            repositories,
            f"at least one repository name when {GRANT_VIA_KEY.full} is 'repository'",
        )
    if model.grant_via == "registry" and repositories:
        raise ConfigError(
            REPOSITORIES.full,
            repositories,
            f"empty unless {GRANT_VIA_KEY.full} is 'repository' "
            "(a registry policy already covers every repository of the pattern)",
        )
    here = region(model.region)
    grant = CacheReadGrant(
        here.partition,
        tuple(sorted(accounts)),
        model.organization_id,
        tuple(sorted(model.organizational_unit_paths)),
    )
    extra = _extra_statements(
        model,
        grant,
        statement_registry(here, model.organization_id, model.organizational_unit_paths),
    )
    if extra and model.grant_via != "registry":
        raise ConfigError(
            EXTRA_REGISTRY_POLICY_STATEMENTS.full,
            list(extra),
            f"empty unless {GRANT_VIA_KEY.full} is "
            "'registry': with 'repository' this stack does not write the registry policy",
        )
    return UpstreamConfig(
        region=here,
        downstream_account_ids=grant.account_ids,
        organization_id=model.organization_id,
        repository_prefix=prefix,
        grant_via=model.grant_via,
        repositories=tuple(sorted(repositories)),
        manage_registry_policy_scope=model.manage_registry_policy_scope,
        extra_registry_policy_statements=extra,
        organizational_unit_paths=grant.organizational_unit_paths,
        permissions_boundary_arn=_boundary(model.permissions_boundary_arn, here),
        iam_path=model.iam_path,
        tags=_resource_tags(TAGS.full, model.tags),
        alerts=_alerts(model.alerts, here),
    )


# --- downstream ----------------------------------------------------------------------------------


def _rules(model: DownstreamModel) -> tuple[CacheRule, ...]:
    key = RULES.full
    rules: list[CacheRule] = []
    for i, item in enumerate(model.rules):
        if item.ecr_repository_prefix == ROOT_PREFIX and (
            item.upstream_repository_prefix != ROOT_PREFIX
        ):
            raise ConfigError(
                f"{key}[{i}].upstreamRepositoryPrefix",
                item.upstream_repository_prefix,
                "unset when ecrRepositoryPrefix is ROOT (AWS allows an upstream prefix only "
                "with a namespaced ecrRepositoryPrefix)",
            )
        rules.append(CacheRule(item.ecr_repository_prefix, item.upstream_repository_prefix))
    _no_duplicates(key, [r.ecr_repository_prefix for r in rules], ".ecrRepositoryPrefix")
    return tuple(rules)


def _kms_key_arns(
    key: str, value: str | dict[str, str], regions: tuple[Region, ...]
) -> tuple[tuple[str, str], ...]:
    names = [r.name for r in regions]
    if isinstance(value, str):
        if len(regions) != 1:
            raise ConfigError(
                key,
                value,
                f"a map of region to key ARN covering every region of "
                f"{REGIONS.full} ({', '.join(names)}): a KMS key serves only its own region",
            )
        value = {names[0]: value}
    missing = [n for n in names if n not in value]
    extra = sorted(set(value) - set(names))
    if missing or extra:
        said = []
        if missing:
            said.append(f"missing {', '.join(missing)}")
        for other in extra:
            close = difflib.get_close_matches(other, missing or names, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            said.append(f"{other} is not in {REGIONS.full}{hint}")
        raise ConfigError(
            key,
            sorted(value),
            f"one key ARN for each region of {REGIONS.full}, {', '.join(names)}: "
            + "; ".join(said),
        )
    partition = regions[0].partition
    for region_name, arn in value.items():
        here = f"{key}.{region_name}" if len(regions) > 1 else key
        _, arn_partition, _, arn_region, *_ = arn.split(":")
        if arn_region != region_name or arn_partition != partition:
            raise ConfigError(
                here,
                arn,
                f"a key in {region_name} ({partition}): ECR uses only a key in the repository's "
                "own region",
            )
    return tuple(sorted(value.items()))


def _resource_tags(key: str, value: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    if len(value) > quotas.MAX_TAGS_PER_RESOURCE:
        raise ConfigError(
            key, f"{len(value)} tags", f"at most {quotas.MAX_TAGS_PER_RESOURCE} tags (AWS's limit)"
        )
    for tag, tag_value in value.items():
        key_problem = tag_text_problem(tag)
        if (
            not 1 <= len(tag) <= quotas.TAG_KEY_MAX_CHARS
            or tag.lower().startswith("aws:")
            or key_problem is not None
        ):
            raise ConfigError(
                f"{key}.{tag}",
                tag,
                f"a tag key of 1 to {quotas.TAG_KEY_MAX_CHARS} {TAG_CHARACTERS}, "
                "not starting with 'aws:'" + (f" ({key_problem})" if key_problem else ""),
            )
        value_problem = tag_text_problem(tag_value)
        if len(tag_value) > quotas.TAG_VALUE_MAX_CHARS or value_problem is not None:
            raise ConfigError(
                f"{key}.{tag}",
                tag_value,
                f"a tag value of at most {quotas.TAG_VALUE_MAX_CHARS} {TAG_CHARACTERS}"
                + (f" ({value_problem})" if value_problem else ""),
            )
    return tuple(sorted(value.items()))


def _template_kms_key_arns(
    model: TemplateModel, regions: tuple[Region, ...]
) -> tuple[tuple[str, str], ...]:
    """kmsKeyArns, or its former name kmsKeyArn; not both."""
    key = REPOSITORY_TEMPLATE.full
    if model.kms_key_arns is not None and model.kms_key_arn is not None:
        raise ConfigError(
            f"{key}.kmsKeyArn",
            model.kms_key_arn,
            "unset when kmsKeyArns is set (kmsKeyArn is kmsKeyArns' former name)",
        )
    if model.kms_key_arns is not None:
        return _kms_key_arns(f"{key}.kmsKeyArns", model.kms_key_arns, regions)
    if model.kms_key_arn is not None:
        return _kms_key_arns(f"{key}.kmsKeyArn", model.kms_key_arn, regions)
    return ()


def _repository_template(
    model: TemplateModel | None, regions: tuple[Region, ...]
) -> RepositoryTemplate | None:
    if model is None:
        return None
    key = REPOSITORY_TEMPLATE.full
    with_exclusion = model.image_tag_mutability.endswith("_WITH_EXCLUSION")
    filters = model.image_tag_mutability_exclusion_filters
    if with_exclusion and not filters:
        raise ConfigError(
            f"{key}.imageTagMutabilityExclusionFilters",
            [],
            f"at least one tag filter when imageTagMutability is {model.image_tag_mutability}",
        )
    if filters and not with_exclusion:
        raise ConfigError(
            f"{key}.imageTagMutabilityExclusionFilters",
            list(filters),
            "unset unless imageTagMutability is MUTABLE_WITH_EXCLUSION or IMMUTABLE_WITH_EXCLUSION",
        )
    _no_duplicates(f"{key}.imageTagMutabilityExclusionFilters", filters)
    return RepositoryTemplate(
        image_tag_mutability=model.image_tag_mutability,
        image_tag_mutability_exclusion_filters=tuple(sorted(filters)),
        expire_untagged_after_days=model.expire_untagged_after_days,
        keep_last_images=model.keep_last_images,
        kms_key_arns=_template_kms_key_arns(model, regions),
        resource_tags=(
            ()
            if model.resource_tags is None
            else _resource_tags(f"{key}.resourceTags", model.resource_tags)
        ),
        description=model.description,
    )


def _upstream(model: DownstreamModel, here: Region) -> tuple[str | None, DirectUpstream | None]:
    stack, account, upstream_region = (
        model.upstream_stack,
        model.upstream_account_id,
        model.upstream_region,
    )
    if stack is not None:
        if account is not None or upstream_region is not None:
            raise ConfigError(
                UPSTREAM_STACK.full,
                stack,
                f"set either {UPSTREAM_STACK.full}, or "
                f"{UPSTREAM_ACCOUNT_ID.full} with {UPSTREAM_REGION.full}, not both",
            )
        return stack, None
    if account is None and upstream_region is None:
        raise ConfigError(
            UPSTREAM_STACK.full,
            None,
            "the upstream stack's fully qualified name (e.g. "
            f"organization/ecr-ptc/upstream), or {UPSTREAM_ACCOUNT_ID.full} and "
            f"{UPSTREAM_REGION.full} for a registry managed elsewhere",
        )
    if account is None:
        raise ConfigError(
            UPSTREAM_ACCOUNT_ID.full, None, f"set together with {UPSTREAM_REGION.full}"
        )
    if upstream_region is None:
        raise ConfigError(
            UPSTREAM_REGION.full, None, f"set together with {UPSTREAM_ACCOUNT_ID.full}"
        )
    direct = DirectUpstream(account, region(upstream_region))
    if direct.region.partition != here.partition:
        raise ConfigError(
            UPSTREAM_REGION.full,
            upstream_region,
            f"a region of the same partition as this stack ({here.partition})",
        )
    return None, direct


def parse_downstream(config: RawConfig) -> DownstreamConfig:
    model: DownstreamModel = _validate(DownstreamModel, config, "downstream")
    here = region(model.region)
    regions = [region(n) for n in model.regions] or [here]
    _no_duplicates(REGIONS.full, [r.name for r in regions])
    for i, r in enumerate(regions):
        if r.partition != here.partition:
            raise ConfigError(
                f"{REGIONS.full}[{i}]",
                r.name,
                f"a region of the same partition as {AWS_REGION_KEY} "
                f"'{here.name}' ({here.partition}): one IAM role cannot serve two partitions",
            )
    stack, direct = _upstream(model, here)
    cache_role = model.cache_role_arn
    if cache_role is not None:
        if model.role_name is not None:
            raise ConfigError(
                ROLE_NAME.full,
                model.role_name,
                f"unset when {CACHE_ROLE_ARN.full} is set: the stack then creates no cache role",
            )
        if cache_role.split(":")[1] != here.partition:
            raise ConfigError(
                CACHE_ROLE_ARN.full,
                cache_role,
                f"a role of this stack's partition ({here.partition})",
            )
    _no_duplicates(CONSUMER_ROLE_NAMES.full, model.consumer_role_names, ignore_case=True)
    cache_role_name = cache_role.rsplit("/", 1)[1] if cache_role is not None else model.role_name
    cache_role_key = CACHE_ROLE_ARN if cache_role is not None else ROLE_NAME
    for i, consumer in enumerate(model.consumer_role_names):
        if cache_role_name is not None and consumer.lower() == cache_role_name.lower():
            raise ConfigError(
                f"{CONSUMER_ROLE_NAMES.full}[{i}]",
                consumer,
                f"a role other than the cache role ({cache_role_key.full} "
                f"'{cache_role or cache_role_name}'; IAM names ignore case): the cache role is "
                "ECR's, and pulls with its own grant",
            )
    boundary = _boundary(model.permissions_boundary_arn, here)
    return DownstreamConfig(
        region=here,
        regions=tuple(regions),
        rules=_rules(model),
        role_name=model.role_name,
        upstream_stack=stack,
        upstream=direct,
        repository_template=_repository_template(model.repository_template, tuple(regions)),
        consumer_role_names=tuple(sorted(model.consumer_role_names)),
        permissions_boundary_arn=boundary,
        iam_path=model.iam_path,
        cache_role_arn=cache_role,
        tags=_resource_tags(TAGS.full, model.tags),
        alerts=_alerts(model.alerts, here),
    )


@dataclass(frozen=True)
class OperationPreferences:
    """How a fleet run rolls out (ecr-ptc:operationPreferences), as StackSets' preferences."""

    canary: int = 1
    wave_size: Amount = Amount(percent=25)
    failure_tolerance: Amount = Amount(count=0)
    # None: default_max_prune(fleet size).
    max_prune: Amount | None = None
    retain_stacks_on_account_removal: bool = False

    def prune_limit(self, fleet_size: int) -> int:
        """The most stacks one run may prune without confirmation, for a fleet of this size."""
        if self.max_prune is None:
            return default_max_prune(fleet_size)
        return self.max_prune.of(fleet_size)


@dataclass(frozen=True)
class FleetTemplate:
    """What a fleet template says about its members."""

    # Listed account -> its explicit deploy role ARN and preview role ARN, or None for each.
    accounts: tuple[tuple[str, str | None, str | None], ...]
    organizational_unit_ids: tuple[str, ...]
    exclude_account_ids: tuple[str, ...]
    account_role_name: str
    partition: str
    account_preview_role_name: str = DEFAULT_ACCOUNT_PREVIEW_ROLE_NAME
    operation_preferences: OperationPreferences = OperationPreferences()
    # Account -> the per-account keys it sets differently (camelCase field -> value as the stack
    # file gives it), sorted by account; validated with the member's whole config.
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @functools.cached_property
    def _listed_roles(self) -> dict[str, tuple[str | None, str | None]]:
        # Built once: a fleet asks for each of its thousands of members' roles.
        return {a: (deploy, preview) for a, deploy, preview in self.accounts}

    def role_arns(self, account_id: str) -> tuple[str, str]:
        """(deploy role, preview role) of a member: the ARNs the template lists for it, else
        the roles named accountRoleName and accountPreviewRoleName in its account."""
        deploy, preview = self._listed_roles.get(account_id, (None, None))

        def named(name: str) -> str:
            return f"arn:{self.partition}:iam::{account_id}:role/{name}"

        return (
            deploy or named(self.account_role_name),
            preview or named(self.account_preview_role_name),
        )


def parse_fleet(config: RawConfig) -> FleetTemplate:
    """A downstream stack file's fleet keys, validated with the rest of its config: a template
    whose members could not deploy is refused before any member is listed."""
    model: DownstreamModel = _validate(DownstreamModel, config, "downstream")
    parse_downstream(config)
    partition = region(model.region).partition
    listed: list[tuple[str, str | None, str | None]] = []
    for i, item in enumerate(model.accounts):
        if isinstance(item, str):
            listed.append((item, None, None))
            continue
        for role_field, arn in (
            ("roleArn", item.role_arn),
            ("previewRoleArn", item.preview_role_arn),
        ):
            if arn is None:
                continue
            _, arn_partition, _, _, arn_account, _ = arn.split(":", 5)
            if arn_account != item.account_id or arn_partition != partition:
                raise ConfigError(
                    f"{ACCOUNTS.full}[{i}].{role_field}",
                    arn,
                    f"a role of account {item.account_id} in partition {partition} (the "
                    f"template's {AWS_REGION_KEY}): the member's stack runs in that account",
                )
        if item.preview_role_arn is not None and item.preview_role_arn == item.role_arn:
            raise ConfigError(
                f"{ACCOUNTS.full}[{i}].previewRoleArn",
                item.preview_role_arn,
                "a read-only role other than roleArn: pull requests preview with it, and must "
                "never hold the deploy role",
            )
        listed.append((item.account_id, item.role_arn, item.preview_role_arn))
    _no_duplicates(ACCOUNTS.full, [a for a, _, _ in listed])
    _no_duplicates(ORGANIZATIONAL_UNIT_IDS.full, model.organizational_unit_ids)
    _no_duplicates(EXCLUDE_ACCOUNT_IDS.full, model.exclude_account_ids)
    preview_name = model.account_preview_role_name or DEFAULT_ACCOUNT_PREVIEW_ROLE_NAME
    if preview_name.lower() == (model.account_role_name or DEFAULT_ACCOUNT_ROLE_NAME).lower():
        raise ConfigError(
            ACCOUNT_PREVIEW_ROLE_NAME.full,
            preview_name,
            f"a read-only role other than {ACCOUNT_ROLE_NAME.full}: pull requests preview with "
            "it, and must never hold the deploy role",
        )
    return FleetTemplate(
        accounts=tuple(listed),
        organizational_unit_ids=tuple(model.organizational_unit_ids),
        exclude_account_ids=tuple(model.exclude_account_ids),
        account_role_name=model.account_role_name or DEFAULT_ACCOUNT_ROLE_NAME,
        partition=partition,
        account_preview_role_name=preview_name,
        operation_preferences=_operation_preferences(model.operation_preferences),
        overrides=_overrides(model, config),
    )


def _operation_preferences(model: OperationPreferencesModel | None) -> OperationPreferences:
    model = model or OperationPreferencesModel()

    def amount(value: object, minimum: int, percent: bool = True) -> Amount:
        found = _amount(value, minimum, percent)
        assert found is not None, "the model checked it with the same rule"
        return found

    canary = amount(model.canary, 0, percent=False).count
    assert canary is not None
    return OperationPreferences(
        canary=canary,
        wave_size=amount(model.wave_size, 1),
        failure_tolerance=amount(model.failure_tolerance, 0),
        max_prune=None if model.max_prune is None else amount(model.max_prune, 0),
        retain_stacks_on_account_removal=model.retain_stacks_on_account_removal,
    )


# --- per-account overrides -------------------------------------------------------------------

# An override's field -> the key it replaces in the member's config (kmsKeyArn: a field of
# repositoryTemplate).
OVERRIDE_KEYS: dict[str, str] = {
    "regions": REGIONS.full,
    "roleName": ROLE_NAME.full,
    "consumerRoleNames": CONSUMER_ROLE_NAMES.full,
    "kmsKeyArn": f"{REPOSITORY_TEMPLATE.full}.kmsKeyArn",
}


def override_key(account_id: str, field_name: str = "") -> str:
    """`ecr-ptc:accountOverrides["<account>"]`, or one field of it."""
    head = f'{ACCOUNT_OVERRIDES.full}["{account_id}"]'
    return f"{head}.{field_name}" if field_name else head


def apply_override(
    config: Mapping[str, Any], override: Mapping[str, Any], *, raw: bool = False
) -> dict[str, Any]:
    """`config` with an account's override applied: as the stack file gives values (`raw`
    False), or as the CLI hands them to the program (`raw`: JSON text but for strings)."""
    merged = dict(config)
    for name, value in sorted(override.items()):
        if name == "kmsKeyArn":
            template = merged.get(REPOSITORY_TEMPLATE.full) or {}
            if raw:
                template = json.loads(template) if isinstance(template, str) else template
            # The member's keys replace the template's, under either of their names.
            template = {k: v for k, v in template.items() if k != "kmsKeyArns"}
            template = {**template, "kmsKeyArn": value}
            merged[REPOSITORY_TEMPLATE.full] = json.dumps(template) if raw else template
            continue
        key = KEYS_BY_NAME[name]
        merged[key.full] = json.dumps(value) if raw and key.pulumi_type != "string" else value
    return merged


def _overrides(model: DownstreamModel, config: RawConfig) -> dict[str, dict[str, Any]]:
    """Each entry of accountOverrides, checked as the same keys at the top are: its fields one
    by one, then the member's whole config with it applied."""
    fields = ", ".join(sorted(OVERRIDE_KEYS))
    result: dict[str, dict[str, Any]] = {}
    for account, value in sorted(model.account_overrides.items()):
        here = override_key(account)
        valid_account_id_key(here, account)
        try:
            _OverrideEntry.model_validate({"override": value}, by_alias=True)
        except ValidationError as err:
            raise config_error(err, _OverrideEntry, {"override": here}, value) from None
        given = {k: v for k, v in value.items() if v is not None}
        if not given:
            raise ConfigError(
                here, value, f"a mapping with at least one of {fields}: what this member sets "
                "differently from the template"
            )  # fmt: skip
        if "kmsKeyArn" in given and model.repository_template is None:
            raise ConfigError(
                override_key(account, "kmsKeyArn"),
                given["kmsKeyArn"],
                f"unset unless the template sets {REPOSITORY_TEMPLATE.full}: the key encrypts "
                "the repositories its creation templates make",
            )
        for region_name, arn in _arns(given.get("kmsKeyArn")):
            arn_account = arn.split(":")[4]
            if arn_account != account:
                where = override_key(account, "kmsKeyArn") + (
                    f".{region_name}" if region_name else ""
                )
                raise ConfigError(
                    where,
                    arn,
                    f"a key of account {account}: this member's repositories are in its own "
                    f"account, and a KMS key ARN names one account ({arn_account})",
                )
        try:
            parse_downstream(apply_override(config, given, raw=True))
        except ConfigError as err:
            raise _in_override(err, account, given) from None
        result[account] = dict(sorted(given.items()))
    return result


def _arns(value: object) -> list[tuple[str, str]]:
    """(region or "", ARN) of a kmsKeyArn value: one ARN, or a map of region -> ARN."""
    if isinstance(value, str):
        return [("", value)]
    if isinstance(value, Mapping):
        return sorted((str(k), str(v)) for k, v in value.items())
    return []


def foreign_kms_keys(config: Mapping[str, Any], account_id: str) -> list[tuple[str, str]]:
    """(key, ARN) of each KMS key of `config`'s repositoryTemplate (values as the stack file
    gives them) that belongs to another account than `account_id`."""
    template = config.get(REPOSITORY_TEMPLATE.full)
    if not isinstance(template, Mapping):
        return []
    # kmsKeyArns, or its former name kmsKeyArn.
    value = template.get("kmsKeyArns", template.get("kmsKeyArn"))
    key = OVERRIDE_KEYS["kmsKeyArn"]
    return [
        (f"{key}.{region_name}" if region_name else key, arn)
        for region_name, arn in _arns(value)
        if arn.split(":")[4:5] != [account_id]
    ]


def _in_override(err: ConfigError, account: str, override: Mapping[str, Any]) -> ConfigError:
    """A refusal of the member's config, named after the override field that caused it, or
    else said to be this member's."""
    for name, key in OVERRIDE_KEYS.items():
        rest = err.key.removeprefix(key)
        if name in override and rest != err.key and rest[:1] in ("", ".", "["):
            return ConfigError(override_key(account, name) + rest, err.value, err.valid)
    return ConfigError(
        err.key,
        err.value,
        f"{err.valid} (in the config of member {account}, with {override_key(account)} applied)",
    )


def is_fleet_template(config: RawConfig) -> bool:
    return any(
        config.get(k.full) not in (None, "", "[]") for k in (ACCOUNTS, ORGANIZATIONAL_UNIT_IDS)
    )


def refuse_fleet_keys_outside_a_template(config: RawConfig) -> None:
    """The fleet's other keys say nothing without a fleet: set alone, they would be ignored."""
    if is_fleet_template(config):
        return
    for key in FLEET_KEYS:
        raw = config.get(key.full)
        if raw not in (None, "") and not _holds_default(key, raw):
            raise ConfigError(
                key.full,
                raw,
                f"unset unless this stack file is a fleet template ({ACCOUNTS.full} or "
                f"{ORGANIZATIONAL_UNIT_IDS.full} set): it configures fleet members only",
            )


def parse(config: RawConfig, stack_name: str) -> StackConfig:
    refuse_unknown_keys(config)
    side = resolve_side(config, stack_name)
    _refuse_other_side_keys(config, side)
    if side == "upstream":
        return parse_upstream(config)
    parsed = parse_downstream(config)
    refuse_fleet_keys_outside_a_template(config)
    if is_fleet_template(config):
        raise FleetTemplateError(
            f"{ACCOUNTS.full} / {ORGANIZATIONAL_UNIT_IDS.full}",
            stack_name,
            "a single-account stack: this stack file is a fleet template, never deployed "
            "itself. Run `make fleet-preview` or `make fleet-up` (one member stack per "
            f"account, named {stack_name}-<accountId>), or `make fleet-members` to list them",
        )
    return parsed


def valid_account_id_key(key: str, value: str) -> str:
    """An account ID used as a mapping's key: an unquoted YAML number lost its leading zeros
    (and arrives as text of fewer digits), so the message says to quote it."""
    if re.fullmatch(ACCOUNT_ID_PATTERN, value, re.ASCII) is None:
        raise ConfigError(
            key,
            value,
            "an AWS account ID: exactly 12 digits, quoted ('012345678901': an unquoted number "
            "loses its leading zeros)",
        )
    return value


_ACCOUNT_ID = TypeAdapter(AccountId)  # built once: building one costs about a millisecond


def valid_account_id(key: str, value: object) -> str:
    try:
        return str(_ACCOUNT_ID.validate_python(value))
    except ValidationError:
        raise ConfigError(key, value, "an AWS account ID: exactly 12 digits, quoted") from None


def allowed_account_id(config: RawConfig) -> str | None:
    """The account `aws:allowedAccountIds` pins this stack to, or None when it pins none (the
    program then asks STS). One stack changes one account: a list of several is refused, since
    the program, `make plan` and the policies it writes must know which one."""
    raw = config.get(ALLOWED_ACCOUNT_IDS_KEY)
    if raw is None or raw in ("", "[]"):
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if not isinstance(value, list):
        raise ConfigError(
            ALLOWED_ACCOUNT_IDS_KEY, value, "a YAML list of 12-digit account IDs (quoted)"
        )
    accounts = [valid_account_id(f"{ALLOWED_ACCOUNT_IDS_KEY}[{i}]", v) for i, v in enumerate(value)]
    if len(accounts) > 1:
        raise ConfigError(
            ALLOWED_ACCOUNT_IDS_KEY,
            accounts,
            "exactly one account ID: a stack deploys to one account (for several accounts, "
            "make the stack file a fleet template with ecr-ptc:accounts)",
        )
    return accounts[0]


def from_pulumi() -> dict[str, str]:
    """Every config key the Pulumi CLI hands the program, as the CLI hands it (strings, JSON for
    lists, objects and booleans). The program needs all of them to refuse unknown keys."""
    return dict(pulumi.runtime.config.CONFIG.get())
