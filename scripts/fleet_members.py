"""Fleet templates: one downstream stack file that stands for many accounts.

A downstream stack file that sets `ecr-ptc:accounts` and/or `ecr-ptc:organizationalUnitIds` is a
*template*. Each account it names (or finds under the OUs) becomes a *member*: its own stack,
`<template>-<accountId>`, whose config is the template's without the fleet keys, plus the AWS
provider settings that pin it to that account and assume the account's role.

A template may set some per-account keys differently for one account
(`ecr-ptc:accountOverrides`); a member's config is the template's with its override applied.

Pure data in, data out: the same template config (and the same Organizations answers) gives the
same members, sorted by account, and adding an account changes no other member, nor its batch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from components.inputs import stack_config as keys
from components.inputs.errors import ConfigError
from components.inputs.stack_config import (
    FleetTemplate,
    apply_override,
    foreign_kms_keys,
    is_fleet_template,
    override_key,
    parse_fleet,
    refuse_fleet_keys_outside_a_template,
    valid_account_id,
)
from scripts.stack_files import cli_config, qualify

ACCOUNTS = keys.ACCOUNTS.full
ORGANIZATIONAL_UNIT_IDS = keys.ORGANIZATIONAL_UNIT_IDS.full
EXCLUDE_ACCOUNT_IDS = keys.EXCLUDE_ACCOUNT_IDS.full
ACCOUNT_ROLE_NAME = keys.ACCOUNT_ROLE_NAME.full
PERMISSIONS_BOUNDARY_ARN = keys.PERMISSIONS_BOUNDARY_ARN.full
FLEET_KEYS = tuple(k.full for k in keys.FLEET_KEYS)

# Provider settings the fleet writes into each member: a template must leave them to the fleet.
ALLOWED_ACCOUNT_IDS = keys.ALLOWED_ACCOUNT_IDS_KEY
ASSUME_ROLES = "aws:assumeRoles"
PROVIDER_KEYS_SET_BY_FLEET = (ALLOWED_ACCOUNT_IDS, ASSUME_ROLES, "aws:assumeRole", "aws:profile")
AWS_REGION = keys.AWS_REGION_KEY
SIDE = keys.SIDE.full

ACTIVE = "ACTIVE"
LIST_PERMISSIONS = "organizations:ListAccountsForParent and ListOrganizationalUnitsForParent"


class OrganizationsUnavailable(Exception):
    """The accounts under the template's OUs could not be listed: one line saying why."""


PREVIEW = "preview"


@dataclass(frozen=True)
class Member:
    """One account of a fleet: its stack, the roles the stack's provider assumes (the deploy
    role for `up`, the read-only preview role for `preview`), its config (with the deploy
    role)."""

    stack: str
    account_id: str
    role_arn: str
    config: Mapping[str, Any]
    preview_role_arn: str = ""

    def role_for(self, command: str) -> str:
        """The role a command runs with: a preview never holds the deploy role."""
        if command == PREVIEW:
            if not self.preview_role_arn:
                raise ValueError(
                    f"{self.stack} has no preview role: regenerate the members with this version"
                )
            return self.preview_role_arn
        return self.role_arn

    def config_for(self, command: str) -> dict[str, Any]:
        """The member's config, its provider assuming the role of `command`."""
        return {**self.config, ASSUME_ROLES: [{"roleArn": self.role_for(command)}]}

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "accountId": self.account_id,
            "roleArn": self.role_arn,
            "previewRoleArn": self.preview_role_arn,
            "config": dict(self.config),
        }


def member_stack(template_stack: str, account_id: str) -> str:
    return f"{template_stack}-{account_id}"


def member_stack_pattern(template_stack: str) -> re.Pattern[str]:
    """Stack names that belong to this template's fleet, whether still members or not."""
    return re.compile(rf"{re.escape(template_stack)}-([0-9]{{12}})", re.ASCII)


def is_template(config: Mapping[str, Any]) -> bool:
    return is_fleet_template(cli_config(config))


def check_template(template_stack: str, config: Mapping[str, Any]) -> None:
    """Refuse what a fleet cannot run: fleet keys without a fleet, an upstream template, provider
    settings the fleet itself writes per member."""
    if not is_template(config):
        refuse_fleet_keys_outside_a_template(cli_config(config))
        return
    key = ACCOUNTS if config.get(ACCOUNTS) else ORGANIZATIONAL_UNIT_IDS
    # The program's own rule: members are named <template>-<account>, so they are of the side
    # the template's name (or ecr-ptc:side) gives.
    side = keys.resolve_side({SIDE: str(config.get(SIDE) or "")}, template_stack)
    if side == "upstream":
        raise ConfigError(
            key,
            config[key],
            f"unset in an upstream stack: fleets are downstream stacks ({template_stack!r} is "
            "an upstream stack); grant the fleet's OUs on the upstream with "
            "ecr-ptc:organizationalUnitPaths or ecr-ptc:organizationId",
        )
    for provider_key in PROVIDER_KEYS_SET_BY_FLEET:
        if provider_key in config:
            raise ConfigError(
                provider_key,
                config[provider_key],
                f"unset in a fleet template: the fleet sets {ALLOWED_ACCOUNT_IDS} and "
                f"{ASSUME_ROLES} for each member from {ACCOUNTS} and {ACCOUNT_ROLE_NAME}",
            )


# --- Organizations ----------------------------------------------------------------------------


def _state(account: Mapping[str, Any]) -> str:
    # `State` (ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED) replaces the older `Status`.
    return str(account.get("State") or account.get("Status") or "")


def accounts_under(organizations: Any, ou_ids: Iterable[str]) -> set[str]:
    """Every ACTIVE account under the OUs, nested OUs included (Organizations API)."""
    accounts_pages = organizations.get_paginator("list_accounts_for_parent")
    ous_pages = organizations.get_paginator("list_organizational_units_for_parent")
    found: set[str] = set()
    pending = sorted(set(ou_ids))
    seen: set[str] = set()
    while pending:
        parent = pending.pop(0)
        if parent in seen:
            continue
        seen.add(parent)
        for page in accounts_pages.paginate(ParentId=parent):
            found.update(a["Id"] for a in page["Accounts"] if _state(a) == ACTIVE)
        for page in ous_pages.paginate(ParentId=parent):
            pending.extend(sorted(ou["Id"] for ou in page["OrganizationalUnits"]))
    return found


def default_organizations_client(config: Mapping[str, Any]) -> Any:
    """A client from the ambient credentials (AWS_PROFILE, the environment, SSO, ...), in a
    session of its own: the environment is read now, not when boto3's default session was."""
    import boto3

    region = config.get(AWS_REGION)
    return boto3.session.Session().client(
        "organizations", region_name=str(region) if region else None
    )


def organizations_problem(err: Exception, ou_ids: Sequence[str]) -> str:
    """One line: which OUs could not be listed, why, and what to do."""
    from botocore import exceptions as boto

    what = f"could not list the accounts under {ORGANIZATIONAL_UNIT_IDS} ({', '.join(ou_ids)})"
    detail = " ".join(str(err).split())
    who = (
        "credentials of the organization's management account or of a delegated administrator "
        f"(allowed {LIST_PERMISSIONS})"
    )
    if isinstance(err, boto.ProfileNotFound):
        return (
            f"{what}: {detail} (AWS_PROFILE). Set AWS_PROFILE to a profile in your AWS config "
            f"that has {who}, or list the accounts in {ACCOUNTS}"
        )
    if isinstance(
        err,
        boto.NoCredentialsError
        | boto.PartialCredentialsError
        | boto.TokenRetrievalError
        | boto.SSOError
        | boto.CredentialRetrievalError,
    ):
        return (
            f"{what}: no usable AWS credentials ({detail}). Log in (e.g. `aws sso login`) or set "
            f"AWS_PROFILE, with {who}; or list the accounts in {ACCOUNTS}"
        )
    if isinstance(err, boto.ConnectionError | boto.HTTPClientError):
        return (
            f"{what}: AWS Organizations could not be reached ({detail}). This is a network "
            "problem, not a credentials one: check your connection, VPN or proxy, and retry"
        )
    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("AccessDeniedException", "AccessDenied"):
            return f"{what}: {detail}. Use {who}"
        if code == "ParentNotFoundException":
            return f"{what}: {detail}. Check the OU IDs: each must be an OU of your organization"
        if code == "AWSOrganizationsNotInUseException":
            return f"{what}: {detail}. Use {who}"
        return f"{what}: {detail}"
    return f"{what}: {detail}"


# --- members ----------------------------------------------------------------------------------


def in_account(arn: str, account_id: str) -> str:
    """A customer managed policy's ARN in `account_id`: the same path and name (an AWS managed
    policy, `iam::aws:policy/...`, is the same everywhere)."""
    head, partition, service, region_name, account, rest = arn.split(":", 5)
    if account == "aws":
        return arn
    return ":".join((head, partition, service, region_name, account_id, rest))


def member_config(
    config: Mapping[str, Any],
    account_id: str,
    role_arn: str,
    override: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A member's whole config: the template's (`config`, qualified keys, values as the stack
    file gives them) without the fleet keys, with the account's override applied, pinned to the
    account and its role. A value that names another account, which the member could not use
    (a KMS key), is refused with the override key to set."""
    own = apply_override({k: v for k, v in config.items() if k not in FLEET_KEYS}, override or {})
    for key, arn in foreign_kms_keys(own, account_id):
        raise ConfigError(
            key,
            arn,
            f"a key of the member {account_id}'s own account: this ARN names account "
            f"{arn.split(':')[4]}, and the member's repositories are in account {account_id}. "
            f"Set {override_key(account_id, 'kmsKeyArn')} to a key of account {account_id} "
            "(a map of region to key with several regions)",
        )
    own[ALLOWED_ACCOUNT_IDS] = [account_id]
    own[ASSUME_ROLES] = [{"roleArn": role_arn}]
    boundary = own.get(PERMISSIONS_BOUNDARY_ARN)
    if isinstance(boundary, str) and boundary:
        # Each member's roles carry the boundary of its own account (the StackSet creates it).
        own[PERMISSIONS_BOUNDARY_ARN] = in_account(boundary, account_id)
    return dict(sorted(own.items()))


def members(
    template_stack: str, config: Mapping[str, Any], organizations_client: Any = None
) -> list[Member]:
    """The members of the fleet template `template_stack` (its flat config: keys as `pulumi
    config` shows them, values as YAML gives them), sorted by account. A stack that is not a
    template has none. Organizations is asked only when the template lists OUs; with
    `organizations_client` None a boto3 client is made from the ambient credentials. Any
    failure to ask it is an OrganizationsUnavailable, whose message says what is missing."""
    config = {qualify(k): v for k, v in config.items()}
    check_template(template_stack, config)
    if not is_template(config):
        return []
    fleet = fleet_template(config)
    accounts: dict[str, None] = {}
    if fleet.organizational_unit_ids:
        try:
            client = organizations_client or default_organizations_client(config)
            found = accounts_under(client, fleet.organizational_unit_ids)
        except (BotoCoreError, ClientError) as err:
            problem = organizations_problem(err, fleet.organizational_unit_ids)
            raise OrganizationsUnavailable(problem) from None
        accounts.update(dict.fromkeys(found))
    # An explicit {accountId, roleArn, previewRoleArn} wins over the same account in an OU.
    accounts.update(dict.fromkeys(a for a, _, _ in fleet.accounts))
    result = []
    for account_id in sorted(set(accounts) - set(fleet.exclude_account_ids)):
        role_arn, preview_role_arn = fleet.role_arns(account_id)
        result.append(
            Member(
                stack=member_stack(template_stack, account_id),
                account_id=account_id,
                role_arn=role_arn,
                config=member_config(config, account_id, role_arn, fleet.overrides.get(account_id)),
                preview_role_arn=preview_role_arn,
            )
        )
    return result


def fleet_template(config: Mapping[str, Any]) -> FleetTemplate:
    """The fleet keys of a template's config (keys as `pulumi config` shows them, values as the
    stack file gives them), validated with the rest of it."""
    return parse_fleet(cli_config({qualify(k): v for k, v in config.items()}))


def stray_overrides(template: FleetTemplate, fleet: Sequence[Member]) -> list[str]:
    """One warning line for each account override that applies to no member of `fleet` (not
    listed, excluded, or not under the OUs): not a refusal, since OU membership changes."""
    found = {m.account_id for m in fleet}
    excluded = set(template.exclude_account_ids)
    lines = []
    for account in sorted(set(template.overrides) - found):
        if account in excluded:
            why = f"it is in {EXCLUDE_ACCOUNT_IDS}"
        elif template.organizational_unit_ids:
            why = (
                f"it is neither in {ACCOUNTS} nor an ACTIVE account under {ORGANIZATIONAL_UNIT_IDS}"
            )
        else:
            why = f"it is not in {ACCOUNTS}"
        lines.append(
            f"warning: {override_key(account)} applies to no member: {why}. Remove the "
            "override, or enroll the account"
        )
    return lines


# --- the members file (`make -s fleet-members > members.json`, MEMBERS=members.json) -----------

MEMBERS = "MEMBERS"


def _regenerate(template: str) -> str:
    return f"regenerate it with `make -s fleet-members TEMPLATE={template} > members.json`"


def to_json(fleet: Sequence[Member], template: str) -> str:
    """The members file: the template it was made from and its members. Byte-identical for the
    same members: sorted keys, members sorted by account."""
    ordered = sorted(fleet, key=lambda m: m.account_id)
    document = {"template": template, "members": [m.to_json() for m in ordered]}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def from_json(text: str, template: str) -> list[Member]:
    """The members of a members file made for `template`. A file of another template, of the
    old list-only format, or with a member whose stack is not `<template>-<its account>` is
    refused: a run must never deploy one fleet's members as another's."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            MEMBERS,
            f"not JSON ({err.msg}, line {err.lineno})",
            f"the JSON `make fleet-members` prints: {_regenerate(template)}",
        ) from None
    if isinstance(document, list):
        raise ConfigError(
            MEMBERS,
            f"a list of {len(document)} members naming no template",
            f"a members file of template {template!r} ({{template, members}}): this one is of an "
            f"older version; {_regenerate(template)}",
        )
    if not isinstance(document, dict) or set(document) != {"template", "members"}:
        raise ConfigError(
            MEMBERS,
            sorted(document) if isinstance(document, dict) else type(document).__name__,
            "a mapping of template and members, as `make fleet-members` prints it; "
            + _regenerate(template),
        )
    if document["template"] != template:
        raise ConfigError(
            MEMBERS,
            document["template"],
            f"a members file of template {template!r} (this run's TEMPLATE): this one is of "
            f"template {document['template']!r}; {_regenerate(template)}",
        )
    if not isinstance(document["members"], list):
        raise ConfigError(f"{MEMBERS} members", document["members"], "a list of members")
    result = [_member(i, entry, template) for i, entry in enumerate(document["members"])]
    seen: set[str] = set()
    for i, member in enumerate(result):
        if member.account_id in seen:
            raise ConfigError(
                f"{MEMBERS} members[{i}].accountId", member.account_id, "each account once"
            )
        seen.add(member.account_id)
    return result


def _member(i: int, entry: object, template: str) -> Member:
    here = f"{MEMBERS} members[{i}]"
    fields = {"stack": str, "accountId": str, "roleArn": str, "config": dict}
    if not isinstance(entry, dict):
        raise ConfigError(
            here, entry, "a member: {stack, accountId, roleArn, previewRoleArn, config}"
        )
    for name, kind in fields.items():
        if not isinstance(entry.get(name), kind):
            raise ConfigError(f"{here}.{name}", entry.get(name), f"a {kind.__name__}")
    account = valid_account_id(f"{here}.accountId", entry["accountId"])
    stack = member_stack(template, account)
    if entry["stack"] != stack:
        raise ConfigError(
            f"{here}.stack",
            entry["stack"],
            f"{stack!r}: the stack of account {account} in fleet {template!r} is "
            f"<template>-<accountId>; {_regenerate(template)}",
        )
    return Member(
        stack,
        account,
        entry["roleArn"],
        entry["config"],
        str(entry.get("previewRoleArn", "")),
    )


# --- batches ----------------------------------------------------------------------------------

BATCH = "BATCH"
MAX_MATRIX_JOBS = 256  # GitHub Actions: at most 256 jobs per matrix
# Every account has a fixed slot; a batch is a range of slots.
SLOTS = MAX_MATRIX_JOBS


def parse_batch(value: str) -> tuple[int, int]:
    """`i/N` (1-based) -> (i, N)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value, re.ASCII)
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise ConfigError(BATCH, value, "i/N with 1 <= i <= N, e.g. 2/8 (the 2nd of 8 batches)")
    return int(match[1]), int(match[2])


@functools.lru_cache(maxsize=65536)
def slot(account_id: str) -> int:
    """The account's fixed slot, 0 to SLOTS - 1: from a hash of its ID, so it never depends on
    which other accounts are members."""
    digest = hashlib.sha256(account_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % SLOTS


def batch(fleet: Sequence[Member], index: int, count: int) -> list[Member]:
    """The `index`-th (1-based) of `count` batches, sorted by account: the members whose slot is
    in [(index-1)*SLOTS//count, index*SLOTS//count). Every member is in exactly one batch, and
    with the same count, adding or removing accounts moves no other member to another batch."""
    low, high = (index - 1) * SLOTS // count, index * SLOTS // count
    chosen = [m for m in fleet if low <= slot(m.account_id) < high]
    return sorted(chosen, key=lambda m: m.account_id)


def batch_count(member_count: int, per_batch: int) -> int:
    if per_batch < 1:
        raise ConfigError("--per-batch", per_batch, "a whole number >= 1")
    return min(MAX_MATRIX_JOBS, -(-member_count // per_batch))
