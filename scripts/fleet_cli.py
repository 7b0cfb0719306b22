"""The Pulumi CLI as the fleet driver runs it: one process per command, each member in its own
temporary workspace directory, every process in a session of its own.

The driver calls the CLI itself rather than through the Automation API so that it holds each
process: a SIGTERM or Ctrl-C sent to the driver (a cancelled CI job, a timeout) does not reach
the members' CLIs at once; the driver decides when to ask them to stop (SIGINT: the CLI's own
graceful cancel, which ends the resource operations in flight and releases the stack's lock) and
when to kill them, and then clears the lock a killed CLI leaves (`pulumi cancel`).

Everything read from the CLI is its `--json` output: `preview --json`, `up --json`, `refresh
--preview-only --json` print one JSON document with `changeSummary` and `steps`; `stack ls
--json` and `stack tag ls --json` print the stacks and a stack's tags.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.deploy import state_backend
from scripts.fleet_members import PREVIEW, Member
from scripts.stack_files import PROJECT_FILE, cli_yaml_text, load_yaml, short_name

PROJECT_DIR = Path(__file__).resolve().parent.parent
POLICY_PACK = "policy"
PROGRAM_LINK = "program"  # in each member's workspace: a symlink to the project directory
DRIFT = "drift"

# What the CLI says when a stack is locked: a self-managed backend, and Pulumi Cloud.
LOCKED_TEXTS = ("the stack is currently locked by", "Another update is currently in progress")
NO_STACK_TEXT = "no stack named"
STEP_LINES_MAX = 60  # the steps kept for a member's details; the rest are counted
ERROR_CHARS_MAX = 2000  # the end of a failed command's error output kept for its details


class CliFailed(Exception):
    """A CLI command failed; the message is its error, short."""


class Locked(CliFailed):
    """The stack is locked by an update in progress, or one that was killed."""


class Cancelled(CliFailed):
    """The command was stopped by the driver (SIGINT: the CLI cancelled; or killed)."""


@dataclass(frozen=True)
class Step:
    """One resource the command would change (or found changed): op, type, name, the keys."""

    op: str
    urn: str
    keys: tuple[str, ...] = ()

    @property
    def type(self) -> str:
        parts = self.urn.split("::")
        return parts[2].rsplit("$", 1)[-1] if len(parts) >= 4 else ""

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    def line(self) -> str:
        keys = f" [{', '.join(self.keys)}]" if self.keys else ""
        return f"{self.op} {self.type} {self.name}{keys}"

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "urn": self.urn, "keys": list(self.keys)}


@dataclass(frozen=True)
class RunReport:
    """What one member's command did: resource operation -> count, the changed resources, and a
    short text for the summary (only kept when something changed or failed)."""

    changes: Mapping[str, int] = field(default_factory=dict)
    details: str = ""
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class StackState:
    name: str
    update_in_progress: bool | None = None
    resource_count: int | None = None


def changed(changes: Mapping[str, int] | None) -> bool:
    return any(n for op, n in (changes or {}).items() if op != "same")


def _keys(diff: object, reasons: object) -> tuple[str, ...]:
    if isinstance(diff, dict) and diff:
        return tuple(sorted(str(k) for k in diff))
    return tuple(sorted(str(k) for k in reasons or ())) if isinstance(reasons, list) else ()


def details_text(steps: Sequence[Step]) -> str:
    lines = [s.line() for s in steps[:STEP_LINES_MAX]]
    if len(steps) > STEP_LINES_MAX:
        lines.append(f"... and {len(steps) - STEP_LINES_MAX} more")
    return "\n".join(lines)


def _events(stdout: str) -> list[dict[str, Any]] | None:
    """The engine events of `up --json`, `destroy --json`, a streamed `preview --json` (one
    JSON object a line), or None when the output is one preview document instead. A document
    printed before the events (an update's own preview) is skipped."""
    events = []
    for line in stdout.splitlines():
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}") and '"sequence"' in line):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "sequence" in event:
            events.append(event)
    return events or None


@dataclass(frozen=True)
class Output:
    """What one `--json` command printed, read: counts, changed resources, error lines."""

    changes: Mapping[str, int]
    steps: tuple[Step, ...]
    errors: tuple[str, ...]


def read_output(stdout: str) -> Output:
    events = _events(stdout)
    if events is None:
        document = _json_document(stdout)
        summary = document.get("changeSummary") or {}
        steps = []
        for step in document.get("steps") or ():
            op = str(step.get("op", ""))
            if op not in ("same", "read", "refresh", ""):
                keys = _keys(step.get("detailedDiff"), step.get("diffReasons"))
                steps.append(Step(op, str(step.get("urn", "")), keys))
        errors = [
            str(d.get("message", "")).strip()
            for d in document.get("diagnostics") or ()
            if isinstance(d, dict) and d.get("severity") == "error"
        ]
        totals = {str(op): int(n) for op, n in summary.items() if isinstance(n, int)}
        return Output(totals, tuple(steps), tuple(errors))
    counts: dict[str, int] = {}
    by_urn: dict[str, Step] = {}
    errors = []
    for event in events:
        if "summaryEvent" in event:
            changes = event["summaryEvent"].get("resourceChanges") or {}
            counts = {str(op): int(n) for op, n in changes.items() if isinstance(n, int)}
        for kind in ("resourcePreEvent", "resOutputsEvent"):
            meta = (event.get(kind) or {}).get("metadata") or {}
            op = str(meta.get("op", ""))
            if op in ("same", "read", "refresh", ""):
                continue
            urn = str(meta.get("urn", ""))
            by_urn[urn] = Step(op, urn, _keys(meta.get("detailedDiff"), meta.get("diffs")))
        diagnostic = event.get("diagnosticEvent") or {}
        if diagnostic.get("severity") == "error":
            errors.append(f"{diagnostic.get('prefix', '')}{diagnostic.get('message', '')}".strip())
        policy = event.get("policyEvent") or {}
        if policy.get("enforcementLevel") == "mandatory":
            errors.append(
                f"policy {policy.get('policyPackName', '')}/{policy.get('policyName', '')}: "
                f"{str(policy.get('message', '')).strip()}"
            )
    return Output(counts, tuple(by_urn.values()), tuple(errors))


def report_from_json(stdout: str) -> RunReport:
    """The `--json` output of preview, up, refresh or destroy as a report."""
    output = read_output(stdout)
    keep = changed(output.changes) or bool(output.steps)
    return RunReport(output.changes, details_text(output.steps) if keep else "", output.steps)


def _json_document(stdout: str) -> dict[str, Any]:
    text = stdout.strip()
    if not text:
        return {}
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        # A line of text before the document (a warning): the document is the last `{...}`.
        start = text.find("\n{")
        try:
            document = json.loads(text[start + 1 :]) if start >= 0 else {}
        except json.JSONDecodeError:
            return {}
    return document if isinstance(document, dict) else {}


def error_text(stdout: str, stderr: str) -> str:
    """The CLI's own error lines: `error:` lines of stderr, or the errors of its JSON output (a
    program's error, a policy violation: the CLI prints them there, nothing on stderr), or the
    end of stderr; one short paragraph."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    found = [e for e in read_output(stdout).errors if e]
    # "preview failed" / "update failed" says less than the errors before it.
    specific = [
        e for e in found if e.rstrip(".") not in ("error: preview failed", "error: update failed")
    ]
    text = "\n".join(errors + (specific or found) or lines[-10:]) or "the Pulumi CLI failed"
    return text[-ERROR_CHARS_MAX:]


# --- processes ------------------------------------------------------------------------------


class Processes:
    """The CLI processes running now, each in a session of its own so that a signal sent to the
    driver's process group does not reach them: the driver stops them when it decides."""

    def __init__(self) -> None:
        # Re-entrant: a signal handler on the main thread may ask while the main thread starts a
        # process.
        self._lock = threading.RLock()
        self._running: dict[int, tuple[subprocess.Popen[str], str]] = {}
        self._stopped: dict[str, str] = {}  # stack -> how it was stopped (interrupted, killed)
        self.closed = False

    def start(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        stack: str,
        cleanup: bool = False,
    ) -> subprocess.Popen[str]:
        """Start a CLI; once the run is stopping, only the commands that clean up (`cleanup`)."""
        with self._lock:
            if self.closed and not cleanup:
                raise Cancelled("the run is stopping: not started")
            process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
            self._running[process.pid] = (process, stack)
            return process

    def end(self, process: subprocess.Popen[str]) -> str | None:
        """Forget a finished process; how the driver stopped it, if it did."""
        with self._lock:
            _, stack = self._running.pop(process.pid, (process, ""))
            return self._stopped.get(stack) if stack else None

    def running(self) -> list[str]:
        """The stacks of the members' commands running now (not the clean-up commands)."""
        with self._lock:
            return sorted({stack for _, stack in self._running.values() if stack})

    def close(self) -> None:
        """Start no new process (commands already running go on). Takes no lock: a signal
        handler calls it."""
        self.closed = True

    def signal_all(self, signum: int, how: str) -> list[str]:
        """Send `signum` to every running CLI's session; returns their stacks."""
        with self._lock:
            self.closed = True
            stacks = []
            for process, stack in self._running.values():
                if not stack:
                    continue  # a clean-up command (cancel, a tag): let it finish
                self._stopped[stack] = how
                try:
                    os.killpg(process.pid, signum)
                except ProcessLookupError:
                    continue
                stacks.append(stack)
            return sorted(set(stacks))

    def was_killed(self, stack: str) -> bool:
        with self._lock:
            return self._stopped.get(stack) == KILLED


INTERRUPTED = "interrupted"
KILLED = "killed"


# --- workspaces -----------------------------------------------------------------------------


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


# --- the runner -----------------------------------------------------------------------------


class CliRunner:
    """Runs the fleet's commands with the `pulumi` executable `pulumi`, in the project's backend
    (PULUMI_BACKEND_URL, else Pulumi.yaml's `backend.url`, else the one `pulumi login` chose)."""

    def __init__(
        self,
        project_dir: Path = PROJECT_DIR,
        env: Mapping[str, str] | None = None,
        pulumi: str = "pulumi",
        processes: Processes | None = None,
    ) -> None:
        self.project_dir = project_dir.resolve()
        base = dict(os.environ if env is None else env)
        self.backend = state_backend(base, self.project_dir)
        # A preview's --json streams engine events as an update's does: policy violations and
        # the program's errors are in them (a preview's JSON document leaves policies out).
        self.env = {
            **base,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_ENABLE_STREAMING_JSON_PREVIEW": "true",
        }
        if self.backend is not None:
            self.env["PULUMI_BACKEND_URL"] = self.backend
        self.pulumi = pulumi
        self.policy_packs = [str(self.project_dir / POLICY_PACK)]
        self.processes = processes or Processes()
        self.project = str(load_yaml(self.project_dir / PROJECT_FILE).get("name", ""))

    @contextmanager
    def workspace(self, stack: str) -> Iterator[Path]:
        """A temporary workspace directory, removed whatever happens (an interrupt included)."""
        with tempfile.TemporaryDirectory(prefix=f"{stack}-") as tmp:
            work_dir = Path(tmp)
            prepare_workspace(work_dir, self.project_dir, self.backend)
            yield work_dir

    def cli(
        self, args: Sequence[str], cwd: Path, stack: str = "", cleanup: bool = False
    ) -> tuple[str, str]:
        """Run `pulumi --non-interactive <args>`; (stdout, stderr), or CliFailed / Locked /
        Cancelled. `cleanup`: a command that may still start while the run is stopping."""
        argv = [self.pulumi, "--non-interactive", *args]
        process = self.processes.start(argv, cwd, self.env, "" if cleanup else stack, cleanup)
        try:
            stdout, stderr = process.communicate()
        finally:
            how = self.processes.end(process)
        if process.returncode == 0:
            return stdout, stderr
        message = error_text(stdout, stderr)
        if how is not None:
            raise Cancelled(f"{how}: {message}")
        if process.returncode < 0:
            # Killed by someone else (out of memory, an operator): its lock stays behind.
            raise Cancelled(f"{KILLED} by {stop_signal_name(-process.returncode)}: {message}")
        if any(text in message for text in LOCKED_TEXTS):
            raise Locked(message)
        raise CliFailed(message)

    # --- the backend's stacks

    def stacks(self) -> dict[str, StackState]:
        with self.workspace("fleet-list") as work_dir:
            stdout, _ = self.cli(["stack", "ls", "--json"], work_dir)
        found = {}
        for entry in json.loads(stdout or "[]"):
            name = short_name(str(entry.get("name", "")))
            found[name] = StackState(
                name, entry.get("updateInProgress"), entry.get("resourceCount")
            )
        return found

    def tags(self, stack: str) -> dict[str, str]:
        with self.workspace(stack) as work_dir:
            stdout, _ = self.cli(
                ["stack", "tag", "ls", "--json", "--stack", stack], work_dir, stack
            )
        tags = json.loads(stdout or "{}")
        return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}

    def set_tags(self, stack: str, tags: Mapping[str, str], cleanup: bool = False) -> None:
        with self.workspace(stack) as work_dir:
            for key, value in sorted(tags.items()):
                args = ["stack", "tag", "set", key, value, "--stack", stack]
                self.cli(args, work_dir, stack, cleanup)

    def remove_tags(self, stack: str, keys: Sequence[str], cleanup: bool = False) -> None:
        with self.workspace(stack) as work_dir:
            for key in keys:
                self.cli(["stack", "tag", "rm", key, "--stack", stack], work_dir, stack, cleanup)

    def create(self, stack: str) -> None:
        with self.workspace(stack) as work_dir:
            self.cli(["stack", "init", stack], work_dir, stack)

    def cancel(self, stack: str) -> None:
        """Clear the lock of an update that no process runs any more."""
        with self.workspace(stack) as work_dir:
            self.cli(["cancel", "--yes", "--stack", stack], work_dir, stack, cleanup=True)

    def outputs(self, stack: str) -> dict[str, Any]:
        with self.workspace(short_name(stack)) as work_dir:
            stdout, _ = self.cli(["stack", "output", "--json", "--stack", stack], work_dir)
        outputs = json.loads(stdout or "{}")
        return outputs if isinstance(outputs, dict) else {}

    # --- a member's command

    def run(self, member: Member, command: str, refresh: bool = False) -> RunReport:
        """preview / up / drift (`refresh --preview-only`) of an existing member stack, with
        all of the member's config (replacing what the stack had)."""
        role_command = "up" if command == "up" else PREVIEW
        with self.workspace(member.stack) as work_dir:
            write_stack_file(work_dir, member.stack, member.config_for(role_command))
            stack = ["--stack", member.stack]
            packs = [a for p in self.policy_packs for a in ("--policy-pack", p)]
            if command == PREVIEW:
                args = ["preview", "--json", *stack, *packs, *(["--refresh"] if refresh else [])]
            elif command == "up":
                args = ["up", "--yes", "--skip-preview", "--json", *stack, *packs]
                args += ["--refresh"] if refresh else []
            elif command == DRIFT:
                args = ["refresh", "--preview-only", "--json", *stack]
            else:
                raise ValueError(f"unknown command {command!r}")
            stdout, _ = self.cli(args, work_dir, member.stack)
            return report_from_json(stdout)

    def prune(self, stack: str) -> RunReport:
        """Destroy a former member's resources, then remove its stack."""
        with self.workspace(stack) as work_dir:
            stdout, _ = self.cli(destroy_args(stack), work_dir, stack)
            self.cli(["stack", "rm", "--yes", "--stack", stack], work_dir, stack)
        report = report_from_json(stdout)
        return report

    def destroy(self, stack: str) -> RunReport:
        """Destroy a stack's resources and keep the stack: its tags (who owns it), its history.
        `pulumi destroy` runs no program: each resource is deleted by the provider recorded in
        the state, configured as the state says (a member's assumed role included)."""
        with self.workspace(stack) as work_dir:
            stdout, _ = self.cli(destroy_args(stack), work_dir, stack)
        return report_from_json(stdout)


def destroy_args(stack: str) -> list[str]:
    return ["destroy", "--yes", "--skip-preview", "--json", "--stack", stack]


def stop_signal_name(signum: int) -> str:
    return signal.Signals(signum).name
