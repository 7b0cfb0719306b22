"""The GitHub workflows as the tests read them: parsed YAML, their jobs and steps, and a step's
`run:` script executed the way a GitHub-hosted runner executes it."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from scripts.stack_files import PROJECT_DIR

WORKFLOWS = PROJECT_DIR / ".github" / "workflows"
NAMES = ("preview.yml", "deploy.yml", "fleet.yml")

PREVIEW_ENVIRONMENT = "${{ vars.PREVIEW_ENVIRONMENT || 'preview' }}"
DEPLOY_ENVIRONMENT = "${{ vars.DEPLOY_ENVIRONMENT || 'production' }}"
# The members job: the Organizations reader trusts both environments.
EITHER_ENVIRONMENT = (
    "${{ github.event_name == 'pull_request' && (vars.PREVIEW_ENVIRONMENT || 'preview') "
    "|| (vars.DEPLOY_ENVIRONMENT || 'production') }}"
)
PREVIEW_ROLES = (
    "UPSTREAM_AWS_PREVIEW_ROLE_ARN",
    "DOWNSTREAM_AWS_PREVIEW_ROLE_ARN",
    "FLEET_AWS_PREVIEW_ROLE_ARN",
)
DEPLOY_ROLES = ("UPSTREAM_AWS_ROLE_ARN", "DOWNSTREAM_AWS_ROLE_ARN", "FLEET_AWS_ROLE_ARN")
ORGANIZATIONS_ROLE = "FLEET_ORGANIZATIONS_ROLE_ARN"
# The marker a PR comment of this project starts with (scripts/fleet.py's COMMENT_MARKER too).
COMMENT_MARKERS = ("<!-- ecr-ptc-preview-upstream -->", "<!-- ecr-ptc-preview-downstream -->")


def parse(text: str) -> dict[str, Any]:
    document = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True)
    return document  # type: ignore[no-any-return]


def load(name: str) -> dict[str, Any]:
    return parse((WORKFLOWS / name).read_text())


def steps_using(job: Mapping[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(f"{action}@")]


def named(job: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The job's one step called `name`."""
    [step] = [s for s in job["steps"] if s.get("name") == name]
    return step  # type: ignore[no-any-return]


def runs(job: Mapping[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def role_variable(expression: str) -> str | None:
    """`${{ vars.X }}` -> X; None for anything else (an expression that may pick a role)."""
    match = re.fullmatch(r"\$\{\{ vars\.([A-Z0-9_]+) \}\}", expression)
    return match[1] if match else None


def triggered_by_pull_requests(workflow: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """Whether a pull request can start the job: the workflow runs on pull requests and the job's
    condition does not rule them out."""
    on_pull_requests = {"pull_request", "pull_request_target"} & set(workflow["on"])
    return bool(on_pull_requests) and "github.event_name != 'pull_request'" not in str(
        job.get("if", "")
    )


def run_step(
    step: Mapping[str, Any],
    cwd: Path,
    env: Mapping[str, str],
    path: tuple[Path, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """A step's `run:` script as a GitHub-hosted Linux runner runs it when the step names no
    shell (`bash -e {0}`), with the step's literal env values (expressions are the caller's),
    `env` on top, and `path` before the system's PATH."""
    script = cwd / ".step.sh"
    script.write_text(str(step["run"]))
    environment = {
        "PATH": os.pathsep.join([*(str(p) for p in path), "/usr/bin", "/bin"]),
        "HOME": str(cwd),
        "LANG": "C.UTF-8",
        **{k: str(v) for k, v in step.get("env", {}).items() if "${{" not in str(v)},
        **env,
    }
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", str(script)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


def actionlint(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    """actionlint's verdict on `text` as the workflow `name` of a fresh repository, run as
    `make lint` runs it: the pinned actionlint with the pinned shellcheck."""
    bin_dir = PROJECT_DIR / ".venv" / "bin"
    pinned, shellcheck = bin_dir / "actionlint", bin_dir / "shellcheck"
    binary = str(pinned) if pinned.exists() else shutil.which("actionlint") or "actionlint"
    checker = str(shellcheck) if shellcheck.exists() else shutil.which("shellcheck") or "shellcheck"
    workflows = tmp_path / ".github" / "workflows"
    if not workflows.is_dir():
        workflows.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (workflows / name).write_text(text)
    return subprocess.run(
        [binary, f"-shellcheck={checker}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )


def pack_imports() -> set[str]:
    """The project files the policy pack loads besides policy/: the `components` modules it
    imports, and theirs, with the package's `__init__.py` (paths relative to the project)."""
    found: set[str] = set()
    pending = [*(PROJECT_DIR / "policy").glob("*.py")]
    while pending:
        source = pending.pop()
        for node in ast.walk(ast.parse(source.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                package = source.parent.relative_to(PROJECT_DIR).as_posix().replace("/", ".")
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                    ).strip(".")
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            for name in names:
                if not name.startswith("components"):
                    continue
                for candidate in (
                    f"{name.replace('.', '/')}.py",
                    f"{name.replace('.', '/')}/__init__.py",
                ):
                    if (PROJECT_DIR / candidate).is_file() and candidate not in found:
                        found.add(candidate)
                        pending.append(PROJECT_DIR / candidate)
    return found | {"components/__init__.py"}
