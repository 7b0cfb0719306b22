"""The whole stack as a validated plan of plain data: every resource with its inputs, every
policy document, every size checked against its quota. No Pulumi, no AWS.

The components declare resources from this plan and nothing else, so what `make plan` prints is
what `pulumi up` creates, and a refused config fails here, before anything is declared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..inputs.errors import ConfigError
from ..inputs.stack_config import (
    ALERTS,
    CACHE_ROLE_ARN,
    DOWNSTREAM_ACCOUNT_IDS,
    EXTRA_REGISTRY_POLICY_STATEMENTS,
    ORGANIZATION_ID,
    RULES,
    Alerts,
    DownstreamConfig,
    RepositoryTemplate,
    UpstreamConfig,
    refuse_statement_problems,
    statement_registry,
)
from ..rules import quotas
from ..rules.aws_names import Region, image_uri_prefix
from ..rules.policy_rules import (
    Problem,
    alert_role_policy_problems,
    alert_role_trust_problems,
    alert_rule_pattern_problems,
    alert_target_problems,
    alert_topic_policy_problems,
)
from . import contract
from .alerts import cache_failure_pattern, grant_change_pattern
from .contract import (
    UpstreamFacts,
    check_pairing,
    shared_repository_arn_pattern,
    upstream_repository_arns,
)
from .policies import (
    alert_role_permissions,
    alert_role_trust_policy,
    alert_topic_policy,
    cache_role_permissions,
    cache_role_trust_policy,
    canonical_json,
    consumer_policy,
    lifecycle_policy,
    policy_document,
    require_within,
    template_role_permissions,
    template_role_trust_policy,
    upstream_read_statements,
)
from .repositories import cache_repository_arns_any_region

# Pulumi type tokens of what the plans declare.
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MANAGED_POLICY = "aws:iam/policy:Policy"
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
PULL_THROUGH_CACHE_RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
CREATION_TEMPLATE = "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate"
REGISTRY_POLICY = "aws:ecr/registryPolicy:RegistryPolicy"
REPOSITORY_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
ACCOUNT_SETTING = "aws:ecr/accountSetting:AccountSetting"
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
TOPIC_SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"

# Groups: the component a resource sits under. Their names and types are part of every child's
# URN, so they keep what the first version used: a changed URN would replace live resources.
MAIN = "main"
TEMPLATES = "templates"
CONSUMERS = "consumers"
ALERTS_GROUP = "alerts"
APPLIED_FOR = "PULL_THROUGH_CACHE"
# Properties that hold a JSON document: `make plan` prints them parsed.
DOCUMENT_PROPERTIES = (
    "policy",
    "assume_role_policy",
    "lifecycle_policy",
    "repository_policy",
    "event_pattern",
)
# The target ID of every alert rule's one target.
ALERT_TARGET_ID = "ecr-ptc-alerts"
# What Pulumi appends to a name it generates ("-" and 7 characters): the sample names the plan
# checks alert policies with have the length of the real ones.
AUTONAME_SAMPLE = "-0000000"


@dataclass(frozen=True)
class Ref:
    """An output of another planned resource, known only once that resource exists."""

    resource: str
    attribute: str

    def __str__(self) -> str:
        return f"${{{self.resource}.{self.attribute}}}"


@dataclass(frozen=True)
class RefText:
    """Text that names outputs of other planned resources, such as a topic policy naming the
    topic and the rule the stack creates: each Ref of `refs` stands in `text` as
    `${name.attribute}` (its str), which `make plan` prints as it is and the declaring layer
    replaces with the value once the resource exists."""

    text: str
    refs: tuple[Ref, ...]

    def with_values(self, values: Mapping[Ref, str]) -> str:
        text = self.text
        for ref in self.refs:
            text = text.replace(str(ref), values[ref])
        return text


@dataclass(frozen=True)
class PlannedResource:
    type: str
    name: str
    region: str | None  # None: a global service (IAM)
    properties: Mapping[str, Any]  # pulumi-aws arguments; JSON documents as canonical text
    group: str = MAIN
    depends_on: tuple[str, ...] = ()
    # For resources whose ID is a name or prefix that a replacement would reuse.
    delete_before_replace: bool = False


@dataclass(frozen=True)
class StackPlan:
    side: str
    account_id: str
    region: str
    resources: tuple[PlannedResource, ...]
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == typ]


def _props(**values: Any) -> dict[str, Any]:
    """Arguments without the unset ones: pulumi-aws treats a missing argument as unset."""
    return {k: v for k, v in values.items() if v is not None}


def _role_with_policy(
    role: str,
    description: str,
    trust: Any,
    permissions: Any,
    limits: Mapping[str, Any],
    group: str = MAIN,
    name: str | None = None,
) -> list[PlannedResource]:
    """A role (IAM is global: no region) and its inline policy `<role>-policy`: the cache role,
    the template role and the alert roles alike."""
    return [
        PlannedResource(
            ROLE,
            role,
            None,
            _props(name=name, description=description, assume_role_policy=trust, **limits),
            group=group,
        ),
        PlannedResource(
            ROLE_POLICY,
            f"{role}-policy",
            None,
            _props(role=Ref(role, "id"), policy=permissions),
            group=group,
        ),
    ]


# --- upstream ------------------------------------------------------------------------------------

_TOO_MANY_ACCOUNTS = (
    f"grant the organization with {ORGANIZATION_ID.full} instead of listing every account"
)


def registry_policy_text(config: UpstreamConfig, account_id: str) -> str:
    """The whole registry policy: ours and the statements others own, which must survive."""
    pattern = shared_repository_arn_pattern(config.region, account_id, config.repository_prefix)
    ours = upstream_read_statements(config.grant, pattern)
    extra = [dict(s) for s in config.extra_registry_policy_statements]
    document = policy_document([*ours, *extra])
    # An oversized policy names the largest contributor: the grant of the listed accounts, or
    # one of the extra statements.
    key, value, advice = (
        DOWNSTREAM_ACCOUNT_IDS.full,
        f"{len(config.downstream_account_ids)} accounts",
        _TOO_MANY_ACCOUNTS,
    )
    sizes = [len(canonical_json(s)) for s in extra]
    if sum(sizes) > len(canonical_json({"Statement": ours})):
        largest = sizes.index(max(sizes))
        if max(sizes) * 2 > sum(sizes):
            key = f"{EXTRA_REGISTRY_POLICY_STATEMENTS.full}[{largest}]"
            value = f"{max(sizes)} characters"
            advice = "shorten this statement (the largest part of the policy) or drop it"
        else:
            key = EXTRA_REGISTRY_POLICY_STATEMENTS.full
            value = f"{len(extra)} statements, {sum(sizes)} characters"
            advice = "merge or drop some: together they are the largest part of the policy"
    return require_within(
        canonical_json(document),
        quotas.REGISTRY_POLICY_MAX_CHARS,
        f"registry policy of {config.region.name}",
        key,
        value,
        advice,
    )


def repository_policy_text(config: UpstreamConfig) -> str:
    return require_within(
        canonical_json(policy_document(upstream_read_statements(config.grant, None))),
        quotas.REPOSITORY_POLICY_MAX_CHARS,
        "repository policy",
        DOWNSTREAM_ACCOUNT_IDS.full,
        f"{len(config.downstream_account_ids)} accounts",
        _TOO_MANY_ACCOUNTS,
    )


def upstream_facts(config: UpstreamConfig, account_id: str) -> UpstreamFacts:
    return UpstreamFacts(
        account_id=account_id,
        region=config.region,
        downstream_account_ids=config.downstream_account_ids,
        organization_id=config.organization_id,
        repository_prefix=config.repository_prefix,
        organizational_unit_paths=config.organizational_unit_paths,
    )


def plan_upstream(config: UpstreamConfig, account_id: str, name: str) -> StackPlan:
    where = config.region.name
    # Config alone cannot tell whose registry an extra statement's ARNs name; the account can.
    refuse_statement_problems(
        config.extra_registry_policy_statements,
        statement_registry(
            config.region,
            config.organization_id,
            config.organizational_unit_paths,
            account_id,
        ),
    )
    resources: list[PlannedResource] = []
    if config.grant_via == "repository":
        policy = repository_policy_text(config)
        resources.extend(
            PlannedResource(
                REPOSITORY_POLICY,
                f"{name}-{repository}",
                where,
                _props(repository=repository, policy=policy, region=where),
            )
            for repository in config.repositories
        )
    else:
        depends_on: tuple[str, ...] = ()
        if config.manage_registry_policy_scope:
            # Under V1 a registry policy may hold only replication and pull-through-cache
            # import actions: ours would be rejected ("Invalid registry policy provided").
            # Deleting this resource leaves the setting at V2; AWS has no "unset".
            scope = f"{name}-registry-policy-scope"
            resources.append(
                PlannedResource(
                    ACCOUNT_SETTING,
                    scope,
                    where,
                    _props(name="REGISTRY_POLICY_SCOPE", value="V2", region=where),
                )
            )
            depends_on = (scope,)
        resources.append(
            PlannedResource(
                REGISTRY_POLICY,
                f"{name}-registry-policy",
                where,
                _props(policy=registry_policy_text(config, account_id), region=where),
                depends_on=depends_on,
            )
        )
    alerts, alert_outputs = _alerts_of(
        config,
        (config.region,),
        grant_change_pattern(account_id),
        GRANT_CHANGES_DESCRIPTION,
        account_id,
        name,
    )
    return StackPlan(
        "upstream",
        account_id,
        where,
        (*resources, *alerts),
        {**upstream_facts(config, account_id).to_outputs(), **alert_outputs},
    )


# --- downstream ----------------------------------------------------------------------------------


def _regions(config: DownstreamConfig) -> list[str]:
    return [r.name for r in config.regions]


def role_permissions_text(config: DownstreamConfig, facts: UpstreamFacts, account_id: str) -> str:
    document = cache_role_permissions(
        upstream_repository_arns(facts, config.rules),
        cache_repository_arns_any_region(config, account_id),
        _regions(config),
    )
    return require_within(
        canonical_json(document),
        quotas.ROLE_INLINE_POLICIES_MAX_CHARS,
        "cache role's permission policy",
        RULES.full,
        config.size_summary,
        "use fewer or shorter ecr-ptc:rules prefixes in this stack, or split them across stacks",
    )


def template_role_permissions_text(
    config: DownstreamConfig, template: RepositoryTemplate, account_id: str
) -> str:
    document = template_role_permissions(
        cache_repository_arns_any_region(config, account_id),
        _regions(config),
        [arn for _, arn in template.kms_key_arns],
    )
    return require_within(
        canonical_json(document),
        quotas.ROLE_INLINE_POLICIES_MAX_CHARS,
        "repository template role's permission policy",
        RULES.full,
        config.size_summary,
        "use fewer or shorter ecr-ptc:rules prefixes in this stack",
    )


def consumer_policy_text(config: DownstreamConfig, account_id: str) -> str:
    template = config.repository_template
    document = consumer_policy(
        cache_repository_arns_any_region(config, account_id),
        _regions(config),
        tags=bool(template and template.resource_tags),
    )
    return require_within(
        canonical_json(document),
        quotas.MANAGED_POLICY_MAX_CHARS,
        "consumer managed policy",
        RULES.full,
        config.size_summary,
        "use fewer or shorter ecr-ptc:rules prefixes in this stack",
    )


def lifecycle_policy_text(template: RepositoryTemplate) -> str | None:
    policy = lifecycle_policy(template.expire_untagged_after_days, template.keep_last_images)
    return None if policy is None else canonical_json(policy)


def rule_summaries(
    config: DownstreamConfig, facts: UpstreamFacts, account_id: str
) -> list[dict[str, str]]:
    """The `rules` output, sorted: reordering the config changes nothing."""
    summaries = [
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
    return sorted(summaries, key=lambda s: (s["region"], s["ecrRepositoryPrefix"]))


def _role_limits(config: DownstreamConfig | UpstreamConfig) -> dict[str, Any]:
    """What every role of ours carries: the permissions boundary, the IAM path and the tags
    configured."""
    return {
        "permissions_boundary": config.permissions_boundary_arn,
        "path": config.iam_path,
        **_tags(config),
    }


def _tags(config: DownstreamConfig | UpstreamConfig) -> dict[str, Any]:
    """The configured tags, for every taggable resource of ours (roles, the managed policy,
    alert rules and topics)."""
    return {"tags": dict(config.tags)} if config.tags else {}


def _check_cache_role(config: DownstreamConfig, account_id: str) -> None:
    """An existing cache role must be a role of this (downstream) account: ECR assumes it in the
    registry it fills."""
    arn = config.cache_role_arn
    if arn is not None and arn.split(":")[4] != account_id:
        raise ConfigError(
            CACHE_ROLE_ARN.full,
            arn,
            f"a role of this account ({account_id}): ECR assumes the cache role in the account "
            "whose registry it fills",
        )


def _template_resources(
    config: DownstreamConfig, template: RepositoryTemplate, account_id: str, name: str
) -> tuple[list[PlannedResource], dict[tuple[str, str], str]]:
    group = f"{name}-template"
    resources: list[PlannedResource] = []
    role_arn: Ref | None = None
    depends_on: tuple[str, ...] = ()
    if template.needs_role:
        role = f"{group}-role"
        resources += _role_with_policy(
            role,
            f"Assumed by ECR to create cache repositories in {account_id} from a creation template",
            canonical_json(template_role_trust_policy()),
            template_role_permissions_text(config, template, account_id),
            _role_limits(config),
            group=TEMPLATES,
        )
        role_arn, depends_on = Ref(role, "arn"), (f"{role}-policy",)
    lifecycle = lifecycle_policy_text(template)
    filters = [
        {"filter": f, "filter_type": "WILDCARD"}
        for f in template.image_tag_mutability_exclusion_filters
    ]
    names: dict[tuple[str, str], str] = {}
    for r in config.regions:
        key_arn = template.kms_key_arn(r.name)
        encryption = (
            {"encryption_type": "KMS", "kms_key": key_arn}
            if key_arn is not None
            else {"encryption_type": "AES256"}
        )
        for rule in config.rules:
            prefix = rule.ecr_repository_prefix
            logical = f"{group}-{r.name}-{prefix}"
            names[(r.name, prefix)] = logical
            resources.append(
                PlannedResource(
                    CREATION_TEMPLATE,
                    logical,
                    r.name,
                    _props(
                        region=r.name,
                        prefix=prefix,
                        applied_fors=[APPLIED_FOR],
                        description=template.description
                        or f"Cache repositories of pull-through-cache rule {prefix} (ecr-ptc)",
                        image_tag_mutability=template.image_tag_mutability,
                        image_tag_mutability_exclusion_filters=filters or None,
                        encryption_configurations=[encryption],
                        lifecycle_policy=lifecycle,
                        resource_tags=dict(template.resource_tags) or None,
                        custom_role_arn=role_arn,
                    ),
                    group=TEMPLATES,
                    depends_on=depends_on,
                    # The template's id is its prefix, like the rule's.
                    delete_before_replace=True,
                )
            )
    return resources, names


def _cache_role(
    config: DownstreamConfig, facts: UpstreamFacts, account_id: str, role: str
) -> list[PlannedResource]:
    """The role ECR assumes to fill the cache, and its permissions."""
    return _role_with_policy(
        role,
        f"Assumed by ECR pull through cache to copy images from {facts.registry_url}",
        canonical_json(cache_role_trust_policy()),
        role_permissions_text(config, facts, account_id),
        _role_limits(config),
        name=config.role_name,
    )


# --- alerts --------------------------------------------------------------------------------------

CACHE_FAILURES_DESCRIPTION = (
    "ecr-ptc: pull-through-cache fills of this stack's rules that did not succeed"
)
GRANT_CHANGES_DESCRIPTION = (
    "ecr-ptc: calls that change what this registry grants (registry and repository policies, "
    "account settings), as CloudTrail records them"
)


def _alert_check(problems: list[Problem], what: str, value: object) -> None:
    """The rules the policy pack applies at deploy (components/rules/policy_rules.py), applied
    to every alert document the plan writes: what the pack would refuse is refused here."""
    for problem in problems:
        raise ConfigError(
            ALERTS.full, value, f"an alert {what} that {problem.path}: {problem.valid}"
        )


def _subscription_name(topic: str, protocol: str, endpoint: str) -> str:
    """A subscription's logical name: by what it is, not by its place in the list, so adding or
    reordering subscriptions replaces none (and asks no endpoint to confirm again)."""
    digest = hashlib.sha256(f"{protocol}\n{endpoint}".encode()).hexdigest()[:12]
    return f"{topic}-{protocol}-{digest}"


@dataclass(frozen=True)
class AlertPlan:
    """What an alerting stack declares in each of its regions, and the topic of each region."""

    resources: list[PlannedResource]
    topics: dict[str, Ref]


def plan_alerts(
    alerts: Alerts,
    regions: tuple[Region, ...],
    pattern: Mapping[str, Any],
    description: str,
    account_id: str,
    name: str,
    limits: Mapping[str, Any],
    tags: Mapping[str, Any],
) -> AlertPlan:
    """In each region: a rule matching `pattern` on the default event bus, and its one target,
    the region's SNS topic (created here, with its policy and subscriptions) or the configured
    event bus (sent to with a role of this region's rule alone). `limits` are what every role
    of the stack carries, `tags` what every taggable resource does."""
    group = f"{name}-alerts"
    # The pattern grows with the rules' prefixes: 50 of the longest take about 3,400 characters.
    pattern_text = canonical_json(pattern)
    _alert_check(alert_rule_pattern_problems(pattern), "rule's event pattern", pattern_text)
    require_within(
        pattern_text,
        quotas.EVENT_PATTERN_MAX_CHARS,
        "alert rule's event pattern",
        RULES.full,
        f"prefixes making a {len(pattern_text)}-character pattern",
        "use fewer or shorter ecr-ptc:rules prefixes",
    )
    resources: list[PlannedResource] = []
    topics: dict[str, Ref] = {}
    for r in regions:
        rule = f"{group}-{r.name}"
        rule_arn = Ref(rule, "arn")
        head = f"arn:{r.partition}"
        samples = {rule_arn: f"{head}:events:{r.name}:{account_id}:rule/{rule}{AUTONAME_SAMPLE}"}
        resources.append(
            PlannedResource(
                EVENT_RULE,
                rule,
                r.name,
                _props(
                    region=r.name,
                    description=description,
                    event_pattern=pattern_text,
                    **tags,
                ),
                group=ALERTS_GROUP,
            )
        )
        target_arn: str | Ref
        role_arn: Ref | None = None
        if alerts.event_bus_arn is None:
            topic = f"{rule}-topic"
            topic_arn = Ref(topic, "arn")
            topics[r.name] = topic_arn
            samples[topic_arn] = f"{head}:sns:{r.name}:{account_id}:{topic}{AUTONAME_SAMPLE}"
            policy = RefText(
                canonical_json(alert_topic_policy(str(topic_arn), str(rule_arn), account_id)),
                (topic_arn, rule_arn),
            )
            _alert_check(
                alert_topic_policy_problems(json.loads(policy.with_values(samples))),
                "topic policy",
                policy.text,
            )
            resources.append(
                PlannedResource(TOPIC, topic, r.name, _props(region=r.name, **tags), ALERTS_GROUP)
            )
            resources.append(
                PlannedResource(
                    TOPIC_POLICY,
                    f"{topic}-policy",
                    r.name,
                    _props(region=r.name, arn=topic_arn, policy=policy),
                    group=ALERTS_GROUP,
                )
            )
            resources.extend(
                PlannedResource(
                    TOPIC_SUBSCRIPTION,
                    _subscription_name(topic, s.protocol, s.endpoint),
                    r.name,
                    _props(
                        region=r.name, topic=topic_arn, protocol=s.protocol, endpoint=s.endpoint
                    ),
                    group=ALERTS_GROUP,
                )
                for s in alerts.subscriptions
            )
            target_arn, needs = topic_arn, (f"{topic}-policy",)
        else:
            bus = alerts.event_bus_arn
            _, _, _, bus_region, bus_account, bus_name = bus.split(":", 5)
            if (bus_account, bus_region, bus_name) == (account_id, r.name, "event-bus/default"):
                raise ConfigError(
                    f"{ALERTS.full}.eventBusArn",
                    bus,
                    f"an event bus other than the default bus of this account in {r.name}, "
                    "which the alert rule itself is on: a custom bus, or a bus of another "
                    "account or region",
                )
            role = f"{rule}-role"
            trust = RefText(
                canonical_json(alert_role_trust_policy(str(rule_arn), account_id)), (rule_arn,)
            )
            _alert_check(
                alert_role_trust_problems(json.loads(trust.with_values(samples))),
                "role trust policy",
                trust.text,
            )
            permissions = canonical_json(alert_role_permissions(bus))
            _alert_check(
                alert_role_policy_problems(json.loads(permissions)), "role policy", permissions
            )
            resources += _role_with_policy(
                role,
                f"Assumed by EventBridge to send the alerts of {r.name} to {bus}",
                trust,
                permissions,
                limits,
                group=ALERTS_GROUP,
            )
            target_arn, role_arn, needs = bus, Ref(role, "arn"), (f"{role}-policy",)
        sample_target = samples[target_arn] if isinstance(target_arn, Ref) else target_arn
        _alert_check(alert_target_problems(sample_target, role_arn), "target", str(target_arn))
        resources.append(
            PlannedResource(
                EVENT_TARGET,
                f"{rule}-target",
                r.name,
                _props(
                    region=r.name,
                    rule=Ref(rule, "name"),
                    target_id=ALERT_TARGET_ID,
                    arn=target_arn,
                    role_arn=role_arn,
                ),
                group=ALERTS_GROUP,
                # EventBridge delivers once the target exists: by then it must be allowed to.
                depends_on=needs,
            )
        )
    return AlertPlan(resources, topics)


def _alerts_of(
    config: DownstreamConfig | UpstreamConfig,
    regions: tuple[Region, ...],
    pattern: Mapping[str, Any],
    description: str,
    account_id: str,
    name: str,
) -> tuple[list[PlannedResource], dict[str, Any]]:
    """The stack's alert resources and its alertTopicArns output (none without a topic)."""
    if config.alerts is None:
        return [], {}
    planned = plan_alerts(
        config.alerts,
        regions,
        pattern,
        description,
        account_id,
        name,
        _role_limits(config),
        _tags(config),
    )
    outputs = {contract.ALERT_TOPIC_ARNS: planned.topics} if planned.topics else {}
    return planned.resources, outputs


def plan_downstream(
    config: DownstreamConfig, facts: UpstreamFacts, account_id: str, name: str
) -> StackPlan:
    check_pairing(facts, config, account_id)
    _check_cache_role(config, account_id)
    role = f"{name}-role"
    role_policy = f"{role}-policy"
    resources: list[PlannedResource] = []
    role_arn: str | Ref = Ref(role, "arn")
    role_name: str | Ref = Ref(role, "name")
    rule_needs: tuple[str, ...] = (role_policy,)
    if config.cache_role_arn is not None:
        # An existing role: ECR assumes it as it is; its permissions are its owner's.
        role_arn, rule_needs = config.cache_role_arn, ()
        role_name = config.cache_role_arn.rsplit("/", 1)[1]
    else:
        resources += _cache_role(config, facts, account_id, role)
    templates: dict[tuple[str, str], str] = {}
    if config.repository_template is not None:
        planned, templates = _template_resources(
            config, config.repository_template, account_id, name
        )
        resources.extend(planned)
    for r in config.regions:
        for rule in config.rules:
            template = templates.get((r.name, rule.ecr_repository_prefix))
            resources.append(
                PlannedResource(
                    PULL_THROUGH_CACHE_RULE,
                    f"{name}-{r.name}-{rule.ecr_repository_prefix}",
                    r.name,
                    _props(
                        region=r.name,
                        ecr_repository_prefix=rule.ecr_repository_prefix,
                        upstream_repository_prefix=rule.upstream_repository_prefix,
                        upstream_registry_url=facts.registry_url,
                        custom_role_arn=role_arn,
                    ),
                    # ECR assumes the role when it first pulls: its permissions must be in place
                    # by then. A template applies only to repositories created after it exists.
                    depends_on=(*rule_needs, *([template] if template else [])),
                    # The rule's id is its prefix and the prefix and URL force replacement: the
                    # old rule must go before the new one can exist.
                    delete_before_replace=True,
                )
            )
    consumer = f"{name}-consumer"
    policy = f"{consumer}-policy"
    resources.append(
        PlannedResource(
            MANAGED_POLICY,
            policy,
            None,
            _props(
                description="Pull images through the ECR pull-through cache of ecr-ptc",
                policy=consumer_policy_text(config, account_id),
                **_tags(config),
            ),
            group=CONSUMERS,
        )
    )
    resources.extend(
        PlannedResource(
            ROLE_POLICY_ATTACHMENT,
            f"{consumer}-{role_name}",
            None,
            _props(role=role_name, policy_arn=Ref(policy, "arn")),
            group=CONSUMERS,
        )
        for role_name in config.consumer_role_names
    )
    alerts, alert_outputs = _alerts_of(
        config,
        config.regions,
        cache_failure_pattern((rule.ecr_repository_prefix for rule in config.rules), account_id),
        CACHE_FAILURES_DESCRIPTION,
        account_id,
        name,
    )
    resources.extend(alerts)
    return StackPlan(
        "downstream",
        account_id,
        config.region.name,
        tuple(resources),
        {
            contract.ROLE_ARN: role_arn,
            contract.ROLE_NAME: role_name,
            contract.RULES_OUTPUT: rule_summaries(config, facts, account_id),
            contract.CONSUMER_POLICY_ARN: Ref(policy, "arn"),
            **alert_outputs,
        },
    )


def documents(resource: PlannedResource) -> dict[str, Any]:
    """The JSON documents among a resource's properties, parsed for reading."""
    return {
        key: json.loads(value if isinstance(value, str) else value.text)
        for key, value in resource.properties.items()
        if key in DOCUMENT_PROPERTIES and isinstance(value, str | RefText)
    }
