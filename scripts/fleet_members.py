"""Fleet templates: one downstream stack file that stands for many accounts.

A downstream stack file that sets `ecr-ptc:accounts` and/or `ecr-ptc:organizationalUnitIds` is a
*template*. Each account it names (or finds under the OUs) becomes a *member*: its own stack,
`<template>-<accountId>`, whose config is the template's without the fleet keys, plus the AWS
provider settings that pin it to that account and assume the account's role.

Pure data in, data out: the same template config (and the same Organizations answers) gives the
same members, sorted by account, and adding an account changes no other member.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.aws_names import UnknownRegionError, region
from components.config_error import ConfigError
from scripts.stack_files import qualify

NAMESPACE = "ecr-ptc"
ACCOUNTS = f"{NAMESPACE}:accounts"
ORGANIZATIONAL_UNIT_IDS = f"{NAMESPACE}:organizationalUnitIds"
EXCLUDE_ACCOUNT_IDS = f"{NAMESPACE}:excludeAccountIds"
ACCOUNT_ROLE_NAME = f"{NAMESPACE}:accountRoleName"
FLEET_KEYS = (ACCOUNTS, ORGANIZATIONAL_UNIT_IDS, EXCLUDE_ACCOUNT_IDS, ACCOUNT_ROLE_NAME)
DEFAULT_ACCOUNT_ROLE_NAME = "OrganizationAccountAccessRole"

# Provider settings the fleet writes into each member: a template must leave them to the fleet.
ALLOWED_ACCOUNT_IDS = "aws:allowedAccountIds"
ASSUME_ROLES = "aws:assumeRoles"
PROVIDER_KEYS_SET_BY_FLEET = (ALLOWED_ACCOUNT_IDS, ASSUME_ROLES, "aws:assumeRole", "aws:profile")
AWS_REGION = "aws:region"
SIDE = f"{NAMESPACE}:side"

ACCOUNT_ID = re.compile(r"^\d{12}$")
OU_ID = re.compile(r"^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$")
ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
ROLE_ARN = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov):iam::(?P<account>\d{12}):role/"
    r"(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}$"
)
ACCOUNT_FIELDS = ("accountId", "roleArn")
ACTIVE = "ACTIVE"


@dataclass(frozen=True)
class Member:
    """One account of a fleet: its stack, the role the stack's provider assumes, its config."""

    stack: str
    account_id: str
    role_arn: str
    config: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "accountId": self.account_id,
            "roleArn": self.role_arn,
            "config": dict(self.config),
        }


def member_stack(template_stack: str, account_id: str) -> str:
    return f"{template_stack}-{account_id}"


def member_stack_pattern(template_stack: str) -> re.Pattern[str]:
    """Stack names that belong to this template's fleet, whether still members or not."""
    return re.compile(rf"^{re.escape(template_stack)}-(\d{{12}})$")


def is_template(config: Mapping[str, Any]) -> bool:
    return any(config.get(key) not in (None, [], "") for key in (ACCOUNTS, ORGANIZATIONAL_UNIT_IDS))


# --- validation -------------------------------------------------------------------------------


def _list(config: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = config.get(key)
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise ConfigError(key, value, f"a YAML list of {what}")
    return value


def _account_id(key: str, value: object) -> str:
    if not isinstance(value, str) or not ACCOUNT_ID.match(value):
        raise ConfigError(key, value, "an AWS account ID: exactly 12 digits, quoted")
    return value


def _once(key: str, values: Sequence[str]) -> None:
    seen: dict[str, int] = {}
    for i, v in enumerate(values):
        if v in seen:
            raise ConfigError(f"{key}[{i}]", v, f"each value once; it repeats item {seen[v]}")
        seen[v] = i


def _partition(config: Mapping[str, Any]) -> str:
    value = config.get(AWS_REGION)
    try:
        return region(value).partition  # type: ignore[arg-type]
    except UnknownRegionError as err:
        raise ConfigError(
            AWS_REGION,
            value,
            f"the template's region, e.g. eu-west-1: it gives the partition of the accounts' role "
            f"ARNs ({err})",
        ) from None


def _explicit_accounts(config: Mapping[str, Any], partition: str) -> dict[str, str | None]:
    """Listed account ID -> its explicit role ARN (None: use accountRoleName)."""
    items = _list(config, ACCOUNTS, "12-digit account IDs (quoted) or {accountId, roleArn}")
    found: dict[str, str | None] = {}
    ids: list[str] = []
    for i, item in enumerate(items):
        here = f"{ACCOUNTS}[{i}]"
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(ACCOUNT_FIELDS))
            if unknown:
                raise ConfigError(
                    f"{here}.{unknown[0]}", item[unknown[0]], f"one of {', '.join(ACCOUNT_FIELDS)}"
                )
            account = _account_id(f"{here}.accountId", item.get("accountId"))
            role_arn = item.get("roleArn")
            if role_arn is not None:
                match = ROLE_ARN.match(role_arn) if isinstance(role_arn, str) else None
                if match is None:
                    raise ConfigError(
                        f"{here}.roleArn",
                        role_arn,
                        f"an IAM role ARN, e.g. arn:{partition}:iam::{account}:role/deploy",
                    )
                if match["account"] != account or match["partition"] != partition:
                    raise ConfigError(
                        f"{here}.roleArn",
                        role_arn,
                        f"a role of account {account} in partition {partition} (the template's "
                        f"{AWS_REGION}): the member's stack runs in that account",
                    )
            found[account] = role_arn
        else:
            account = _account_id(here, item)
            found[account] = None
        ids.append(account)
    _once(ACCOUNTS, ids)
    return found


def _ou_ids(config: Mapping[str, Any]) -> list[str]:
    ous = _list(config, ORGANIZATIONAL_UNIT_IDS, "OU IDs")
    for i, ou in enumerate(ous):
        if not isinstance(ou, str) or not OU_ID.match(ou):
            raise ConfigError(
                f"{ORGANIZATIONAL_UNIT_IDS}[{i}]",
                ou,
                "an organizational unit ID: 'ou-', 4 to 32 lower-case letters or digits, '-', "
                "then 8 to 32 more (e.g. ou-ab12-11111111); the root r-… is not accepted",
            )
    _once(ORGANIZATIONAL_UNIT_IDS, ous)
    return list(ous)


def _excluded(config: Mapping[str, Any]) -> set[str]:
    values = _list(config, EXCLUDE_ACCOUNT_IDS, "12-digit account IDs (quoted)")
    for i, v in enumerate(values):
        _account_id(f"{EXCLUDE_ACCOUNT_IDS}[{i}]", v)
    _once(EXCLUDE_ACCOUNT_IDS, values)
    return set(values)


def _role_name(config: Mapping[str, Any]) -> str:
    value = config.get(ACCOUNT_ROLE_NAME)
    if value is None or value == "":
        return DEFAULT_ACCOUNT_ROLE_NAME
    if not isinstance(value, str) or not ROLE_NAME.match(value):
        raise ConfigError(
            ACCOUNT_ROLE_NAME,
            value,
            "an IAM role name (1 to 64 letters, digits or +=,.@_-), e.g. "
            "OrganizationAccountAccessRole or AWSControlTowerExecution",
        )
    return value


def check_template(template_stack: str, config: Mapping[str, Any]) -> None:
    """Refuse what a fleet cannot run: fleet keys without a fleet, an upstream template, provider
    settings the fleet itself writes per member."""
    if not is_template(config):
        for key in (EXCLUDE_ACCOUNT_IDS, ACCOUNT_ROLE_NAME):
            if config.get(key) not in (None, [], ""):
                raise ConfigError(
                    key,
                    config[key],
                    f"unset unless {ACCOUNTS} or {ORGANIZATIONAL_UNIT_IDS} makes this stack a "
                    "fleet template",
                )
        return
    key = ACCOUNTS if config.get(ACCOUNTS) else ORGANIZATIONAL_UNIT_IDS
    side = config.get(SIDE)
    if side == "upstream" or (not side and template_stack.startswith("upstream")):
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
    import boto3

    return boto3.client("organizations", region_name=str(config.get(AWS_REGION)))


# --- members ----------------------------------------------------------------------------------


def member_config(config: Mapping[str, Any], account_id: str, role_arn: str) -> dict[str, Any]:
    own = {k: v for k, v in config.items() if k not in FLEET_KEYS}
    own[ALLOWED_ACCOUNT_IDS] = [account_id]
    own[ASSUME_ROLES] = [{"roleArn": role_arn}]
    return dict(sorted(own.items()))


def members(
    template_stack: str, config: Mapping[str, Any], organizations_client: Any = None
) -> list[Member]:
    """The members of the fleet template `template_stack` (its flat config: keys as `pulumi
    config` shows them, values as YAML gives them), sorted by account. A stack that is not a
    template has none. Organizations is asked only when the template lists OUs; with
    `organizations_client` None a boto3 client is made from the ambient credentials."""
    config = {qualify(k): v for k, v in config.items()}
    check_template(template_stack, config)
    if not is_template(config):
        return []
    partition = _partition(config)
    listed = _explicit_accounts(config, partition)
    ous = _ou_ids(config)
    excluded = _excluded(config)
    role_name = _role_name(config)
    accounts: dict[str, str | None] = {}
    if ous:
        client = organizations_client or default_organizations_client(config)
        accounts.update(dict.fromkeys(accounts_under(client, ous)))
    accounts.update(listed)  # an explicit {accountId, roleArn} wins over one found in an OU
    result = []
    for account_id in sorted(set(accounts) - excluded):
        role_arn = accounts[account_id] or f"arn:{partition}:iam::{account_id}:role/{role_name}"
        result.append(
            Member(
                stack=member_stack(template_stack, account_id),
                account_id=account_id,
                role_arn=role_arn,
                config=member_config(config, account_id, role_arn),
            )
        )
    return result


def to_json(fleet: Sequence[Member]) -> str:
    """Byte-identical for the same members: sorted keys, members sorted by account."""
    ordered = sorted(fleet, key=lambda m: m.account_id)
    return json.dumps([m.to_json() for m in ordered], indent=2, sort_keys=True) + "\n"


def from_json(text: str) -> list[Member]:
    return [Member(m["stack"], m["accountId"], m["roleArn"], m["config"]) for m in json.loads(text)]


# --- batches ----------------------------------------------------------------------------------

BATCH = "BATCH"
MAX_MATRIX_JOBS = 256  # GitHub Actions: at most 256 jobs per matrix


def parse_batch(value: str) -> tuple[int, int]:
    """`i/N` (1-based) -> (i, N)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise ConfigError(BATCH, value, "i/N with 1 <= i <= N, e.g. 2/8 (the 2nd of 8 batches)")
    return int(match[1]), int(match[2])


def batch(fleet: Sequence[Member], index: int, count: int) -> list[Member]:
    """The `index`-th (1-based) of `count` contiguous, near-equal slices of the members sorted by
    account: every member is in exactly one batch."""
    ordered = sorted(fleet, key=lambda m: m.account_id)
    start = (index - 1) * len(ordered) // count
    end = index * len(ordered) // count
    return ordered[start:end]


def batch_count(member_count: int, per_batch: int) -> int:
    if per_batch < 1:
        raise ConfigError("--per-batch", per_batch, "a whole number >= 1")
    return min(MAX_MATRIX_JOBS, -(-member_count // per_batch))
