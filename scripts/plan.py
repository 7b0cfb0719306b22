"""`make plan`: what each stack file of the repository would create, with no AWS credentials and
no Pulumi CLI.

Every stack is planned by the program's own code (components/declare/program.py `plan_stack`),
from its stack file and Pulumi.yaml's defaults, with the account its `aws:allowedAccountIds`
pins. The upstream stacks go first; each downstream is planned against the planned outputs of
the upstream stack it names, which must be one the state backend can hold (PULUMI_BACKEND_URL, else
Pulumi.yaml's). A fleet template is planned as its members. A refused stack prints the same
message `pulumi up` would, a stack file the CLI could not read one line naming it, and the exit
status is 1. No AWS profile or credential is read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from components.declare.program import direct_upstream, plan_stack
from components.inputs.errors import ConfigError
from components.inputs.stack_config import (
    ALLOWED_ACCOUNT_IDS_KEY,
    ORGANIZATIONAL_UNIT_IDS,
    OVERRIDE_KEYS,
    UPSTREAM_STACK,
    DownstreamConfig,
    FleetTemplate,
    allowed_account_id,
    is_fleet_template,
    override_key,
    parse,
    resolve_side,
)
from components.plan.contract import UpstreamFacts
from components.plan.stack_plan import DOCUMENT_PROPERTIES, PlannedResource, Ref, RefText, StackPlan
from components.rules.aws_names import SIZING_ACCOUNT_ID
from scripts.deploy import check_upstream_organization, state_backend
from scripts.stack_files import (
    PROJECT_DIR,
    cli_config,
    qualify,
    short_name,
    stack_file_config,
    stack_names,
)


class UpstreamNotHereError(ConfigError):
    """The downstream's upstream stack has no stack file in this repository."""


@dataclass
class StackResult:
    stack: str
    source: str  # the stack file it came from
    plan: StackPlan | None = None
    error: ConfigError | None = None
    notes: list[str] = field(default_factory=list)
    # The stack's config as `pulumi config` shows it (a fleet member's: its generated config).
    values: Mapping[str, Any] = field(default_factory=dict)
    # A fleet member's: where its config differs from the template's.
    member: MemberConfig | None = None


@dataclass(frozen=True)
class MemberConfig:
    """What a fleet member's config is made of, beside the template's values."""

    # Key -> the member's value, for every key whose value differs from the template's.
    differs: Mapping[str, Any]
    # The account's ecr-ptc:accountOverrides entry (empty: none), and the keys it sets.
    override: Mapping[str, Any]
    override_keys: tuple[str, ...]

    @staticmethod
    def of(
        template_values: Mapping[str, Any],
        member_values: Mapping[str, Any],
        override: Mapping[str, Any],
    ) -> MemberConfig:
        template = {qualify(k): v for k, v in template_values.items()}
        differs = {k: v for k, v in sorted(member_values.items()) if template.get(k) != v}
        keys = {OVERRIDE_KEYS[name].split(".")[0] for name in override}
        return MemberConfig(differs, dict(override), tuple(sorted(keys)))

    def to_json(self) -> dict[str, Any]:
        return {
            "differsFromTemplate": dict(self.differs),
            "override": dict(self.override),
        }


def _account(raw: Mapping[str, str], known: str | None) -> str:
    account = allowed_account_id(raw) or known
    if account is None:
        raise ConfigError(
            ALLOWED_ACCOUNT_IDS_KEY,
            None,
            "the one account this stack deploys to, e.g. ['111122223333'] (exactly one): make "
            "plan works offline and takes the account from it (the provider also refuses any "
            "other)",
        )
    return account


def _upstream(
    config: DownstreamConfig,
    upstream_outputs: Mapping[str, Mapping[str, Any]],
    refused: Mapping[str, ConfigError],
    backend: str | None,
) -> UpstreamFacts:
    direct = direct_upstream(config)
    if direct is not None:
        return direct
    stack = config.upstream_stack
    assert stack is not None, "config parsing guarantees an upstream"
    check_upstream_organization(stack, backend)
    short = short_name(stack)
    if short in refused:
        raise ConfigError(
            UPSTREAM_STACK.full,
            stack,
            f"an upstream stack that plans; Pulumi.{short}.yaml is refused ({refused[short]}), "
            "so this stack is not planned",
        )
    if short not in upstream_outputs:
        raise UpstreamNotHereError(
            UPSTREAM_STACK.full,
            stack,
            f"an upstream stack whose file is in this repository (Pulumi.{short}.yaml) and "
            "plans cleanly: make plan plans a downstream against the upstream's planned outputs",
        )
    return UpstreamFacts.from_outputs(stack, upstream_outputs[short])


def _plan_one(
    stack: str,
    values: Mapping[str, Any],
    project_dir: Path,
    upstream_outputs: Mapping[str, Mapping[str, Any]],
    refused: Mapping[str, ConfigError],
    backend: str | None,
    known_account: str | None = None,
) -> StackPlan:
    raw = cli_config(values, project_dir)
    config = parse(raw, stack)
    account = _account(raw, known_account)
    if isinstance(config, DownstreamConfig):
        upstream = _upstream(config, upstream_outputs, refused, backend)
        return plan_stack(config, account, upstream)
    return plan_stack(config, account, None)


MembersOf = Callable[[str, Mapping[str, Any]], list[Any]]


def _fleet_members(template: str, values: Mapping[str, Any]) -> list[Any]:
    from scripts.fleet_members import members

    return members(template, values)


def plan_repository(
    project_dir: Path = PROJECT_DIR,
    stacks: Sequence[str] | None = None,
    members_of: MembersOf = _fleet_members,
    accounts: Mapping[str, str] | None = None,
    backend: str | None = None,
) -> list[StackResult]:
    """Plan the stacks (default: every stack file), upstreams first. Every upstream stack file
    is planned, asked for or not: a downstream is planned against its upstream's outputs.
    `accounts` gives a stack's account where its file pins none (make up knows it from STS).
    `backend` is the state backend (None: unknown), which bounds the upstream stack names."""
    every = stack_names(project_dir)
    wanted = list(stacks) if stacks else every
    for name in wanted:
        if name not in every:
            raise ConfigError("stack", name, f"one of the stack files here: {', '.join(every)}")
    files = {name: stack_file_config(project_dir, name) for name in every}
    sides: dict[str, str] = {}
    results: list[StackResult] = []
    for name in every:
        try:
            sides[name] = resolve_side(cli_config(files[name], project_dir), name)
        except ConfigError as err:
            if name in wanted:
                results.append(StackResult(name, name, error=err))
    known = dict(accounts or {})
    upstream_outputs: dict[str, Mapping[str, Any]] = {}
    refused: dict[str, ConfigError] = {}
    for name in [n for n in every if sides.get(n) == "upstream"]:
        result = StackResult(name, name, values=files[name])
        try:
            result.plan = _plan_one(
                name, files[name], project_dir, {}, {}, backend, known.get(name)
            )
            upstream_outputs[name] = result.plan.outputs
        except ConfigError as err:
            result.error = refused[name] = err
        if name in wanted:
            results.append(result)
    for name in [n for n in wanted if sides.get(n) == "downstream"]:
        values = files[name]
        if not is_fleet_template(cli_config(values, project_dir)):
            result = StackResult(name, name, values=values)
            try:
                result.plan = _plan_one(
                    name, values, project_dir, upstream_outputs, refused, backend, known.get(name)
                )
            except ConfigError as err:
                result.error = err
            results.append(result)
            continue
        results.extend(
            _plan_fleet(name, values, project_dir, upstream_outputs, refused, members_of, backend)
        )
    return results


def _plan_fleet(
    template: str,
    values: Mapping[str, Any],
    project_dir: Path,
    upstream_outputs: Mapping[str, Mapping[str, Any]],
    refused: Mapping[str, ConfigError],
    members_of: MembersOf,
    backend: str | None,
) -> list[StackResult]:
    from scripts.fleet_members import fleet_template, stray_overrides

    notes: list[str] = []
    try:
        if values.get(ORGANIZATIONAL_UNIT_IDS.full):
            # OU members are known only to Organizations; offline, plan one member as a sample.
            without_ous = {k: v for k, v in values.items() if k != ORGANIZATIONAL_UNIT_IDS.full}
            listed = members_of(template, without_ous) if _lists_accounts(values) else []
            sample = members_of(template, {**without_ous, "ecr-ptc:accounts": [SIZING_ACCOUNT_ID]})
            notes.append(
                f"fleet template {template}: the accounts under {ORGANIZATIONAL_UNIT_IDS.full} "
                f"are resolved by `make fleet-members` (Organizations API); {sample[0].stack} "
                "stands for each of them here"
            )
            found = [*listed, *sample]
        else:
            found = members_of(template, values)
        fleet = fleet_template(values)
        if not values.get(ORGANIZATIONAL_UNIT_IDS.full):
            # Without OUs the members are known here: an override of no member is a mistake.
            notes.extend(f"fleet template {template}: {w}" for w in stray_overrides(fleet, found))
    except ConfigError as err:
        return [StackResult(template, template, error=err, values=values)]
    results = []
    for member in found:
        override = _override_of(fleet, member.account_id)
        result = StackResult(
            member.stack,
            template,
            notes=list(notes),
            values=member.config,
            member=MemberConfig.of(values, member.config, override),
        )
        try:
            result.plan = _plan_one(
                member.stack, member.config, project_dir, upstream_outputs, refused, backend
            )
        except ConfigError as err:
            result.error = err
        results.append(result)
    return results


def _override_of(fleet: FleetTemplate, account_id: str) -> Mapping[str, Any]:
    return fleet.overrides.get(account_id) or {}


def _lists_accounts(values: Mapping[str, Any]) -> bool:
    return bool(values.get("ecr-ptc:accounts"))


# --- printing ------------------------------------------------------------------------------------


def _value(value: Any) -> Any:
    if isinstance(value, Ref):
        return str(value)
    if isinstance(value, RefText):
        return value.text
    if isinstance(value, Mapping):
        return {k: _value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    return value


def resource_json(resource: PlannedResource, account: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for key, value in resource.properties.items():
        # A document that names another resource's output holds it as `${name.attribute}`.
        if key in DOCUMENT_PROPERTIES and isinstance(value, str | RefText):
            properties[key] = json.loads(value if isinstance(value, str) else value.text)
        else:
            properties[key] = _value(value)
    return {
        "type": resource.type,
        "name": resource.name,
        "account": account,
        "region": resource.region or "global",
        "dependsOn": list(resource.depends_on),
        "properties": properties,
    }


def result_json(result: StackResult) -> dict[str, Any]:
    # A fleet member's whole config and what differs from its template, refused or not.
    member: dict[str, Any] = {}
    if result.member is not None:
        member = {"config": dict(result.values), **result.member.to_json()}
    if result.plan is None:
        return {"stack": result.stack, "file": f"Pulumi.{result.source}.yaml",
                "error": str(result.error), **member}  # fmt: skip
    plan = result.plan
    return {
        "stack": result.stack,
        "file": f"Pulumi.{result.source}.yaml",
        "side": plan.side,
        "account": plan.account_id,
        "region": plan.region,
        "notes": result.notes,
        "resources": [resource_json(r, plan.account_id) for r in plan.resources],
        "outputs": _value(dict(plan.outputs)),
        **member,
    }


def print_member_config(result: StackResult, out: TextIO) -> None:
    """A fleet member's config where it differs from the template's: what the fleet sets for its
    account, and its account override."""
    member = result.member
    if member is None:
        return
    account = result.stack.rsplit("-", 1)[-1]
    out.write(f"  config: Pulumi.{result.source}.yaml's, except\n")
    for key, value in member.differs.items():
        why = override_key(account) if key in member.override_keys else "set by the fleet"
        out.write(f"    {key}: {json.dumps(value, sort_keys=True)}  ({why})\n")


def print_text(results: Sequence[StackResult], out: TextIO) -> None:
    for result in results:
        data = result_json(result)
        out.write(f"\n=== stack {result.stack} (Pulumi.{result.source}.yaml) ===\n")
        if result.plan is None:
            print_member_config(result, out)
            out.write(f"REFUSED: {result.error}\n")
            continue
        for note in result.notes:
            out.write(f"note: {note}\n")
        print_member_config(result, out)
        out.write(f"{data['side']} stack, account {data['account']}, region {data['region']}: ")
        out.write(f"{len(data['resources'])} resources\n")
        for r in data["resources"]:
            out.write(f"  + {r['type']:<70} {r['name']}  ({r['account']}, {r['region']})\n")
        for r in data["resources"]:
            out.write(f"\n  {r['name']} ({r['type']})\n")
            for key, value in r["properties"].items():
                text = json.dumps(value, indent=2, sort_keys=True)
                if "\n" in text:
                    out.write(f"    {key}:\n")
                    out.write("".join(f"      {line}\n" for line in text.splitlines()))
                else:
                    out.write(f"    {key}: {text}\n")
            if r["dependsOn"]:
                out.write(f"    (after {', '.join(r['dependsOn'])})\n")
        out.write("\n  outputs:\n")
        text = json.dumps(data["outputs"], indent=2, sort_keys=True)
        out.write("".join(f"    {line}\n" for line in text.splitlines()))


def main(
    argv: Sequence[str] | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    env: Mapping[str, str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stacks", nargs="*", help="stack names (default: every stack file)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR)
    args = parser.parse_args(argv)
    try:
        backend = state_backend(os.environ if env is None else env, args.project_dir)
        results = plan_repository(args.project_dir, stacks=args.stacks, backend=backend)
    except ConfigError as error:
        print(f"make plan: {error}", file=err)
        return 1
    if args.json:
        out.write(json.dumps([result_json(r) for r in results], indent=2, sort_keys=True) + "\n")
    else:
        print_text(results, out)
    failed = [r for r in results if r.error is not None]
    for result in failed:
        print(f"make plan: stack {result.stack}: {result.error}", file=err)
    summary = f"{len(results) - len(failed)} of {len(results)} stacks planned"
    print(summary + ("" if not failed else f"; {len(failed)} refused"), file=err)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
