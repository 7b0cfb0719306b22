"""The stand-in `pulumi` of tests/fake_pulumi for tests that run the CLI as a process: install it
on PATH, run it in a workspace directory, and read or change what it keeps (stacks, tags, locks,
the cloud behind the state).

    cli = install(tmp_path)
    work = cli.workspace("dev")                        # Pulumi.yaml (+ Pulumi.dev.yaml)
    cli.create_stack("dev", deployed=True)             # a stack someone else made and deployed
    cli.drift("dev", "cache-role", {"description": "edited"})   # changed outside Pulumi
    cli.set_scenario("dev", fail=["up"], message="boom")
    result = cli.run("up", "--yes", "--skip-preview", "--json", "--stack", "dev", cwd=work)
"""

from __future__ import annotations

import functools
import json
import os
import py_compile
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.fake_pulumi import fake_pulumi as fp

FAKE_DIR = Path(__file__).resolve().parent / "fake_pulumi"
PROJECT = "ecr-ptc"
# Scenario keys as Python names -> as the scenario file spells them.
SCENARIO_NAMES = {"exit_after_lock": "exitAfterLock"}


class FakeCli:
    """One installed stand-in CLI: its PATH entry, its DIY backend, its log and scenario files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin_dir = root / "bin"
        self.backend_dir = root / "backend"
        self.log_path = root / "pulumi-calls.jsonl"
        self.scenario_path = root / "pulumi-scenario.json"

    @property
    def backend_url(self) -> str:
        return f"file://{self.backend_dir}"

    def backend(self, project: str = PROJECT) -> fp.Backend:
        return fp.Backend(self.backend_dir, project)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a subprocess: this process's, the stand-in first on PATH."""
        env = dict(os.environ)
        env.update(
            PATH=f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}",
            PULUMI_BACKEND_URL=self.backend_url,
            PULUMI_CONFIG_PASSPHRASE="",
            PULUMI_SKIP_UPDATE_CHECK="true",
            FAKE_PULUMI_LOG=str(self.log_path),
            FAKE_PULUMI_SCENARIO=str(self.scenario_path),
        )
        env.update(extra)
        return env

    # --- workspaces and processes

    def workspace(
        self,
        stack: str | None = None,
        config: Mapping[str, str] | None = None,
        project: str = PROJECT,
        name: str | None = None,
    ) -> Path:
        """A workspace directory with a Pulumi.yaml, and Pulumi.<stack>.yaml when `stack` is
        given (`config`: flat key -> value)."""
        directory = self.root / "workspaces" / (name or stack or "default")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "Pulumi.yaml").write_text(f"name: {project}\nruntime: python\n")
        if stack is not None:
            lines = ["config:"] + [f"  {k}: {json.dumps(v)}" for k, v in (config or {}).items()]
            text = "\n".join(lines) + "\n" if config else ""
            (directory / f"Pulumi.{stack}.yaml").write_text(text)
        return directory

    def argv(self, args: Sequence[str]) -> list[str]:
        return [str(self.bin_dir / "pulumi"), "--non-interactive", *args]

    def run(
        self, *args: str, cwd: Path, timeout: float = 30, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """`pulumi --non-interactive <args>` in `cwd`, to the end."""
        return subprocess.run(
            self.argv(args),
            cwd=cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
        """`pulumi --non-interactive <args>` in `cwd`, running on."""
        return subprocess.Popen(
            self.argv(args),
            cwd=cwd,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    # --- what the stand-in recorded and keeps

    def calls(self) -> list[dict[str, Any]]:
        """Every invocation so far, oldest first: argv, cwd, pid, PULUMI_BACKEND_URL, the names
        of the AWS_* (`aws`) and PULUMI_* (`pulumi`) variables set."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def stacks(self, project: str = PROJECT) -> list[str]:
        return sorted(stack for p, stack in self.backend(project).list_refs(False) if p == project)

    def state(self, stack: str, project: str = PROJECT) -> dict[str, Any]:
        """The stack's latest deployment (manifest, resources, pending_operations)."""
        data = fp.read_json(self.backend(project).checkpoint_path(stack))
        if not isinstance(data, dict):
            raise KeyError(f"no stack {stack}")
        latest = data["checkpoint"].get("latest")
        return latest if isinstance(latest, dict) else {}

    def resources(self, stack: str) -> list[dict[str, Any]]:
        return list(self.state(stack).get("resources") or [])

    def pending_operations(self, stack: str) -> list[dict[str, Any]]:
        return list(self.state(stack).get("pending_operations") or [])

    def cloud(self, stack: str) -> dict[str, dict[str, Any]]:
        """What exists in the stack's account: URN -> {id, type, properties}."""
        return self.backend().cloud(stack)

    def tags(self, stack: str, project: str = PROJECT) -> dict[str, str]:
        return self.backend(project).tags(stack)

    def locks(self, stack: str, project: str = PROJECT) -> list[Path]:
        return self.backend(project).locks(stack)

    def locked(self, stack: str, project: str = PROJECT) -> bool:
        return bool(self.locks(stack, project))

    def urns(self, stack: str, resources: int = fp.DEFAULT_RESOURCES) -> list[str]:
        """The URNs of the custom resources the program declares."""
        return [r["urn"] for r in fp.declared(stack, PROJECT, resources, 1)]

    # --- changes behind the CLI's back

    def set_scenario(self, stack: str = "*", **behaviour: Any) -> None:
        """Set how the stand-in behaves for `stack` ("*": every stack), replacing its entry:
        fail=[...], message=..., sleep=..., resources=..., revision=..., exit_after_lock=True,
        outputs={...} (see tests/fake_pulumi/fake_pulumi.py)."""
        data = fp.read_json(self.scenario_path) or {}
        data[stack] = {SCENARIO_NAMES.get(k, k): v for k, v in behaviour.items()}
        fp.write_atomic(self.scenario_path, json.dumps(data, indent=2))

    def clear_scenario(self) -> None:
        self.scenario_path.unlink(missing_ok=True)

    def resolve(self, stack: str, resource: str) -> str:
        """A resource's URN from its URN or its name (`cache-role`, or `Type::name`)."""
        if resource.startswith("urn:"):
            return resource
        known = set(self.cloud(stack)) | {r["urn"] for r in self.resources(stack)}
        matches = sorted(u for u in known if u.endswith(f"::{resource}"))
        if len(matches) != 1:
            raise KeyError(f"{resource!r} names {len(matches)} resources of {stack}: {matches}")
        return matches[0]

    def drift(self, stack: str, resource: str, changes: Mapping[str, Any] | None) -> str:
        """Change a resource in the cloud, as someone would outside Pulumi: set the properties of
        `changes`, or delete it (`changes` None). Returns its URN."""
        backend = self.backend()
        urn = self.resolve(stack, resource)
        with backend.mutex():
            cloud = backend.cloud(stack)
            if changes is None:
                cloud.pop(urn, None)
            else:
                cloud[urn]["properties"] = {**cloud[urn]["properties"], **changes}
            backend.write_cloud(stack, cloud)
        return urn

    def create_stack(
        self,
        stack: str,
        tags: Mapping[str, str] | None = None,
        deployed: bool = False,
        resources: int = fp.DEFAULT_RESOURCES,
        outputs: Mapping[str, Any] | None = None,
        project: str = PROJECT,
    ) -> None:
        """A stack that already exists (made by someone else, or an earlier run): empty as
        `stack init` leaves it, or `deployed` (state and cloud hold the program's resources,
        as after `pulumi up`)."""
        backend = self.backend(project)
        with backend.mutex():
            backend.create(stack, "v1:0000000000000000")
            if tags:
                backend.write_tags(stack, tags)
            if not deployed and not outputs:
                return
            deployment = backend.deployment(stack)
            state = [fp.root_resource(stack, project, dict(outputs or {}))]
            cloud = backend.cloud(stack)
            if deployed:
                state.append(fp.provider_resource(stack, project))
                for res in fp.declared(stack, project, resources, 1):
                    props = fp.properties(stack, res)
                    new = fp.state_resource(stack, project, res, props, fp.now_rfc3339())
                    state.append(new)
                    cloud[new["urn"]] = {"id": new["id"], "type": new["type"], "properties": props}
            deployment["resources"] = state
            backend.write_deployment(stack, deployment)
            backend.write_cloud(stack, cloud)

    def lock(self, stack: str, pid: int = 4242, host: str = "ci-runner") -> Path:
        """A lock file of another process (a CLI killed on another machine)."""
        backend = self.backend()
        path = backend.lock_dir(stack) / "9b0f6a5e-7f1c-4c53-9d0e-2f4c8d1e6a70.json"
        content = {
            "pid": pid,
            "username": "runner",
            "hostname": host,
            "timestamp": "2026-01-01T00:00:00Z",
        }
        fp.write_atomic(path, json.dumps(content))
        return path

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("the stand-in CLI did not get there in time")
            time.sleep(0.01)


def install(tmp_path: Path) -> FakeCli:
    """Install the stand-in `pulumi` under `tmp_path` as bin/pulumi: tests/fake_pulumi's logic,
    compiled once, run by this interpreter without `site` (-S: it needs only the standard
    library), so that each call starts in a few hundredths of a second."""
    cli = FakeCli(tmp_path)
    cli.bin_dir.mkdir(parents=True, exist_ok=True)
    cli.backend_dir.mkdir(parents=True, exist_ok=True)
    source = FAKE_DIR / "fake_pulumi.py"
    (cli.bin_dir / "fake_pulumi.pyc").write_bytes(_bytecode(source, source.stat().st_mtime_ns))
    executable = cli.bin_dir / "pulumi"
    executable.write_text(
        f"#!{sys.executable} -S\n"
        f"import sys\nsys.path.insert(0, {str(cli.bin_dir)!r})\n"
        "import fake_pulumi\nsys.exit(fake_pulumi.main(sys.argv[1:]))\n"
    )
    executable.chmod(0o755)
    return cli


@functools.cache
def _bytecode(source: Path, mtime_ns: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "fake_pulumi.pyc"
        py_compile.compile(str(source), cfile=str(target), doraise=True)
        return target.read_bytes()


def events(stdout: str) -> list[dict[str, Any]]:
    """The engine events of `up`/`refresh`/`destroy --json` (one JSON object a line)."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def summary(stdout: str) -> dict[str, Any]:
    """The summaryEvent of an event stream."""
    found = [e["summaryEvent"] for e in events(stdout) if "summaryEvent" in e]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} summary events in:\n{stdout}")
    result: dict[str, Any] = found[0]
    return result
