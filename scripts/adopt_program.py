"""What a stack would manage, as the program itself declares it: `make adopt`'s one source of names.

The stack is planned the way `make plan` plans it (components/plan: every resource's logical
name, type and inputs), and the real `__main__.py` is run under Pulumi mocks, offline, to record
what it registers: each resource's type, logical name, parent and provider plugin version. An
import file built from these records names every resource exactly as the program will register
it, so `pulumi up` finds them in the state instead of creating them.

The mocks' own URNs are not the engine's (pulumi/runtime/mocks.py `make_urn` keeps only the
parent's last type and keeps the root stack's type), so nothing here uses them: a resource is
named by its type, logical name and the logical name of its parent, which is all an import file
holds.
"""

from __future__ import annotations

import asyncio
import logging
import runpy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime.settings
from google.protobuf import empty_pb2  # type: ignore[import-untyped]
from pulumi.runtime.mocks import MockEngine, MockMonitor, MockResourceArgs, MockSettings
from pulumi.runtime.stack import run_in_stack

from components.inputs.errors import ConfigError
from components.inputs.stack_config import is_fleet_template, resolve_side
from components.plan.contract import UPSTREAM_OUTPUTS
from components.plan.stack_plan import PlannedResource, StackPlan
from scripts.plan import plan_repository
from scripts.stack_files import (
    PROJECT_DIR,
    PROJECT_FILE,
    cli_config,
    load_yaml,
    short_name,
    stack_file_config,
)

MAIN = PROJECT_DIR / "__main__.py"
ORGANIZATION = "organization"
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"


class AdoptRefused(ConfigError):
    """The stack cannot be adopted as it is (a fleet template, a refused config)."""


@dataclass(frozen=True)
class Declared:
    """One resource as the program registers it."""

    type: str
    name: str  # its logical name
    parent: str | None  # the logical name of its parent; None: the root stack
    custom: bool  # False: a component
    version: str  # the provider plugin version the SDK asks for ("" for components)


@dataclass(frozen=True)
class StackProgram:
    """A stack's plan and the resources its program registers, in registration order."""

    stack: str
    project: str
    plan: StackPlan
    declared: tuple[Declared, ...]

    def declared_as(self, name: str) -> Declared:
        return next(d for d in self.declared if d.name == name)

    def ancestors(self, name: str) -> list[Declared]:
        """The components above `name`, outermost first."""
        chain: list[Declared] = []
        parent = self.declared_as(name).parent
        while parent is not None:
            component = self.declared_as(parent)
            chain.insert(0, component)
            parent = component.parent
        return chain


class _Mocks(pulumi.runtime.Mocks):
    """Answers the few reads the program makes; what it declares is what matters."""

    def __init__(self, account_id: str, upstream: Mapping[str, Any] | None) -> None:
        self.account_id = account_id
        self.upstream = dict(upstream or {})

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if args.typ == STACK_REFERENCE:
            return args.name, {"name": args.inputs["name"], "outputs": self.upstream}
        state = dict(args.inputs)
        # Placeholders for the outputs other resources read; never compared with AWS.
        state.setdefault("arn", f"arn:aws:iam::{self.account_id}:role/{args.name}")
        state.setdefault("name", args.name)
        return f"{args.name}-id", state

    def call(self, args: Any) -> dict[str, Any]:  # type: ignore[override]
        if args.token == CALLER_IDENTITY:
            account = self.account_id
            return {"accountId": account, "arn": f"arn:aws:iam::{account}:root", "id": account,
                    "userId": account}  # fmt: skip
        raise NotImplementedError(f"make adopt: the program invoked {args.token} unexpectedly")


class _RecordingMonitor(MockMonitor):
    def __init__(self, mocks: _Mocks) -> None:
        super().__init__(mocks)
        self.registered: list[tuple[str, Any]] = []  # (the mocks' URN, the request)

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        self.registered.append((response.urn, request))
        return response


def mock_runtime(
    monitor: MockMonitor,
    logger: logging.Logger,
    project: str,
    stack: str,
    config: Mapping[str, str],
    dry_run: bool,
    organization: str = ORGANIZATION,
) -> None:
    """Pulumi's runtime set up to run a program against `monitor`, as `set_mocks` does but
    without creating the root stack: `run_in_stack` creates it, as under the language host."""
    pulumi.runtime.settings.reset_options()
    pulumi.runtime.set_all_config(dict(config))
    features = monitor.GetDeploymentInfo(empty_pb2.Empty()).supportedFeatures  # type: ignore[no-untyped-call]
    pulumi.runtime.settings.configure(
        MockSettings(  # type: ignore[no-untyped-call]
            monitor=monitor,
            monitor_features=set(features),
            engine=MockEngine(logger),
            project=project,
            stack=stack,
            dry_run=dry_run,
            organization=organization,
            callbacks=None,
        )
    )


def run_program(
    stack: str,
    config: Mapping[str, str],
    account_id: str,
    upstream: Mapping[str, Any] | None,
    project: str,
    main: Path = MAIN,
) -> tuple[Declared, ...]:
    """Run the program for `stack` with `config` (as the CLI hands it) under mocks, as a
    preview, and return what it registered (the root stack left out)."""
    monitor = _RecordingMonitor(_Mocks(account_id, upstream))
    logger = logging.getLogger(f"ecr-ptc-adopt-{stack}")
    logger.propagate = False
    mock_runtime(monitor, logger, project, stack, config, dry_run=True)
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(run_in_stack(lambda: _run_main(main)))
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    names = {urn: request for urn, request in monitor.registered}
    declared = []
    for _, request in monitor.registered:
        if request.type in (ROOT_STACK_TYPE, STACK_REFERENCE):
            continue
        parent = names.get(request.parent)
        declared.append(
            Declared(
                type=request.type,
                name=request.name,
                parent=None if parent is None or parent.type == ROOT_STACK_TYPE else parent.name,
                custom=request.custom,
                version=request.version if request.custom else "",
            )
        )
    return tuple(declared)


def _run_main(main: Path) -> None:
    runpy.run_path(str(main), run_name="__main__")


def project_name(project_dir: Path) -> str:
    return str(load_yaml(project_dir / PROJECT_FILE).get("name") or "ecr-ptc")


def side_of(stack: str, project_dir: Path = PROJECT_DIR) -> str:
    """`upstream` or `downstream`, as the program decides it for this stack file."""
    raw = cli_config(stack_file_config(project_dir, stack), project_dir)
    if is_fleet_template(raw):
        raise AdoptRefused(
            "stack",
            stack,
            "a stack that is deployed itself; this is a fleet template: adopt what a member "
            "account holds by giving that account a stack file of its own",
        )
    return str(resolve_side(raw, stack))


def stack_program(
    stack: str,
    account_id: str,
    project_dir: Path = PROJECT_DIR,
    backend: str | None = None,
) -> StackProgram:
    """Plan `stack` (with the account the credentials belong to, where its file pins none) and
    run its program under mocks. Raises ConfigError when the stack is refused, exactly as
    `make plan` would refuse it."""
    side_of(stack, project_dir)
    results = plan_repository(project_dir, [stack], accounts={stack: account_id}, backend=backend)
    by_stack = {r.stack: r for r in results}
    result = by_stack[stack]
    if result.plan is None:
        assert result.error is not None
        raise result.error
    plan = result.plan
    upstream: dict[str, Any] | None = None
    upstream_stack = str(result.values.get("ecr-ptc:upstreamStack") or "")
    if plan.side == "downstream" and upstream_stack:
        short = short_name(upstream_stack)
        [upstream_plan] = [
            r.plan
            for r in plan_repository(project_dir, [short], backend=backend)
            if r.stack == short and r.plan is not None
        ]
        upstream = {name: upstream_plan.outputs.get(name) for name in UPSTREAM_OUTPUTS}
    project = project_name(project_dir)
    declared = run_program(
        stack, cli_config(result.values, project_dir), plan.account_id, upstream, project
    )
    names = [d.name for d in declared]
    if len(names) != len(set(names)):
        # An import file names parents by name: it could not tell two of them apart.
        raise AssertionError(f"the program declares a logical name twice: {sorted(names)}")
    missing = sorted({r.name for r in plan.resources} - {d.name for d in declared if d.custom})
    if missing:
        raise AssertionError(f"the program did not declare planned resources: {missing}")
    return StackProgram(stack, project, plan, declared)


def planned(program: StackProgram) -> list[tuple[PlannedResource, Declared]]:
    """Every planned resource with its registration, in plan order."""
    return [(r, program.declared_as(r.name)) for r in program.plan.resources]
