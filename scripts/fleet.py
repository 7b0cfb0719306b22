"""`make fleet-members`, `make fleet-preview`, `make fleet-up`: one downstream stack per account.

    python -m scripts.fleet members --template downstream      # the members, JSON on stdout
    python -m scripts.fleet matrix  --template downstream      # CI: the batches, as a matrix
    python -m scripts.fleet preview --template downstream      # every member, bounded parallelism
    python -m scripts.fleet up      --template downstream
    python -m scripts.fleet comment summary-*.json             # CI: one PR comment from batches

Environment: FLEET_PARALLELISM (members run at once; default from free memory), BATCH=i/N (only
the i-th of N batches), PRUNE=1 (destroy and remove the stacks of accounts that left the fleet),
FLEET_SUMMARY=<file> (also write the summary as JSON), PULUMI_BACKEND_URL (the state backend).
`--project-dir` reads the stack files of another directory than this repository's.

Each member runs in its own temporary workspace directory (see `prepare_workspace`): parallel
Automation API runs in one directory overwrite each other's workspace files.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from components.config_error import ConfigError
from scripts.deploy import Which, is_self_managed, on_path, state_backend
from scripts.fleet_members import (
    BATCH,
    Member,
    OrganizationsUnavailable,
    batch,
    batch_count,
    from_json,
    is_template,
    member_stack_pattern,
    members,
    parse_batch,
    to_json,
)
from scripts.stack_files import PROJECT_FILE, cli_yaml_text, load_yaml, stack_file_config

PROJECT_DIR = Path(__file__).resolve().parent.parent
POLICY_PACK = "policy"
PROGRAM_LINK = "program"  # in each member's workspace: a symlink to the project directory
MEMBER_MEMORY_MB = 300  # what one running member (CLI, language host, AWS provider) takes
PREFLIGHT_PARALLELISM = 32
DETAILS_MAX_CHARS = 4000
COMMENT_MAX_CHARS = 60000
COMMENT_MARKER = "<!-- ecr-ptc-fleet-preview -->"
FENCE = "```"

SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED = "skipped: cannot assume role"
PRUNED = "pruned"
PRUNE_FAILED = "prune failed"
OK_RESULTS = (SUCCEEDED, PRUNED)


@dataclass(frozen=True)
class RunReport:
    """What one member's preview/up (or prune) did: resource operation -> count, and its log."""

    changes: Mapping[str, int] = field(default_factory=dict)
    details: str = ""


class Runner(Protocol):
    def run(self, member: Member, command: str) -> RunReport: ...
    def list_stacks(self) -> list[str]: ...
    def prune(self, stack: str) -> RunReport: ...


AssumeCheck = Callable[[str], None]  # raises when the role cannot be assumed


@dataclass(frozen=True)
class Outcome:
    account_id: str
    stack: str
    result: str
    changes: Mapping[str, int] | None
    duration: float
    details: str = ""

    @property
    def ok(self) -> bool:
        return self.result in OK_RESULTS

    def to_json(self) -> dict[str, Any]:
        return {
            "accountId": self.account_id,
            "stack": self.stack,
            "result": self.result,
            "changes": None if self.changes is None else dict(sorted(self.changes.items())),
            "duration": round(self.duration, 1),
            "details": self.details,
        }


# --- settings ---------------------------------------------------------------------------------


def backend_url(project_dir: Path, env: Mapping[str, str]) -> str | None:
    """The backend `make up` and every `pulumi` command of the project use (PULUMI_BACKEND_URL,
    else Pulumi.yaml's `backend.url`), or None for the one `pulumi login` chose."""
    return state_backend(env, project_dir)


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


# --- the run ----------------------------------------------------------------------------------


def change_text(changes: Mapping[str, int] | None) -> str:
    if changes is None:
        return "-"
    text = ", ".join(f"{op} {n}" for op, n in sorted(changes.items()) if op != "same" and n)
    return text or "none"


def preflight(
    fleet: Sequence[Member], can_assume: AssumeCheck, command: str = "up"
) -> tuple[list[Member], list[Outcome]]:
    """Try each member's role for `command` (a preview's is the read-only one) before anything
    changes; those that fail are skipped."""

    def check(member: Member) -> str | None:
        try:
            role = member.role_for(command)
            can_assume(role)
        except Exception as err:  # any refusal means the same: this member cannot run
            return f"{member.role_for(command) if member.preview_role_arn else member.stack}: {err}"
        return None

    workers = max(1, min(PREFLIGHT_PARALLELISM, len(fleet)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        errors = list(pool.map(check, fleet))
    ready = [m for m, e in zip(fleet, errors, strict=True) if e is None]
    skipped = [
        Outcome(m.account_id, m.stack, SKIPPED, None, 0.0, e)
        for m, e in zip(fleet, errors, strict=True)
        if e is not None
    ]
    return ready, skipped


def _timed(
    account_id: str,
    stack: str,
    action: Callable[[], RunReport],
    ok: str,
    failed: str,
    clock: Callable[[], float],
) -> Outcome:
    start = clock()
    try:
        report = action()
    except Exception as err:  # one member's failure must not stop the others
        return Outcome(account_id, stack, failed, None, clock() - start, f"{err}")
    return Outcome(account_id, stack, ok, dict(report.changes), clock() - start, report.details)


def orphans(template: str, fleet: Iterable[Member], backend_stacks: Iterable[str]) -> list[str]:
    """The template's member stacks in the backend whose account is no longer a member."""
    pattern = member_stack_pattern(template)
    current = {m.stack for m in fleet}
    names = {name.rsplit("/", 1)[-1] for name in backend_stacks}
    return sorted(n for n in names if pattern.fullmatch(n) and n not in current)


@dataclass
class FleetRun:
    template: str
    command: str  # preview | up
    outcomes: list[Outcome]
    orphans: list[str]
    batch: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if all(o.ok for o in self.outcomes) and not self.notes else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "command": self.command,
            "batch": self.batch,
            "orphans": self.orphans,
            "errors": self.notes,
            "members": [o.to_json() for o in self.outcomes],
        }


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
) -> FleetRun:
    """Pre-flight every role of `fleet` (this run's members: a batch, or all), run the rest
    `workers` at a time, then deal with accounts that left. A former member is a stack that is
    not in `whole_fleet` (every member, whatever the batch): judged by a batch alone, the other
    batches' members would look like former ones. Nothing is destroyed unless `prune` (PRUNE=1)
    and the command is `up`."""
    everyone = fleet if whole_fleet is None else whole_fleet
    ready, outcomes = preflight(fleet, can_assume, command)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        done = pool.map(
            lambda m: _timed(
                m.account_id, m.stack, lambda: runner.run(m, command), SUCCEEDED, FAILED, clock
            ),
            ready,
        )
        outcomes.extend(done)
    run = FleetRun(template, command, outcomes, [])
    if handle_orphans:
        try:
            run.orphans = orphans(template, everyone, runner.list_stacks())
        except Exception as error:  # the run itself is done; say that the check could not be
            run.notes.append(f"could not list the backend's stacks to find former members: {error}")
    if run.orphans and prune and command == "up":
        pattern = member_stack_pattern(template)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pruned = pool.map(
                lambda s: _timed(
                    pattern.fullmatch(s)[1],  # type: ignore[index]
                    s,
                    lambda: runner.prune(s),
                    PRUNED,
                    PRUNE_FAILED,
                    clock,
                ),
                run.orphans,
            )
            outcomes.extend(pruned)
    elif run.orphans:
        print(
            f"warning: {len(run.orphans)} stack(s) of fleet {template!r} belong to accounts that "
            f"are no longer members (removed, excluded, moved or suspended): "
            f"{', '.join(run.orphans)}. Their resources are still deployed. To destroy them and "
            f"remove their stacks: PRUNE=1 make fleet-up TEMPLATE={template}",
            file=err,
        )
    for note in run.notes:
        print(f"error: {note}", file=err)
    run.outcomes = sorted(outcomes, key=lambda o: (o.account_id, o.stack))
    return run


def summary_table(run: FleetRun) -> str:
    """One row per member (and per pruned stack): account, stack, result, changes, duration."""
    header = ("account", "stack", "result", "changes", "duration")
    rows = [
        (o.account_id, o.stack, o.result, change_text(o.changes), f"{o.duration:.1f}s")
        for o in run.outcomes
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    title = "  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()
    failed = sum(not o.ok for o in run.outcomes)
    return "\n".join(
        [
            title,
            *lines,
            f"{len(run.outcomes)} stacks, {len(run.outcomes) - failed} ok, {failed} not "
            f"({run.command} of fleet {run.template!r}"
            + (f", batch {run.batch}" if run.batch else "")
            + ")",
        ]
    )


def comment(summaries: Sequence[Mapping[str, Any]]) -> str:
    """One PR comment from every batch's summary: a row per account, details collapsed."""
    rows = sorted(
        (m for s in summaries for m in s["members"]), key=lambda m: (m["accountId"], m["stack"])
    )
    orphans = sorted({o for s in summaries for o in s.get("orphans", [])})
    errors = [e for s in summaries for e in s.get("errors", [])]
    templates = sorted({s["template"] for s in summaries})
    commands = sorted({s["command"] for s in summaries})
    failed = [r for r in rows if r["result"] not in OK_RESULTS]
    changed = [r for r in rows if change_text(r["changes"]) not in ("none", "-")]
    lines = [
        COMMENT_MARKER,
        f"### Fleet {' / '.join(commands)}: {', '.join(f'`{t}`' for t in templates)}",
        "",
        f"{len(rows)} accounts: {len(changed)} with changes, {len(failed)} failed or skipped.",
        "",
        "| account | stack | result | changes | duration |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['accountId']} | `{r['stack']}` | {r['result']} | "
            f"{change_text(r['changes'])} | {r['duration']}s |"
        )
    if orphans:
        lines += [
            "",
            f"**No longer members** (still deployed): {', '.join(f'`{o}`' for o in orphans)}. "
            "`PRUNE=1 make fleet-up` destroys them.",
        ]
    for e in errors:
        lines += ["", f"**Error:** {e}"]
    body = "\n".join(lines) + "\n"
    for r in [*failed, *(c for c in changed if c not in failed)]:
        # A fence inside the log would end the code block early.
        text = r["details"][-DETAILS_MAX_CHARS:].replace(FENCE, "'''")
        block = (
            f"\n<details><summary>{r['accountId']} {r['stack']}: {r['result']}</summary>\n\n"
            f"{FENCE}\n{text}\n{FENCE}\n</details>\n"
        )
        if len(body) + len(block) > COMMENT_MAX_CHARS:
            body += "\n(More details in the workflow run's summary artifacts.)\n"
            break
        body += block
    return body


# --- the Automation API runner ----------------------------------------------------------------


def project_settings(project_dir: Path, backend: str | None) -> dict[str, Any]:
    """The project's Pulumi.yaml (name, config schema) for a member's own workspace directory:
    the program is the project's (through the `program` link), its virtualenv the project's
    absolute `.venv`, the backend the project's."""
    settings = load_yaml(project_dir / PROJECT_FILE)
    runtime = settings.get("runtime")
    if isinstance(runtime, str):
        runtime = {"name": runtime}
    runtime = dict(runtime or {"name": "python"})
    options = dict(runtime.get("options") or {})
    options["virtualenv"] = str((project_dir / options.get("virtualenv", ".venv")).resolve())
    runtime["options"] = options
    settings["runtime"] = runtime
    # Pulumi accepts only a relative `main` inside the project directory: hence the link.
    settings["main"] = PROGRAM_LINK
    if backend is not None:
        settings["backend"] = {"url": backend}
    else:
        settings.pop("backend", None)
    return settings


def prepare_workspace(work_dir: Path, project_dir: Path, backend: str | None) -> None:
    (work_dir / PROGRAM_LINK).symlink_to(project_dir.resolve(), target_is_directory=True)
    (work_dir / PROJECT_FILE).write_text(cli_yaml_text(project_settings(project_dir, backend)))


def write_stack_file(work_dir: Path, stack: str, config: Mapping[str, Any]) -> None:
    """`Pulumi.<stack>.yaml` with exactly `config`, replacing any config there and keeping what
    `pulumi stack init` wrote beside it (the secrets provider's salt). Written so that the CLI
    reads back exactly these values: a member's account ID 012345678901 stays text."""
    path = work_dir / f"Pulumi.{stack}.yaml"
    document = load_yaml(path) if path.exists() else {}
    document["config"] = dict(sorted(config.items()))
    path.write_text(cli_yaml_text(dict(sorted(document.items()))))


def _op_counts(changes: Mapping[Any, int] | None) -> dict[str, int]:
    return {str(getattr(op, "value", op)): int(n) for op, n in (changes or {}).items()}


class AutomationRunner:
    """Runs members through the Automation API, each in its own temporary workspace directory
    (pulumi/pulumi#8186: runs sharing one directory overwrite each other's workspace files)."""

    def __init__(
        self,
        project_dir: Path = PROJECT_DIR,
        env: Mapping[str, str] | None = None,
        workspace_factory: Callable[..., Any] | None = None,
        stack_factory: Callable[[str, Any], Any] | None = None,
        select_stack: Callable[[str, Any], Any] | None = None,
    ) -> None:
        from pulumi import automation as auto

        self.project_dir = project_dir.resolve()
        self.backend = backend_url(self.project_dir, os.environ if env is None else env)
        self.env = {"PULUMI_SKIP_UPDATE_CHECK": "true"}
        if self.backend is not None:
            self.env["PULUMI_BACKEND_URL"] = self.backend
        self.policy_packs = [str(self.project_dir / POLICY_PACK)]
        self.workspace_factory = workspace_factory or auto.LocalWorkspace
        self.stack_factory = stack_factory or auto.Stack.create_or_select
        self.select_stack = select_stack or auto.Stack.select

    def _workspace(self, work_dir: Path) -> Any:
        prepare_workspace(work_dir, self.project_dir, self.backend)
        return self.workspace_factory(work_dir=str(work_dir), env_vars=dict(self.env))

    def run(self, member: Member, command: str) -> RunReport:
        with tempfile.TemporaryDirectory(prefix=f"{member.stack}-") as tmp:
            work_dir = Path(tmp)
            # A preview's provider assumes the member's read-only role, an update its deploy role.
            config = member.config_for(command)
            write_stack_file(work_dir, member.stack, config)
            workspace = self._workspace(work_dir)
            stack = self.stack_factory(member.stack, workspace)
            # All of the member's config, replacing whatever the stack had.
            write_stack_file(work_dir, member.stack, config)
            log = io.StringIO()
            if command == "preview":
                preview = stack.preview(
                    policy_packs=self.policy_packs, diff=True, color="never", on_output=log.write
                )
                return RunReport(_op_counts(preview.change_summary), log.getvalue())
            if command == "up":
                up = stack.up(policy_packs=self.policy_packs, color="never", on_output=log.write)
                return RunReport(_op_counts(up.summary.resource_changes), log.getvalue())
            raise ValueError(f"unknown command {command!r}")

    def list_stacks(self) -> list[str]:
        with tempfile.TemporaryDirectory(prefix="fleet-list-") as tmp:
            workspace = self._workspace(Path(tmp))
            return sorted(s.name for s in workspace.list_stacks())

    def prune(self, stack_name: str) -> RunReport:
        with tempfile.TemporaryDirectory(prefix=f"{stack_name}-") as tmp:
            workspace = self._workspace(Path(tmp))
            stack = self.select_stack(stack_name, workspace)
            log = io.StringIO()
            destroyed = stack.destroy(color="never", on_output=log.write)
            workspace.remove_stack(stack_name)
            return RunReport(_op_counts(destroyed.summary.resource_changes), log.getvalue())


class NotReady(Exception):
    """Something every member needs is missing; the message says what and how to fix it."""


def check_ready(env: Mapping[str, str], backend: str | None, which: Which) -> None:
    """Fail once, before any member runs, rather than once per member."""
    if which("pulumi") is None:
        raise NotReady(
            "the Pulumi CLI (`pulumi`) is not on PATH; the Automation API runs it for every "
            "member. Install it (https://www.pulumi.com/docs/iac/download-install/) and retry."
        )
    # The backend of `pulumi login` (None) is the CLI's to check.
    passphrase = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
    if is_self_managed(backend) and not any(v in env for v in passphrase):
        raise NotReady(
            f"the state backend {backend} keeps secrets with a passphrase and neither "
            "PULUMI_CONFIG_PASSPHRASE nor PULUMI_CONFIG_PASSPHRASE_FILE is set. Export one (this "
            "project stores no secrets; an empty PULUMI_CONFIG_PASSPHRASE= is accepted)."
        )


def sts_assume_check(sts_client: Any = None) -> AssumeCheck:
    """sts:AssumeRole on the role: what each member's AWS provider will do first."""
    lock = threading.Lock()

    def check(role_arn: str) -> None:
        nonlocal sts_client
        with lock:
            if sts_client is None:
                import boto3

                sts_client = boto3.client("sts")
        sts_client.assume_role(
            RoleArn=role_arn, RoleSessionName="ecr-ptc-fleet-preflight", DurationSeconds=900
        )

    return check


# --- command line -----------------------------------------------------------------------------


def load_members(
    template: str, project_dir: Path, members_file: str | None, organizations: Any = None
) -> list[Member]:
    if members_file:
        return from_json(Path(members_file).read_text())
    config = stack_file_config(project_dir, template)
    if not is_template(config):
        raise ConfigError(
            "ecr-ptc:accounts",
            None,
            f"a list of accounts (or ecr-ptc:organizationalUnitIds) in Pulumi.{template}.yaml: "
            f"{template!r} is not a fleet template. Deploy a single stack with `make up`",
        )
    return members(template, config, organizations)


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
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    env = dict(os.environ if env is None else env)
    parser = argparse.ArgumentParser(
        prog="python -m scripts.fleet", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("members", "matrix", "preview", "up"):
        p = sub.add_parser(name)
        p.add_argument("--template", default="downstream", help="the template stack's name")
        p.add_argument("--members", help="members JSON (from `members`) instead of deriving them")
        p.add_argument("--project-dir", type=Path, help="where the stack files are")
        if name == "matrix":
            p.add_argument("--per-batch", type=int, default=25, help="members per matrix job")
    c = sub.add_parser("comment")
    c.add_argument("summaries", nargs="+", help="summary JSON files (FLEET_SUMMARY) of batches")
    args = parser.parse_args(argv)
    try:
        if args.command == "comment":
            out.write(comment([json.loads(Path(p).read_text()) for p in args.summaries]))
            return 0
        project_dir = args.project_dir or project_dir
        fleet = load_members(args.template, project_dir, args.members, organizations)
        if args.command == "members":
            out.write(to_json(fleet))
            return 0
        if args.command == "matrix":
            count = batch_count(len(fleet), args.per_batch)
            # Each matrix job runs BATCH=<batch>/<count>.
            matrix = {"batch": list(range(1, count + 1))}
            out.write(json.dumps({"count": count, "matrix": matrix}, sort_keys=True) + "\n")
            return 0
        chosen, label = fleet, None
        if env.get(BATCH):
            index, count = parse_batch(env[BATCH])
            chosen, label = batch(fleet, index, count), f"{index}/{count}"
        workers = parallelism(len(chosen), env, available_memory_mb())
        if runner is None:
            runner = AutomationRunner(project_dir, env)
            check_ready(env, runner.backend, which or on_path(env))
        print(
            f"==> {args.command} of {len(chosen)} member(s) of fleet {args.template!r}, "
            f"{workers} at a time",
            file=err,
        )
        run = run_fleet(
            args.template,
            chosen,
            args.command,
            runner,
            can_assume or sts_assume_check(),
            workers,
            prune=env.get("PRUNE") == "1",
            # Former members are looked for once per run: by the first batch only.
            handle_orphans=label is None or label.startswith("1/"),
            err=err,
            whole_fleet=fleet,
        )
    except (ConfigError, NotReady, OrganizationsUnavailable) as error:
        print(f"fleet: {error}", file=err)
        return 2
    run.batch = label
    out.write(summary_table(run) + "\n")
    if env.get("FLEET_SUMMARY"):
        Path(env["FLEET_SUMMARY"]).write_text(json.dumps(run.to_json(), indent=2, sort_keys=True))
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())


# `make plan` derives members offline with `members(template_stack, config)`.
__all__ = ["Member", "main", "members"]
