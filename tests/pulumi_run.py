"""Runs the real `__main__.py` under Pulumi mocks, the way the CLI runs it, and records what it
declared, invoked and exported. No Pulumi CLI and no AWS involved."""

from __future__ import annotations

import asyncio
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime.settings
import yaml
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components.config_error import ConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent
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


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.registrations: dict[str, Registration] = {}

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
        self.registrations[request.name] = Registration(
            request.type,
            frozenset(urn.rsplit("::", 1)[-1] for urn in request.dependencies),
            request.deleteBeforeReplace,
        )
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]


@dataclass
class ProgramRun:
    mocks: RecordingMocks
    monitor: RecordingMonitor
    outputs: dict[str, Any] = field(default_factory=dict)


def cli_config(values: dict[str, Any]) -> dict[str, str]:
    """What the Pulumi CLI hands the program: strings, JSON for lists, maps and booleans."""
    return {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()
    }


def project_defaults() -> dict[str, Any]:
    """The defaults Pulumi.yaml declares, which the CLI applies to keys a stack leaves unset."""
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    defaults: dict[str, Any] = {}
    for key, declaration in (project.get("config") or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(declaration, dict) and "default" in declaration:
            defaults[full] = declaration["default"]
    return defaults


def run_program(
    config: dict[str, Any],
    stack: str,
    mocks: RecordingMocks,
    preview: bool = False,
) -> ProgramRun:
    """Run __main__.py for `stack` with `config` (stack values; Pulumi.yaml defaults fill the
    rest, as the CLI does). Raises what the program raises, as `pulumi up` would report it."""
    pulumi.runtime.settings.reset_options()
    pulumi.runtime.set_all_config(cli_config({**project_defaults(), **config}))
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    root = pulumi.runtime.settings.get_root_resource()
    assert root is not None
    run = ProgramRun(mocks, monitor)

    def main() -> None:
        runpy.run_path(str(MAIN), run_name="__main__")

    _quiet_expected_failures()

    _sync_await(run_pulumi_func(main))
    for name, value in root.outputs.items():  # type: ignore[attr-defined]
        run.outputs[name] = _sync_await(pulumi.Output.from_input(value).future())
    return run


def _quiet_expected_failures() -> None:
    """A refused config fails every resource that waits on it; asyncio then reports each of
    those futures as "never retrieved" when collected. Those are the failure under test, already
    asserted on; anything else is still reported."""
    loop = asyncio.get_event_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if root_cause(context.get("exception") or Exception(), ConfigError) is None:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def root_cause(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The `kind` error behind the engine's wrapping ("While processing input ...")."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def stack_file_config(stack: str) -> dict[str, Any]:
    """The config block of a shipped Pulumi.<stack>.yaml."""
    document = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())
    return dict(document["config"])
