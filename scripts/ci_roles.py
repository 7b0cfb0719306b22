"""`make ci-roles`: the four AWS roles the GitHub workflows assume, as IAM documents.

For each of upstream-preview, upstream-deploy, downstream-preview and downstream-deploy: the trust
policy (GitHub's OIDC provider, this repository only: pull requests for the preview roles, pushes
to main for the deploy roles) and a least-privilege permission policy derived from the resource
types the stacks create (RESOURCE_ACTIONS below), scoped to the names the program gives them, the
stack's account (`aws:allowedAccountIds`) and regions, and to the state backend when it is S3.

    GITHUB_REPOSITORY=owner/repo make ci-roles          # one JSON object keyed by role
    python -m scripts.ci_roles --repository owner/repo --role upstream-deploy --document trust

Preview roles get only the reads (a refresh's, and the state's); deploy roles reads and writes.
Regenerate after changing a stack file, and before removing something the old roles managed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.aws_names import (
    UnknownRegionError,
    region,
    repositories_under,
    repository_arn_in,
)
from components.config import allowed_account_id, is_fleet_template
from components.config_error import ConfigError
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
PULL_THROUGH_CACHE_SERVICE = "pullthroughcache.ecr.amazonaws.com"
ECR_SERVICE = "ecr.amazonaws.com"

# The names the program gives what it creates (components/program.py and the components): Pulumi
# autonames a resource `<name>-<7 random characters>` unless a name is configured.
COMPONENT = "ecr-ptc"
CACHE_ROLE_PREFIX = f"{COMPONENT}-role-"
TEMPLATE_ROLE_PREFIX = f"{COMPONENT}-template-role-"
CONSUMER_POLICY_PREFIX = f"{COMPONENT}-consumer-policy-"
PROJECT_NAME = "ecr-ptc"

ROLE_NAME_KEY = "ecr-ptc:roleName"
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
        "create": ("iam:CreateRole", "iam:TagRole"),
        "read": (
            "iam:GetRole",
            "iam:ListAttachedRolePolicies",
            "iam:ListRolePolicies",
            "iam:ListRoleTags",
        ),
        "update": (
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
}
WRITE_OPERATIONS = ("create", "update", "delete")

SIDE_RESOURCE_TYPES = {
    # Every type a side can declare, whatever its options (grantVia, templates, consumer roles):
    # switching an option deletes the old kind, which the role must still be able to do.
    "upstream": ("aws.ecr.AccountSetting", "aws.ecr.RegistryPolicy", "aws.ecr.RepositoryPolicy"),
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
    if side == "downstream" and is_fleet_template(raw):
        raise CiRolesError(
            f"{file} is a fleet template: make ci-roles covers the upstream stack and a "
            "single-account downstream stack; a fleet's members are deployed through the role "
            'each account trusts (README "Fleet", prerequisites)'
        )
    try:
        account = allowed_account_id(raw)
    except ConfigError as err:
        raise CiRolesError(f"{file}: {err}") from None
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
        side, name, account, regions[0].partition, tuple(sorted({r.name for r in regions})), config
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


def stack_role_arns(stack: Stack) -> list[str]:
    cache_role = stack.config.get(ROLE_NAME_KEY) or f"{CACHE_ROLE_PREFIX}*"
    return [_iam(stack, "role", cache_role), _iam(stack, "role", f"{TEMPLATE_ROLE_PREFIX}*")]


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
    if stack.side == "upstream":
        prefix = stack.config.get(REPOSITORY_PREFIX_KEY) or None
        statements.append(
            statement(
                "SharedRepositoryPolicies",
                actions_for(["aws.ecr.RepositoryPolicy"], operations),
                repository_arns(stack, [prefix]),
            )
        )
        return statements
    role_actions = actions_for(["aws.iam.Role", "aws.iam.RolePolicy"], operations)
    statements += [
        # The cache and template roles, by the names the program gives them; never the CI roles
        # themselves (name those outside ecr-ptc-role-* and ecr-ptc-template-role-*).
        statement("StackRoles", role_actions, stack_role_arns(stack)),
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
    if deploy:
        cache_role, template_role = stack_role_arns(stack)
        statements += [
            statement(
                "PassCacheRoleToPullThroughCache",
                ["iam:PassRole"],
                [cache_role],
                {"StringEquals": {"iam:PassedToService": PULL_THROUGH_CACHE_SERVICE}},
            ),
            statement(
                "PassTemplateRoleToEcr",
                ["iam:PassRole"],
                [template_role],
                {"StringEquals": {"iam:PassedToService": ECR_SERVICE}},
            ),
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


def state_statements(
    stack: Stack, backend: tuple[str, str], deploy: bool
) -> list[dict[str, Any] | None]:
    """Read the project's state (the downstream reads the upstream's outputs from it); a deploy
    role also writes its own stack's checkpoint, history, backups and lock, and nothing else."""
    bucket, prefix = backend
    base = f"{prefix}/" if prefix else ""
    s3 = f"arn:{stack.partition}:s3:::{bucket}"
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
    if deploy:
        own = state
        statements.append(
            statement(
                "WriteOwnStackState",
                ["s3:DeleteObject", "s3:PutObject"],
                [
                    f"{own}/meta.yaml",
                    f"{own}/stacks/{PROJECT_NAME}/{stack.name}.json*",
                    f"{own}/*/{PROJECT_NAME}/{stack.name}/*",
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


def trust_policy(stack: Stack, repository: str, deploy: bool) -> dict[str, Any]:
    subject = f"repo:{repository}:" + ("ref:refs/heads/main" if deploy else "pull_request")
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "GitHubMainPushes" if deploy else "GitHubPullRequests",
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


def ci_roles(
    repository: str,
    upstream_stack: str,
    downstream_stack: str,
    env: Mapping[str, str],
    project_dir: Path = PROJECT_DIR,
) -> dict[str, dict[str, Any]]:
    if not _REPOSITORY.match(repository):
        raise CiRolesError(
            f"the GitHub repository must be owner/repo (GITHUB_REPOSITORY or --repository); "
            f"got {repository!r}"
        )
    stacks = {
        "upstream": load_stack("upstream", upstream_stack, project_dir),
        "downstream": load_stack("downstream", downstream_stack, project_dir),
    }
    backend = s3_backend(state_backend(env, project_dir))
    roles: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        side, kind = role.split("-")
        stack, deploy = stacks[side], kind == "deploy"
        roles[role] = {
            "account": stack.account,
            "stack": stack.name,
            "repositoryVariable": ROLE_VARIABLES[role],
            "trustPolicy": trust_policy(stack, repository, deploy),
            "permissionPolicy": permission_policy(stack, deploy, backend),
        }
    return roles


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    project_dir: Path = PROJECT_DIR,
) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", help="owner/repo (default: $GITHUB_REPOSITORY)")
    parser.add_argument("--upstream-stack", default="upstream")
    parser.add_argument("--downstream-stack", default="downstream")
    parser.add_argument("--role", choices=ROLES, help="print only this role's documents")
    parser.add_argument(
        "--document",
        choices=("trust", "permissions"),
        help="with --role: print only this document (for `aws iam create-role ... file://`)",
    )
    args = parser.parse_args(argv)
    env = dict(os.environ if env is None else env)
    repository = args.repository or env.get("GITHUB_REPOSITORY", "")
    try:
        if not repository:
            raise CiRolesError(
                "which GitHub repository assumes the roles? Set GITHUB_REPOSITORY=owner/repo "
                "(or pass --repository owner/repo)"
            )
        roles = ci_roles(repository, args.upstream_stack, args.downstream_stack, env, project_dir)
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
    output: Any = roles
    if args.role:
        output = roles[args.role]
        if args.document:
            output = output["trustPolicy" if args.document == "trust" else "permissionPolicy"]
    print(json.dumps(output, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
