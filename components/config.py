"""Stack configuration: read once, validated, frozen.

Components receive these typed values, never raw config. Every error names the config key, the
value it got and what is valid, and is raised before any resource is declared.

The program reads config through a `RawConfig` function (full key -> the string the Pulumi CLI
hands the program, JSON for lists and objects), so the same code runs under the CLI and in tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pulumi

from components import quotas
from components.aws_names import ROOT_PREFIX, Region, UnknownRegionError, region
from components.config_error import ConfigError
from components.policies import OWNED_SIDS

NAMESPACE = "ecr-ptc"
RawConfig = Callable[[str], str | None]
Side = Literal["upstream", "downstream"]
SIDES: tuple[Side, ...] = ("upstream", "downstream")
GRANT_VIA = ("registry", "repository")


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

KEYS: tuple[Key, ...] = (
    SIDE,
    DOWNSTREAM_ACCOUNT_IDS,
    ORGANIZATION_ID,
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
)
AWS_REGION_KEY = "aws:region"

ACCOUNT_ID = re.compile(r"^\d{12}$")
ORGANIZATION_ID_PATTERN = re.compile(r"^o-[a-z0-9]{10,32}$")
# AWS's rule for ecrRepositoryPrefix and upstreamRepositoryPrefix (CreatePullThroughCacheRule).
PREFIX_PATTERN = re.compile(
    r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$"
)
# AWS's rule for repository names (CreateRepository), 2 to 256 characters.
REPOSITORY_NAME_PATTERN = re.compile(
    r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$"
)
ROLE_NAME_PATTERN = re.compile(r"^[\w+=,.@-]+$")
KMS_KEY_ARN_PATTERN = re.compile(
    r"^arn:(?P<partition>[a-z-]+):kms:(?P<region>[a-z0-9-]+):\d{12}:key/"
    r"(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
IMAGE_TAG_MUTABILITY = ("MUTABLE", "IMMUTABLE")
TEMPLATE_FIELDS = (
    "imageTagMutability",
    "expireUntaggedAfterDays",
    "keepLastImages",
    "kmsKeyArn",
    "resourceTags",
    "description",
)
STACK_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
RULE_FIELDS = ("ecrRepositoryPrefix", "upstreamRepositoryPrefix")


@dataclass(frozen=True)
class CacheRule:
    ecr_repository_prefix: str
    upstream_repository_prefix: str = ROOT_PREFIX


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


@dataclass(frozen=True)
class DirectUpstream:
    """An upstream registry managed elsewhere, given by account and region."""

    account_id: str
    region: Region


@dataclass(frozen=True)
class RepositoryTemplate:
    """Settings for the repositories ECR creates on a rule's first pull."""

    image_tag_mutability: str = "MUTABLE"
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

    @property
    def size_summary(self) -> str:
        """What drives the size of the policies that list the cache repositories."""
        return f"{len(self.rules)} rules in {len(self.regions)} regions"


StackConfig = UpstreamConfig | DownstreamConfig


# --- readers: raw string -> typed value, each failing with the key and the value ---------------


def _raw(get: RawConfig, key: Key) -> str | None:
    value = get(key.full)
    return None if value is None or value == "" else value


def _json(get: RawConfig, key: Key, expected: type, shape: str) -> Any:
    raw = _raw(get, key)
    if raw is None:
        return expected()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(key.full, raw, shape) from None
    if not isinstance(value, expected):
        raise ConfigError(key.full, value, shape)
    return value


def _string_list(get: RawConfig, key: Key, what: str) -> list[str]:
    values = _json(get, key, list, f"a YAML list of {what}")
    for i, item in enumerate(values):
        if not isinstance(item, str):
            raise ConfigError(f"{key.full}[{i}]", item, f"{what}, as a quoted string")
    return list(values)


def _no_duplicates(
    key: str, values: list[str], normalise: Callable[[str], str] = str, field: str = ""
) -> None:
    seen: dict[str, int] = {}
    for i, v in enumerate(values):
        n = normalise(v)
        if n in seen:
            raise ConfigError(
                f"{key}[{i}]{field}", v, f"each value once; it repeats item {seen[n]}"
            )
        seen[n] = i


def _region(key: str, value: object) -> Region:
    try:
        return region(value)  # type: ignore[arg-type]
    except UnknownRegionError as err:
        raise ConfigError(key, value, f"an AWS region name such as us-east-1 ({err})") from None


def _account_id(key: str, value: object) -> str:
    if not isinstance(value, str) or not ACCOUNT_ID.match(value):
        raise ConfigError(key, value, "an AWS account ID: exactly 12 digits, quoted")
    return value


def _prefix(key: str, value: object, allow_root: bool = True) -> str:
    valid = (
        f"{quotas.PREFIX_MIN_CHARS} to {quotas.PREFIX_MAX_CHARS} characters of lower-case "
        "letters, digits, '.', '_', '-' and '/' (a repository namespace, e.g. 'team-a' or "
        "'golden/base')" + (", or ROOT" if allow_root else "")
    )
    if (
        not isinstance(value, str)
        or not quotas.PREFIX_MIN_CHARS <= len(value) <= quotas.PREFIX_MAX_CHARS
        or not PREFIX_PATTERN.match(value)
        or (value == ROOT_PREFIX and not allow_root)
    ):
        raise ConfigError(key, value, valid)
    return value


def _namespace(prefix: str) -> str:
    return prefix.rstrip("/")


def resolve_side(get: RawConfig, stack_name: str) -> Side:
    configured = _raw(get, SIDE)
    if configured is not None:
        if configured not in SIDES:
            raise ConfigError(SIDE.full, configured, "'upstream' or 'downstream'")
        return configured
    for side in SIDES:
        if stack_name == side or stack_name.startswith(f"{side}-"):
            return side
    raise ConfigError(
        SIDE.full,
        None,
        f"set it to 'upstream' or 'downstream': the stack name {stack_name!r} does not say "
        "(stacks named upstream, downstream, upstream-* or downstream-* need no setting)",
    )


def _aws_region(get: RawConfig) -> Region:
    value = get(AWS_REGION_KEY)
    if not value:
        raise ConfigError(
            AWS_REGION_KEY, value, "the region of this stack's registry, e.g. us-east-1"
        )
    return _region(AWS_REGION_KEY, value)


# --- upstream ----------------------------------------------------------------------------------


def _extra_statements(get: RawConfig) -> tuple[Mapping[str, Any], ...]:
    key = EXTRA_REGISTRY_POLICY_STATEMENTS.full
    statements = _json(get, EXTRA_REGISTRY_POLICY_STATEMENTS, list, "a YAML list of IAM statements")
    sids: dict[str, int] = {}
    for i, s in enumerate(statements):
        here = f"{key}[{i}]"
        if not isinstance(s, dict):
            raise ConfigError(here, s, "an IAM statement (a mapping with Effect, Action, ...)")
        if s.get("Effect") not in ("Allow", "Deny"):
            raise ConfigError(f"{here}.Effect", s.get("Effect"), "'Allow' or 'Deny'")
        if not ("Action" in s or "NotAction" in s):
            raise ConfigError(here, s, "a statement with Action or NotAction")
        if not ("Principal" in s or "NotPrincipal" in s):
            raise ConfigError(here, s, "a statement with Principal: registry policies need one")
        sid = s.get("Sid")
        if sid is not None:
            if sid in OWNED_SIDS:
                raise ConfigError(
                    f"{here}.Sid",
                    sid,
                    f"a Sid other than {', '.join(OWNED_SIDS)} (owned by ecr-ptc)",
                )
            if sid in sids:
                raise ConfigError(f"{here}.Sid", sid, f"a unique Sid; item {sids[sid]} has it too")
            sids[sid] = i
    return tuple(statements)


def parse_upstream(get: RawConfig) -> UpstreamConfig:
    here = _aws_region(get)
    accounts = _string_list(get, DOWNSTREAM_ACCOUNT_IDS, "12-digit AWS account IDs")
    for i, a in enumerate(accounts):
        _account_id(f"{DOWNSTREAM_ACCOUNT_IDS.full}[{i}]", a)
    _no_duplicates(DOWNSTREAM_ACCOUNT_IDS.full, accounts)

    organization_id = _raw(get, ORGANIZATION_ID)
    if organization_id is not None and not ORGANIZATION_ID_PATTERN.match(organization_id):
        raise ConfigError(
            ORGANIZATION_ID.full,
            organization_id,
            "an AWS Organizations ID: 'o-' then 10 to 32 lower-case letters or digits",
        )
    if not accounts and organization_id is None:
        raise ConfigError(
            DOWNSTREAM_ACCOUNT_IDS.full,
            accounts,
            f"at least one account ID, or set {ORGANIZATION_ID.full}: otherwise the upstream "
            "grants nothing and no downstream can cache from it",
        )

    prefix = _raw(get, REPOSITORY_PREFIX)
    if prefix is not None:
        _prefix(REPOSITORY_PREFIX.full, prefix, allow_root=False)

    grant_via = _raw(get, GRANT_VIA_KEY) or GRANT_VIA_KEY.default
    if grant_via not in GRANT_VIA:
        raise ConfigError(GRANT_VIA_KEY.full, grant_via, "'registry' or 'repository'")

    repositories = _string_list(get, REPOSITORIES, "repository names")
    for i, name in enumerate(repositories):
        item = f"{REPOSITORIES.full}[{i}]"
        if not (2 <= len(name) <= 256 and REPOSITORY_NAME_PATTERN.match(name)):
            raise ConfigError(item, name, "an ECR repository name (lower-case, 2-256 characters)")
        if prefix is not None and not name.startswith(f"{_namespace(prefix)}/"):
            raise ConfigError(
                item,
                name,
                f"a repository under {REPOSITORY_PREFIX.full} '{prefix}' "
                f"(e.g. '{_namespace(prefix)}/{name}'), since only that namespace is shared",
            )
    _no_duplicates(REPOSITORIES.full, repositories)
    if grant_via == "repository" and not repositories:
        raise ConfigError(
            REPOSITORIES.full,
            repositories,
            f"at least one repository name when {GRANT_VIA_KEY.full} is 'repository'",
        )
    if grant_via == "registry" and repositories:
        raise ConfigError(
            REPOSITORIES.full,
            repositories,
            f"empty unless {GRANT_VIA_KEY.full} is 'repository' "
            "(a registry policy already covers every repository of the pattern)",
        )

    scope = _raw(get, MANAGE_REGISTRY_POLICY_SCOPE)
    if scope is not None and scope.lower() not in ("true", "false"):
        raise ConfigError(MANAGE_REGISTRY_POLICY_SCOPE.full, scope, "true or false")
    extra = _extra_statements(get)
    if extra and grant_via != "registry":
        raise ConfigError(
            EXTRA_REGISTRY_POLICY_STATEMENTS.full,
            extra,
            f"empty unless {GRANT_VIA_KEY.full} is "
            "'registry': with 'repository' this stack does not write the registry policy",
        )
    return UpstreamConfig(
        region=here,
        downstream_account_ids=tuple(sorted(accounts)),
        organization_id=organization_id,
        repository_prefix=prefix,
        grant_via=grant_via,  # type: ignore[arg-type]
        repositories=tuple(sorted(repositories)),
        manage_registry_policy_scope=(
            MANAGE_REGISTRY_POLICY_SCOPE.default if scope is None else scope.lower() == "true"
        ),
        extra_registry_policy_statements=extra,
    )


# --- downstream --------------------------------------------------------------------------------


def _rules(get: RawConfig) -> tuple[CacheRule, ...]:
    key = RULES.full
    shape = (
        "a YAML list of rules, each {ecrRepositoryPrefix: <prefix>, "
        "upstreamRepositoryPrefix: <prefix, optional>}"
    )
    items = _json(get, RULES, list, shape)
    if not 1 <= len(items) <= quotas.MAX_RULES_PER_REGISTRY:
        raise ConfigError(
            key,
            f"{len(items)} rules",
            f"1 to {quotas.MAX_RULES_PER_REGISTRY} rules: AWS's quota of pull-through-cache "
            "rules per registry, not adjustable",
        )
    rules: list[CacheRule] = []
    for i, item in enumerate(items):
        here = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(here, item, shape)
        unknown = sorted(set(item) - set(RULE_FIELDS))
        if unknown:
            raise ConfigError(f"{here}.{unknown[0]}", item[unknown[0]], f"one of {RULE_FIELDS}")
        if "ecrRepositoryPrefix" not in item:
            raise ConfigError(f"{here}.ecrRepositoryPrefix", None, "a prefix: it is required")
        ecr_prefix = _prefix(f"{here}.ecrRepositoryPrefix", item["ecrRepositoryPrefix"])
        upstream_prefix = item.get("upstreamRepositoryPrefix", ROOT_PREFIX)
        _prefix(f"{here}.upstreamRepositoryPrefix", upstream_prefix)
        if ecr_prefix == ROOT_PREFIX and upstream_prefix != ROOT_PREFIX:
            raise ConfigError(
                f"{here}.upstreamRepositoryPrefix",
                upstream_prefix,
                "unset when ecrRepositoryPrefix is ROOT (AWS allows an upstream prefix only "
                "with a namespaced ecrRepositoryPrefix)",
            )
        rules.append(CacheRule(ecr_prefix, upstream_prefix))
    _no_duplicates(
        key, [r.ecr_repository_prefix for r in rules], _namespace, ".ecrRepositoryPrefix"
    )
    return tuple(rules)


def _role_name(key: str, value: object) -> str:
    if not (
        isinstance(value, str)
        and len(value) <= quotas.ROLE_NAME_MAX_CHARS
        and ROLE_NAME_PATTERN.match(value)
    ):
        raise ConfigError(
            key,
            value,
            f"an IAM role name: 1 to {quotas.ROLE_NAME_MAX_CHARS} letters, digits or +=,.@_-",
        )
    return value


def _positive_int(key: str, value: object) -> int:
    # bool is an int in Python; `true` is not a number of days.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "a whole number of at least 1")
    return value


def _kms_key_arns(
    key: str, value: object, regions: tuple[Region, ...]
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
    if not isinstance(value, dict):
        raise ConfigError(key, value, "a KMS key ARN, or a map of region to key ARN")
    if sorted(value) != sorted(names):
        raise ConfigError(
            key, sorted(value), f"one key ARN for each region of {REGIONS.full}: {', '.join(names)}"
        )
    partition = regions[0].partition
    for region_name, arn in value.items():
        here = f"{key}.{region_name}" if len(regions) > 1 else key
        match = KMS_KEY_ARN_PATTERN.match(arn) if isinstance(arn, str) else None
        if match is None:
            raise ConfigError(
                here,
                arn,
                "a KMS key ARN, arn:<partition>:kms:<region>:<account>:key/<key-id> (not an alias)",
            )
        if match["region"] != region_name or match["partition"] != partition:
            raise ConfigError(
                here,
                arn,
                f"a key in {region_name} ({partition}): ECR uses only a key in the repository's "
                "own region",
            )
    return tuple(sorted(value.items()))


def _resource_tags(key: str, value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise ConfigError(key, value, "a map of tag keys to values")
    if len(value) > quotas.MAX_TAGS_PER_RESOURCE:
        raise ConfigError(
            key, f"{len(value)} tags", f"at most {quotas.MAX_TAGS_PER_RESOURCE} tags (AWS's limit)"
        )
    for tag, tag_value in value.items():
        if not 1 <= len(tag) <= quotas.TAG_KEY_MAX_CHARS or tag.lower().startswith("aws:"):
            raise ConfigError(
                f"{key}.{tag}",
                tag,
                f"a tag key of 1 to {quotas.TAG_KEY_MAX_CHARS} characters, "
                "not starting with 'aws:'",
            )
        if not isinstance(tag_value, str) or len(tag_value) > quotas.TAG_VALUE_MAX_CHARS:
            raise ConfigError(
                f"{key}.{tag}",
                tag_value,
                f"a string of at most {quotas.TAG_VALUE_MAX_CHARS} characters",
            )
    return tuple(sorted(value.items()))


def _repository_template(get: RawConfig, regions: tuple[Region, ...]) -> RepositoryTemplate | None:
    key = REPOSITORY_TEMPLATE.full
    raw = _raw(get, REPOSITORY_TEMPLATE)
    if raw is None or raw == "null":
        return None
    value = _json(get, REPOSITORY_TEMPLATE, dict, f"a mapping with any of {TEMPLATE_FIELDS}")
    unknown = sorted(set(value) - set(TEMPLATE_FIELDS))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", value[unknown[0]], f"one of {TEMPLATE_FIELDS}")
    mutability = value.get("imageTagMutability", "MUTABLE")
    if mutability not in IMAGE_TAG_MUTABILITY:
        raise ConfigError(
            f"{key}.imageTagMutability",
            mutability,
            "MUTABLE (recommended for a cache, so tags "
            "can be refreshed from the upstream) or IMMUTABLE",
        )
    days, keep = value.get("expireUntaggedAfterDays"), value.get("keepLastImages")
    description = value.get("description")
    if description is not None and not (
        isinstance(description, str) and len(description) <= quotas.TEMPLATE_DESCRIPTION_MAX_CHARS
    ):
        raise ConfigError(
            f"{key}.description",
            description,
            f"a string of at most {quotas.TEMPLATE_DESCRIPTION_MAX_CHARS} characters",
        )
    return RepositoryTemplate(
        image_tag_mutability=mutability,
        expire_untagged_after_days=(
            None if days is None else _positive_int(f"{key}.expireUntaggedAfterDays", days)
        ),
        keep_last_images=None if keep is None else _positive_int(f"{key}.keepLastImages", keep),
        kms_key_arns=(
            ()
            if value.get("kmsKeyArn") is None
            else _kms_key_arns(f"{key}.kmsKeyArn", value["kmsKeyArn"], regions)
        ),
        resource_tags=(
            ()
            if value.get("resourceTags") is None
            else _resource_tags(f"{key}.resourceTags", value["resourceTags"])
        ),
        description=description,
    )


def parse_downstream(get: RawConfig) -> DownstreamConfig:
    here = _aws_region(get)
    names = _string_list(get, REGIONS, "AWS region names")
    regions = [_region(f"{REGIONS.full}[{i}]", n) for i, n in enumerate(names)] or [here]
    _no_duplicates(REGIONS.full, [r.name for r in regions])
    partitions = {r.partition for r in regions}
    if partitions != {here.partition}:
        raise ConfigError(
            REGIONS.full,
            names,
            f"regions of the same partition as {AWS_REGION_KEY} "
            f"'{here.name}' ({here.partition}): one IAM role cannot serve two partitions",
        )

    stack = _raw(get, UPSTREAM_STACK)
    account = _raw(get, UPSTREAM_ACCOUNT_ID)
    upstream_region = _raw(get, UPSTREAM_REGION)
    direct: DirectUpstream | None = None
    if stack is not None:
        if account is not None or upstream_region is not None:
            raise ConfigError(
                UPSTREAM_STACK.full,
                stack,
                f"set either {UPSTREAM_STACK.full}, or "
                f"{UPSTREAM_ACCOUNT_ID.full} with {UPSTREAM_REGION.full}, not both",
            )
        if not STACK_NAME_PATTERN.match(stack):
            raise ConfigError(
                UPSTREAM_STACK.full,
                stack,
                "a fully qualified stack name "
                "<organization>/<project>/<stack>, e.g. organization/ecr-ptc/upstream",
            )
    elif account is not None or upstream_region is not None:
        if account is None:
            raise ConfigError(
                UPSTREAM_ACCOUNT_ID.full, None, f"set together with {UPSTREAM_REGION.full}"
            )
        if upstream_region is None:
            raise ConfigError(
                UPSTREAM_REGION.full, None, f"set together with {UPSTREAM_ACCOUNT_ID.full}"
            )
        direct = DirectUpstream(
            _account_id(UPSTREAM_ACCOUNT_ID.full, account),
            _region(UPSTREAM_REGION.full, upstream_region),
        )
        if direct.region.partition != here.partition:
            raise ConfigError(
                UPSTREAM_REGION.full,
                upstream_region,
                f"a region of the same partition as this stack ({here.partition})",
            )
    else:
        raise ConfigError(
            UPSTREAM_STACK.full,
            None,
            "the upstream stack's fully qualified name (e.g. "
            f"organization/ecr-ptc/upstream), or {UPSTREAM_ACCOUNT_ID.full} and "
            f"{UPSTREAM_REGION.full} for a registry managed elsewhere",
        )

    role_name = _raw(get, ROLE_NAME)
    if role_name is not None and not (
        len(role_name) <= quotas.ROLE_NAME_MAX_CHARS and ROLE_NAME_PATTERN.match(role_name)
    ):
        raise ConfigError(
            ROLE_NAME.full,
            role_name,
            f"an IAM role name: 1 to {quotas.ROLE_NAME_MAX_CHARS} letters, digits or +=,.@_-",
        )
    consumer_roles = _string_list(get, CONSUMER_ROLE_NAMES, "IAM role names")
    for i, name in enumerate(consumer_roles):
        _role_name(f"{CONSUMER_ROLE_NAMES.full}[{i}]", name)
    _no_duplicates(CONSUMER_ROLE_NAMES.full, consumer_roles)
    return DownstreamConfig(
        region=here,
        regions=tuple(regions),
        rules=_rules(get),
        role_name=role_name,
        upstream_stack=stack,
        upstream=direct,
        repository_template=_repository_template(get, tuple(regions)),
        consumer_role_names=tuple(sorted(consumer_roles)),
    )


def _holds_default(key: Key, raw: str) -> bool:
    if isinstance(key.default, str):
        return raw == key.default
    try:
        return bool(json.loads(raw) == key.default)
    except json.JSONDecodeError:
        return False


def _refuse_other_side_keys(get: RawConfig, side: Side) -> None:
    """A key of the other side set here is a mistake that would otherwise be silently ignored
    (rules in an upstream stack create no rule)."""
    for key in KEYS:
        if key.side in ("both", side):
            continue
        raw = _raw(get, key)
        if raw is not None and not _holds_default(key, raw):
            raise ConfigError(
                key.full, raw, f"unset in a {side} stack: it configures the {key.side} stack"
            )


def parse(get: RawConfig, stack_name: str) -> StackConfig:
    side = resolve_side(get, stack_name)
    _refuse_other_side_keys(get, side)
    return parse_upstream(get) if side == "upstream" else parse_downstream(get)


def from_pulumi() -> RawConfig:
    """Read config the way the Pulumi CLI hands it to the program."""
    namespaces: dict[str, pulumi.Config] = {}

    def get(full_key: str) -> str | None:
        namespace, _, name = full_key.partition(":")
        config = namespaces.setdefault(namespace, pulumi.Config(namespace))
        return config.get(name)

    return get
