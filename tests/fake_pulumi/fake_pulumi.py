"""A stand-in for the Pulumi CLI v3.272.0 with a DIY (`file://`) backend, for the tests of the
fleet driver: the commands the driver runs, with the real CLI's output shapes, exit codes, state
layout and lock files. Standard library only. The executable is `tests/fake_pulumi/pulumi`.

What the real CLI does (read from the pulumi/pulumi source, v3.260 tree; paths in that repository)
-----------------------------------------------------------------------------------------------
- `preview --json` prints one JSON document (pkg/display/json.go `PreviewDigest`, filled by
  pkg/backend/display/json.go `ShowPreviewDigest`, indented with 4 spaces): `config` (key ->
  string, secrets blinded), `steps` (each `op`, `urn`, `provider`, `oldState`/`newState`
  (apitype.ResourceV3), `diffReasons`, `replaceReasons`, `detailedDiff` (key -> {kind,
  inputDiff}, or null)), `diagnostics` (each `urn`, `message` = prefix + text, e.g. "error:
  ...\\n", `severity`), `duration` (nanoseconds), `changeSummary` (op -> count), `maybeCorrupt`;
  empty fields are left out. Steps hold every non-`same` step and always the root stack
  (pkg/backend/display/display.go `shouldShow`); default providers are internal (neither shown
  nor counted: pkg/engine/update.go `isInternalStep`).
  A program error is an error diagnostic on stdout, followed by "error: preview failed"
  (pkg/resource/deploy/deployment_executor.go `reportExecResult`); the command fails with a bail
  error: nothing on stderr, exit code 1. Policy violations are NOT in the digest ("we don't
  handle policy events in JSON serialization"): a mandatory violation shows only as "error:
  preview failed". PULUMI_ENABLE_STREAMING_JSON_PREVIEW=true makes `preview --json` stream
  events like `up --json` (sdk/go/common/env/env.go).
- `up --json` (and `refresh --json`, `destroy --json` when not `--preview-only`) stream engine
  events, one JSON object a line (`ShowJSONEvents`; sdk/go/common/apitype/events.go
  `EngineEvent`): `{"sequence", "timestamp", "<kind>": {...}}` with kinds preludeEvent,
  diagnosticEvent, stdoutEvent, resourcePreEvent/resOutputsEvent (`metadata`: op, urn, type,
  old, new, diffs, detailedDiff {key: {diffKind, inputDiff}}, logical, provider), policyEvent,
  summaryEvent (`resourceChanges`, `durationSeconds`, `isPreview`, `result`), cancelEvent.
  There is no `changeSummary` document. Without `--skip-preview`, the preview's digest is
  printed first, then the events (pkg/backend/apply.go `PreviewThenPromptThenExecute`).
  Non-interactive `up`/`destroy` need `--yes` or `--skip-preview`, `refresh` also accepts
  `--preview-only` (backenderr.NoConfirmationInNonInteractiveError, exit code 2).
- A refresh reports every custom resource as a `refresh` step; one changed outside Pulumi becomes
  `update` (diffReasons, detailedDiff), one deleted outside becomes `delete`; `changeSummary`
  counts same/update/delete (pkg/engine/lifecycletest/testdata/output/TestRefreshBasics).
- `stack ls --json` (pkg/cmd/pulumi/stack/stack_list.go): a list, sorted by name, of `name`
  (just the stack name in the current project; `organization/<project>/<stack>` otherwise),
  `current`, `lastUpdate` (the checkpoint's manifest time, "2006-01-02T15:04:05.000Z07:00"),
  `resourceCount`; `updateInProgress` and `url` never on DIY (SupportsProgress() is false: a
  lock does not show). The tag filter flag is `--tag`/`-t` (name or name=value).
- `stack tag ls --json`: the tag map, indented with 2 spaces. DIY stores tags in
  `.pulumi/stacks/<project>/<stack>.pulumi-tags` as {"version":1,"tags":{...}}; the file is
  removed with the last tag (pkg/backend/diy/stack_tags.go). DIY never adds `pulumi:project`:
  `updateStackTagsFromMetadata` exists but nothing calls it; only Pulumi Cloud merges the
  environment tags (pkg/backend/stack.go `GetMergedStackTags`, pkg/backend/httpstate).
- Locks (pkg/backend/diy/lock.go): `.pulumi/locks/organization/<project>/<stack>/<uuid>.json`
  holding {pid, username, hostname, timestamp}. Taken by up, refresh and destroy (not with
  `--preview-only`), stack init and stack rm; NOT by preview (pkg/backend/diy/backend.go
  `Preview`). The error: "the stack is currently locked by N lock(s). Either wait for the other
  process(es) to end or delete the lock file with `pulumi cancel`." then one line per lock
  "  <url of the lock file>: created by user@host (pid N) at <time>". `cancel --yes` deletes
  every lock file of the stack (`CancelCurrentUpdate`) and prints "The currently running update
  for '<stack>' has been canceled!"; it leaves the checkpoint's pending operations alone.
- Signals (pkg/backend/cancellation_scope.go): SIGINT and SIGTERM alike. The first prints "^C
  received; cancelling. If you would like to terminate immediately, press ^C again." (SIGTERM:
  "SIGTERM received; cancelling. ... send SIGTERM again.") plus, for a non-preview, "Note that
  terminating immediately may lead to orphaned resources and other inconsistencies."; the engine
  lets the operations in flight finish, reports "update canceled" and returns a bail error
  (exit code 1, nothing on stderr); the deferred Unlock releases the lock. A second signal
  terminates: the operations in flight are abandoned (their pending operations stay).
- Exit codes (pkg/cmd/pulumi/cmd/exit_codes.go, since v3.227): 1 generic error (errors print
  "error: <message>" on stderr), 2 missing --yes in non-interactive mode, 6 no such stack
  ("no stack named 'X' found", backenderr.StackNotFoundError; preview/up never create a stack
  when not interactive: pkg/cmd/pulumi/stack/io.go `RequireStack`). Never 255 for these.
- `stack init` prints "Created stack '<stack>'", writes `encryptionsalt` into
  Pulumi.<stack>.yaml (passphrase secrets provider) and selects the stack; an existing one:
  "stack 'organization/<project>/<stack>' already exists". `stack select --create` creates a
  missing stack. `stack rm --yes` refuses a stack with resources (more than the root stack)
  without `--force`: "'<stack>' still has resources; removal rejected. ..." (without `--yes`:
  "non-interactive mode requires --yes flag"; `cancel` needs no --yes); it removes the
  tags file and Pulumi.<stack>.yaml of the current directory, prints "Stack '<stack>' has been
  removed!". A passphrase is required by every command that creates or runs a stack:
  "passphrase must be set with PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE
  environment variables" (pkg/secrets/passphrase/manager.go).
Not modelled: update history and backups (`.pulumi/history`, `.pulumi/backups`), secrets in
config (a `secure:` value shows as "[secret]"), resource replacement, targets.

The model
---------
State lives under the backend directory D (PULUMI_BACKEND_URL=file://D) as the DIY backend lays
it out: `.pulumi/meta.yaml`, `.pulumi/stacks/<project>/<stack>.json` (a version 3 checkpoint),
`.pulumi/stacks/<project>/<stack>.pulumi-tags`, `.pulumi/locks/organization/<project>/<stack>/`.
What really exists in each stack's account ("the cloud") is kept apart, in `D/cloud/<stack>.json`
({urn: {id, type, properties}}), so that it can drift from the state. Each stack selection of a
workspace is kept in `D/.fake-pulumi/workspaces/`. Every change of state, cloud or locks happens
under an exclusive flock of `D/.fake-pulumi/mutex`, and each file is written whole (temporary
file, then os.replace): parallel processes never see a half-written file.

The program declares the root stack `pulumi:pulumi:Stack::ecr-ptc-<stack>` and N custom
resources (default 5: a role, its policy, a pull through cache rule, a repository creation
template, a consumer policy; more are numbered) with realistic URNs; the default aws provider is
in the state but, as in Pulumi, neither shown nor counted. A resource's properties are its
inputs plus `arn`. `up` makes the cloud and the state match the program; `up --refresh` first
reads the cloud into the state, so drift is seen and repaired (as `update` steps, deleted
resources as `create`); a plain `up` compares the program with the state only and leaves drift
alone. `refresh` reads the cloud into the state; `--preview-only` writes nothing.

`up` (and `destroy`) take the lock, write a pending operation into the checkpoint for the first
resource operation, sleep (the scenario's `sleep`: that operation in flight), then apply every
step, clear the pending operations and release the lock. SIGINT/SIGTERM while it sleeps: the
in-flight operation completes, the rest is skipped, the cancellation messages are printed, the
lock is released, exit code 1. A second SIGINT/SIGTERM: the pending operation stays, the lock is
released, exit code 1. SIGKILL: the lock and the pending operation stay; the next up, refresh,
destroy or stack rm fails with the lock error until `cancel --yes` (a preview takes no lock and
still runs).

Scenario: FAKE_PULUMI_SCENARIO (a JSON file, optional)
-----------------------------------------------------
{"<stack>" or "*": {
    "fail": ["preview", "up", "refresh", "destroy", "cancel", "policy"],
        # the commands that fail: the program raises `message` (an error diagnostic, exit 1);
        # "cancel" fails `pulumi cancel`; "policy" is a mandatory policy violation of every
        # preview/up run with --policy-pack
    "message": "text",            # the error text (default: a Python traceback's last line)
    "sleep": 1.5,                 # seconds the operation takes, or {"up": 2, "preview": 0.5}
    "resources": 5,               # custom resources the program declares
    "revision": 1,                # a program change: another value updates every resource
    "exitAfterLock": true,        # up/refresh/destroy: SIGKILL itself once it holds the lock
                                  # (and, for up/destroy, wrote its pending operation)
    "outputs": {"name": value}    # the stack outputs `up` writes
}}
A stack's own entry overrides the "*" entry key by key.

Other environment: FAKE_PULUMI_LOG (append one JSON line per invocation: argv, cwd, pid,
PULUMI_BACKEND_URL, the names of the AWS_* and PULUMI_* variables set).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

VERSION = "v3.272.0"
ORGANIZATION = "organization"
PROVIDER_VERSION = "7_51_1"

EXIT_ERROR = 1
EXIT_CONFIGURATION = 2
EXIT_STACK_NOT_FOUND = 6

FAIL_KINDS = ("preview", "up", "refresh", "destroy", "cancel", "policy")
SCENARIO_KEYS = ("fail", "message", "sleep", "resources", "revision", "exitAfterLock", "outputs")
DEFAULT_MESSAGE = "Exception: the program failed"
DEFAULT_RESOURCES = 5

LOCK_TEXT = (
    "the stack is currently locked by {n} lock(s). Either wait for the other process(es) to end "
    "or delete the lock file with `pulumi cancel`."
)
PASSPHRASE_TEXT = (
    "passphrase must be set with PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE "
    "environment variables"
)
NO_CONFIRMATION_TEXT = (
    "--yes or --skip-preview or --preview-only must be passed in to proceed when running in "
    "non-interactive mode"
)
CANCEL_NOTE = (
    "Note that terminating immediately may lead to orphaned resources and other inconsistencies.\n"
)

# The resources the program declares: (type, name), numbered beyond the first five.
RESOURCE_KINDS = (
    ("aws:iam/role:Role", "cache-role"),
    ("aws:iam/rolePolicy:RolePolicy", "cache-role-policy"),
    ("aws:ecr/pullThroughCacheRule:PullThroughCacheRule", "golden"),
    ("aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate", "golden"),
    ("aws:iam/policy:Policy", "consumer-policy"),
)

Json = dict[str, Any]


class CliError(Exception):
    """A failed command: `error: <message>` on stderr, exit code `code`."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class Bail(Exception):
    """A failed command whose message is already in its output: exit code 1, no more text."""


# --- files ---------------------------------------------------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def minified(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def stack_ls_time(manifest_time: str) -> str:
    """A manifest time as `stack ls` prints it: milliseconds, UTC."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", manifest_time)
    if not match:
        return manifest_time
    return f"{match.group(1)}.{(match.group(2) or '0')[:3].ljust(3, '0')}Z"


def log_invocation(argv: Sequence[str]) -> None:
    path = os.environ.get("FAKE_PULUMI_LOG")
    if not path:
        return
    entry = {
        "argv": list(argv),
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "time": time.time(),
        "PULUMI_BACKEND_URL": os.environ.get("PULUMI_BACKEND_URL"),
        "aws": sorted(k for k in os.environ if k.startswith("AWS_")),
        "pulumi": sorted(k for k in os.environ if k.startswith("PULUMI_")),
    }
    data = (minified(entry) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


# --- the project and its stack files ------------------------------------------------------------


def find_project_file(start: Path) -> Path:
    for directory in (start, *start.parents):
        for name in ("Pulumi.yaml", "Pulumi.yml"):
            if (directory / name).is_file():
                return directory / name
    raise CliError(
        f"no Pulumi.yaml project file found (searching upwards from {start}). If you have not "
        "created a project yet, use `pulumi new` to do so: no project file found"
    )


def scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return re.sub(r"\s+#.*$", "", text)


def project_settings(project_file: Path) -> tuple[str, str | None]:
    """(name, backend url or None) of a Pulumi.yaml, read line by line (or as JSON, which is
    YAML too: a generated project file may be written so)."""
    name = ""
    backend: str | None = None
    in_backend = False
    text = project_file.read_text(encoding="utf-8")
    document = _json_yaml(text)
    if document is not None:
        name = str(document.get("name") or "")
        url = (document.get("backend") or {}).get("url")
        if not name:
            raise CliError(f"project is missing a 'name' attribute ({project_file})")
        return name, None if url is None else str(url)
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            key, _, value = line.partition(":")
            in_backend = key.strip() == "backend"
            if key.strip() == "name":
                name = scalar(value)
        elif in_backend and line.strip().startswith("url:"):
            backend = scalar(line.strip()[4:])
    if not name:
        raise CliError(f"project is missing a 'name' attribute ({project_file})")
    return name, backend


CONFIG_KEY = re.compile(r"""^("[^"]+"|'[^']+'|\S+?):(?:\s+(.*))?$""")


def _json_yaml(text: str) -> dict[str, Any] | None:
    """A YAML file written in YAML's JSON form, read; None for any other YAML."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def stack_config(path: Path) -> dict[str, str]:
    """The `config:` of a stack file as the digest shows it: key -> string. A value written on
    the following lines is given as its YAML text; `secure:` values as "[secret]"."""
    if not path.is_file():
        return {}
    document = _json_yaml(path.read_text(encoding="utf-8"))
    if document is not None:
        values = document.get("config") or {}
        return {
            str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
            for k, v in values.items()
        }
    config: dict[str, str] = {}
    in_config = False
    indent: int | None = None
    key: str | None = None
    block: list[str] = []

    def flush() -> None:
        if key is not None and block:
            lines = [ln for ln in block if ln.strip()]
            cut = min(len(ln) - len(ln.lstrip(" ")) for ln in lines) if lines else 0
            text = "\n".join(ln[cut:] for ln in block).strip()
            config[key] = "[secret]" if text.startswith("secure:") else text

    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        depth = len(line) - len(line.lstrip(" "))
        if depth == 0:
            flush()
            key, block = None, []
            in_config = line.split("#")[0].strip() == "config:"
            continue
        if not in_config:
            continue
        if indent is None:
            indent = depth
        match = CONFIG_KEY.match(line.strip()) if depth == indent else None
        if match:
            flush()
            key, block = scalar(match.group(1)), []
            value = match.group(2)
            if value and value.strip():
                config[key] = scalar(value)
                key = None
        elif key is not None:
            block.append(line)
    flush()
    return dict(sorted(config.items()))


# --- resources ------------------------------------------------------------------------------


def stack_urn(stack: str, project: str) -> str:
    return f"urn:pulumi:{stack}::{project}::pulumi:pulumi:Stack::{project}-{stack}"


def provider_urn(stack: str, project: str) -> str:
    return f"urn:pulumi:{stack}::{project}::pulumi:providers:aws::default_{PROVIDER_VERSION}"


def provider_ref(stack: str, project: str) -> str:
    return f"{provider_urn(stack, project)}::00000000-0000-4000-8000-{stack_hash(stack)}"


def stack_hash(stack: str) -> str:
    value = 0
    for ch in stack:
        value = (value * 131 + ord(ch)) % (1 << 48)
    return f"{value:012x}"


def resource_urn(stack: str, project: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{project}::{type_}::{name}"


def declared(stack: str, project: str, count: int, revision: int) -> list[Json]:
    """The custom resources the program declares, each {urn, type, name, inputs}."""
    out = []
    for i in range(count):
        type_, name = RESOURCE_KINDS[i % len(RESOURCE_KINDS)]
        if i >= len(RESOURCE_KINDS):
            name = f"{name}-{i // len(RESOURCE_KINDS) + 1}"
        inputs: Json = {
            "name": f"ecr-ptc-{name}",
            "description": f"ecr-ptc {name} of {stack}, revision {revision}",
        }
        urn = resource_urn(stack, project, type_, name)
        out.append({"urn": urn, "type": type_, "name": name, "inputs": inputs})
    return out


def resource_id(stack: str, name: str) -> str:
    return f"{name}-{stack_hash(stack)[-8:]}"


def properties(stack: str, resource: Json) -> Json:
    """What the provider reads back for a declared resource: its inputs plus its ARN."""
    return {**resource["inputs"], "arn": f"arn:aws:fake:::{resource_id(stack, resource['name'])}"}


def state_resource(stack: str, project: str, resource: Json, props: Json, created: str) -> Json:
    return {
        "urn": resource["urn"],
        "custom": True,
        "id": resource_id(stack, resource["name"]),
        "type": resource["type"],
        "inputs": {k: v for k, v in props.items() if k != "arn"},
        "outputs": dict(props),
        "parent": stack_urn(stack, project),
        "provider": provider_ref(stack, project),
        "created": created,
        "modified": now_rfc3339(),
    }


def root_resource(stack: str, project: str, outputs: Json) -> Json:
    res: Json = {"urn": stack_urn(stack, project), "custom": False, "type": "pulumi:pulumi:Stack"}
    if outputs:
        res["outputs"] = outputs
    return res


def provider_resource(stack: str, project: str) -> Json:
    ref = provider_ref(stack, project)
    inputs = {"region": "eu-west-1", "version": PROVIDER_VERSION.replace("_", ".")}
    return {
        "urn": provider_urn(stack, project),
        "custom": True,
        "id": ref.rsplit("::", 1)[1],
        "type": "pulumi:providers:aws",
        "inputs": inputs,
        "outputs": inputs,
    }


def is_user_resource(res: Mapping[str, Any]) -> bool:
    return bool(res.get("custom")) and not str(res.get("type", "")).startswith("pulumi:providers:")


def diff_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


# --- the backend --------------------------------------------------------------------------------


class Backend:
    """The DIY backend's files under `root`, and the cloud beside them."""

    def __init__(self, root: Path, project: str) -> None:
        self.root = root
        self.project = project
        self.lock_id = f"{os.urandom(4).hex()}-{os.urandom(2).hex()}-4{os.urandom(2).hex()[1:]}"
        self.lock_id += f"-a{os.urandom(2).hex()[1:]}-{os.urandom(6).hex()}"

    # paths
    def stacks_dir(self, project: str | None = None) -> Path:
        return self.root / ".pulumi" / "stacks" / (project or self.project)

    def checkpoint_path(self, stack: str, project: str | None = None) -> Path:
        return self.stacks_dir(project) / f"{stack}.json"

    def tags_path(self, stack: str, project: str | None = None) -> Path:
        return self.stacks_dir(project) / f"{stack}.pulumi-tags"

    def lock_dir(self, stack: str) -> Path:
        return self.root / ".pulumi" / "locks" / ORGANIZATION / self.project / stack

    def own_lock(self, stack: str) -> Path:
        return self.lock_dir(stack) / f"{self.lock_id}.json"

    def cloud_path(self, stack: str) -> Path:
        return self.root / "cloud" / f"{stack}.json"

    def workspace_path(self, project_file: Path) -> Path:
        return self.root / ".fake-pulumi" / "workspaces" / f"{stack_hash(str(project_file))}.json"

    def fqn(self, stack: str) -> str:
        return f"{ORGANIZATION}/{self.project}/{stack}"

    @contextlib.contextmanager
    def mutex(self) -> Iterator[None]:
        path = self.root / ".fake-pulumi" / "mutex"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # stacks
    def exists(self, stack: str) -> bool:
        return self.checkpoint_path(stack).is_file()

    def checkpoint(self, stack: str) -> Json:
        data = read_json(self.checkpoint_path(stack))
        if not isinstance(data, dict):
            raise CliError(f"no stack named '{stack}' found", EXIT_STACK_NOT_FOUND)
        return data

    def deployment(self, stack: str) -> Json:
        latest = self.checkpoint(stack)["checkpoint"].get("latest")
        return latest if isinstance(latest, dict) else {}

    def write_deployment(self, stack: str, deployment: Json) -> None:
        deployment["manifest"] = {**deployment.get("manifest", {}), "time": now_rfc3339()}
        checkpoint = {"stack": self.fqn(stack), "latest": deployment}
        write_atomic(
            self.checkpoint_path(stack), minified({"version": 3, "checkpoint": checkpoint})
        )

    def create(self, stack: str, salt: str) -> None:
        meta = self.root / ".pulumi" / "meta.yaml"
        if not meta.exists():
            write_atomic(meta, "version: 1\n")
        manifest = {"time": now_rfc3339(), "magic": os.urandom(32).hex(), "version": VERSION}
        deployment = {
            "manifest": manifest,
            "secrets_providers": {"type": "passphrase", "state": {"salt": salt}},
        }
        write_atomic(
            self.checkpoint_path(stack),
            minified(
                {"version": 3, "checkpoint": {"stack": self.fqn(stack), "latest": deployment}}
            ),
        )

    def remove(self, stack: str) -> None:
        for path in (self.checkpoint_path(stack), self.tags_path(stack)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def list_refs(self, all_projects: bool) -> list[tuple[str, str]]:
        """(project, stack) of every stack, or of this project's."""
        base = self.root / ".pulumi" / "stacks"
        projects = (
            sorted(p.name for p in base.iterdir() if p.is_dir())
            if all_projects and base.is_dir()
            else [self.project]
        )
        refs = []
        for project in projects:
            directory = base / project
            if directory.is_dir():
                refs += [(project, p.stem) for p in sorted(directory.glob("*.json"))]
        return refs

    # tags
    def tags(self, stack: str, project: str | None = None) -> dict[str, str]:
        data = read_json(self.tags_path(stack, project))
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in (data.get("tags") or {}).items()}

    def write_tags(self, stack: str, tags: Mapping[str, str]) -> None:
        if not tags:
            with contextlib.suppress(FileNotFoundError):
                self.tags_path(stack).unlink()
            return
        write_atomic(self.tags_path(stack), minified({"version": 1, "tags": dict(tags)}))

    # locks
    def locks(self, stack: str) -> list[Path]:
        directory = self.lock_dir(stack)
        return (
            sorted(p for p in directory.glob("*.json") if p.is_file()) if directory.is_dir() else []
        )

    def lock(self, stack: str) -> None:
        """Take the stack's lock (call under the mutex), or fail as the DIY backend does."""
        others = [p for p in self.locks(stack) if p != self.own_lock(stack)]
        if others:
            lines = [LOCK_TEXT.format(n=len(others))]
            for path in others:
                info = read_json(path) or {}
                lines.append(
                    f"  file://{path}: created by {info.get('username')}@{info.get('hostname')} "
                    f"(pid {info.get('pid')}) at {info.get('timestamp')}"
                )
            raise CliError("\n".join(lines))
        content = {
            "pid": os.getpid(),
            "username": os.environ.get("USER") or os.environ.get("LOGNAME") or "user",
            "hostname": os.uname().nodename,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_atomic(self.own_lock(stack), minified(content))

    def unlock(self, stack: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.own_lock(stack).unlink()

    # the cloud
    def cloud(self, stack: str) -> dict[str, Json]:
        data = read_json(self.cloud_path(stack))
        return data if isinstance(data, dict) else {}

    def write_cloud(self, stack: str, cloud: Mapping[str, Json]) -> None:
        write_atomic(self.cloud_path(stack), json.dumps(cloud, indent=2, sort_keys=True))

    # workspace selection
    def select(self, project_file: Path, stack: str) -> None:
        write_atomic(self.workspace_path(project_file), minified({"stack": self.fqn(stack)}))

    def selected(self, project_file: Path) -> str | None:
        data = read_json(self.workspace_path(project_file))
        return str(data["stack"]) if isinstance(data, dict) and data.get("stack") else None


# --- arguments ----------------------------------------------------------------------------------

BOOL, VALUE, LIST = "bool", "value", "list"
GLOBAL_FLAGS = {
    "--non-interactive": BOOL,
    "--color": VALUE,
    "--cwd": VALUE,
    "-C": VALUE,
    "--emoji": BOOL,
    "--disable-integrity-checking": BOOL,
    "--logtostderr": BOOL,
}
STACK_FLAG = {"--stack": VALUE, "-s": VALUE}
JSON_FLAGS = {"--json": BOOL, "-j": BOOL, "--output": VALUE}
DISPLAY_FLAGS = {
    "--diff": BOOL,
    "--suppress-outputs": BOOL,
    "--suppress-progress": BOOL,
    "--show-sames": BOOL,
    "--parallel": VALUE,
    "-p": VALUE,
    "--message": VALUE,
    "-m": VALUE,
}
YES_FLAGS = {"--yes": BOOL, "-y": BOOL, "--skip-preview": BOOL, "-f": BOOL}
POLICY_FLAGS = {"--policy-pack": LIST, "--policy-pack-config": LIST}
VALUE_FLAGS = {
    "--color",
    "--cwd",
    "-C",
    "--stack",
    "-s",
    "--output",
    "--parallel",
    "-p",
    "--message",
    "-m",
    "--policy-pack",
    "--policy-pack-config",
    "--tag",
    "-t",
    "--project",
    "--organization",
    "--secrets-provider",
}
SHORT = {
    "-s": "--stack",
    "-j": "--json",
    "-y": "--yes",
    "-a": "--all",
    "-t": "--tag",
    "-c": "--create",
    "-r": "--refresh",
    "-p": "--parallel",
    "-m": "--message",
    "-C": "--cwd",
}


class Args:
    def __init__(self, words: list[str], flags: dict[str, Any]) -> None:
        self.words = words
        self.flags = flags

    def flag(self, name: str) -> bool:
        value = self.flags.get(name, False)
        return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))

    def value(self, name: str) -> str | None:
        value = self.flags.get(name)
        return value if isinstance(value, str) else None

    def values(self, name: str) -> list[str]:
        value = self.flags.get(name)
        return list(value) if isinstance(value, list) else []

    @property
    def json(self) -> bool:
        return self.flag("--json") or self.value("--output") == "json"


def parse(tokens: Sequence[str], spec: Mapping[str, str]) -> Args:
    """pflag-like parsing: flags anywhere, `--flag=value`, bool flags never take the next word."""
    allowed = {**GLOBAL_FLAGS, **spec}
    words: list[str] = []
    flags: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            words += tokens[i:]
            break
        if not token.startswith("-") or token == "-":
            words.append(token)
            continue
        name, eq, inline = token.partition("=")
        kind = allowed.get(name)
        if kind is None:
            if name.startswith("--"):
                raise CliError(f"unknown flag: {name}")
            raise CliError(f"unknown shorthand flag: '{name[1:2]}' in {token}")
        canonical = SHORT.get(name, name)
        if kind == BOOL:
            flags[canonical] = inline if eq else True
            continue
        if eq:
            value = inline
        elif i < len(tokens):
            value = tokens[i]
            i += 1
        else:
            raise CliError(f"flag needs an argument: {name}")
        if kind == LIST:
            flags.setdefault(canonical, []).append(value)
        else:
            flags[canonical] = value
    return Args(words, flags)


# --- the scenario -------------------------------------------------------------------------------


def scenario(stack: str) -> Json:
    path = os.environ.get("FAKE_PULUMI_SCENARIO")
    data = read_json(Path(path)) if path else None
    if not isinstance(data, dict):
        return {}
    merged: Json = {**(data.get("*") or {}), **(data.get(stack) or {})}
    unknown = sorted(set(merged) - set(SCENARIO_KEYS))
    bad_fail = sorted(set(merged.get("fail") or ()) - set(FAIL_KINDS))
    if unknown or bad_fail:
        raise CliError(f"FAKE_PULUMI_SCENARIO: unknown keys {unknown} or fail kinds {bad_fail}")
    return merged


def sleep_for(behaviour: Mapping[str, Any], command: str) -> float:
    sleep = behaviour.get("sleep", 0)
    if isinstance(sleep, dict):
        sleep = sleep.get(command, 0)
    return float(sleep or 0)


# --- output -------------------------------------------------------------------------------------


def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


class Events:
    """Engine events: a JSON line each (`--json`), or a few lines of text."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.sequence = 0
        self.started = time.time()

    def emit(self, kind: str, payload: Json) -> None:
        if self.json_mode:
            event = {"sequence": self.sequence, "timestamp": int(time.time()), kind: payload}
            out(minified(event) + "\n")
        elif kind == "diagnosticEvent":
            out(f"    {payload.get('prefix', '')}{payload['message']}")
        elif kind == "stdoutEvent":
            out(payload["message"])
        elif kind == "policyEvent":
            out(f"    mandatory: [{payload['policyName']}] {payload['message']}")
        elif kind == "resOutputsEvent" and payload["metadata"]["op"] != "same":
            meta = payload["metadata"]
            out(f"    {meta['op']} {meta['type']} {meta['urn'].rsplit('::', 1)[-1]}\n")
        elif kind == "summaryEvent":
            out("Resources:\n")
            for op, n in sorted(payload["resourceChanges"].items()):
                out(f"    {n} {op}\n")
            out(f"\nDuration: {payload['durationSeconds']}s\n")
        self.sequence += 1


def state_meta(res: Json | None) -> Json | None:
    if res is None:
        return None
    meta: Json = {"type": res["type"], "urn": res["urn"]}
    if res.get("custom"):
        meta["custom"] = True
    meta.update(
        id=res.get("id", ""),
        parent=res.get("parent", ""),
        inputs=res.get("inputs", {}),
        outputs=res.get("outputs", {}),
        provider=res.get("provider", ""),
    )
    return meta


def step(op: str, old: Json | None, new: Json | None, keys: Sequence[str] = ()) -> Json:
    res = new or old or {}
    return {
        "op": op,
        "urn": res["urn"],
        "type": res["type"],
        "old": old,
        "new": new,
        "keys": list(keys),
        "provider": res.get("provider", ""),
    }


def metadata(s: Json) -> Json:
    meta: Json = {"op": s["op"], "urn": s["urn"], "type": s["type"]}
    meta["old"] = state_meta(s["old"])
    meta["new"] = state_meta(s["new"])
    if s["keys"]:
        meta["diffs"] = s["keys"]
    meta["detailedDiff"] = (
        {k: {"diffKind": "update", "inputDiff": False} for k in s["keys"]} if s["keys"] else None
    )
    meta["logical"] = True
    meta["provider"] = s["provider"]
    return meta


def digest_step(s: Json) -> Json:
    entry: Json = {"op": s["op"], "urn": s["urn"]}
    if s["provider"]:
        entry["provider"] = s["provider"]
    if s["old"] is not None:
        entry["oldState"] = s["old"]
    if s["new"] is not None:
        new = s["new"]
        if s["op"] == "create":  # not created yet: no ID, no timestamps
            new = {k: v for k, v in new.items() if k not in ("id", "created", "modified")}
        entry["newState"] = new
    if s["keys"]:
        entry["diffReasons"] = s["keys"]
    entry["detailedDiff"] = (
        {k: {"kind": "update", "inputDiff": False} for k in s["keys"]} if s["keys"] else None
    )
    return entry


def count(steps: Sequence[Json]) -> dict[str, int]:
    changes: dict[str, int] = {}
    for s in steps:
        changes[s["op"]] = changes.get(s["op"], 0) + 1
    return dict(sorted(changes.items()))


def print_digest(
    config: Mapping[str, str],
    steps: Sequence[Json],
    diagnostics: Sequence[Json],
    started: float,
    changes: Mapping[str, int],
) -> None:
    document: Json = {}
    if config:
        document["config"] = dict(config)
    if steps:
        document["steps"] = [digest_step(s) for s in steps]
    if diagnostics:
        document["diagnostics"] = list(diagnostics)
    document["duration"] = int((time.time() - started) * 1e9)
    if changes:
        document["changeSummary"] = dict(changes)
    out(json.dumps(document, indent=4, ensure_ascii=False) + "\n")


# --- signals ------------------------------------------------------------------------------------


class Interrupts:
    """SIGINT and SIGTERM as the CLI's cancellation scope takes them: the first cancels, the
    second terminates at once (the lock stays, as when the real CLI is terminated)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.on_terminate: Callable[[], None] | None = None
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is not None:
            # Terminated: the operation in flight is abandoned (its pending operation stays in
            # the checkpoint), the deferred unlock still runs.
            name = "^C" if signum == signal.SIGINT else "SIGTERM"
            out(f"{name} received; terminating\n")
            if self.on_terminate is not None:
                self.on_terminate()
            os._exit(EXIT_ERROR)
        self.signum = signum

    def sleep(self, seconds: float) -> bool:
        """Sleep; True when interrupted."""
        deadline = time.monotonic() + seconds
        while self.signum is None and time.monotonic() < deadline:
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
        return self.signum is not None

    def message(self, preview: bool) -> str:
        if self.signum == signal.SIGTERM:
            text = (
                "SIGTERM received; cancelling. If you would like to terminate immediately, "
                "send SIGTERM again.\n"
            )
        else:
            text = (
                "^C received; cancelling. If you would like to terminate immediately, press ^C "
                "again.\n"
            )
        return text if preview else text + CANCEL_NOTE


# --- the CLI --------------------------------------------------------------------------------------


class Cli:
    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.cwd = Path.cwd()
        self._project_file: Path | None = None
        self._backend: Backend | None = None

    # context
    @property
    def project_file(self) -> Path:
        if self._project_file is None:
            self._project_file = find_project_file(self.cwd)
        return self._project_file

    @property
    def project(self) -> str:
        return project_settings(self.project_file)[0]

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            url = os.environ.get("PULUMI_BACKEND_URL") or project_settings(self.project_file)[1]
            if not url:
                raise CliError(
                    "PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions"
                )
            if not url.startswith("file://"):
                raise CliError(f"this Pulumi CLI knows only file:// backends, not {url}")
            path = Path(os.path.expanduser(url[len("file://") :] or "/"))
            self._backend = Backend(path if path.is_absolute() else self.cwd / path, self.project)
        return self._backend

    def stack_name(self, args: Args, positional: bool = False) -> str:
        name = args.value("--stack")
        if positional and args.words:
            if name:
                raise CliError(
                    "only one of --stack or argument stack name may be specified, not both"
                )
            name = args.words[0]
        if not name:
            name = self.selected()
        if not name:
            raise CliError("no stack selected; specify a stack name with --stack", 6)
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == ORGANIZATION and parts[1] == self.project:
            return parts[2]
        if len(parts) != 1 or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise CliError(
                f"a stack name may only contain alphanumeric, hyphens, underscores, or periods: "
                f"{name}"
            )
        return name

    def selected(self) -> str | None:
        fqn = self.backend.selected(self.project_file)
        return fqn.rsplit("/", 1)[-1] if fqn else None

    def require_stack(self, stack: str) -> None:
        if not self.backend.exists(stack):
            raise CliError(f"no stack named '{stack}' found", EXIT_STACK_NOT_FOUND)

    def require_passphrase(self) -> None:
        if (
            "PULUMI_CONFIG_PASSPHRASE" not in os.environ
            and "PULUMI_CONFIG_PASSPHRASE_FILE" not in os.environ
        ):
            raise CliError(PASSPHRASE_TEXT)

    def stack_file(self, stack: str) -> Path:
        return self.project_file.parent / f"Pulumi.{stack}.yaml"

    # dispatch
    def run(self) -> int:
        commands: dict[tuple[str, ...], tuple[Mapping[str, str], Callable[[Args], int]]] = {
            ("version",): ({}, self.version),
            ("stack", "ls"): (
                {**JSON_FLAGS, "--all": BOOL, "-a": BOOL, "--tag": VALUE, "-t": VALUE}
                | {"--project": VALUE, "--organization": VALUE},
                self.stack_ls,
            ),
            ("stack", "init"): (
                {**STACK_FLAG, "--secrets-provider": VALUE, "--no-select": BOOL},
                self.stack_init,
            ),
            ("stack", "select"): (
                {**STACK_FLAG, "--create": BOOL, "-c": BOOL, "--secrets-provider": VALUE},
                self.stack_select,
            ),
            ("stack", "rm"): (
                {**STACK_FLAG, "--yes": BOOL, "-y": BOOL, "--force": BOOL, "-f": BOOL}
                | {"--preserve-config": BOOL, "--remove-backups": BOOL},
                self.stack_rm,
            ),
            ("stack", "output"): (
                {**STACK_FLAG, **JSON_FLAGS, "--show-secrets": BOOL},
                self.stack_output,
            ),
            ("stack", "tag", "ls"): ({**STACK_FLAG, **JSON_FLAGS}, self.tag_ls),
            ("stack", "tag", "get"): (STACK_FLAG, self.tag_get),
            ("stack", "tag", "set"): (STACK_FLAG, self.tag_set),
            ("stack", "tag", "rm"): (STACK_FLAG, self.tag_rm),
            ("preview",): (
                {**STACK_FLAG, **JSON_FLAGS, **DISPLAY_FLAGS, **POLICY_FLAGS}
                | {"--refresh": BOOL, "-r": BOOL, "--expect-no-changes": BOOL},
                self.preview,
            ),
            ("up",): (
                {**STACK_FLAG, **JSON_FLAGS, **DISPLAY_FLAGS, **POLICY_FLAGS, **YES_FLAGS}
                | {"--refresh": BOOL, "-r": BOOL, "--expect-no-changes": BOOL}
                | {"--continue-on-error": BOOL},
                self.up,
            ),
            ("refresh",): (
                {**STACK_FLAG, **JSON_FLAGS, **DISPLAY_FLAGS, **YES_FLAGS}
                | {"--preview-only": BOOL, "--expect-no-changes": BOOL}
                | {"--clear-pending-creates": BOOL, "--skip-pending-creates": BOOL},
                self.refresh,
            ),
            ("destroy",): (
                {**STACK_FLAG, **JSON_FLAGS, **DISPLAY_FLAGS, **YES_FLAGS}
                | {"--preview-only": BOOL, "--remove": BOOL, "--continue-on-error": BOOL},
                self.destroy,
            ),
            ("cancel",): ({**STACK_FLAG, "--yes": BOOL, "-y": BOOL}, self.cancel),
        }
        aliases = {"list": "ls", "remove": "rm", "delete": "rm", "update": "up"}
        # The words that are not flags nor flag values, then the longest command among them.
        words: list[tuple[int, str]] = []
        i = 0
        while i < len(self.argv):
            token = self.argv[i]
            if token.startswith("-"):
                if token.partition("=")[0] in VALUE_FLAGS and "=" not in token:
                    i += 1
            else:
                words.append((i, aliases.get(token, token)))
            i += 1
        key: tuple[str, ...] = ()
        for n in range(min(3, len(words)), 0, -1):
            if tuple(w for _, w in words[:n]) in commands:
                key = tuple(w for _, w in words[:n])
                break
        if not key:
            name = words[0][1] if words else ""
            raise CliError(f'unknown command "{name}" for "pulumi"')
        spec, handler = commands[key]
        used = {index for index, _ in words[: len(key)]}
        rest = [token for index, token in enumerate(self.argv) if index not in used]
        args = parse(rest, spec)
        if args.value("--cwd"):
            self.cwd = (self.cwd / str(args.value("--cwd"))).resolve()
        return handler(args)

    # --- simple commands
    def version(self, args: Args) -> int:
        out(VERSION + "\n")
        return 0

    def stack_ls(self, args: Args) -> int:
        all_projects = args.flag("--all")
        tag_name, tag_value = None, None
        if args.value("--tag"):
            tag_name, _, value = str(args.value("--tag")).partition("=")
            tag_value = value if "=" in str(args.value("--tag")) else None
        current = self.backend.selected(self.project_file)
        rows = []
        for project, stack in self.backend.list_refs(all_projects or bool(args.value("--project"))):
            if args.value("--project") and project != args.value("--project"):
                continue
            if tag_name is not None:
                tags = self.backend.tags(stack, project)
                if tag_name not in tags or (tag_value is not None and tags[tag_name] != tag_value):
                    continue
            data = read_json(self.backend.checkpoint_path(stack, project))
            if not isinstance(data, dict):
                continue
            fqn = f"{ORGANIZATION}/{project}/{stack}"
            row: Json = {
                "name": stack if project == self.project else fqn,
                "current": fqn == current,
            }
            latest = data.get("checkpoint", {}).get("latest")
            if isinstance(latest, dict):
                when = latest.get("manifest", {}).get("time")
                if when:
                    row["lastUpdate"] = stack_ls_time(when)
                row["resourceCount"] = len(latest.get("resources") or [])
            rows.append(row)
        rows.sort(key=lambda r: str(r["name"]))
        if args.json:
            out(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        else:
            out("NAME  LAST UPDATE  RESOURCE COUNT\n")
            for row in rows:
                star = "*" if row["current"] else ""
                out(f"{row['name']}{star}  {row.get('lastUpdate', 'n/a')}  ")
                out(f"{row.get('resourceCount', 'n/a')}\n")
        return 0

    def init_stack(self, stack: str) -> None:
        self.require_passphrase()
        backend = self.backend
        with backend.mutex():
            backend.lock(stack)
            try:
                if backend.exists(stack):
                    raise CliError(f"stack '{backend.fqn(stack)}' already exists")
                salt = f"v1:{os.urandom(12).hex()}"
                backend.create(stack, salt)
            finally:
                backend.unlock(stack)
        path = self.stack_file(stack)
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        document = _json_yaml(text)
        if document is not None:
            # The CLI writes the stack file back whole: here, in the form it was read.
            document.setdefault("encryptionsalt", salt)
            write_atomic(path, json.dumps(document, indent=2) + "\n")
        elif not re.search(r"(?m)^encryptionsalt:", text):
            if text and not text.endswith("\n"):
                text += "\n"
            write_atomic(path, text + f"encryptionsalt: {salt}\n")
        backend.select(self.project_file, stack)
        out(f"Created stack '{stack}'\n")

    def stack_init(self, args: Args) -> int:
        self.init_stack(self.stack_name(args, positional=True))
        return 0

    def stack_select(self, args: Args) -> int:
        stack = self.stack_name(args, positional=True)
        if self.backend.exists(stack):
            self.backend.select(self.project_file, stack)
        elif args.flag("--create"):
            self.init_stack(stack)
        else:
            raise CliError(f"no stack named '{stack}' found", EXIT_STACK_NOT_FOUND)
        return 0

    def stack_rm(self, args: Args) -> int:
        stack = self.stack_name(args, positional=True)
        self.require_stack(stack)
        if not args.flag("--yes"):
            raise CliError("non-interactive mode requires --yes flag")
        backend = self.backend
        with backend.mutex():
            backend.lock(stack)
            try:
                resources = backend.deployment(stack).get("resources") or []
                only_root = (
                    len(resources) == 1 and resources[0].get("type") == "pulumi:pulumi:Stack"
                )
                if resources and not only_root and not args.flag("--force"):
                    raise CliError(
                        f"'{stack}' still has resources; removal rejected. Possible actions:\n"
                        f"- Make sure that '{stack}' is the stack that you want to destroy\n"
                        "- Run `pulumi destroy` to delete the resources, then run `pulumi stack rm`\n"
                        "- Run `pulumi stack rm --force` to override this error"
                    )
                backend.remove(stack)
            finally:
                backend.unlock(stack)
        if not args.flag("--preserve-config"):
            with contextlib.suppress(FileNotFoundError):
                self.stack_file(stack).unlink()
        out(f"Stack '{stack}' has been removed!\n")
        return 0

    def stack_output(self, args: Args) -> int:
        backend = self.backend
        parts = (args.value("--stack") or "").split("/")
        if len(parts) == 3 and parts[0] == ORGANIZATION and parts[1] != self.project:
            # Another project's stack (a stack reference): read where that project keeps it.
            backend, stack = Backend(backend.root, parts[1]), parts[2]
        else:
            stack = self.stack_name(args)
        if not backend.exists(stack):
            raise CliError(f"no stack named '{args.value('--stack')}' found", EXIT_STACK_NOT_FOUND)
        resources = backend.deployment(stack).get("resources") or []
        outputs: Json = {}
        for res in resources:
            if res.get("type") == "pulumi:pulumi:Stack":
                outputs = dict(res.get("outputs") or {})
        if args.json:
            out(json.dumps(outputs, indent=2, ensure_ascii=False) + "\n")
        else:
            out(f"Current stack outputs ({len(outputs)}):\n")
            for k, v in sorted(outputs.items()):
                out(f"    {k}  {v}\n")
        return 0

    def tag_ls(self, args: Args) -> int:
        stack = self.stack_name(args)
        self.require_stack(stack)
        tags = self.backend.tags(stack)
        if args.json:
            out(json.dumps(dict(sorted(tags.items())), indent=2, ensure_ascii=False) + "\n")
        else:
            for k, v in sorted(tags.items()):
                out(f"{k}  {v}\n")
        return 0

    def tag_get(self, args: Args) -> int:
        stack = self.stack_name(args)
        self.require_stack(stack)
        if len(args.words) != 1:
            raise CliError(f"accepts 1 arg(s), received {len(args.words)}")
        tags = self.backend.tags(stack)
        if args.words[0] not in tags:
            raise CliError(f"stack tag '{args.words[0]}' not found for stack '{stack}'")
        out(tags[args.words[0]] + "\n")
        return 0

    def tag_set(self, args: Args) -> int:
        stack = self.stack_name(args)
        self.require_stack(stack)
        if len(args.words) != 2:
            raise CliError(f"accepts 2 arg(s), received {len(args.words)}")
        with self.backend.mutex():
            tags = self.backend.tags(stack)
            tags[args.words[0]] = args.words[1]
            self.backend.write_tags(stack, tags)
        return 0

    def tag_rm(self, args: Args) -> int:
        stack = self.stack_name(args)
        self.require_stack(stack)
        if len(args.words) != 1:
            raise CliError(f"accepts 1 arg(s), received {len(args.words)}")
        with self.backend.mutex():
            tags = self.backend.tags(stack)
            tags.pop(args.words[0], None)
            self.backend.write_tags(stack, tags)
        return 0

    def cancel(self, args: Args) -> int:
        stack = self.stack_name(args, positional=True)
        self.require_stack(stack)
        behaviour = scenario(stack)
        if "cancel" in (behaviour.get("fail") or ()):
            raise CliError(str(behaviour.get("message") or DEFAULT_MESSAGE))
        with self.backend.mutex():
            for path in self.backend.locks(stack):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        out(f"The currently running update for '{stack}' has been canceled!\n")
        return 0

    # --- operations
    def operation(self, args: Args) -> tuple[str, Json, dict[str, str]]:
        """The stack, its scenario and its config, once the checks every operation makes pass."""
        stack = self.stack_name(args)
        self.require_stack(stack)
        self.require_passphrase()
        return stack, scenario(stack), stack_config(self.stack_file(stack))

    def program(self, stack: str, behaviour: Mapping[str, Any]) -> list[Json]:
        count_ = int(behaviour.get("resources", DEFAULT_RESOURCES))
        return declared(stack, self.project, count_, int(behaviour.get("revision", 1)))

    def refresh_steps(self, stack: str, resources: Sequence[Json]) -> list[Json]:
        """What a refresh finds: each custom resource `same`, `update` or `delete`."""
        cloud = self.backend.cloud(stack)
        steps = []
        for res in resources:
            if not is_user_resource(res):
                continue
            found = cloud.get(res["urn"])
            if found is None:
                steps.append(step("delete", res, None))
                continue
            props = found.get("properties") or {}
            keys = diff_keys(res.get("outputs") or {}, props)
            new = {
                **res,
                "outputs": dict(props),
                "inputs": {k: v for k, v in props.items() if k != "arn"},
            }
            steps.append(step("update" if keys else "same", res, new, keys))
        return steps

    def refreshed(self, resources: Sequence[Json], steps: Sequence[Json]) -> list[Json]:
        by_urn = {s["urn"]: s for s in steps}
        out_: list[Json] = []
        for res in resources:
            s = by_urn.get(res["urn"])
            if s is None:
                out_.append(res)
            elif s["new"] is not None:
                out_.append(s["new"])
        return out_

    def update_steps(
        self, stack: str, resources: Sequence[Json], program: Sequence[Json], outputs: Json
    ) -> list[Json]:
        """The steps that bring the state to the program: root stack first, deletes last."""
        by_urn = {r["urn"]: r for r in resources}
        root_old = by_urn.get(stack_urn(stack, self.project))
        root_new = root_resource(stack, self.project, outputs)
        root_keys = diff_keys((root_old or {}).get("outputs") or {}, outputs)
        steps = [
            step("create", None, root_new)
            if root_old is None
            else step("update", root_old, root_new, root_keys)
            if root_keys
            else step("same", root_old, root_old)
        ]
        wanted = set()
        for res in program:
            wanted.add(res["urn"])
            old = by_urn.get(res["urn"])
            props = properties(stack, res)
            created = (old or {}).get("created") or now_rfc3339()
            new = state_resource(stack, self.project, res, props, created)
            if old is None:
                steps.append(step("create", None, new))
                continue
            keys = diff_keys(old.get("inputs") or {}, new["inputs"])
            if keys:
                steps.append(step("update", old, new, keys))
            else:
                steps.append(step("same", old, old))
        for res in reversed(resources):
            if is_user_resource(res) and res["urn"] not in wanted:
                steps.append(step("delete", res, None))
        return steps

    def apply(self, stack: str, steps: Sequence[Json], resources: Sequence[Json]) -> list[Json]:
        """Carry out the steps in the cloud (call under the mutex); the state's new resources."""
        cloud = self.backend.cloud(stack)
        by_urn = {r["urn"]: r for r in resources}
        order = [r["urn"] for r in resources]
        for s in steps:
            if s["op"] == "delete":
                cloud.pop(s["urn"], None)
                by_urn.pop(s["urn"], None)
                continue
            new = s["new"]
            if s["op"] != "same" and new.get("custom"):
                cloud[new["urn"]] = {
                    "id": new["id"],
                    "type": new["type"],
                    "properties": dict(new["outputs"]),
                }
            if new["urn"] not in by_urn:
                order.append(new["urn"])
            by_urn[new["urn"]] = new
        self.backend.write_cloud(stack, cloud)
        return [by_urn[u] for u in order if u in by_urn]

    def with_provider(self, stack: str, resources: list[Json]) -> list[Json]:
        """The state's resources with the default provider after the root stack, if needed."""
        rest = [r for r in resources if r["urn"] != provider_urn(stack, self.project)]
        if not any(is_user_resource(r) for r in rest):
            return rest
        root = [r for r in rest if r["type"] == "pulumi:pulumi:Stack"]
        others = [r for r in rest if r["type"] != "pulumi:pulumi:Stack"]
        return [*root, provider_resource(stack, self.project), *others]

    def fail(
        self,
        events: Events | None,
        kind: str,
        stack: str,
        message: str,
        digest: tuple[dict[str, str], float] | None = None,
        policy: bool = False,
        packs: Sequence[str] = (),
    ) -> Bail:
        """A program error or a mandatory policy violation, as the CLI shows it."""
        diagnostics: list[Json] = []
        if not policy:
            diagnostics.append(
                {
                    "urn": stack_urn(stack, self.project),
                    "message": f"error: {message}\n",
                    "severity": "error",
                }
            )
        diagnostics.append({"message": f"error: {kind} failed\n", "severity": "error"})
        if digest is not None:
            print_digest(digest[0], [], diagnostics, digest[1], {})
            return Bail()
        assert events is not None
        if policy:
            for pack in packs:
                events.emit(
                    "policyEvent",
                    {
                        "resourceUrn": stack_urn(stack, self.project),
                        "message": f"{message}\n",
                        "color": "never",
                        "policyName": "guardrail",
                        "policyPackName": Path(pack).name,
                        "policyPackVersion": "",
                        "policyPackVersionTag": "",
                        "enforcementLevel": "mandatory",
                        "severity": "high",
                    },
                )
        for d in diagnostics:
            prefix = "error: "
            events.emit(
                "diagnosticEvent",
                {
                    **({"urn": d["urn"]} if "urn" in d else {}),
                    "prefix": prefix,
                    "message": d["message"][len(prefix) :],
                    "color": "never",
                    "severity": "error",
                },
            )
        self.finish(events, [], "failed", kind == "preview")
        return Bail()

    def finish(
        self, events: Events, steps: Sequence[Json], result: str, preview: bool = False
    ) -> None:
        events.emit(
            "summaryEvent",
            {
                "maybeCorrupt": False,
                "durationSeconds": int(time.time() - events.started),
                "resourceChanges": count(steps),
                "PolicyPacks": {},
                "isPreview": preview,
                "result": result,
            },
        )
        events.emit("cancelEvent", {})

    def stream_steps(self, events: Events, steps: Sequence[Json], refresh: bool = False) -> None:
        for s in steps:
            pre = {**s, "op": "refresh"} if refresh else s
            events.emit("resourcePreEvent", {"metadata": metadata(pre)})
            events.emit("resOutputsEvent", {"metadata": metadata(s)})

    def preview(self, args: Args) -> int:
        started = time.time()
        stack, behaviour, config = self.operation(args)
        interrupts = Interrupts()
        streaming = os.environ.get("PULUMI_ENABLE_STREAMING_JSON_PREVIEW", "").lower() in (
            "1",
            "true",
        )
        if streaming and args.json:
            return self.run_update(args, stack, behaviour, config, interrupts, dry_run=True)
        interrupted = interrupts.sleep(sleep_for(behaviour, "preview"))
        fails = behaviour.get("fail") or ()
        message = str(behaviour.get("message") or DEFAULT_MESSAGE)
        if interrupted:
            diagnostics = [
                {"message": interrupts.message(preview=True), "severity": "info"},
                {"message": "error: preview canceled\n", "severity": "error"},
            ]
            if args.json:
                print_digest(config, [], diagnostics, started, {})
            else:
                out("".join(d["message"] for d in diagnostics))
            raise Bail()
        if "preview" in fails or ("policy" in fails and args.values("--policy-pack")):
            policy = "preview" not in fails
            if args.json:
                raise self.fail(None, "preview", stack, message, (config, started), policy)
            raise self.fail(
                Events(False),
                "preview",
                stack,
                message,
                policy=policy,
                packs=args.values("--policy-pack"),
            )
        steps, changes = self.preview_steps(stack, behaviour, args.flag("--refresh"))
        if args.json:
            print_digest(config, steps, [], started, changes)
        else:
            out(f"Previewing update ({stack}):\n")
            for s in steps:
                if s["op"] not in ("same", "refresh"):
                    out(f"    {s['op']} {s['type']} {s['urn'].rsplit('::', 1)[-1]}\n")
            out("Resources:\n")
            for op, n in changes.items():
                out(f"    {n} to {op}\n")
        return 0

    def preview_steps(
        self, stack: str, behaviour: Mapping[str, Any], refresh: bool
    ) -> tuple[list[Json], dict[str, int]]:
        """The digest's steps (refresh steps first, then every non-same step and the root
        stack) and its change summary (of the update steps)."""
        resources = list(self.backend.deployment(stack).get("resources") or [])
        shown: list[Json] = []
        if refresh:
            found = self.refresh_steps(stack, resources)
            shown += [s if s["op"] != "same" else {**s, "op": "refresh"} for s in found]
            resources = self.refreshed(resources, found)
        outputs = dict(behaviour.get("outputs") or {})
        steps = self.update_steps(stack, resources, self.program(stack, behaviour), outputs)
        shown += [s for s in steps if s["op"] != "same" or s["type"] == "pulumi:pulumi:Stack"]
        return shown, count(steps)

    def up(self, args: Args) -> int:
        if not (args.flag("--yes") or args.flag("--skip-preview")):
            raise CliError(NO_CONFIRMATION_TEXT, EXIT_CONFIGURATION)
        started = time.time()
        stack, behaviour, config = self.operation(args)
        interrupts = Interrupts()
        if not args.flag("--skip-preview"):
            self.preview_first(args, stack, behaviour, config, started)
        return self.run_update(args, stack, behaviour, config, interrupts, dry_run=False)

    def preview_first(
        self, args: Args, stack: str, behaviour: Json, config: dict[str, str], started: float
    ) -> None:
        """Without --skip-preview the CLI previews first: with --json, the preview's digest."""
        steps, changes = self.preview_steps(stack, behaviour, args.flag("--refresh"))
        if args.json:
            print_digest(config, steps, [], started, changes)

    def run_update(
        self,
        args: Args,
        stack: str,
        behaviour: Json,
        config: dict[str, str],
        interrupts: Interrupts,
        dry_run: bool,
    ) -> int:
        """`up`, or with `dry_run` a streamed preview: the engine's events."""
        backend = self.backend
        events = Events(args.json)
        kind, command = ("preview", "preview") if dry_run else ("update", "up")
        fails = behaviour.get("fail") or ()
        message = str(behaviour.get("message") or DEFAULT_MESSAGE)
        packs = args.values("--policy-pack")
        events.emit("preludeEvent", {"config": config})
        if not dry_run:
            with backend.mutex():
                backend.lock(stack)
            interrupts.on_terminate = lambda: backend.unlock(stack)
        try:
            if command in fails:
                interrupts.sleep(sleep_for(behaviour, command))
                raise self.fail(events, kind, stack, message)
            if "policy" in fails and packs:
                raise self.fail(events, kind, stack, message, policy=True, packs=packs)
            with backend.mutex():
                deployment = backend.deployment(stack)
                resources = list(deployment.get("resources") or [])
                pending = list(deployment.get("pending_operations") or [])
                refreshed: list[Json] = []
                if args.flag("--refresh"):
                    refreshed = self.refresh_steps(stack, resources)
                    resources = self.refreshed(resources, refreshed)
                outputs = dict(behaviour.get("outputs") or {})
                steps = self.update_steps(stack, resources, self.program(stack, behaviour), outputs)
                changing = [s for s in steps if s["op"] != "same"]
                # The operation in flight while the scenario sleeps: the first resource's.
                custom = [s for s in changing if s["type"] != "pulumi:pulumi:Stack"]
                first = (custom or changing or [{}])[0]
                if changing and not dry_run:
                    op_type = {"create": "creating", "update": "updating", "delete": "deleting"}
                    deployment["pending_operations"] = [
                        {"resource": first["new"] or first["old"], "type": op_type[first["op"]]}
                    ]
                    backend.write_deployment(stack, deployment)
            if pending and not refreshed and not dry_run:
                self.pending_warning(events, pending)
            if behaviour.get("exitAfterLock") and not dry_run:
                os.kill(os.getpid(), signal.SIGKILL)
            interrupted = interrupts.sleep(sleep_for(behaviour, command))
            self.stream_steps(events, refreshed, refresh=True)
            done = list(steps)
            if interrupted:
                # The operation in flight (the first change) completes; nothing after it starts.
                events.emit(
                    "stdoutEvent", {"message": interrupts.message(dry_run), "color": "never"}
                )
                done = steps[: steps.index(first) + 1] if changing else []
            if not dry_run:
                with backend.mutex():
                    deployment = backend.deployment(stack)
                    new_resources = self.apply(stack, done, resources)
                    deployment["resources"] = self.with_provider(stack, new_resources)
                    deployment.pop("pending_operations", None)
                    backend.write_deployment(stack, deployment)
            self.stream_steps(events, done)
            if interrupted:
                raise self.canceled(events, kind, done)
            self.finish(events, steps, "succeeded", dry_run)
            return 0
        finally:
            if not dry_run:
                with backend.mutex():
                    backend.unlock(stack)

    def canceled(self, events: Events, kind: str, done: Sequence[Json]) -> Bail:
        events.emit(
            "diagnosticEvent",
            {"prefix": "error: ", "message": f"{kind} canceled\n", "color": "never"}
            | {"severity": "error"},
        )
        self.finish(events, done, "failed", kind == "preview")
        return Bail()

    def pending_warning(self, events: Events, pending: Sequence[Json]) -> None:
        lines = "".join(
            f"  * {op['resource']['urn']}, interrupted while {op['type']}\n" for op in pending
        )
        events.emit(
            "diagnosticEvent",
            {
                "prefix": "warning: ",
                "message": "Attempting to deploy or update resources with "
                f"{len(pending)} pending operations from previous deployment.\n{lines}"
                "These resources are in an unknown state because the Pulumi CLI was interrupted "
                "while waiting for changes to these resources to complete. You should confirm "
                "whether or not the operations listed completed successfully by checking the state "
                "of the appropriate provider. For example, if you are using AWS, you can confirm "
                "using the AWS Console.\n\nOnce you have confirmed the status of the interrupted "
                "operations, you can repair your stack using `pulumi refresh` which will refresh "
                "the state from the provider you are using and clear the pending operations if "
                "there are any.\n\nNote that `pulumi refresh` will need to be run interactively "
                "to clear pending CREATE operations.\n",
                "color": "never",
                "severity": "warning",
            },
        )

    def refresh(self, args: Args) -> int:
        preview_only = args.flag("--preview-only")
        if not (args.flag("--yes") or args.flag("--skip-preview") or preview_only):
            raise CliError(NO_CONFIRMATION_TEXT)
        started = time.time()
        stack, behaviour, config = self.operation(args)
        interrupts = Interrupts()
        backend = self.backend
        fails = behaviour.get("fail") or ()
        message = str(behaviour.get("message") or DEFAULT_MESSAGE)
        if preview_only:
            interrupted = interrupts.sleep(sleep_for(behaviour, "refresh"))
            if interrupted:
                diagnostics = [
                    {"message": interrupts.message(preview=True), "severity": "info"},
                    {"message": "error: preview canceled\n", "severity": "error"},
                ]
                print_digest(config, [], diagnostics, started, {})
                raise Bail()
            if "refresh" in fails:
                raise self.fail(None, "preview", stack, message, (config, started))
            resources = backend.deployment(stack).get("resources") or []
            found = self.refresh_steps(stack, resources)
            shown = [s if s["op"] != "same" else {**s, "op": "refresh"} for s in found]
            if args.json:
                print_digest(config, shown, [], started, count(found))
            else:
                for s in shown:
                    out(f"    {s['op']} {s['type']} {s['urn'].rsplit('::', 1)[-1]}\n")
            return 0
        if not args.flag("--skip-preview") and args.json:
            resources = backend.deployment(stack).get("resources") or []
            found = self.refresh_steps(stack, resources)
            shown = [s if s["op"] != "same" else {**s, "op": "refresh"} for s in found]
            print_digest(config, shown, [], started, count(found))
        events = Events(args.json)
        events.emit("preludeEvent", {"config": config})
        with backend.mutex():
            backend.lock(stack)
        interrupts.on_terminate = lambda: backend.unlock(stack)
        try:
            if behaviour.get("exitAfterLock"):
                os.kill(os.getpid(), signal.SIGKILL)
            interrupted = interrupts.sleep(sleep_for(behaviour, "refresh"))
            if "refresh" in fails:
                raise self.fail(events, "update", stack, message)
            if interrupted:
                events.emit("stdoutEvent", {"message": interrupts.message(False), "color": "never"})
                raise self.canceled(events, "update", [])
            with backend.mutex():
                deployment = backend.deployment(stack)
                resources = list(deployment.get("resources") or [])
                found = self.refresh_steps(stack, resources)
                deployment["resources"] = self.refreshed(resources, found)
                deployment.pop("pending_operations", None)
                backend.write_deployment(stack, deployment)
            self.stream_steps(events, found, refresh=True)
            self.finish(events, found, "succeeded")
            return 0
        finally:
            with backend.mutex():
                backend.unlock(stack)

    def destroy(self, args: Args) -> int:
        if not (args.flag("--yes") or args.flag("--skip-preview") or args.flag("--preview-only")):
            raise CliError(NO_CONFIRMATION_TEXT, EXIT_CONFIGURATION)
        started = time.time()
        stack, behaviour, config = self.operation(args)
        interrupts = Interrupts()
        backend = self.backend
        fails = behaviour.get("fail") or ()
        message = str(behaviour.get("message") or DEFAULT_MESSAGE)
        resources = list(backend.deployment(stack).get("resources") or [])
        planned = [
            step("delete", r, None)
            for r in reversed(resources)
            if not str(r.get("type", "")).startswith("pulumi:providers:")
        ]
        if args.flag("--preview-only") or (not args.flag("--skip-preview") and args.json):
            print_digest(config, planned, [], started, count(planned))
            if args.flag("--preview-only"):
                return 0
        events = Events(args.json)
        events.emit("preludeEvent", {"config": config})
        with backend.mutex():
            backend.lock(stack)
        interrupts.on_terminate = lambda: backend.unlock(stack)
        try:
            if planned:
                with backend.mutex():
                    deployment = backend.deployment(stack)
                    deployment["pending_operations"] = [
                        {"resource": planned[0]["old"], "type": "deleting"}
                    ]
                    backend.write_deployment(stack, deployment)
            if behaviour.get("exitAfterLock"):
                os.kill(os.getpid(), signal.SIGKILL)
            interrupted = interrupts.sleep(sleep_for(behaviour, "destroy"))
            if "destroy" in fails:
                with backend.mutex():
                    deployment = backend.deployment(stack)
                    deployment.pop("pending_operations", None)
                    backend.write_deployment(stack, deployment)
                raise self.fail(events, "update", stack, message)
            done = planned[:1] if interrupted else planned
            with backend.mutex():
                deployment = backend.deployment(stack)
                cloud = backend.cloud(stack)
                gone = {s["urn"] for s in done}
                for urn in gone:
                    cloud.pop(urn, None)
                backend.write_cloud(stack, cloud)
                left = [r for r in deployment.get("resources") or [] if r["urn"] not in gone]
                if not any(is_user_resource(r) for r in left):
                    left = (
                        [r for r in left if r["type"] == "pulumi:pulumi:Stack"]
                        if interrupted
                        else []
                    )
                deployment["resources"] = left
                deployment.pop("pending_operations", None)
                backend.write_deployment(stack, deployment)
            if interrupted:
                events.emit("stdoutEvent", {"message": interrupts.message(False), "color": "never"})
            self.stream_steps(events, done)
            if interrupted:
                raise self.canceled(events, "update", done)
            self.finish(events, done, "succeeded")
        finally:
            with backend.mutex():
                backend.unlock(stack)
        if args.flag("--remove"):
            with backend.mutex():
                backend.remove(stack)
            with contextlib.suppress(FileNotFoundError):
                self.stack_file(stack).unlink()
            out(
                "The resources in the stack have been deleted, and the history and configuration "
                "associated with the stack have been removed.\n"
            )
        return 0


def main(argv: Sequence[str]) -> int:
    log_invocation(argv)
    try:
        return Cli(argv).run()
    except CliError as e:
        sys.stdout.flush()
        sys.stderr.write(f"error: {e}\n")
        return e.code
    except Bail:
        sys.stdout.flush()
        return EXIT_ERROR
