"""`make ci-roles` for a fleet template: every role a fleet needs, as IAM documents and as the
CloudFormation templates that create them.

A fleet runs from one account (`--fleet-account`, where GitHub's OIDC provider is) into every
member account. It needs, in the fleet account:

- `fleet-preview`: assumed by pull-request previews (the preview environment); it may assume
  only each member's read-only preview role (`ecr-ptc:accountPreviewRoleName`), and read the
  project's state;
- `fleet-deploy`: assumed by deploys (the deploy environment); it may assume only each member's
  deploy role (`ecr-ptc:accountRoleName`), and write the members' state;
- `organizations-reader`: lists the accounts under the template's OUs (the management account
  or a delegated administrator; both environments);

and in every member account the preview and deploy roles themselves, each trusted only by the
central role of its kind, with the downstream stack's preview or deploy permissions, and the
permissions boundary every role of the stack carries. Member roles must exist before any member
stack can run, so they come as a CloudFormation template to roll out as a StackSet to the
template's OUs (`memberStackSetTemplate`); the fleet account's part (OIDC provider and the three
roles) as another (`fleetAccountTemplate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from components.inputs.errors import ConfigError
from components.inputs.stack_config import (
    ACCOUNT_OVERRIDES,
    ACCOUNT_PREVIEW_ROLE_NAME,
    ACCOUNT_ROLE_NAME,
    DownstreamConfig,
    FleetTemplate,
    parse_downstream,
    parse_fleet,
)
from scripts.ci_roles import (
    BOUNDARY_KEY,
    BOUNDARY_POLICY_NAME,
    CONSUMER_ROLES_KEY,
    DEFAULT_DEPLOY_ENVIRONMENT,
    DEFAULT_PREVIEW_ENVIRONMENT,
    GITHUB_OIDC_HOST,
    OIDC_AUDIENCE,
    POLICY_VERSION,
    ROLE_NAME_KEY,
    CiRolesError,
    Stack,
    boundary_policy,
    github_subject,
    permission_policy,
    project_state_statements,
    statement,
    trust_policy,
)
from scripts.fleet_members import in_account

CENTRAL_ROLES = {
    "fleet-preview": ("ecr-ptc-fleet-ci-preview", "FLEET_AWS_PREVIEW_ROLE_ARN"),
    "fleet-deploy": ("ecr-ptc-fleet-ci-deploy", "FLEET_AWS_ROLE_ARN"),
    "organizations-reader": ("ecr-ptc-fleet-organizations-reader", "FLEET_ORGANIZATIONS_ROLE_ARN"),
}
# CloudFormation fills these in per member account.
MEMBER_ACCOUNT = "${AWS::AccountId}"
ORGANIZATIONS_ACTIONS = (
    "organizations:ListAccountsForParent",
    "organizations:ListOrganizationalUnitsForParent",
)


def _role_arn(partition: str, account: str, name: str) -> str:
    return f"arn:{partition}:iam::{account}:role/{name}"


def member_role_arns(fleet: FleetTemplate, preview: bool) -> tuple[list[str], list[str]]:
    """(ARNs of the listed members' roles, OU IDs whose members' roles are named): what a
    central role may assume. Members found under an OU are named by role name in any account,
    narrowed to those OUs by aws:ResourceOrgPaths."""
    listed = sorted({fleet.role_arns(a)[1 if preview else 0] for a, _, _ in fleet.accounts})
    return listed, sorted(fleet.organizational_unit_ids)


def assume_statements(fleet: FleetTemplate, preview: bool) -> list[dict[str, Any] | None]:
    listed, ous = member_role_arns(fleet, preview)
    name = fleet.account_preview_role_name if preview else fleet.account_role_name
    kind = "Preview" if preview else "Deploy"
    statements = [statement(f"AssumeListedMembers{kind}Roles", ["sts:AssumeRole"], listed)]
    if ous:
        statements.append(
            statement(
                f"AssumeMembers{kind}RolesUnderTheOUs",
                ["sts:AssumeRole"],
                [_role_arn(fleet.partition, "*", name)],
                {"ForAnyValue:StringLike": {"aws:ResourceOrgPaths": [f"*/{ou}/*" for ou in ous]}},
            )
        )
    return statements


def state_statements(
    fleet: FleetTemplate, template: str, backend: tuple[str, str] | None, deploy: bool
) -> list[dict[str, Any] | None]:
    """The Automation API runs with the central role's credentials: it reads the project's state
    and, deploying, writes the members' stacks (`<template>-<account>`) and nothing else."""
    if backend is None:
        return []
    return project_state_statements(fleet.partition, backend, f"{template}-*" if deploy else None)


def _document(statements: list[dict[str, Any] | None]) -> dict[str, Any]:
    return {"Version": POLICY_VERSION, "Statement": [s for s in statements if s is not None]}


def organizations_reader_policy(partition: str) -> dict[str, Any]:
    return _document(
        [
            statement(
                "ListTheOrganizationsAccountsAndOUs",
                ORGANIZATIONS_ACTIONS,
                [
                    f"arn:{partition}:organizations::*:ou/o-*/ou-*",
                    f"arn:{partition}:organizations::*:root/o-*/r-*",
                ],
            )
        ]
    )


def member_stack(
    template: str, config: DownstreamConfig, raw: Mapping[str, Any], boundary: str | None
) -> Stack:
    """The downstream stack of any member, its account left to CloudFormation."""
    return Stack(
        "downstream",
        f"{template}-{MEMBER_ACCOUNT}",
        MEMBER_ACCOUNT,
        config.region.partition,
        tuple(sorted({r.name for r in config.regions})),
        raw,
        in_account(boundary, MEMBER_ACCOUNT) if boundary is not None else None,
        config.iam_path or "/",
        alerts=config.alerts,
    )


def with_overrides(stack: Stack, fleet: FleetTemplate, template: str) -> Stack:
    """The member stack every account's roles are made for (one StackSet template for all), widened
    to what `ecr-ptc:accountOverrides` gives any member: its regions and consumer roles. A role
    name per account cannot be: the StackSet's roles are the same in every account."""
    named = sorted(
        {str(o["roleName"]) for o in fleet.overrides.values() if o.get("roleName")}
        - {str(stack.config.get(ROLE_NAME_KEY) or "")}
    )
    if named:
        raise CiRolesError(
            f"Pulumi.{template}.yaml: {ACCOUNT_OVERRIDES.full} sets roleName "
            f"({', '.join(named)}) for some accounts, but the StackSet gives every member the "
            "same deploy role, scoped to one cache role name: set roleName in the template for "
            "all members, or leave it unset (generated names)"
        )
    regions = {
        *stack.regions,
        *(r for o in fleet.overrides.values() for r in o.get("regions") or []),
    }
    template_consumers = list(stack.config.get(CONSUMER_ROLES_KEY) or [])
    consumers = sorted(
        {*template_consumers}
        | {str(n) for o in fleet.overrides.values() for n in o.get("consumerRoleNames") or []}
    )
    config = dict(stack.config)
    if consumers:
        config[CONSUMER_ROLES_KEY] = consumers
    return replace(stack, regions=tuple(sorted(regions)), config=config)


def member_boundary_policy(
    template: str, raw: Mapping[str, str], values: Mapping[str, Any]
) -> dict[str, Any]:
    """The boundary policy every member of the fleet of `template` carries (the StackSet's
    `Boundary`): the template's alerts reach every member unchanged, and so does its bus."""
    try:
        config = parse_downstream(raw)
    except ConfigError as err:
        raise CiRolesError(f"Pulumi.{template}.yaml: {err}") from None
    return boundary_policy(member_stack(template, config, values, config.permissions_boundary_arn))


def _sub(value: Any) -> Any:
    """Strings that name the member account, as CloudFormation's Fn::Sub of them."""
    if isinstance(value, str) and MEMBER_ACCOUNT in value:
        return {"Fn::Sub": value}
    if isinstance(value, list):
        return [_sub(v) for v in value]
    if isinstance(value, dict):
        return {k: _sub(v) for k, v in value.items()}
    return value


def _member_role(name: str, trusted: str, policy: dict[str, Any], description: str) -> Any:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": name,
            "Description": description,
            "MaxSessionDuration": 3600,
            "AssumeRolePolicyDocument": {
                "Version": POLICY_VERSION,
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": trusted},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [{"PolicyName": name, "PolicyDocument": _sub(policy)}],
        },
    }


def member_stackset_template(
    fleet: FleetTemplate, stack: Stack, central: Mapping[str, str]
) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "PreviewRole": _member_role(
            fleet.account_preview_role_name,
            central["fleet-preview"],
            permission_policy(stack, False, None),
            "ecr-ptc fleet previews: read only; assumed by the fleet's central preview role",
        ),
        "DeployRole": _member_role(
            fleet.account_role_name,
            central["fleet-deploy"],
            permission_policy(stack, True, None),
            "ecr-ptc fleet deploys; assumed by the fleet's central deploy role",
        ),
    }
    assert stack.boundary is not None
    if ":iam::aws:policy/" not in stack.boundary:
        path, _, name = stack.boundary.split(":policy", 1)[1].rpartition("/")
        resources["Boundary"] = {
            "Type": "AWS::IAM::ManagedPolicy",
            "Properties": {
                "ManagedPolicyName": name,
                "Path": f"{path}/",
                "Description": "ecr-ptc: the ceiling of every role a member stack creates",
                "PolicyDocument": _sub(boundary_policy(stack)),
            },
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "ecr-ptc fleet member roles: roll out as a StackSet to the fleet's OUs "
        "(service-managed permissions, automatic deployment) before the first fleet run",
        "Resources": resources,
    }


def fleet_account_template(roles: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "GitHubOidcProvider": {
            "Type": "AWS::IAM::OIDCProvider",
            "Properties": {
                "Url": f"https://{GITHUB_OIDC_HOST}",
                "ClientIdList": [OIDC_AUDIENCE],
            },
        }
    }
    for key, role in roles.items():
        logical = "".join(part.capitalize() for part in key.split("-")) + "Role"
        resources[logical] = {
            "Type": "AWS::IAM::Role",
            "DependsOn": "GitHubOidcProvider",
            "Properties": {
                "RoleName": role["roleName"],
                "AssumeRolePolicyDocument": role["trustPolicy"],
                "Policies": [
                    {"PolicyName": role["roleName"], "PolicyDocument": role["permissionPolicy"]}
                ],
            },
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "ecr-ptc fleet: GitHub's OIDC provider and the fleet's central roles "
        "(skip the provider if the account has one)",
        "Resources": resources,
    }


def fleet_roles(
    repository: str,
    template: str,
    raw: Mapping[str, str],
    values: Mapping[str, Any],
    fleet_account: str | None,
    backend: tuple[str, str] | None,
    preview_environment: str = DEFAULT_PREVIEW_ENVIRONMENT,
    deploy_environment: str = DEFAULT_DEPLOY_ENVIRONMENT,
    upstream_grants_organization: bool = False,
) -> dict[str, Any]:
    """Every role of the fleet of `template` (`raw`: its config as the CLI hands it, `values`:
    as the stack file gives it; `upstream_grants_organization`: whether the members' doctor asks
    which organization its account is in)."""
    try:
        fleet = parse_fleet(raw)
        config = parse_downstream(raw)
    except ConfigError as err:
        raise CiRolesError(f"Pulumi.{template}.yaml: {err}") from None
    if not fleet_account:
        raise CiRolesError(
            f"Pulumi.{template}.yaml is a fleet template: name the account the fleet runs from "
            "(where GitHub's OIDC provider and the fleet's central roles are) with "
            "--fleet-account <12-digit account> (or FLEET_ACCOUNT_ID)"
        )
    if config.permissions_boundary_arn is None:
        raise CiRolesError(
            f"{BOUNDARY_KEY} is not set in Pulumi.{template}.yaml: without a permissions boundary "
            "on the roles the members create, each member's deploy role could create a role "
            "with any policy. Set it to the policy the StackSet creates in every member, e.g. "
            f"arn:{fleet.partition}:iam::<any account>:policy/{BOUNDARY_POLICY_NAME} (each "
            "member uses the policy of that path and name in its own account)"
        )
    stack = with_overrides(
        replace(
            member_stack(template, config, values, config.permissions_boundary_arn),
            upstream_grants_organization=upstream_grants_organization,
        ),
        fleet,
        template,
    )
    central = {
        key: _role_arn(fleet.partition, fleet_account, name)
        for key, (name, _) in CENTRAL_ROLES.items()
    }
    account_stack = Stack("fleet", template, fleet_account, fleet.partition, (), values)
    preview_trust = trust_policy(account_stack, repository, False, preview_environment)
    deploy_trust = trust_policy(account_stack, repository, True, deploy_environment)
    reader_trust = trust_policy(account_stack, repository, False, preview_environment)
    subject = f"{GITHUB_OIDC_HOST}:sub"
    reader_trust["Statement"][0]["Sid"] = "GitHubPreviewAndDeployEnvironments"
    reader_trust["Statement"][0]["Condition"]["StringEquals"][subject] = sorted(
        github_subject(repository, e) for e in {preview_environment, deploy_environment}
    )
    documents = {
        "fleet-preview": (
            preview_environment,
            preview_trust,
            _document(
                [
                    *assume_statements(fleet, preview=True),
                    *state_statements(fleet, template, backend, deploy=False),
                ]
            ),
        ),
        "fleet-deploy": (
            deploy_environment,
            deploy_trust,
            _document(
                [
                    *assume_statements(fleet, preview=False),
                    *state_statements(fleet, template, backend, deploy=True),
                ]
            ),
        ),
        "organizations-reader": (
            f"{preview_environment}, {deploy_environment}",
            reader_trust,
            organizations_reader_policy(fleet.partition),
        ),
    }
    roles = {
        key: {
            "account": fleet_account,
            "roleName": CENTRAL_ROLES[key][0],
            "repositoryVariable": CENTRAL_ROLES[key][1],
            "githubEnvironment": environment,
            "trustPolicy": trust,
            "permissionPolicy": permissions,
        }
        for key, (environment, trust, permissions) in documents.items()
    }
    return {
        **roles,
        "memberRoles": {
            "preview": {
                "roleName": fleet.account_preview_role_name,
                "key": ACCOUNT_PREVIEW_ROLE_NAME.full,
                "trustedBy": central["fleet-preview"],
            },
            "deploy": {
                "roleName": fleet.account_role_name,
                "key": ACCOUNT_ROLE_NAME.full,
                "trustedBy": central["fleet-deploy"],
            },
        },
        "memberStackSetTemplate": member_stackset_template(fleet, stack, central),
        "fleetAccountTemplate": fleet_account_template(roles),
    }
