"""Runs the real `__main__.py` under Pulumi mocks, the way the CLI runs it, and records what it
declared, invoked and exported. No Pulumi CLI and no AWS involved."""

from __future__ import annotations

import asyncio
import logging
import runpy
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime.settings
from pulumi.runtime.mocks import (
    MockCallArgs,
    MockMonitor,
    MockResourceArgs,
)
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from components.inputs.errors import ConfigError
from scripts.adopt_program import mock_runtime
from scripts.stack_files import PROJECT_DIR, cli_config

__all__ = ["PROJECT_DIR", "cli_config"]

MAIN = PROJECT_DIR / "__main__.py"
PROJECT = "ecr-ptc"
CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"
STACK_REFERENCE = "pulumi:pulumi:StackReference"

UPSTREAM_ACCOUNT = "111122223333"
DOWNSTREAM_ACCOUNT = "444455556666"


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like AWS would for the fields the program reads; records every request."""

    def __init__(self, account_id: str, stacks: dict[str, dict[str, Any]] | None = None) -> None:
        self.account_id = account_id
        self.stacks = stacks or {}
        self.resources: list[MockResourceArgs] = []
        self.calls: list[MockCallArgs] = []

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.resources.append(args)
        if args.typ == STACK_REFERENCE:
            name = args.inputs["name"]
            if name not in self.stacks:
                raise RuntimeError(f"unknown stack {name!r}")
            return name, {"name": name, "outputs": self.stacks[name]}
        state = dict(args.inputs)
        if args.typ == "aws:iam/role:Role":
            role_name = args.inputs.get("name") or f"{args.name}-1234567"
            state["name"] = role_name
            state["arn"] = f"arn:aws:iam::{self.account_id}:role/{role_name}"
            return role_name, state
        if args.typ == "aws:iam/policy:Policy":
            state["arn"] = f"arn:aws:iam::{self.account_id}:policy/{args.name}-7654321"
        return f"{args.name}-id", state

    def call(self, args: MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        # The SDK accepts a bare dict (no check failures), which its annotation does not admit.
        self.calls.append(args)
        if args.token == CALLER_IDENTITY:
            return {
                "accountId": self.account_id,
                "arn": f"arn:aws:iam::{self.account_id}:user/deployer",
                "id": self.account_id,
                "userId": "AIDAEXAMPLE",
            }
        raise NotImplementedError(f"unexpected invoke {args.token}")

    def of_type(self, typ: str) -> list[MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str) -> MockResourceArgs:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, got {[r.name for r in found]}"
        return found[0]


@dataclass(frozen=True)
class Registration:
    """Resource options as the engine receives them, which MockResourceArgs does not carry."""

    typ: str
    depends_on: frozenset[str]  # names of the resources it explicitly depends on
    delete_before_replace: bool
    urn: str = ""
    parent: str = ""  # the parent's URN
    # Alias specs as (name, type, parent URN, no parent); "" where the spec leaves it unset.
    aliases: tuple[tuple[str, str, str, bool], ...] = ()


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.registrations: dict[str, Registration] = {}

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        self.registrations[request.name] = Registration(
            request.type,
            frozenset(urn.rsplit("::", 1)[-1] for urn in request.dependencies),
            request.deleteBeforeReplace,
            response.urn,
            request.parent,
            tuple(
                (a.spec.name, a.spec.type, a.spec.parentUrn, a.spec.noParent)
                for a in request.aliases
            ),
        )
        return response


@dataclass
class ProgramRun:
    mocks: RecordingMocks
    monitor: RecordingMonitor
    outputs: dict[str, Any] = field(default_factory=dict)
    # What the language host reported: its exit code and the errors it logged.
    exit_code: int = 0
    errors: list[str] = field(default_factory=list)


class ProgramFailed(Exception):
    """The program failed as `pulumi up` would report it; the program's own error is the cause."""

    def __init__(self, run: ProgramRun) -> None:
        super().__init__(f"exit code {run.exit_code}: {' | '.join(run.errors)}")
        self.run = run


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_program(
    config: dict[str, Any],
    stack: str,
    mocks: RecordingMocks,
    preview: bool = False,
) -> ProgramRun:
    """Run __main__.py for `stack` with `config` (stack values; Pulumi.yaml defaults fill the
    rest, as the CLI does) the way Pulumi's Python language host runs it. Raises ProgramFailed,
    caused by the program's own error, when the program fails."""

    def main() -> None:
        runpy.run_path(str(MAIN), run_name="__main__")

    return run_like_language_host(main, mocks, PROJECT, stack, cli_config(config), preview)


def run_like_language_host(
    main: Callable[[], None],
    mocks: RecordingMocks,
    project: str,
    stack: str,
    config: dict[str, str],
    preview: bool = False,
) -> ProgramRun:
    """Run `main` as a program's body the way Pulumi's Python language host does, and report a
    failure the way it does: a pulumi.RunError as its message alone (exit 1), anything else as
    "Program failed with an unhandled exception" and a traceback (exit 32). Raises
    ProgramFailed, caused by the program's own error, when the program fails."""
    monitor = RecordingMonitor(mocks)
    errors = _Errors()
    logger = logging.getLogger(f"ecr-ptc-test-{id(errors)}")
    logger.propagate = False
    logger.addHandler(errors)
    mock_runtime(monitor, logger, project, stack, config, dry_run=preview)
    run = ProgramRun(mocks, monitor)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    reported: list[BaseException] = []
    _quiet_expected_failures(loop, reported)
    stacks: list[pulumi.Resource] = []

    def body() -> None:
        root = pulumi.runtime.settings.get_root_resource()
        assert root is not None
        stacks.append(root)
        main()

    failure: BaseException | None = None
    try:
        loop.run_until_complete(run_in_stack(body))
    except pulumi.RunError as err:  # the language host's own two cases, in its order
        pulumi.log.error(str(err))
        run.exit_code, failure = 1, err
    except Exception as err:
        trace = "".join(traceback.format_exception(err))
        pulumi.log.error(f"Program failed with an unhandled exception:\n{trace}")
        run.exit_code, failure = 32, err
    run.errors = list(errors.messages)
    if failure is not None:
        reported.append(failure)
        raise ProgramFailed(run) from failure
    [root] = stacks
    for name, value in root.outputs.items():  # type: ignore[attr-defined]
        run.outputs[name] = _sync_await(pulumi.Output.from_input(value).future())
    return run


def _quiet_expected_failures(
    loop: asyncio.AbstractEventLoop, reported: list[BaseException]
) -> None:
    """A failed program may leave futures that failed with it; asyncio reports each as "never
    retrieved" when collected. A refusal, or the very error the run reported (and the test
    asserts on), is not reported twice; anything else still is."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception") or Exception()
        if root_cause(error, ConfigError) is None and not any(
            error is r or error is r.__cause__ for r in reported
        ):
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def root_cause(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The `kind` error behind the engine's wrapping ("While processing input ...")."""
    visited: set[int] = set()
    seen: BaseException | None = error
    # A crash's chain can loop (an error whose context is an error it caused): stop there.
    while seen is not None and id(seen) not in visited:
        if isinstance(seen, kind):
            return seen
        visited.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    return None


def expect_refusal(
    config: dict[str, Any], stack: str, mocks: RecordingMocks, preview: bool = False
) -> ConfigError:
    """Run the program and assert it was refused as a user should see it: the language host
    reports one clean message (no traceback, exit 1) naming the key and value, and no AWS
    resource was registered (under `pulumi up --skip-preview` none would be created)."""
    try:
        run_program(config, stack, mocks, preview=preview)
    except ProgramFailed as failed:
        error = root_cause(failed, ConfigError)
        assert isinstance(error, ConfigError), f"not a refusal: {failed.run.errors}"
        assert failed.run.exit_code == 1, failed.run.errors
        assert failed.run.errors == [str(error)], failed.run.errors
        assert "Traceback" not in str(error) and "While processing" not in str(error)
        assert str(error).startswith(f"config {error.key}")
        registered = [r.name for r in mocks.resources if r.typ.startswith("aws:")]
        assert registered == [], f"registered before the refusal: {registered}"
        return error
    raise AssertionError("the program was not refused")


FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_project(directory: Path) -> Path:
    """A project in `directory`: the real Pulumi.yaml and the fixture stack files (the example
    upstream 111122223333 and downstream 444455556666), whatever the shipped stack files say."""
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", directory / "Pulumi.yaml")
    for stack_file in FIXTURES.glob("Pulumi.*.yaml"):
        shutil.copy(stack_file, directory / stack_file.name)
    return directory


def drop_lines(path: Path, containing: str) -> None:
    """Remove from a stack file every line that holds `containing`."""
    kept = [x for x in path.read_text().splitlines() if containing not in x]
    path.write_text("\n".join(kept) + "\n")
