"""The GitHub workflows as the tests read them: parsed YAML, their jobs and steps, and a step's
`run:` script executed the way a GitHub-hosted runner executes it."""

from __future__ import annotations

import ast
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scripts.stack_files import PROJECT_DIR

WORKFLOWS = PROJECT_DIR / ".github" / "workflows"
NAMES = ("preview.yml", "deploy.yml", "fleet.yml", "release.yml", "doctor.yml")

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
# The marker a PR comment of this project starts with (scripts/fleet_report.py's COMMENT_MARKER too).
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


def triggered_by_pull_requests(workflow: Mapping[str, Any], name: str) -> bool:
    """Whether a pull request (a branch of the repository's or a fork's) can start the job: its
    `if:` and those of the jobs it needs, evaluated as GitHub evaluates them."""
    return any(name in may_run(workflow, event) for event in PULL_REQUESTS)


def _step_command(
    step: Mapping[str, Any], cwd: Path, env: Mapping[str, str], path: tuple[Path, ...]
) -> tuple[list[str], dict[str, str]]:
    script = cwd / ".step.sh"
    script.write_text(str(step["run"]))
    environment = {
        "PATH": os.pathsep.join([*(str(p) for p in path), "/usr/bin", "/bin"]),
        "HOME": str(cwd),
        "LANG": "C.UTF-8",
        **{k: str(v) for k, v in step.get("env", {}).items() if "${{" not in str(v)},
        **env,
    }
    return ["bash", "--noprofile", "--norc", "-e", str(script)], environment


def run_step(
    step: Mapping[str, Any],
    cwd: Path,
    env: Mapping[str, str],
    path: tuple[Path, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """A step's `run:` script as a GitHub-hosted Linux runner runs it when the step names no
    shell (`bash -e {0}`), with the step's literal env values (expressions are the caller's),
    `env` on top, and `path` before the system's PATH."""
    argv, environment = _step_command(step, cwd, env, path)
    return subprocess.run(
        argv, cwd=cwd, env=environment, capture_output=True, text=True, check=False
    )


def start_step(
    step: Mapping[str, Any],
    cwd: Path,
    env: Mapping[str, str],
    path: tuple[Path, ...] = (),
) -> subprocess.Popen[str]:
    """The step started as run_step runs it, without waiting: the runner's process, whose
    signals (SIGINT, then SIGTERM, then SIGKILL) go to this shell alone when the job is
    cancelled. Started, as the runner starts it, with SIGINT not ignored."""
    argv, environment = _step_command(step, cwd, env, path)
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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


# --- Which jobs run: the `if:` conditions evaluated as GitHub evaluates them ------------------
# Enough of GitHub's expression language for the workflows' job conditions: literals, contexts
# (`vars` gives '' for a variable that is not set), ! < <= > >= == != && || with GitHub's
# coercions (strings compare case-insensitively, mixed types as numbers, && and || return an
# operand), and the functions the conditions call. A job whose `if:` calls no status function
# has `success() &&` in front of it, as on GitHub.

REPOSITORY = "owner/repo"
STATUS_FUNCTIONS = re.compile(r"\b(success|failure|cancelled|always)\s*\(")
_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')"
    r"|(?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?))"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\],.])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)


class Variables(dict[str, str]):
    """The `vars` context: a variable that is not set is ''."""


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens, at = [], 0
    expression = expression.rstrip()
    while at < len(expression):
        match = _TOKEN.match(expression, at)
        if not match or match.end() == at:
            raise ValueError(f"cannot read {expression[at:]!r} in {expression!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match[kind]))
        at = match.end()
    return tokens


class _Parser:
    """Recursive descent, lowest precedence first: || && (== !=) (< <= > >=) ! postfix."""

    def __init__(self, expression: str) -> None:
        self.tokens = _tokens(expression)
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise ValueError("unexpected end of expression")
        token = self.tokens[self.at]
        if expected is not None and token[1] != expected:
            raise ValueError(f"expected {expected!r}, got {token[1]!r}")
        self.at += 1
        return token

    def parse(self) -> Any:
        tree = self.binary(0)
        if self.at != len(self.tokens):
            raise ValueError(f"unexpected {self.peek()!r}")
        return tree

    LEVELS = (("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="))

    def binary(self, level: int) -> Any:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in self.LEVELS[level]:
            op = self.take()[1]
            left = (op, left, self.binary(level + 1))
        return left

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return ("!", self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        tree = self.primary()
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                tree = ("get", tree, ("literal", self.take()[1]))
            else:
                tree = ("get", tree, self.binary(0))
                self.take("]")
        return tree

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return ("literal", text[1:-1].replace("''", "'"))
        if kind == "number":
            return ("literal", float(int(text, 16)) if text.startswith("0x") else float(text))
        if text == "(":
            tree = self.binary(0)
            self.take(")")
            return tree
        if kind != "name":
            raise ValueError(f"unexpected {text!r}")
        if text in ("true", "false", "null"):
            return ("literal", {"true": True, "false": False, "null": None}[text])
        if self.peek() == "(":
            self.take()
            args = []
            while self.peek() != ")":
                args.append(self.binary(0))
                if self.peek() == ",":
                    self.take()
            self.take(")")
            return ("call", text.lower(), args)
        return ("context", text.lower())


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    return math.nan


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "object"


def _string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2)


def truthy(value: Any) -> bool:
    if value is None or value is False or value == "":
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return not (value == 0 or math.isnan(value))
    return True


def _compare(op: str, left: Any, right: Any) -> bool:
    kinds = {_kind(left), _kind(right)}
    if kinds == {"string"}:
        a, b = left.casefold(), right.casefold()
    elif kinds == {"object"} and op in ("==", "!="):
        return (left is right) == (op == "==")
    elif len(kinds) == 1 and kinds != {"object"}:
        a, b = left, right
    else:
        a, b = _number(left), _number(right)
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if isinstance(a, float) and isinstance(b, float) and (math.isnan(a) or math.isnan(b)):
        return False
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def _get(value: Any, key: Any) -> Any:
    if isinstance(value, Mapping):
        wanted = _string(key).casefold()
        for name, item in value.items():
            if name.casefold() == wanted:
                return item
        return "" if isinstance(value, Variables) else None
    if isinstance(value, list) and _kind(key) == "number" and 0 <= key < len(value):
        return value[int(key)]
    return None


def _call(name: str, args: list[Any], context: Mapping[str, Any]) -> Any:
    if name in ("success", "failure", "cancelled", "always"):
        return context["__status__"][name]
    if name == "contains":
        search, item = args
        if isinstance(search, list):
            return any(_compare("==", s, item) for s in search)
        return _string(item).casefold() in _string(search).casefold()
    if name in ("startswith", "endswith"):
        text, affix = (_string(a).casefold() for a in args)
        return text.startswith(affix) if name == "startswith" else text.endswith(affix)
    if name == "format":
        text = _string(args[0]).replace("{{", "\0").replace("}}", "\1")
        for i, arg in enumerate(args[1:]):
            text = text.replace(f"{{{i}}}", _string(arg))
        return text.replace("\0", "{").replace("\1", "}")
    if name == "fromjson":
        return json.loads(_string(args[0]))
    if name == "tojson":
        return json.dumps(args[0], indent=2)
    raise ValueError(f"no function {name}()")


def _evaluate(tree: Any, context: Mapping[str, Any]) -> Any:
    op = tree[0]
    if op == "literal":
        return tree[1]
    if op == "context":
        return _get(context, tree[1])
    if op == "get":
        return _get(_evaluate(tree[1], context), _evaluate(tree[2], context))
    if op == "call":
        return _call(tree[1], [_evaluate(a, context) for a in tree[2]], context)
    if op == "!":
        return not truthy(_evaluate(tree[1], context))
    left = _evaluate(tree[1], context)
    if op == "&&":
        return _evaluate(tree[2], context) if truthy(left) else left
    if op == "||":
        return left if truthy(left) else _evaluate(tree[2], context)
    return _compare(op, left, _evaluate(tree[2], context))


EMBEDDED = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """A value as GitHub computes it: an `if:` (`${{ … }}` around it or not) or a value that
    is one `${{ … }}` gives the expression's value; text with expressions inside it, the text
    with each replaced by its value as a string."""
    text = expression.strip()
    embedded = EMBEDDED.findall(text)
    if len(embedded) == 1 and text.startswith("${{") and text.endswith("}}"):
        text = embedded[0]
    elif embedded:
        return EMBEDDED.sub(
            lambda m: _string(_evaluate(_Parser(m[1]).parse(), context)), expression
        )
    return _evaluate(_Parser(text).parse(), context)


def job_condition(job: Mapping[str, Any]) -> str:
    """The job's `if:` as GitHub runs it: `success()` when it has none, `success() && (…)` when
    it calls no status function."""
    condition = str(job.get("if", "success()")).strip()
    if condition.startswith("${{") and condition.endswith("}}"):
        condition = condition[3:-2].strip()
    return condition if STATUS_FUNCTIONS.search(condition) else f"success() && ({condition})"


@dataclass(frozen=True)
class Event:
    """What starts a run, as its expressions see it."""

    name: str
    ref: str = "refs/heads/main"
    fork: bool = False  # a pull request from another repository
    inputs: Mapping[str, Any] = field(default_factory=dict)
    # The repository variables the run gets; None: both with every variable set and with none.
    variables: Mapping[str, str] | None = None

    def github(self) -> dict[str, Any]:
        event: dict[str, Any] = {"inputs": {k: _string(v) for k, v in self.inputs.items()}}
        if self.name.startswith("pull_request"):
            head = "someone/repo" if self.fork else REPOSITORY
            event = {
                "pull_request": {
                    "number": 7,
                    "head": {"repo": {"full_name": head}, "sha": "1" * 40},
                    "base": {"sha": "2" * 40, "ref": "main"},
                }
            }
        return {
            "event_name": self.name,
            "ref": self.ref,
            "repository": REPOSITORY,
            "sha": "3" * 40,
            "event": event,
        }


# GitHub passes a fork's pull request no secret, a read-only token and no repository variable
# ("Variables are not passed to workflows that are triggered by a pull request from a fork");
# the fork events are tried without variables and, in case that ever changes, with them.
PULL_REQUEST = Event("pull_request", "refs/pull/7/merge")
FORK_PULL_REQUEST = Event("pull_request", "refs/pull/7/merge", fork=True)
PULL_REQUESTS = (PULL_REQUEST, FORK_PULL_REQUEST)
PUSH_TO_MAIN = Event("push")
SCHEDULE = Event("schedule")  # runs on the default branch


def dispatch(ref: str = "refs/heads/main", **inputs: Any) -> Event:
    return Event("workflow_dispatch", ref, inputs=inputs)


def _ref_pattern(pattern: str) -> re.Pattern[str]:
    """A branch or tag filter as GitHub matches it: `**` any characters, `*` any but `/`.
    GitHub's other pattern characters are not used by these workflows, so not accepted here."""
    if re.search(r"[?+\[\]!]", pattern):
        raise ValueError(f"filter pattern {pattern!r}: only * and ** are understood here")
    parts = (re.escape(p).replace(r"\*", "[^/]*") for p in pattern.split("**"))
    return re.compile(".*".join(parts))


def starts(workflow: Mapping[str, Any], event: Event) -> bool:
    """Whether the event starts the workflow at all (its `on:` and branch filters)."""
    triggers = workflow["on"]
    if isinstance(triggers, str):
        triggers = {triggers: None}
    elif isinstance(triggers, list):
        triggers = dict.fromkeys(triggers)
    if event.name not in triggers:
        return False
    filters = triggers[event.name] or {}
    if event.name == "push" and ("branches" in filters or "tags" in filters):
        # A push of a tag is matched against `tags:` only, a push of a branch against `branches:`
        # only: with tags alone, no branch push starts the workflow, and the reverse.
        kind, name = (
            ("tags", event.ref.removeprefix("refs/tags/"))
            if event.ref.startswith("refs/tags/")
            else ("branches", event.ref.removeprefix("refs/heads/"))
        )
        return any(_ref_pattern(p).fullmatch(name) for p in filters.get(kind) or [])
    if event.name.startswith("pull_request") and "branches" in filters:
        return "main" in filters["branches"]
    return True


def _variable_sets(workflow: Mapping[str, Any], event: Event) -> Iterator[Variables]:
    if event.variables is not None:
        yield Variables(event.variables)
        return
    yield Variables()
    # Every variable the workflow reads, each set and each different from the others.
    names = re.findall(r"\bvars\.([A-Za-z0-9_]+)", json.dumps(workflow))
    yield Variables({name: name.lower() for name in names})


def _results(
    workflow: Mapping[str, Any],
    event: Event,
    variables: Variables,
    name: str,
    results: dict[str, set[str]],
) -> set[str]:
    """The job's possible results (memoised in `results`), after every result of its needs."""
    if name not in results:
        job = workflow["jobs"][name]
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else list(needs)
        ends = (sorted(_results(workflow, event, variables, n, results)) for n in needs)
        found: set[str] = set()
        for combination in itertools.product(*ends):
            ended = dict(zip(needs, combination, strict=True))
            if truthy(evaluate(job_condition(job), _context(workflow, event, variables, ended))):
                found |= {"success", "failure"}
            else:
                found.add("skipped")
        results[name] = found
    return results[name]


def outcomes(workflow: Mapping[str, Any], event: Event) -> dict[str, set[str]]:
    """Each job's possible results for the event: `skipped` when its condition can be false,
    `success` and `failure` when it can run (a job that runs may fail). Every result of the jobs
    it needs is tried, and every set of variables: an over-approximation of what runs."""
    jobs = workflow["jobs"]
    if not starts(workflow, event):
        return {name: {"skipped"} for name in jobs}
    possible: dict[str, set[str]] = {name: set() for name in jobs}
    for variables in _variable_sets(workflow, event):
        results: dict[str, set[str]] = {}
        for name in jobs:
            possible[name] |= _results(workflow, event, variables, name, results)
    return possible


def _context(
    workflow: Mapping[str, Any], event: Event, variables: Variables, needs: Mapping[str, str]
) -> dict[str, Any]:
    """What a job's `if:` sees once its needs ended as `needs` says (job: result); a need that
    ran has every output it declares ('1')."""
    jobs = workflow["jobs"]
    return {
        "github": event.github(),
        "vars": variables,
        "inputs": dict(event.inputs),
        "needs": {
            need: {
                "result": result,
                "outputs": {}
                if result == "skipped"
                else dict.fromkeys(jobs[need].get("outputs", {}), "1"),
            }
            for need, result in needs.items()
        },
        "__status__": {
            "success": all(r == "success" for r in needs.values()),
            "failure": any(r == "failure" for r in needs.values()),
            "cancelled": False,
            "always": True,
        },
    }


def context_for(
    workflow: Mapping[str, Any],
    event: Event,
    needs: Mapping[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The contexts an expression of the workflow sees for the event, its job's needs having
    ended as `needs` says, with these repository variables (default: every one the workflow
    reads, set)."""
    if variables is None:
        variables = list(_variable_sets(workflow, Event(event.name)))[-1]
    return _context(workflow, event, Variables(variables), needs or {})


def condition_holds(
    workflow: Mapping[str, Any],
    name: str,
    event: Event,
    needs: Mapping[str, str],
    variables: Mapping[str, str] | None = None,
) -> bool:
    """Whether the job's `if:` lets it run (see context_for)."""
    context = context_for(workflow, event, needs, variables)
    return truthy(evaluate(job_condition(workflow["jobs"][name]), context))


def may_run(workflow: Mapping[str, Any], event: Event) -> set[str]:
    """The jobs the event can start."""
    return {name for name, results in outcomes(workflow, event).items() if results - {"skipped"}}
