"""`make destroy`: tear the cache down in order, every downstream before the upstream.

    python -m scripts.destroy --upstream-stack upstream --downstream-stack downstream \\
        [--template downstream]

1. The pre-flight of `make up` (the CLI, the state backend, each side's credentials and the
   account its stack file pins); the stacks are what they are said to be (the upstream stack an
   upstream; the downstream stack, the template and each member that goes downstreams, none of
   them the upstream stack, the first two reading it), else YES=1 could destroy the upstream
   without CONFIRM; then what is there: the downstream stack, the fleet's member
   stacks (those tagged as the template's own, the rule of fleet pruning), the upstream stack,
   the downstream stacks this run leaves alone that still read the upstream, and the cache
   repositories ECR created (listed, never deleted). Nothing is destroyed if a check fails.
2. The downstream stack (`pulumi destroy`, DOWNSTREAM_AWS_PROFILE), then every member of the
   fleet (the fleet driver's destroy: its lease, its handling of locks and of SIGTERM/SIGINT;
   the ambient credentials, as `make fleet-up`). A failure stops the run here.
3. Only when no downstream of this project still holds resources, and only with
   CONFIRM=<the upstream account ID>, the upstream stack (UPSTREAM_AWS_PROFILE). Without CONFIRM
   the upstream stays, and the last line says how to confirm.

Why this order: a downstream's cache rules fill through the upstream's grant. With the grant
gone first, every cache fill of every downstream fails while its rules still exist; with the
downstreams gone first, nothing is left that needs the grant.

Confirmation: CONFIRM (exact: the upstream account's 12-digit ID, as STS names it for the upstream
credentials) confirms the whole teardown. Without it, the downstream side is destroyed once
confirmed at the prompt, or with YES=1; a run that cannot ask (no terminal) and has neither
destroys nothing. A wrong CONFIRM destroys nothing.

Exit status: 0 done (what was confirmed is destroyed, or there was nothing to do); 1 a destroy
failed, or a downstream still holds resources: the upstream was not touched; 2 refused before
anything was destroyed; 128 + N stopped by signal N.

Stacks are destroyed, not removed: each stays, empty, with its config, tags and history.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

from components.inputs import stack_config as keys
from components.inputs.errors import ConfigError
from components.plan.contract import RULES_OUTPUT
from components.rules.aws_names import ROOT_PREFIX
from scripts.deploy import (
    PROJECT_DIR,
    UPSTREAM_STACK_KEY,
    PreflightError,
    Runner,
    Side,
    Which,
    Whoami,
    check_accounts,
    check_backend,
    check_cli,
    check_credentials,
    on_path,
    stack_config,
    sts_account,
)
from scripts.fleet import (
    DESTROYED,
    TAG_TEMPLATE,
    FleetBusy,
    FleetRun,
    FleetStacks,
    Stop,
    TeardownRunner,
    fleet_stacks,
    grace_seconds,
    heartbeat_seconds,
    one_line,
    parallelism,
    teardown_fleet,
)
from scripts.fleet_cli import CliRunner, StackState
from scripts.fleet_members import is_template, member_stack_pattern
from scripts.stack_files import PROJECT_FILE, cli_config, load_yaml, short_name, stack_names

COMMAND = "destroy"
DONE, FAILED, REFUSED = 0, 1, 2
LIST_MAX = 20  # cache repositories named per rule; the rest are counted

EcrClients = Callable[[str | None], Callable[[str], Any]]  # profile -> region -> ECR client
Ask = Callable[[str], bool]


def boto3_ecr_clients(profile: str | None) -> Callable[[str], Any]:
    import boto3

    session = boto3.Session(profile_name=profile)
    return lambda region: session.client("ecr", region_name=region)


def terminal_ask(question: str) -> bool:
    print(f"{question} Type yes to go on: ", end="", flush=True)
    return sys.stdin.readline().strip() == "yes"


# ---- what is there -------------------------------------------------------------------------


def deployed(existing: Mapping[str, StackState], stack: str) -> bool:
    """The stack exists and may hold resources (a backend that gives no count: it may)."""
    state = existing.get(stack)
    return state is not None and state.resource_count != 0


def describe(existing: Mapping[str, StackState], stack: str) -> str:
    state = existing.get(stack)
    if state is None:
        return "no stack"
    if state.resource_count is None:
        return "resources: unknown"
    return f"{state.resource_count} resources" if state.resource_count else "empty"


@dataclass(frozen=True)
class Inventory:
    """What the teardown finds, before anything is destroyed."""

    downstream: str
    upstream: str
    template: str
    fleet: FleetStacks
    # Downstream stack files of this project that read the upstream: plain stacks, and fleet
    # templates (whose members then read it). Neither is destroyed by this run.
    other_stacks: tuple[str, ...]
    other_templates: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def ours(self) -> set[str]:
        """The stacks this run destroys."""
        return {self.downstream, *self.fleet.owned}

    def blockers(self, existing: Mapping[str, StackState]) -> list[tuple[str, str]]:
        """Every downstream of the upstream that still holds resources, and why it counts."""
        found = []
        if deployed(existing, self.downstream):
            found.append((self.downstream, "the downstream stack"))
        pattern = member_stack_pattern(self.template)
        for stack in sorted(existing):
            if not (pattern.fullmatch(stack) and deployed(existing, stack)):
                continue
            if stack in self.fleet.owned:
                found.append((stack, f"a member of fleet {self.template!r}"))
            elif stack in self.fleet.released:
                found.append(
                    (stack, f"released from fleet {self.template!r} (its resources were kept)")
                )
            else:
                found.append(
                    (
                        stack,
                        f"named like a member of fleet {self.template!r}, not tagged as its own",
                    )
                )
        for stack in self.other_stacks:
            if deployed(existing, stack):
                found.append((stack, f"Pulumi.{stack}.yaml reads upstream {self.upstream!r}"))
        for template in self.other_templates:
            other = member_stack_pattern(template)
            for stack in sorted(existing):
                if other.fullmatch(stack) and deployed(existing, stack):
                    found.append((stack, f"a member of fleet {template!r}, which reads it"))
        return found


def other_downstreams(
    project_dir: Path, upstream: str, skip: set[str], account: str | None = None
) -> tuple[list[str], list[str], list[str]]:
    """The stack files here (other than `skip`) that read `upstream`, by its stack or (without
    one) by its `account`: plain stacks, fleet templates, and a note for each file that could
    not be read."""
    stacks: list[str] = []
    templates: list[str] = []
    notes: list[str] = []
    for name in stack_names(project_dir):
        if name in skip:
            continue
        try:
            config = stack_config(name, project_dir) or {}
        except ConfigError as err:
            notes.append(f"Pulumi.{name}.yaml could not be read, so not checked: {err}")
            continue
        named = str(config.get(UPSTREAM_STACK_KEY) or "")
        by_account = not named and account is not None
        if short_name(named) != upstream and not (
            by_account and str(config.get(UPSTREAM_ACCOUNT_ID_KEY) or "") == account
        ):
            continue
        (templates if is_template(config) else stacks).append(name)
    return stacks, templates, notes


# ---- which stack is which: the upstream never goes as a downstream ------------------------

NOTHING = "Nothing was destroyed."
UPSTREAM_ACCOUNT_ID_KEY = keys.UPSTREAM_ACCOUNT_ID.full
ARTICLE = {"upstream": "an", "downstream": "a"}
VALID_SIDE = {
    "upstream": f"{keys.SIDE.full}: upstream in its stack file, or, unset, a name upstream or "
    "upstream-*",
    "downstream": f"{keys.SIDE.full}: downstream in its stack file, or, unset, a name "
    "downstream or downstream-*",
}


def refuse(text: str) -> NoReturn:
    raise PreflightError(f"{text}. {NOTHING}")


def same_stack(a: str, b: str) -> bool:
    """One stack, named in full (`organization/ecr-ptc/upstream`) or not, in any case: both
    names read one stack file, and a case-insensitive file system holds one state for both."""
    return short_name(a).casefold() == short_name(b).casefold()


def check_side(
    what: str,
    stack: str,
    config: Mapping[str, Any] | None,
    side: keys.Side,
    project_dir: Path,
    source: str | None = None,
) -> None:
    """`stack` is on `side`, as the program decides it: `resolve_side` of its config (under it
    Pulumi.yaml's defaults; `None`, no stack file: those alone) and its name. `source` names the
    file the config is from (default: the stack's own)."""
    raw = cli_config(config or {}, project_dir)
    try:
        found = keys.resolve_side(raw, short_name(stack))
    except ConfigError as err:
        refuse(f"{what} {stack!r} is not known to be {ARTICLE[side]} {side} stack: {err}")
    if found != side:
        where = source or (PROJECT_FILE if config is None else f"Pulumi.{short_name(stack)}.yaml")
        how = (
            f"{keys.SIDE.full}: {raw[keys.SIDE.full]} in {where}"
            if raw.get(keys.SIDE.full)
            else f"by its name, {keys.SIDE.full} unset"
        )
        refuse(
            f"{what} {stack!r} is {ARTICLE[found]} {found} stack ({how}): valid is "
            f"{ARTICLE[side]} {side} stack ({VALID_SIDE[side]})"
        )


def check_reads(
    what: str, stack: str, config: Mapping[str, Any], upstream: str, account: str
) -> None:
    """`stack` reads `upstream`: its `ecr-ptc:upstreamStack` names it (in full or not), or,
    without one, its `ecr-ptc:upstreamAccountId` is the upstream stack's account (`account`, the
    upstream credentials', which the upstream stack file's pin was checked against)."""
    file = f"Pulumi.{short_name(stack)}.yaml"
    named = str(config.get(UPSTREAM_STACK_KEY) or "")
    valid = (
        f"valid is {UPSTREAM_STACK_KEY} naming UPSTREAM_STACK {upstream!r} (in full or not), or "
        f"{UPSTREAM_ACCOUNT_ID_KEY} {account}, its account"
    )
    if named:
        if not same_stack(named, upstream):
            refuse(
                f"{what} {stack!r} reads upstream {named!r} ({UPSTREAM_STACK_KEY} in {file}), "
                f"not UPSTREAM_STACK {upstream!r}: {valid}; or set UPSTREAM_STACK={named}"
            )
        return
    direct = str(config.get(UPSTREAM_ACCOUNT_ID_KEY) or "")
    if not direct:
        refuse(
            f"{what} {stack!r} reads no upstream (neither {UPSTREAM_STACK_KEY} nor "
            f"{UPSTREAM_ACCOUNT_ID_KEY} in {file}): {valid}"
        )
    if direct != account:
        refuse(
            f"{what} {stack!r} reads the registry of account {direct} "
            f"({UPSTREAM_ACCOUNT_ID_KEY} in {file}), not UPSTREAM_STACK {upstream!r}'s, "
            f"account {account}: {valid}"
        )


def read_as_upstream(project_dir: Path) -> dict[str, str]:
    """The stacks the stack files here read as their upstream (`ecr-ptc:upstreamStack`), by
    name (casefolded), each with a stack file that reads it. Unreadable files are passed over
    (the inventory notes them)."""
    found: dict[str, str] = {}
    for name in stack_names(project_dir):
        try:
            named = str((stack_config(name, project_dir) or {}).get(UPSTREAM_STACK_KEY) or "")
        except ConfigError:
            continue
        if named:
            found.setdefault(short_name(named).casefold(), name)
    return found


def take_inventory(
    runner: TeardownRunner,
    existing: Mapping[str, StackState],
    downstream: str,
    upstream: str,
    template: str,
    project: str,
    project_dir: Path,
    upstream_account: str | None = None,
) -> Inventory:
    pattern = member_stack_pattern(template)
    found = fleet_stacks(runner, template, project, [s for s in existing if pattern.fullmatch(s)])
    stacks, templates, notes = other_downstreams(
        project_dir, upstream, {downstream, template, upstream}, upstream_account
    )
    return Inventory(
        downstream,
        upstream,
        template,
        found,
        tuple(stacks),
        tuple(templates),
        tuple(notes) + found.unreadable,
    )


def cache_repositories(
    rules: Sequence[Mapping[str, Any]], client_for: Callable[[str], Any]
) -> list[str]:
    """One line per rule: the repositories under its prefix in its region (ECR's
    DescribeRepositories), which ECR created on first pulls and Pulumi does not manage."""
    prefixes: dict[str, set[str]] = {}
    for rule in rules:
        prefixes.setdefault(str(rule["region"]), set()).add(str(rule["ecrRepositoryPrefix"]))
    lines = []
    for region, wanted in sorted(prefixes.items()):
        try:
            pages = client_for(region).get_paginator("describe_repositories").paginate()
            names = sorted(r["repositoryName"] for page in pages for r in page["repositories"])
        except Exception as err:  # listing is for information: it never stops the teardown
            lines.append(f"{region}: could not list the repositories: {one_line(str(err))}")
            continue
        for prefix in sorted(wanted):
            if prefix == ROOT_PREFIX:
                under = names
                where = "ROOT (every repository of the registry; some may not be caches)"
            else:
                under = [n for n in names if n.startswith(prefix.rstrip("/") + "/")]
                where = f"{prefix.rstrip('/')}/"
            shown = ", ".join(under[:LIST_MAX])
            more = f" and {len(under) - LIST_MAX} more" if len(under) > LIST_MAX else ""
            lines.append(
                f"{region} {where}: {len(under)} repositories"
                + (f": {shown}{more}" if under else "")
            )
    return lines


def stack_file_rules(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A downstream stack file's rules, one per region, as the `rules` output gives them."""
    regions = config.get(keys.REGIONS.full) or [config.get(keys.AWS_REGION_KEY)]
    rules = config.get(keys.RULES.full) or []
    return [
        {"region": str(region), "ecrRepositoryPrefix": str(rule["ecrRepositoryPrefix"])}
        for region in regions
        if region
        for rule in rules
        if isinstance(rule, Mapping) and rule.get("ecrRepositoryPrefix")
    ]


def upstream_lines(upstream: str, account: str, project_dir: Path) -> list[str]:
    """What destroying the upstream stack does beyond its own resources, from its stack file."""
    try:
        config = stack_config(upstream, project_dir)
    except ConfigError:
        config = None
    if config is None:
        return []
    region = str(config.get(keys.AWS_REGION_KEY) or "its region")
    if str(config.get(keys.GRANT_VIA_KEY.full) or "registry") == "repository":
        repositories = config.get(keys.REPOSITORIES.full) or []
        return [
            f"the repository policies of {', '.join(map(str, repositories))} are deleted whole "
            "(DeleteRepositoryPolicy): statements others added to them go too"
        ]
    extra = config.get(keys.EXTRA_REGISTRY_POLICY_STATEMENTS.full) or []
    lines = [
        f"the registry policy of account {account} in {region} is deleted whole "
        "(DeleteRegistryPolicy)"
        + (
            f", with the {len(extra)} statement(s) of others kept in it "
            f"({keys.EXTRA_REGISTRY_POLICY_STATEMENTS.full}): put them back yourself"
            if extra
            else ""
        )
    ]
    if config.get(keys.MANAGE_REGISTRY_POLICY_SCOPE.full, True) is not False:
        lines.append(SCOPE_STAYS.format(account=account, region=region))
    return lines


SCOPE_STAYS = (
    "the account setting REGISTRY_POLICY_SCOPE of account {account} in {region} stays V2: "
    "deleting aws.ecr.AccountSetting only removes it from the state (the provider's delete calls "
    "no AWS API, and ECR has no API to unset a setting); a registry policy written later is read "
    "with V2's scope"
)


# ---- signals around a foreground `pulumi destroy` ------------------------------------------


class Signals:
    """SIGTERM/SIGINT while the CLI runs a single stack's destroy in the foreground: the CLI
    cancels on its own signal (Ctrl-C reaches the whole process group), or finishes when only
    this process was signalled; either way nothing starts after it."""

    def __init__(self, err: TextIO) -> None:
        self.signal: int | None = None
        self.err = err

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        if self.signal is None:
            self.signal = signum
            print(
                f"make destroy: {signal.Signals(signum).name} received: the running "
                "`pulumi destroy` ends, then nothing else starts",
                file=self.err,
            )

    def install(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old = {s: signal.signal(s, self.handle) for s in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for signum, handler in old.items():
                signal.signal(signum, handler)

        return restore


# ---- the run -------------------------------------------------------------------------------


@dataclass
class Teardown:
    """One `make destroy`: its inputs, and the means to run the CLI and to ask."""

    sides: Sequence[Side]  # upstream, downstream
    template: str
    env: Mapping[str, str]
    confirm: str | None
    yes: bool
    which: Which
    whoami: Whoami
    run: Runner
    ecr_clients: EcrClients
    ask: Ask | None
    project_dir: Path
    out: TextIO
    err: TextIO
    runner: TeardownRunner | None = None
    stop: Stop | None = None
    signals: Signals = field(default_factory=lambda: Signals(sys.stderr))

    @property
    def upstream(self) -> Side:
        return self.sides[0]

    @property
    def downstream(self) -> Side:
        return self.sides[1]

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    # --- 1. pre-flight

    def preflight(
        self,
    ) -> tuple[str, dict[str, str], TeardownRunner, Inventory, dict[str, StackState]]:
        pulumi = check_cli(self.which, COMMAND)
        check_backend(self.env, self.project_dir)
        accounts = check_credentials(self.sides, self.whoami, COMMAND)
        # Each stack's file is Pulumi.<its name in the project>.yaml, whether it is named in
        # full (organization/ecr-ptc/upstream) or not: a full name must not skip its pin.
        pinned = [replace(side, stack=short_name(side.stack)) for side in self.sides]
        check_accounts(pinned, accounts, COMMAND, self.project_dir)
        self.check_stacks(accounts["upstream"])
        # The fleet step's settings, checked now rather than after the downstream stack went.
        grace_seconds(self.env)
        heartbeat_seconds(self.env)
        parallelism(1, self.env, None)
        if self.confirm is not None and self.confirm != accounts["upstream"]:
            raise PreflightError(
                f"CONFIRM={self.confirm!r} is not the upstream account: it must be exactly "
                f"{accounts['upstream']}, the account of the upstream credentials "
                f"({self.upstream.credential_source}). Nothing was destroyed."
            )
        runner = self.runner or CliRunner(self.project_dir, self.env, pulumi)
        try:
            existing = runner.stacks()
        except Exception as err:
            raise PreflightError(
                f"could not list the state backend's stacks: {one_line(str(err))}. Nothing was "
                "destroyed."
            ) from None
        project = str(load_yaml(self.project_dir / PROJECT_FILE).get("name", ""))
        inventory = take_inventory(
            runner,
            existing,
            short_name(self.downstream.stack),
            short_name(self.upstream.stack),
            self.template,
            project,
            self.project_dir,
            accounts["upstream"],
        )
        self.check_members(inventory)
        return pulumi, accounts, runner, inventory, existing

    def check_stacks(self, upstream_account: str) -> None:
        """UPSTREAM_STACK is an upstream; DOWNSTREAM_STACK and TEMPLATE are downstream stack
        files of this project, neither the upstream stack nor on its side, that read it. Else
        YES=1 (or `yes` at the prompt) would destroy the upstream without CONFIRM."""
        upstream = self.upstream.stack
        check_side(
            "UPSTREAM_STACK",
            upstream,
            stack_config(short_name(upstream), self.project_dir),
            "upstream",
            self.project_dir,
        )
        for what, stack in (
            ("DOWNSTREAM_STACK", self.downstream.stack),
            ("TEMPLATE", self.template),
        ):
            if same_stack(stack, upstream):
                refuse(
                    f"{what} {stack!r} is the upstream stack (UPSTREAM_STACK {upstream!r}): "
                    f"valid is a downstream stack that reads it, never the upstream itself, "
                    "which goes only with CONFIRM=<upstream account ID>"
                )
            if what == "TEMPLATE" and same_stack(stack, self.downstream.stack):
                continue
            config = stack_config(short_name(stack), self.project_dir)
            if config is None:
                refuse(
                    f"{what} {stack!r} has no stack file here (Pulumi.{short_name(stack)}.yaml): "
                    f"without it, that it is a downstream of UPSTREAM_STACK {upstream!r} cannot "
                    "be checked; valid is a downstream stack file of this project that reads it"
                )
            check_side(what, stack, config, "downstream", self.project_dir)
            check_reads(what, stack, config, upstream, upstream_account)

    def check_members(self, inventory: Inventory) -> None:
        """No stack this run destroys without CONFIRM is an upstream: named as UPSTREAM_STACK,
        read as their upstream by the stack files here, or on the upstream side as the program
        decides it (a member's config is its stack file's, or else the template's)."""
        upstreams = read_as_upstream(self.project_dir)
        template = stack_config(short_name(self.template), self.project_dir) or {}
        for stack in sorted(inventory.ours()):
            what = (
                "DOWNSTREAM_STACK"
                if stack == inventory.downstream
                else f"member stack of TEMPLATE {self.template!r}"
            )
            if same_stack(stack, self.upstream.stack):
                refuse(
                    f"{what} {stack!r} is the upstream stack (UPSTREAM_STACK "
                    f"{self.upstream.stack!r}): valid is a downstream stack, never the upstream "
                    "itself, which goes only with CONFIRM=<upstream account ID>"
                )
            reader = upstreams.get(stack.casefold())
            if reader is not None:
                refuse(
                    f"{what} {stack!r} is an upstream: Pulumi.{reader}.yaml reads it "
                    f"({UPSTREAM_STACK_KEY}); valid is a downstream stack, never an upstream, "
                    "which goes only as UPSTREAM_STACK with CONFIRM=<upstream account ID>"
                )
            own = stack_config(stack, self.project_dir)
            if own is not None:
                check_side(what, stack, own, "downstream", self.project_dir)
            else:
                source = f"Pulumi.{short_name(self.template)}.yaml, its template"
                check_side(what, stack, template, "downstream", self.project_dir, source)

    def show(
        self,
        inventory: Inventory,
        existing: Mapping[str, StackState],
        accounts: Mapping[str, str],
        runner: TeardownRunner,
    ) -> None:
        d, u = inventory.downstream, inventory.upstream
        self.say("==> make destroy: what is there, in the order it goes")
        self.say(
            f"1. downstream stack {d!r} (account {accounts['downstream']}): {describe(existing, d)}"
        )
        fleet = inventory.fleet
        members = ", ".join(f"{s} ({describe(existing, s)})" for s in fleet.owned)
        if fleet.owned or fleet.foreign or fleet.released:
            self.say(
                f"2. fleet {inventory.template!r}: {len(fleet.owned)} member stack(s) tagged as "
                f"its own" + (f": {members}" if members else "")
            )
        else:
            self.say(f"2. fleet {inventory.template!r}: no member stacks")
        for stack in fleet.foreign:
            self.say(
                f"   not destroyed: {stack} ({describe(existing, stack)}): named like a member, "
                f"not tagged as the fleet's own ({TAG_TEMPLATE}={inventory.template})"
            )
        for stack in fleet.released:
            self.say(
                f"   not destroyed: {stack} ({describe(existing, stack)}): released from the "
                "fleet by an earlier prune"
            )
        not_this_run = (
            ""
            if self.confirm is not None or not deployed(existing, u)
            else f"; NOT in this run: it goes only with CONFIRM={accounts['upstream']}"
        )
        self.say(
            f"3. upstream stack {u!r} (account {accounts['upstream']}): {describe(existing, u)}"
            + ("" if deployed(existing, u) else ", nothing to destroy")
            + not_this_run
        )
        if deployed(existing, u):
            for line in upstream_lines(u, accounts["upstream"], self.project_dir):
                self.say(f"   {line}")
        others = [b for b in inventory.blockers(existing) if b[0] not in inventory.ours()]
        for stack, why in others:
            self.say(f"   still reads it, not destroyed by this run: {stack} ({why})")
        for note in inventory.notes:
            self.say(f"   note: {note}")
        self.say("Stays (not Pulumi resources, or kept on purpose):")
        self.say(
            "- the cache repositories ECR created on first pulls, with their images (and their "
            "storage cost):"
        )
        for line in self.repositories(runner, d, existing):
            self.say(f"    {line}")
        if fleet.owned:
            self.say("    (the fleet members' are in each member account: not listed here)")
        self.say(
            "- the stacks, empty, with their config, tags and history (`pulumi stack rm "
            "--preserve-config --stack <stack>` removes one and keeps its Pulumi.<stack>.yaml)"
        )

    def repositories(
        self, runner: TeardownRunner, stack: str, existing: Mapping[str, StackState]
    ) -> list[str]:
        """The cache repositories under the rules the stack deployed (its `rules` output), or,
        once it holds nothing, under the rules of its stack file (they outlive the stack)."""
        try:
            config = stack_config(stack, self.project_dir)
        except ConfigError:
            config = None
        if config is not None and is_template(config):
            return []  # a template's rules are its members', in their own accounts
        rules: list[Mapping[str, Any]] = []
        if deployed(existing, stack):
            try:
                rules = runner.outputs(stack).get(RULES_OUTPUT) or []
            except Exception as err:
                return [f"not listed: could not read stack {stack!r}'s rules: {one_line(str(err))}"]
        elif config is not None:
            rules = stack_file_rules(config)
        if not rules:
            return [f"none known: stack {stack!r} has no rules"]
        try:
            client_for = self.ecr_clients(self.downstream.profile)
        except Exception as err:
            return [f"not listed: no ECR client: {one_line(str(err))}"]
        lines = cache_repositories(rules, client_for)
        return lines or ["none: the stack has no rules"]

    def confirmed(
        self, inventory: Inventory, existing: Mapping[str, StackState], upstream_account: str
    ) -> None:
        """Refuse, before anything is destroyed, a run that cannot finish what it was asked."""
        if self.confirm is not None:
            left = [b for b in inventory.blockers(existing) if b[0] not in inventory.ours()]
            if left and deployed(existing, inventory.upstream):
                names = "; ".join(f"{s} ({why})" for s, why in left)
                raise PreflightError(
                    f"CONFIRM asks for the upstream stack too, but downstream stacks that this "
                    f"run does not destroy still read it: {names}. Destroy them first (`pulumi "
                    "destroy --stack <stack>`, or `make destroy` with their DOWNSTREAM_STACK or "
                    "TEMPLATE). Nothing was destroyed."
                )
            return
        to_destroy = [s for s in sorted(inventory.ours()) if deployed(existing, s)]
        if not to_destroy or self.yes:
            return
        question = f"Destroy {len(to_destroy)} downstream stack(s): {', '.join(to_destroy)}?"
        if self.ask is None:
            raise PreflightError(
                f"{question} This run cannot ask (no terminal): set YES=1 to destroy them, "
                f"or CONFIRM={upstream_account} for the upstream too. Nothing "
                "was destroyed."
            )
        if not self.ask(question):
            raise PreflightError("not confirmed. Nothing was destroyed.")

    # --- 2. and 3.

    def destroy_stack(self, pulumi: str, side: Side) -> int:
        """A single stack's `pulumi destroy` in the project directory, as `make up` runs `up`,
        with its side's credentials. Confirmed already: --yes."""
        env = dict(self.env)
        if side.profile:
            env["AWS_PROFILE"] = side.profile
        step = [pulumi, "destroy", "--stack", side.stack, "--yes"]
        self.say(f"==> destroy {side.name} stack {side.stack!r}")
        return int(self.run(step, cwd=self.project_dir, env=env, check=False).returncode)

    def execute(self) -> int:
        pulumi, accounts, runner, inventory, existing = self.preflight()
        self.show(inventory, existing, accounts, runner)
        self.confirmed(inventory, existing, accounts["upstream"])
        # From here on a signal ends the step under way and starts nothing after it: the fleet
        # part hands it to the fleet driver's own handling (its grace, then SIGINT to the CLIs).
        self.signals = Signals(self.err)
        restore = self.signals.install()
        try:
            return self.tear_down(pulumi, accounts, runner, inventory, existing)
        finally:
            restore()

    def interrupted(self) -> int | None:
        return None if self.signals.signal is None else 128 + self.signals.signal

    def tear_down(
        self,
        pulumi: str,
        accounts: Mapping[str, str],
        runner: TeardownRunner,
        inventory: Inventory,
        existing: Mapping[str, StackState],
    ) -> int:
        if deployed(existing, inventory.downstream):
            code = self.destroy_stack(pulumi, self.downstream)
            if (stopped := self.interrupted()) is not None:
                return stopped
            if code != 0:
                self.say(
                    f"The downstream stack {inventory.downstream!r} was not destroyed: stopping "
                    "before the fleet and the upstream, whose grant its cache rules still use."
                )
                return FAILED
        if any(deployed(existing, s) for s in inventory.fleet.owned):
            code = self.destroy_fleet(runner, inventory)
            if code != DONE:
                return code
        if (stopped := self.interrupted()) is not None:
            return stopped
        return self.finish(pulumi, runner, inventory, accounts)

    def destroy_fleet(self, runner: TeardownRunner, inventory: Inventory) -> int:
        self.say(f"==> destroy the member stacks of fleet {inventory.template!r}")
        processes = getattr(runner, "processes", None)
        stop = self.stop or Stop(processes, grace_seconds(self.env), self.err)
        restore = stop.install() if threading.current_thread() is threading.main_thread() else None
        project = str(load_yaml(self.project_dir / PROJECT_FILE).get("name", ""))
        try:
            run = teardown_fleet(
                inventory.template, project, runner, self.env, stop, self.err, inventory.fleet
            )
        except FleetBusy as err:
            self.say(f"make destroy: {err}. No member was destroyed; nor the upstream.")
            return FAILED
        finally:
            if restore is not None:
                restore()
        self.report(run)
        if run.signal is not None:
            return 128 + run.signal
        if run.exit_code != 0:
            self.say(
                "Not every member stack was destroyed: stopping before the upstream, whose grant "
                "their cache rules still use. Run `make destroy` again once fixed."
            )
            return FAILED
        return DONE

    def report(self, run: FleetRun) -> None:
        for outcome in run.outcomes:
            changes = sum(n for op, n in (outcome.changes or {}).items() if op != "same")
            what = f" ({changes} deleted)" if outcome.result == DESTROYED else ""
            self.say(f"   {outcome.result:<15} {outcome.stack}{what}  {outcome.reason}".rstrip())
        for note in run.notes:
            self.say(f"   error: {note}")
        if run.stopped:
            self.say(f"   stopped: {run.stopped}")

    def again(self, account: str) -> str:
        """The command line of this teardown, confirmed."""
        template = (
            ""
            if self.template == short_name(self.downstream.stack)
            else f" TEMPLATE={self.template}"
        )
        return (
            f"make destroy UPSTREAM_STACK={self.upstream.stack} "
            f"DOWNSTREAM_STACK={self.downstream.stack}{template} CONFIRM={account}"
        )

    def finish(
        self,
        pulumi: str,
        runner: TeardownRunner,
        inventory: Inventory,
        accounts: Mapping[str, str],
    ) -> int:
        upstream, account = inventory.upstream, accounts["upstream"]
        try:
            existing = runner.stacks()
        except Exception as err:
            self.say(
                f"Could not list the stacks again to check that every downstream is gone: "
                f"{one_line(str(err))}. The upstream stack {upstream!r} was not touched."
            )
            return FAILED
        if not deployed(existing, upstream):
            self.say(f"Done: the upstream stack {upstream!r} holds nothing to destroy.")
            return DONE
        left = inventory.blockers(existing)
        names = "; ".join(f"{s} ({why})" for s, why in left)
        if self.confirm is None:
            if left:
                self.say(
                    f"The upstream stack {upstream!r} (account {account}) was not destroyed: "
                    f"downstream stacks still read it: {names}."
                )
                return DONE
            self.say(
                f"The downstream side is gone. The upstream stack {upstream!r} (account {account}) "
                f"was not destroyed: it needs CONFIRM. To destroy it too: {self.again(account)}"
            )
            return DONE
        if left:
            self.say(
                f"The upstream stack {upstream!r} was not touched: downstream stacks still hold "
                f"resources and read it: {names}."
            )
            return FAILED
        code = self.destroy_stack(pulumi, self.upstream)
        if (stopped := self.interrupted()) is not None:
            return stopped
        if code != 0:
            self.say(f"The upstream stack {upstream!r} was not destroyed (the CLI says why above).")
            return FAILED
        self.say(f"Done: every downstream, then the upstream stack {upstream!r}, destroyed.")
        return DONE


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    which: Which | None = None,
    whoami: Whoami = sts_account,
    run: Runner = subprocess.run,
    ecr_clients: EcrClients = boto3_ecr_clients,
    ask: Ask | None = None,
    project_dir: Path = PROJECT_DIR,
    out: TextIO | None = None,
    err: TextIO | None = None,
    runner: TeardownRunner | None = None,
) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.destroy", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--upstream-stack", default="upstream")
    parser.add_argument("--downstream-stack", default="downstream")
    parser.add_argument(
        "--template",
        help="the fleet template whose member stacks go too (default: the downstream stack)",
    )
    args = parser.parse_args(argv)
    env = dict(os.environ if env is None else env)
    out = out or sys.stdout
    err = err or sys.stderr
    if ask is None and sys.stdin.isatty():
        ask = terminal_ask
    teardown = Teardown(
        sides=[
            Side("upstream", args.upstream_stack, env.get("UPSTREAM_AWS_PROFILE") or None),
            Side("downstream", args.downstream_stack, env.get("DOWNSTREAM_AWS_PROFILE") or None),
        ],
        template=args.template or short_name(args.downstream_stack),
        env=env,
        confirm=env.get("CONFIRM") or None,
        yes=env.get("YES") == "1",
        which=which or on_path(env),
        whoami=whoami,
        run=run,
        ecr_clients=ecr_clients,
        ask=ask,
        project_dir=project_dir,
        out=out,
        err=err,
        runner=runner,
    )
    try:
        return teardown.execute()
    except (PreflightError, ConfigError) as error:
        print(f"make destroy: {error}", file=err)
        return REFUSED


if __name__ == "__main__":
    sys.exit(main())
