"""`make fleet-members`, `make fleet-preview`, `make fleet-up`, `make fleet-drift`: one downstream
stack per account of a fleet template.

    python -m scripts.fleet members --template downstream      # the members, JSON on stdout
    python -m scripts.fleet matrix  --template downstream      # CI: the batches, as a matrix
    python -m scripts.fleet preview --template downstream      # every member, bounded parallelism
    python -m scripts.fleet up      --template downstream      # canary, waves, failure tolerance
    python -m scripts.fleet drift   --template downstream      # resources changed outside Pulumi
    python -m scripts.fleet comment summary-*.json             # CI: one Markdown report

Environment: FLEET_PARALLELISM (members run at once; default from free memory), BATCH=i/N (only
the i-th of N batches), CANARY, WAVE_SIZE, FAILURE_TOLERANCE (override the template's
ecr-ptc:operationPreferences for this run), PRUNE=1 (deal with the stacks of accounts that left),
PRUNE_MAX / PRUNE_CONFIRM=<count> (the prune cap, and the confirmation of a larger prune),
REFRESH=1 (up: refresh first, so that changes made outside Pulumi are repaired),
FLEET_GRACE_SECONDS (after SIGTERM/SIGINT: how long running members may go on before they are
cancelled), FLEET_SUMMARY=<file> (also write the summary as JSON), PULUMI_BACKEND_URL.

Who owns a stack: the stack tags `ecr-ptc:fleet-template` and `ecr-ptc:fleet-project`, written
on every member stack the fleet updates. Only stacks so tagged are ever pruned or retained, or
destroyed by `make destroy` (scripts/destroy.py, through `teardown_fleet`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

from components.inputs.errors import ConfigError
from components.inputs.stack_config import (
    Amount,
    OperationPreferences,
    default_max_prune,
    parse_amount,
)
from scripts.deploy import Which, is_self_managed, on_path, state_backend
from scripts.fleet_cli import (
    DRIFT,
    KILLED,
    NO_STACK_TEXT,
    Cancelled,
    CliFailed,
    CliRunner,
    Locked,
    Processes,
    RunReport,
    StackState,
    Step,
    changed,
    details_text,
    write_stack_file,
)
from scripts.fleet_cli import (
    INTERRUPTED as HOW_INTERRUPTED,
)
from scripts.fleet_members import (
    BATCH,
    PREVIEW,
    Member,
    OrganizationsUnavailable,
    batch,
    batch_count,
    fleet_template,
    from_json,
    is_template,
    member_stack_pattern,
    members,
    parse_batch,
    stray_overrides,
    to_json,
)
from scripts.fleet_report import COMMENT_MARKER, comment, summary_table
from scripts.stack_files import PROJECT_FILE, cli_config, load_yaml, stack_file, stack_file_config

PROJECT_DIR = Path(__file__).resolve().parent.parent
MEMBER_MEMORY_MB = 300  # what one running member (CLI, language host, AWS provider) takes
PREFLIGHT_PARALLELISM = 32
PINNED_CLI_FILE = ".pulumi-version"
COMMANDS = (PREVIEW, "up", DRIFT)

# Results of a member (or a former member's stack).
SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED = "skipped"
NOT_STARTED = "not started"
INTERRUPTED = "interrupted"
PLANNED = "new: planned"  # a preview of a member whose stack does not exist yet
NOT_DEPLOYED = "not deployed"  # a drift check of a member whose stack does not exist yet
PRUNED = "pruned"
RETAINED = "retained"
PRUNE_FAILED = "prune failed"
NOT_PRUNED = "not pruned"
DESTROYED = "destroyed"  # a teardown: the stack's resources destroyed, the stack kept
EMPTY = "empty"  # a teardown: the stack held no resources, nothing to do
DESTROY_FAILED = "destroy failed"
OK_RESULTS = (SUCCEEDED, PLANNED, NOT_DEPLOYED, PRUNED, RETAINED, DESTROYED, EMPTY)
TEARDOWN = "destroy"  # the command of a teardown run (`make destroy`)

# Stack tags: who owns a member stack, and the fleet run that last started an update of it.
TAG_TEMPLATE = "ecr-ptc:fleet-template"
TAG_PROJECT = "ecr-ptc:fleet-project"
TAG_RUN = "ecr-ptc:fleet-run"
TAG_RETAINED = "ecr-ptc:fleet-retained-from"
TAG_LEASE = "ecr-ptc:fleet-lease"  # on the fleet's own stack: the run updating the fleet
TAG_BEAT = "ecr-ptc:fleet-beat-"  # + the batch: that batch's last heartbeat (Unix time)
LEASE_SUFFIX = "-fleet"  # `<template>-fleet`: the fleet's own stack, never a member's name
DEFAULT_HEARTBEAT_SECONDS = 20.0
DONE = ":done"  # TAG_RUN's value once the run's update of the stack has ended

DEFAULT_GRACE_SECONDS = 60.0
KILL_AFTER_SECONDS = 10.0  # after SIGINT to a member's CLI: the longest before it is killed


def kill_after(grace: float) -> float:
    """How long a member's CLI gets to cancel after SIGINT: as long as the grace, 1 to 10 s (a
    short grace is a short window: CI kills the job about 10 s after its first signal)."""
    return min(KILL_AFTER_SECONDS, max(1.0, grace))


class Runner(Protocol):
    def stacks(self) -> dict[str, StackState]: ...
    def tags(self, stack: str) -> dict[str, str]: ...
    def set_tags(self, stack: str, tags: Mapping[str, str], cleanup: bool = False) -> None: ...
    def remove_tags(self, stack: str, keys: Sequence[str], cleanup: bool = False) -> None: ...
    def create(self, stack: str) -> None: ...
    def cancel(self, stack: str) -> None: ...
    def outputs(self, stack: str) -> dict[str, Any]: ...
    def run(self, member: Member, command: str, refresh: bool = False) -> RunReport: ...
    def prune(self, stack: str) -> RunReport: ...


AssumeCheck = Callable[[str, str], None]  # (role ARN, region); raises when it cannot be assumed


@dataclass(frozen=True)
class Outcome:
    account_id: str
    stack: str
    result: str
    changes: Mapping[str, int] | None
    duration: float
    details: str = ""
    reason: str = ""  # one line: why it failed, was skipped, not started; what was done
    steps: tuple[Step, ...] = ()  # what changed (drift: what changed outside Pulumi)

    @property
    def ok(self) -> bool:
        return self.result in OK_RESULTS

    @property
    def changed(self) -> bool:
        return changed(self.changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "accountId": self.account_id,
            "stack": self.stack,
            "result": self.result,
            "reason": self.reason,
            "changes": None if self.changes is None else dict(sorted(self.changes.items())),
            "duration": round(self.duration, 1),
            "details": self.details,
            "steps": [s.to_json() for s in self.steps],
        }


# --- settings ---------------------------------------------------------------------------------


def available_memory_mb(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def parallelism(member_count: int, env: Mapping[str, str], memory_mb: int | None) -> int:
    """FLEET_PARALLELISM, else free memory / ~300 MB per running member; 1 to member_count."""
    raw = env.get("FLEET_PARALLELISM", "")
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(
                "FLEET_PARALLELISM", raw, "a whole number >= 1 (members run at the same time)"
            )
        wanted = int(raw)
    elif memory_mb is None:
        wanted = os.cpu_count() or 1
    else:
        wanted = memory_mb // MEMBER_MEMORY_MB
    return max(1, min(wanted, max(member_count, 1)))


def seconds(
    env: Mapping[str, str], key: str, default: float, low: float, high: float, meaning: str
) -> float:
    """A number of seconds from the environment, `low` to `high`; `default` when unset."""
    raw = env.get(key, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # NaN compares false: refused too
        raise ConfigError(key, raw, f"seconds from {low:g} to {high:g}: {meaning}")
    return value


def grace_seconds(env: Mapping[str, str]) -> float:
    return seconds(
        env,
        "FLEET_GRACE_SECONDS",
        DEFAULT_GRACE_SECONDS,
        0,
        3600,
        "how long running members may go on after SIGTERM/SIGINT",
    )


def heartbeat_seconds(env: Mapping[str, str]) -> float:
    return seconds(
        env,
        "FLEET_HEARTBEAT_SECONDS",
        DEFAULT_HEARTBEAT_SECONDS,
        0.05,
        600,
        "how often a run says it is alive (4 missed: it is dead)",
    )


@dataclass(frozen=True)
class Settings:
    """How a run goes: the template's operation preferences with the command line's on top."""

    command: str
    workers: int = 1
    canary: int = 1
    wave_size: Amount = field(default_factory=lambda: Amount(None, 100))
    failure_tolerance: Amount = field(default_factory=lambda: Amount(0, None))
    max_prune: Amount | None = None
    retain: bool = False
    prune: bool = False
    prune_confirm: int | None = None
    refresh: bool = False
    handle_orphans: bool = True
    run_id: str = ""
    batch_label: str = "all"  # "3of40": the heartbeat tag of this batch
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS

    @staticmethod
    def of(
        command: str,
        preferences: OperationPreferences,
        env: Mapping[str, str],
        workers: int,
        handle_orphans: bool = True,
    ) -> Settings:
        canary = preferences.canary
        if env.get("CANARY"):
            canary = parse_amount("CANARY", env["CANARY"], 0, percent=False).count or 0
        wave = preferences.wave_size
        if env.get("WAVE_SIZE"):
            wave = parse_amount("WAVE_SIZE", env["WAVE_SIZE"], 1)
        tolerance = preferences.failure_tolerance
        if env.get("FAILURE_TOLERANCE"):
            tolerance = parse_amount("FAILURE_TOLERANCE", env["FAILURE_TOLERANCE"], 0)
        max_prune = preferences.max_prune
        if env.get("PRUNE_MAX"):
            max_prune = parse_amount("PRUNE_MAX", env["PRUNE_MAX"], 0)
        confirm = env.get("PRUNE_CONFIRM") or None
        if confirm is not None and not (confirm.isascii() and confirm.isdigit()):
            raise ConfigError(
                "PRUNE_CONFIRM", confirm, "the number of stacks this run is to prune, e.g. 12"
            )
        return Settings(
            command=command,
            workers=workers,
            canary=canary,
            wave_size=wave,
            failure_tolerance=tolerance,
            max_prune=max_prune,
            retain=preferences.retain_stacks_on_account_removal,
            prune=env.get("PRUNE") == "1",
            prune_confirm=None if confirm is None else int(confirm),
            refresh=env.get("REFRESH") == "1",
            handle_orphans=handle_orphans,
            run_id=env.get("FLEET_RUN_ID") or uuid.uuid4().hex[:12],
            batch_label=(env.get(BATCH) or "all").replace("/", "of").replace(" ", ""),
            heartbeat_seconds=heartbeat_seconds(env),
        )


def waves(fleet: Sequence[Member], settings: Settings) -> list[list[Member]]:
    """An update's order: the canary wave (the first `canary` members by account), then waves
    of `wave_size`. Previews and drift checks change nothing: one wave of every member."""
    ordered = sorted(fleet, key=lambda m: m.account_id)
    if settings.command != "up":
        return [ordered] if ordered else []
    canary = min(settings.canary, len(ordered))
    rest = ordered[canary:]
    size = max(1, settings.wave_size.of(len(ordered), at_least=1))
    result = [ordered[:canary]] if canary else []
    result += [rest[i : i + size] for i in range(0, len(rest), size)]
    return result


# --- stopping: failure tolerance and signals ------------------------------------------------------


class Stop:
    """Why no new member may start (failure tolerance exceeded, a signal), and the signal's
    handling: the first SIGTERM/SIGINT stops new members and gives running ones `grace` seconds
    before they are cancelled (SIGINT to their CLI), then KILL_AFTER_SECONDS before they are
    killed; a second signal cancels them at once."""

    def __init__(
        self, processes: Processes | None = None, grace: float = 0.0, err: TextIO = sys.stderr
    ) -> None:
        self.event = threading.Event()
        self.reason = ""
        self.signal: int | None = None
        self.processes = processes
        self.grace = grace
        self.err = err
        # Re-entrant: the signal handler runs on the main thread, which may hold it already.
        self._lock = threading.RLock()
        self._cancelled = threading.Event()

    @property
    def stopped(self) -> bool:
        return self.event.is_set()

    @property
    def signal_text(self) -> str:
        return f"{signal.Signals(self.signal).name} received" if self.signal else ""

    def halt(self, reason: str) -> None:
        with self._lock:
            if not self.event.is_set():
                self.reason = reason
                self.event.set()

    def on_signal(self, signum: int, frame: FrameType | None = None) -> None:
        name = signal.Signals(signum).name
        if self.signal is not None:
            print(f"fleet: {name} again: cancelling the running members now", file=self.err)
            threading.Thread(target=self._cancel_running, args=(0.0,), daemon=True).start()
            return
        self.signal = signum
        self.halt(f"the run was stopped by {name} before this one started")
        if self.processes is not None:
            self.processes.close()
        running = self.processes.running() if self.processes is not None else []
        print(
            f"fleet: {name} received: no new member starts; {len(running)} running member(s) "
            f"get {self.grace:g} s to end, then are cancelled. The summary follows.",
            file=self.err,
        )
        threading.Thread(target=self._cancel_running, args=(self.grace,), daemon=True).start()

    def _cancel_running(self, after: float) -> None:
        if self.processes is None or self._cancelled.is_set():
            return
        deadline = time.monotonic() + after
        while time.monotonic() < deadline and self.processes.running():
            time.sleep(min(0.1, after))
        if not self.processes.running() or self._cancelled.is_set():
            return
        self._cancelled.set()
        self.processes.signal_all(signal.SIGINT, HOW_INTERRUPTED)
        deadline = time.monotonic() + kill_after(self.grace)
        while time.monotonic() < deadline and self.processes.running():
            time.sleep(0.1)
        self.processes.signal_all(signal.SIGKILL, KILLED)

    def install(self) -> Callable[[], None]:
        """Handle SIGTERM and SIGINT (main thread only); returns what restores the old ones."""
        old = {s: signal.signal(s, self.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for signum, handler in old.items():
                signal.signal(signum, handler)

        return restore


# --- the run ----------------------------------------------------------------------------------


def preflight(
    fleet: Sequence[Member], can_assume: AssumeCheck, command: str = "up"
) -> tuple[list[Member], list[Outcome]]:
    """Try each member's role for `command` (a preview's and a drift check's is the read-only
    one) in the member's own region, hence partition, before anything changes; those that fail
    are skipped."""
    role_command = "up" if command == "up" else PREVIEW

    def check(member: Member) -> str | None:
        try:
            role = member.role_for(role_command)
            can_assume(role, str(member.config.get("aws:region") or ""))
        except Exception as err:  # any refusal means the same: this member cannot run
            return f"cannot assume {role if member.preview_role_arn else member.stack}: {err}"
        return None

    workers = max(1, min(PREFLIGHT_PARALLELISM, len(fleet)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        errors = list(pool.map(check, fleet))
    ready = [m for m, e in zip(fleet, errors, strict=True) if e is None]
    skipped = [
        Outcome(m.account_id, m.stack, SKIPPED, None, 0.0, reason=one_line(e))
        for m, e in zip(fleet, errors, strict=True)
        if e is not None
    ]
    return ready, skipped


def one_line(text: str) -> str:
    return " ".join(text.split())


def owner_problem(tags: Mapping[str, str], template: str, project: str) -> str | None:
    """Why a stack is not this fleet's (another template's or project's), or None."""
    owner = tags.get(TAG_TEMPLATE)
    if owner is not None and owner != template:
        return f"the stack belongs to fleet template {owner!r} (stack tag {TAG_TEMPLATE})"
    owner_project = tags.get(TAG_PROJECT)
    if owner_project is not None and owner_project != project:
        return f"the stack belongs to project {owner_project!r} (stack tag {TAG_PROJECT})"
    return None


@dataclass
class FleetRun:
    template: str
    command: str  # preview | up | drift
    outcomes: list[Outcome]
    orphans: list[str]
    batch: str | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stopped: str = ""  # why the run stopped starting members, if it did
    signal: int | None = None

    @property
    def exit_code(self) -> int:
        if self.signal is not None:
            return 128 + self.signal
        return 0 if all(o.ok for o in self.outcomes) and not self.notes else 1

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.result] = counts.get(o.result, 0) + 1
        return {
            "template": self.template,
            "command": self.command,
            "batch": self.batch,
            "counts": dict(sorted(counts.items())),
            "stopped": self.stopped,
            "orphans": self.orphans,
            "errors": self.notes,
            "warnings": self.warnings,
            # Unchanged members that succeeded carry nothing but their row.
            "members": [o.to_json() for o in self.outcomes],
        }


class Driver:
    """One run of a command over a fleet (a batch of it, or all of it)."""

    def __init__(
        self,
        template: str,
        project: str,
        runner: Runner,
        can_assume: AssumeCheck,
        settings: Settings,
        stop: Stop | None = None,
        err: TextIO = sys.stderr,
        clock: Callable[[], float] = time.monotonic,
        planner: Callable[[Member], RunReport] | None = None,
    ) -> None:
        self.template, self.project, self.runner = template, project, runner
        self.can_assume, self.settings = can_assume, settings
        self.stop = stop or Stop(err=err)
        self.err, self.clock, self.planner = err, clock, planner
        self._lock = threading.Lock()
        self.failures = 0
        self.existing: dict[str, StackState] = {}
        self._former_tags: dict[str, Mapping[str, str]] = {}

    # --- one member

    def _member(self, member: Member) -> Outcome:
        if self.stop.stopped:
            return Outcome(
                member.account_id, member.stack, NOT_STARTED, None, 0.0, reason=self.stop.reason
            )
        start = self.clock()
        try:
            outcome = self._command(member)
        except Cancelled as err:
            outcome, _ = self._interrupted_stack(member.account_id, member.stack, err)
        except Exception as err:  # one member's failure must not stop the others
            outcome = Outcome(member.account_id, member.stack, FAILED, None, 0.0, f"{err}")
            outcome = replace(outcome, reason=one_line(str(err))[:300])
        outcome = replace(outcome, duration=self.clock() - start)
        if outcome.result == FAILED and self.settings.command == "up":
            self._count_failure()
        return outcome

    def _count_failure(self) -> None:
        with self._lock:
            self.failures += 1
            tolerated = self.settings.failure_tolerance.of(self.fleet_size)
            if self.failures > tolerated:
                self.stop.halt(
                    f"failure tolerance exceeded ({self.failures} failed, tolerance "
                    f"{self.settings.failure_tolerance}: {tolerated} of {self.fleet_size}): no "
                    "member started after that"
                )

    fleet_size = 0

    def _command(self, member: Member) -> Outcome:
        command = self.settings.command
        exists = member.stack in self.existing
        if command == PREVIEW and not exists:
            # Nothing is written to the backend by a preview: the member's plan stands for it.
            report = self.planner(member) if self.planner else RunReport()
            return self._outcome(member, PLANNED, report, "no stack yet: its plan, all creates")
        if command == DRIFT and not exists:
            return Outcome(
                member.account_id,
                member.stack,
                NOT_DEPLOYED,
                None,
                0.0,
                reason="no stack yet: nothing can drift (make fleet-up creates it)",
            )
        if command != "up":
            report = self.runner.run(member, command, refresh=self.settings.refresh)
            return self._outcome(member, SUCCEEDED, report)
        return self._up(member, exists)

    def _up(self, member: Member, exists: bool) -> Outcome:
        notes = []
        before: dict[str, str] = {}
        if exists:
            before = self.runner.tags(member.stack)
            problem = owner_problem(before, self.template, self.project)
            if problem is not None:
                raise CliFailed(f"not updated: {problem}")
            if TAG_TEMPLATE not in before:
                notes.append("adopted: the stack had no fleet tags")
        else:
            self.runner.create(member.stack)
        tags = {TAG_RUN: self.settings.run_id}
        if before.get(TAG_TEMPLATE) != self.template:
            tags[TAG_TEMPLATE] = self.template
        if before.get(TAG_PROJECT) != self.project:
            tags[TAG_PROJECT] = self.project
        self.runner.set_tags(member.stack, tags)
        if TAG_RETAINED in before:
            self.runner.remove_tags(member.stack, [TAG_RETAINED])
        return self._locked_safely(
            member.account_id,
            member.stack,
            before,
            lambda: self.runner.run(member, "up", refresh=self.settings.refresh),
            SUCCEEDED,
            notes,
        )

    def _locked_safely(
        self,
        account: str,
        stack: str,
        before: Mapping[str, str],
        action: Callable[[], RunReport],
        result: str,
        notes: list[str],
        removes: bool = False,
    ) -> Outcome:
        """Run `action` (an update or a destroy) on a stack this run has marked as its own. A lock
        left by a fleet run that never ended (its mark has no `:done`; this run holds the fleet's
        lease, so that run is dead) is cleared and the action run again; any other lock is
        someone's update in progress and is left alone. The run's mark says `:done` once the
        stack is unlocked, whatever the action's outcome."""
        unlocked, removed = True, False
        try:
            try:
                report = action()
            except Locked:
                previous = before.get(TAG_RUN, "")
                if not previous or previous.endswith(DONE):
                    raise CliFailed(
                        "locked by an update in progress that no fleet run left behind: not "
                        f"cancelled. When no update runs, `pulumi cancel --stack {stack}`"
                    ) from None
                self.runner.cancel(stack)
                notes.append(f"cleared the lock left by interrupted fleet run {previous}")
                print(
                    f"fleet: {stack}: cleared the lock left by interrupted fleet run {previous} "
                    "(pulumi cancel)",
                    file=self.err,
                )
                report = action()
            removed = removes
        except Cancelled as err:
            outcome, unlocked = self._interrupted_stack(account, stack, err)
            return outcome
        finally:
            if unlocked and not removed:
                self._mark_done(stack)
        return Outcome(
            account,
            stack,
            result,
            dict(report.changes),
            0.0,
            report.details if changed(report.changes) else "",
            "; ".join(notes),
            report.steps if changed(report.changes) else (),
        )

    def _mark_done(self, stack: str) -> None:
        try:
            self.runner.set_tags(stack, {TAG_RUN: self.settings.run_id + DONE}, cleanup=True)
        except Exception as err:  # the update itself is what the row reports
            print(
                f"fleet: {stack}: could not mark the update ended: {one_line(str(err))}",
                file=self.err,
            )

    def _interrupted_stack(self, account: str, stack: str, err: Cancelled) -> tuple[Outcome, bool]:
        """A stack whose CLI was stopped: by this run (a signal), or killed by someone else. A
        killed CLI leaves the stack locked: the lock is cleared at once. Returns the outcome and
        whether the stack is unlocked."""
        text = str(err)
        by_run = self.stop.signal is not None
        reason = f"stopped by the run ({self.stop.signal_text})" if by_run else ""
        unlocked = True
        if text.startswith(KILLED):
            killed = f"its CLI was {text.split(':', 1)[0]}"
            reason = f"{reason}; {killed}" if reason else killed
            try:
                self.runner.cancel(stack)
                reason += "; the lock it left was cleared (pulumi cancel)"
            except Exception as cancel_err:
                unlocked = False
                reason += f"; its lock could not be cleared: {one_line(str(cancel_err))}"
        elif not reason:
            reason = f"its CLI was stopped: {one_line(text)}"
        result = INTERRUPTED if by_run else FAILED
        return Outcome(account, stack, result, None, 0.0, text, one_line(reason)), unlocked

    def _outcome(self, member: Member, result: str, report: RunReport, reason: str = "") -> Outcome:
        # Only what changed keeps its text: memory grows with the changes, not with the fleet.
        keep = changed(report.changes)
        return Outcome(
            member.account_id,
            member.stack,
            result,
            dict(report.changes),
            0.0,
            report.details if keep else "",
            reason,
            report.steps if keep else (),
        )

    # --- the whole run

    def run(self, fleet: Sequence[Member], whole_fleet: Sequence[Member]) -> FleetRun:
        self.fleet_size = len(fleet)
        run = FleetRun(self.template, self.settings.command, [], [])
        try:
            self.existing = self.runner.stacks()
        except Exception as error:
            run.notes.append(f"could not list the backend's stacks: {one_line(str(error))}")
            return run
        lease = Lease(self) if self.settings.command == "up" else None
        if lease is not None:
            lease.acquire()
        try:
            ready, outcomes = preflight(fleet, self.can_assume, self.settings.command)
            with ThreadPoolExecutor(max_workers=max(1, self.settings.workers)) as pool:
                for i, wave in enumerate(waves(ready, self.settings)):
                    done = list(pool.map(self._member, wave))
                    outcomes.extend(done)
                    failed = [o.stack for o in done if o.result == FAILED]
                    if i == 0 and failed and self.settings.command == "up" and self.settings.canary:
                        # Whatever the tolerance: the canary is there to fail alone.
                        self.stop.halt(
                            f"the canary wave failed ({', '.join(failed)}): no other member started"
                        )
            run.stopped = self.stop.reason if self.stop.stopped else ""
            if self.settings.handle_orphans:
                self._former_members(run, whole_fleet, outcomes)
        finally:
            if lease is not None:
                lease.release()
        run.stopped = self.stop.reason if self.stop.stopped else ""
        run.signal = self.stop.signal
        for warning in run.warnings:
            print(f"warning: {warning}", file=self.err)
        for note in run.notes:
            print(f"error: {note}", file=self.err)
        run.outcomes = sorted(outcomes, key=lambda o: (o.account_id, o.stack))
        return run

    # --- accounts that left

    def _former_members(
        self, run: FleetRun, whole_fleet: Sequence[Member], outcomes: list[Outcome]
    ) -> None:
        pattern = member_stack_pattern(self.template)
        current = {m.stack for m in whole_fleet}
        candidates = sorted(n for n in self.existing if pattern.fullmatch(n) and n not in current)
        found = fleet_stacks(self.runner, self.template, self.project, candidates)
        run.notes.extend(found.unreadable)
        self._former_tags = dict(found.tags)
        owned, foreign = list(found.owned), list(found.foreign)
        run.orphans = owned
        if foreign:
            run.warnings.append(
                f"{len(foreign)} stack(s) named like members of fleet {self.template!r} are not "
                f"tagged as its own ({TAG_TEMPLATE}={self.template}): never pruned: "
                + ", ".join(foreign)
            )
        if not owned:
            return
        if not (self.settings.prune and self.settings.command == "up"):
            run.warnings.append(
                f"{len(owned)} stack(s) of fleet {self.template!r} belong to accounts that are no "
                f"longer members (removed, excluded, moved or suspended): {', '.join(owned)}. "
                "Their resources are still deployed. To "
                + ("release them (resources kept)" if self.settings.retain else "destroy them")
                + f" and remove them from the fleet: PRUNE=1 make fleet-up TEMPLATE={self.template}"
            )
            return
        if run.stopped:
            run.notes.append(f"nothing was pruned: the run stopped ({run.stopped})")
            return
        cap = (
            self.settings.max_prune.of(len(whole_fleet))
            if self.settings.max_prune is not None
            else default_max_prune(len(whole_fleet))
        )
        if len(owned) > cap and self.settings.prune_confirm != len(owned):
            run.notes.append(
                f"refused to prune {len(owned)} stack(s), more than the cap of {cap} for a fleet "
                f"of {len(whole_fleet)} (ecr-ptc:operationPreferences.maxPrune or PRUNE_MAX): "
                f"{', '.join(owned)}. If every one of them is meant to go, confirm the count: "
                f"PRUNE=1 PRUNE_CONFIRM={len(owned)} make fleet-up TEMPLATE={self.template}"
            )
            outcomes.extend(
                Outcome(
                    pattern.fullmatch(s)[1],  # type: ignore[index]
                    s,
                    NOT_PRUNED,
                    None,
                    0.0,
                    reason=f"prune of {len(owned)} refused: over the cap of {cap}",
                )
                for s in owned
            )
            return
        with ThreadPoolExecutor(max_workers=max(1, self.settings.workers)) as pool:
            outcomes.extend(pool.map(self._retire, owned))

    def _retire(self, stack: str) -> Outcome:
        account = member_stack_pattern(self.template).fullmatch(stack)[1]  # type: ignore[index]
        if self.stop.stopped:
            return Outcome(account, stack, NOT_STARTED, None, 0.0, reason=self.stop.reason)
        start = self.clock()
        try:
            if self.settings.retain:
                self.runner.remove_tags(stack, [TAG_TEMPLATE, TAG_PROJECT])
                self.runner.set_tags(stack, {TAG_RETAINED: self.template})
                outcome = Outcome(
                    account,
                    stack,
                    RETAINED,
                    {},
                    0.0,
                    reason=(
                        "released from the fleet; its resources and stack are kept "
                        "(retainStacksOnAccountRemoval)"
                    ),
                )
            else:
                outcome = self._destroy_owned(
                    account,
                    stack,
                    lambda: self.runner.prune(stack),
                    PRUNED,
                    "destroyed and removed: the account left the fleet",
                    removes=True,
                )
        except Exception as err:
            outcome = Outcome(account, stack, PRUNE_FAILED, None, 0.0, f"{err}", one_line(str(err)))
        if outcome.result == FAILED:  # its CLI was killed: the prune did not happen
            outcome = replace(outcome, result=PRUNE_FAILED)
        return replace(outcome, duration=self.clock() - start)

    def _destroy_owned(
        self,
        account: str,
        stack: str,
        action: Callable[[], RunReport],
        result: str,
        note: str,
        removes: bool,
    ) -> Outcome:
        """Destroy a stack this fleet owns (a former member's prune, or a teardown): marked with
        this run first, so that a later run knows a lock it leaves for a dead run's."""
        before = self._former_tags.get(stack, {})
        self.runner.set_tags(stack, {TAG_RUN: self.settings.run_id})
        return self._locked_safely(account, stack, before, action, result, [note], removes)

    # --- a teardown: every stack the fleet owns, destroyed (`make destroy`)

    def teardown(self, found: FleetStacks, destroy: Callable[[str], RunReport]) -> FleetRun:
        """Destroy the resources of every stack in `found.owned` (`destroy`: the CLI's `pulumi
        destroy`, the stack kept), under the fleet's lease, `workers` at a time. A stack with no
        resources is left alone. Stops as an update does on SIGTERM/SIGINT; a failed member does
        not stop the others (each destroy is independent of the rest)."""
        run = FleetRun(self.template, TEARDOWN, [], [])
        self._former_tags = dict(found.tags)
        if found.owned:
            try:
                self.existing = self.runner.stacks()
            except Exception as error:
                run.notes.append(f"could not list the backend's stacks: {one_line(str(error))}")
                return run
            lease = Lease(self)
            lease.acquire()
            try:
                with ThreadPoolExecutor(max_workers=max(1, self.settings.workers)) as pool:
                    run.outcomes = list(
                        pool.map(lambda s: self._tear_down(s, destroy), found.owned)
                    )
            finally:
                lease.release()
        run.stopped = self.stop.reason if self.stop.stopped else ""
        run.signal = self.stop.signal
        run.outcomes.sort(key=lambda o: (o.account_id, o.stack))
        return run

    def _tear_down(self, stack: str, destroy: Callable[[str], RunReport]) -> Outcome:
        account = member_stack_pattern(self.template).fullmatch(stack)[1]  # type: ignore[index]
        if self.stop.stopped:
            return Outcome(account, stack, NOT_STARTED, None, 0.0, reason=self.stop.reason)
        state = self.existing.get(stack)
        if state is None:
            return Outcome(account, stack, EMPTY, {}, 0.0, reason="no stack: nothing to destroy")
        if state.resource_count == 0:
            return Outcome(account, stack, EMPTY, {}, 0.0, reason="no resources: nothing to do")
        start = self.clock()
        try:
            outcome = self._destroy_owned(
                account,
                stack,
                lambda: destroy(stack),
                DESTROYED,
                "resources destroyed; the stack and its tags are kept",
                removes=False,
            )
        except Exception as err:
            outcome = Outcome(
                account, stack, DESTROY_FAILED, None, 0.0, f"{err}", one_line(str(err))[:300]
            )
        if outcome.result == FAILED:  # its CLI was killed: the destroy did not end
            outcome = replace(outcome, result=DESTROY_FAILED)
        return replace(outcome, duration=self.clock() - start)


@dataclass(frozen=True)
class FleetStacks:
    """The stacks named like members of a fleet, by who owns them (the stack tags)."""

    owned: tuple[str, ...] = ()  # tagged as this template's and project's: the fleet's own
    foreign: tuple[str, ...] = ()  # untagged, or tagged as another template's or project's
    released: tuple[str, ...] = ()  # released by a prune (retainStacksOnAccountRemoval)
    tags: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()  # why a stack's tags could not be read


def fleet_stacks(
    runner: Runner, template: str, project: str, candidates: Sequence[str]
) -> FleetStacks:
    """Who owns each of `candidates`: the one rule for pruning and for a teardown. A stack is
    the fleet's when tagged with this template, and with this project or none (tags written
    before the project tag existed). A stack whose tags cannot be read is nobody's."""
    owned: list[str] = []
    foreign: list[str] = []
    released: list[str] = []
    tags_of: dict[str, Mapping[str, str]] = {}
    unreadable: list[str] = []
    for stack in sorted(candidates):
        try:
            tags = runner.tags(stack)
        except Exception as error:
            unreadable.append(f"could not read the tags of {stack}: {one_line(str(error))}")
            continue
        if tags.get(TAG_RETAINED) == template and TAG_TEMPLATE not in tags:
            released.append(stack)  # no longer the fleet's, and known to be so
            continue
        mine = tags.get(TAG_TEMPLATE) == template and tags.get(TAG_PROJECT) in (project, None)
        (owned if mine else foreign).append(stack)
        tags_of[stack] = tags
    return FleetStacks(tuple(owned), tuple(foreign), tuple(released), tags_of, tuple(unreadable))


class TeardownRunner(Runner, Protocol):
    def destroy(self, stack: str) -> RunReport: ...


def teardown_fleet(
    template: str,
    project: str,
    runner: TeardownRunner,
    env: Mapping[str, str],
    stop: Stop,
    err: TextIO = sys.stderr,
    found: FleetStacks | None = None,
) -> FleetRun:
    """`make destroy`'s fleet part: destroy every stack the fleet owns, by the rules, lease and
    signal handling of `make fleet-up` (a prune that keeps the stacks)."""
    if found is None:
        pattern = member_stack_pattern(template)
        found = fleet_stacks(
            runner, template, project, [s for s in runner.stacks() if pattern.fullmatch(s)]
        )
    settings = Settings(
        command=TEARDOWN,
        workers=parallelism(len(found.owned), env, available_memory_mb()),
        run_id=env.get("FLEET_RUN_ID") or uuid.uuid4().hex[:12],
        heartbeat_seconds=heartbeat_seconds(env),
    )
    driver = Driver(template, project, runner, lambda role, region: None, settings, stop, err)
    run = driver.teardown(found, runner.destroy)
    run.notes[:0] = list(found.unreadable)
    return run


class FleetBusy(Exception):
    """Another fleet run is updating this fleet now."""


class Lease:
    """Only one fleet run updates a fleet at a time. The fleet's own stack `<template>-fleet` (no
    resources) holds, in its tags, the run that updates it (`ecr-ptc:fleet-lease`) and a
    heartbeat per running batch (`ecr-ptc:fleet-beat-<batch>`, the time, every
    FLEET_HEARTBEAT_SECONDS). A run whose heartbeats are all older than STALE_BEATS of them is
    dead: the next run takes the lease, and a member it left locked is its to clear. The batches
    of one CI run share one run ID (FLEET_RUN_ID) and so one lease."""

    STALE_BEATS = 4

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.stack = f"{driver.template}{LEASE_SUFFIX}"
        self.beat = f"{TAG_BEAT}{driver.settings.batch_label}"
        self.interval = driver.settings.heartbeat_seconds
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def acquire(self) -> None:
        runner, run_id = self.driver.runner, self.driver.settings.run_id
        if self.stack not in self.driver.existing:
            runner.create(self.stack)
        tags = runner.tags(self.stack)
        holder = tags.get(TAG_LEASE, "")
        now = time.time()
        ages = []
        for key, value in tags.items():
            if key.startswith(TAG_BEAT):
                try:
                    ages.append(now - float(value))
                except ValueError:
                    continue
        stale = self.STALE_BEATS * self.interval
        fresh = [age for age in ages if age < stale]
        if holder and holder != run_id and fresh:
            raise FleetBusy(
                f"fleet run {holder} is updating fleet {self.driver.template!r} (its last "
                f"heartbeat {min(fresh):.0f} s ago, on stack {self.stack}): two runs must never "
                "update one fleet at once. Wait for it to end; if it was killed, its heartbeat "
                f"has stopped and a run may start {stale - min(fresh):.0f} s from now, and will "
                "clear the locks it left"
            )
        dead = [k for k in tags if k.startswith(TAG_BEAT) and holder != run_id]
        if dead:
            runner.remove_tags(self.stack, dead)
        runner.set_tags(self.stack, {TAG_LEASE: run_id, self.beat: f"{now:.3f}"})
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        while not self.done.wait(self.interval):
            try:
                self.driver.runner.set_tags(
                    self.stack, {self.beat: f"{time.time():.3f}"}, cleanup=True
                )
            except Exception as err:  # the next beat may get through
                print(f"fleet: heartbeat: {one_line(str(err))}", file=self.driver.err)

    def release(self) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join()
        try:
            self.driver.runner.remove_tags(self.stack, [self.beat], cleanup=True)
        except Exception as err:  # a stale beat is harmless: it only ages
            print(f"fleet: could not end the heartbeat: {one_line(str(err))}", file=self.driver.err)


def run_fleet(
    template: str,
    fleet: Sequence[Member],
    command: str,
    runner: Runner,
    can_assume: AssumeCheck,
    workers: int,
    prune: bool = False,
    handle_orphans: bool = True,
    err: TextIO = sys.stderr,
    clock: Callable[[], float] = time.monotonic,
    whole_fleet: Sequence[Member] | None = None,
    settings: Settings | None = None,
    project: str = "ecr-ptc",
    stop: Stop | None = None,
    planner: Callable[[Member], RunReport] | None = None,
) -> FleetRun:
    """Pre-flight every role of `fleet` (this run's members: a batch, or all), run the rest in
    waves `workers` at a time, then deal with accounts that left. A former member is a stack
    tagged as this fleet's that is not in `whole_fleet` (every member, whatever the batch)."""
    settings = settings or Settings(command, workers, prune=prune, handle_orphans=handle_orphans)
    driver = Driver(template, project, runner, can_assume, settings, stop, err, clock, planner)
    return driver.run(fleet, fleet if whole_fleet is None else whole_fleet)


# --- before any member: the CLI, the backend, the upstream --------------------------------------


class NotReady(Exception):
    """Something every member needs is missing; the message says what and how to fix it."""


def pinned_cli_version(project_dir: Path) -> str | None:
    path = project_dir / PINNED_CLI_FILE
    return path.read_text().strip() if path.is_file() else None


def check_ready(env: Mapping[str, str], backend: str | None, which: Which) -> str:
    """Fail once, before any member runs, rather than once per member. Returns the CLI."""
    pulumi = which("pulumi")
    if pulumi is None:
        raise NotReady(
            "the Pulumi CLI (`pulumi`) is not on PATH; the fleet runs it for every member. "
            "Install it (https://www.pulumi.com/docs/iac/download-install/) and retry."
        )
    # The backend of `pulumi login` (None) is the CLI's to check.
    passphrase = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
    if is_self_managed(backend) and not any(v in env for v in passphrase):
        raise NotReady(
            f"the state backend {backend} keeps secrets with a passphrase and neither "
            "PULUMI_CONFIG_PASSPHRASE nor PULUMI_CONFIG_PASSPHRASE_FILE is set. Export one (this "
            "project stores no secrets; an empty PULUMI_CONFIG_PASSPHRASE= is accepted)."
        )
    return pulumi


def check_upstream(
    members_: Sequence[Member], runner: Runner, project_dir: Path
) -> Mapping[str, Any] | None:
    """Read the upstream stack the members name, once, and check it serves every member: a
    missing or refusing upstream stops the run before any member. Returns its outputs (None
    when the members name an upstream account directly)."""
    from components.inputs.stack_config import parse
    from components.plan.contract import UpstreamFacts, check_pairing

    named = {str(m.config.get("ecr-ptc:upstreamStack") or "") for m in members_}
    named.discard("")
    if not named:
        return None
    if len(named) > 1:
        raise NotReady(f"the members name different upstream stacks: {', '.join(sorted(named))}")
    [stack] = named
    try:
        outputs = runner.outputs(stack)
    except CliFailed as err:
        if NO_STACK_TEXT in str(err):
            raise NotReady(
                f"upstream stack {stack!r} (ecr-ptc:upstreamStack) does not exist: deploy it first "
                "(`make fleet-up` deploys Pulumi.upstream.yaml before the members; `make up "
                "UPSTREAM_STACK=…` alone does too). No member was started."
            ) from None
        raise NotReady(
            f"could not read upstream stack {stack!r}: {one_line(str(err))}. No member was started."
        ) from None
    if "upstreamAccountId" not in outputs:
        raise NotReady(
            f"upstream stack {stack!r} exists but has never been deployed (no outputs): deploy "
            "it first. No member was started."
        )
    facts = UpstreamFacts.from_outputs(stack, outputs)
    for member in members_:
        config = parse(cli_config(member.config, project_dir), member.stack)
        try:
            check_pairing(facts, config, member.account_id)  # type: ignore[arg-type]
        except ConfigError as err:
            raise NotReady(
                f"upstream stack {stack!r} does not serve member {member.stack}: {err}. No member "
                "was started."
            ) from None
    return outputs


def offline_planner(
    project_dir: Path, upstream_outputs: Mapping[str, Any] | None
) -> Callable[[Member], RunReport]:
    """A new member's preview: its plan (`make plan` of that member), every resource a create."""
    from components.declare.program import direct_upstream, plan_stack
    from components.inputs.stack_config import parse
    from components.plan.contract import UpstreamFacts

    def plan(member: Member) -> RunReport:
        config = parse(cli_config(member.config, project_dir), member.stack)
        upstream = direct_upstream(config)  # type: ignore[arg-type]
        if upstream is None:
            stack = str(member.config.get("ecr-ptc:upstreamStack"))
            upstream = UpstreamFacts.from_outputs(stack, upstream_outputs or {})
        planned = plan_stack(config, member.account_id, upstream)
        steps = tuple(
            Step("create", f"urn:pulumi:{member.stack}::plan::{r.type}::{r.name}")
            for r in planned.resources
        )
        return RunReport({"create": len(steps)}, details_text(steps), steps)

    return plan


def sts_assume_check(clients: Callable[[str], Any] | None = None) -> AssumeCheck:
    """sts:AssumeRole on the role, with STS of the member's own region (hence partition: a
    member in aws-cn or aws-us-gov is checked there): what its AWS provider will do first."""
    lock = threading.Lock()
    cache: dict[str, Any] = {}

    def client(region: str) -> Any:
        with lock:
            if region not in cache:
                if clients is not None:
                    cache[region] = clients(region)
                else:
                    import boto3

                    cache[region] = boto3.session.Session().client(
                        "sts", region_name=region or None
                    )
            return cache[region]

    def check(role_arn: str, region: str) -> None:
        client(region).assume_role(
            RoleArn=role_arn, RoleSessionName="ecr-ptc-fleet-preflight", DurationSeconds=900
        )

    return check


# --- command line -----------------------------------------------------------------------------


def load_members(
    template: str, project_dir: Path, members_file: str | None, organizations: Any = None
) -> list[Member]:
    if members_file:
        return from_json(Path(members_file).read_text(), template)
    config = template_config(template, project_dir)
    return members(template, config, organizations)


def template_config(template: str, project_dir: Path) -> dict[str, Any]:
    config = stack_file_config(project_dir, template)
    if not is_template(config):
        raise ConfigError(
            "ecr-ptc:accounts",
            None,
            f"a list of accounts (or ecr-ptc:organizationalUnitIds) in Pulumi.{template}.yaml: "
            f"{template!r} is not a fleet template: for a single stack, use `make up`, "
            "`make preview` or `make doctor`",
        )
    return config


def refuse_empty(fleet: Sequence[Member], template: str, members_file: str | None) -> None:
    if not fleet:
        source = f"the members file {members_file}" if members_file else f"Pulumi.{template}.yaml"
        raise ConfigError(
            "MEMBERS" if members_file else "ecr-ptc:accounts",
            "[]",
            f"at least one member: {source} names none, and a run of an empty fleet would take "
            "every deployed member for a former one. Check the OUs and exclusions (`make "
            "fleet-members`)",
        )


UpstreamDeploy = Callable[[Mapping[str, str]], int]


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    runner: Runner | None = None,
    can_assume: AssumeCheck | None = None,
    organizations: Any = None,
    project_dir: Path = PROJECT_DIR,
    out: TextIO | None = None,
    err: TextIO | None = None,
    which: Which | None = None,
    deploy_upstream: UpstreamDeploy | None = None,
    stop: Stop | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    env = dict(os.environ if env is None else env)
    parser = argparse.ArgumentParser(
        prog="python -m scripts.fleet", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("members", "matrix", *COMMANDS):
        p = sub.add_parser(name)
        p.add_argument("--template", default="downstream", help="the template stack's name")
        p.add_argument("--members", help="members JSON (from `members`) instead of deriving them")
        p.add_argument("--project-dir", type=Path, help="where the stack files are")
        if name == "matrix":
            p.add_argument("--per-batch", type=int, default=25, help="members per matrix job")
        if name == "up":
            p.add_argument(
                "--upstream-stack",
                help="deploy this upstream stack first, as `make up` does (FLEET_UPSTREAM=check: "
                "only check it)",
            )
    c = sub.add_parser("comment")
    c.add_argument("summaries", nargs="+", help="summary JSON files (FLEET_SUMMARY) of batches")
    args = parser.parse_args(argv)
    try:
        if args.command == "comment":
            out.write(comment([json.loads(Path(p).read_text()) for p in args.summaries]))
            return 0
        project_dir = args.project_dir or project_dir
        fleet = load_members(args.template, project_dir, args.members, organizations)
        template = fleet_template(template_config(args.template, project_dir))
        strays = stray_overrides(template, fleet)
        for line in strays:
            print(line, file=err)
        if args.command == "members":
            out.write(to_json(fleet, args.template))
            return 0
        if args.command == "matrix":
            count = batch_count(len(fleet), args.per_batch)
            # Each matrix job runs BATCH=<batch>/<count>.
            matrix = {"batch": list(range(1, count + 1))}
            out.write(json.dumps({"count": count, "matrix": matrix}, sort_keys=True) + "\n")
            return 0
        refuse_empty(fleet, args.template, args.members)
        preferences = template.operation_preferences
        chosen, label = fleet, None
        if env.get(BATCH):
            index, count = parse_batch(env[BATCH])
            chosen, label = batch(fleet, index, count), f"{index}/{count}"
        workers = parallelism(len(chosen), env, available_memory_mb())
        settings = Settings.of(
            args.command,
            preferences,
            env,
            workers,
            # Former members are looked for once per run: by the first batch only.
            handle_orphans=label is None or label.startswith("1/"),
        )
        project = str(load_yaml(project_dir / PROJECT_FILE).get("name", ""))
        processes = None
        if runner is None:
            backend = state_backend(env, project_dir)
            pulumi = check_ready(env, backend, which or on_path(env))
            cli = CliRunner(project_dir, env, pulumi)
            warn_unpinned_cli(cli, project_dir, err)
            runner, processes = cli, cli.processes
        upstream_stack = getattr(args, "upstream_stack", None)
        if upstream_stack and env.get("FLEET_UPSTREAM", "deploy") != "check":
            code = (deploy_upstream or _deploy_upstream(upstream_stack, project_dir))(env)
            if code != 0:
                print(
                    "fleet: the upstream stack's `make up` failed: no member was started",
                    file=err,
                )
                return code
        upstream_outputs = None
        if args.command in ("up", PREVIEW):
            upstream_outputs = check_upstream(fleet, runner, project_dir)
        stop = stop or Stop(processes, grace_seconds(env), err)
        print(
            f"==> {args.command} of {len(chosen)} member(s) of fleet {args.template!r}, "
            f"{workers} at a time"
            + (
                f", canary {settings.canary}, waves of {settings.wave_size}, failure tolerance "
                f"{settings.failure_tolerance} (run {settings.run_id})"
                if args.command == "up"
                else ""
            ),
            file=err,
        )
        restore = stop.install() if threading.current_thread() is threading.main_thread() else None
        try:
            run = run_fleet(
                args.template,
                chosen,
                args.command,
                runner,
                can_assume or sts_assume_check(),
                workers,
                err=err,
                whole_fleet=fleet,
                settings=settings,
                project=project,
                stop=stop,
                planner=offline_planner(project_dir, upstream_outputs),
            )
        finally:
            if restore is not None:
                restore()
    except (ConfigError, NotReady, OrganizationsUnavailable, FleetBusy) as error:
        print(f"fleet: {error}", file=err)
        return 2
    run.batch = label
    run.warnings[:0] = [line.removeprefix("warning: ") for line in strays]
    out.write(summary_table(run.to_json()) + "\n")
    if env.get("FLEET_SUMMARY"):
        Path(env["FLEET_SUMMARY"]).write_text(json.dumps(run.to_json(), indent=2, sort_keys=True))
    return run.exit_code


def _deploy_upstream(stack: str, project_dir: Path) -> UpstreamDeploy:
    """`make up` of the upstream stack alone (its pre-flight included), when its stack file is
    in this repository; an upstream managed elsewhere is only checked."""

    def deploy_it(env: Mapping[str, str]) -> int:
        from scripts import deploy

        if not stack_file(project_dir, stack).is_file():
            return 0
        side = deploy.Side("upstream", stack, env.get("UPSTREAM_AWS_PROFILE") or None)
        try:
            return deploy.deploy(
                "up", [side], env, yes=env.get("YES") == "1", project_dir=project_dir
            )
        except deploy.PreflightError as error:
            print(f"make fleet-up: {error}", file=sys.stderr)
            return 2

    return deploy_it


def warn_unpinned_cli(runner: CliRunner, project_dir: Path, err: TextIO) -> None:
    """The CLI version CI runs (.pulumi-version); another one locally is said, not refused."""
    pinned = pinned_cli_version(project_dir)
    if pinned is None:
        return
    try:
        with runner.workspace("fleet-version") as work_dir:
            found = runner.cli(["version"], work_dir)[0].strip().lstrip("v")
    except Exception:
        return
    if found != pinned:
        print(
            f"warning: Pulumi CLI {found} is not the pinned {pinned} ({PINNED_CLI_FILE}, what "
            "CI runs); results may differ",
            file=err,
        )


if __name__ == "__main__":
    sys.exit(main())


# `make plan` derives members offline with `members(template_stack, config)`.
__all__ = ["COMMENT_MARKER", "Member", "main", "members", "write_stack_file"]
