"""`make adopt`: take over what already exists (rules, templates, a registry policy made by hand
or by CloudFormation) instead of failing to create it again.

For one stack file, with the credentials of that stack's account (UPSTREAM_AWS_PROFILE or
DOWNSTREAM_AWS_PROFILE, as `make up` uses them; unset: the ambient ones), lists what the stack
would manage and what of it exists, one line each:

    adopt <type> <name> id=<id>              exists as the stack declares it
    differs <type> <name> id=<id>: <fields>  exists; the first `pulumi up` changes (or replaces) it
    create <type> <name>: <why>              not there (or not adoptable): `pulumi up` creates it
    left-alone <what>: <why>                 exists beside the stack; the stack never touches it

then writes a `pulumi import --file` file with what exists, named exactly as the program
registers it (its logical name, type and parent component, found by running the program itself
under Pulumi mocks), and prints the commands that import it. Nothing is changed in AWS.

Exit status: 0 the file was written (or nothing exists to adopt), 1 the stack is refused (the
message `make plan` gives), 2 it could not check (credentials, network, a refused read).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError

from components.inputs.errors import ConfigError
from components.inputs.stack_config import AWS_REGION_KEY
from components.plan import stack_plan as p
from components.plan.stack_plan import PlannedResource, Ref
from scripts.adopt_account import Account, ClientFor, CouldNotCheck, Missing
from scripts.adopt_compare import (
    Difference,
    policy_difference,
    role_differences,
    rule_differences,
    template_differences,
)
from scripts.adopt_program import Declared, StackProgram, side_of, stack_program
from scripts.deploy import Side, allowed_accounts, credential_problem, stack_config, state_backend
from scripts.stack_files import PROJECT_DIR

WRITTEN, REFUSED, COULD_NOT_CHECK = 0, 1, 2
ADOPT, DIFFERS, CREATE, LEFT_ALONE = "adopt", "differs", "create", "left-alone"
# What a reference to another planned resource stands for, in a line a person reads.
KIND = {p.ROLE: "role", p.MANAGED_POLICY: "managed policy"}
# What ecr-ptc:alerts adds: never made by hand under the names Pulumi gives it.
ALERT_TYPES = frozenset(
    {p.EVENT_RULE, p.EVENT_TARGET, p.TOPIC, p.TOPIC_POLICY, p.TOPIC_SUBSCRIPTION}
)
KEEP_STATEMENTS = "keep statements others own with ecr-ptc:extraRegistryPolicyStatements"

SessionFor = Callable[[str | None], Any]  # profile -> boto3.Session


@dataclass(frozen=True)
class Finding:
    verdict: str  # adopt | differs | create | left-alone
    type: str
    name: str  # the logical name; for left-alone, what it is
    id: str = ""
    detail: str = ""
    differences: tuple[Difference, ...] = ()

    @property
    def exists(self) -> bool:
        return self.verdict in (ADOPT, DIFFERS)

    def line(self) -> str:
        if self.verdict == ADOPT:
            return f"adopt {self.type} {self.name} id={self.id}"
        if self.verdict == DIFFERS:
            changes = "; ".join(d.text() for d in self.differences)
            replaces = [d.field for d in self.differences if d.replaces]
            then = (
                f"pulumi up REPLACES it ({', '.join(replaces)} cannot change in place)"
                if replaces
                else "pulumi up will update it"
            )
            return f"differs {self.type} {self.name} id={self.id}: {changes}; {then}"
        if self.verdict == CREATE:
            return f"create {self.type} {self.name}: {self.detail}"
        return f"left-alone {self.name}: {self.detail}"


@dataclass
class Assessment:
    program: StackProgram
    findings: list[Finding] = field(default_factory=list)
    # Adopted roles by logical name: what a reference to them resolves to.
    roles: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def resolve(self, ref: Ref) -> str | None:
        role = self.roles.get(ref.resource)
        if role is None:
            return None
        return str(role["Arn"] if ref.attribute == "arn" else role["RoleName"])

    @property
    def kinds(self) -> dict[str, str]:
        return {r.name: KIND.get(r.type, "resource") for r in self.program.plan.resources}


def _found(resource: PlannedResource, id_: str, differences: list[Difference]) -> Finding:
    verdict = DIFFERS if differences else ADOPT
    return Finding(verdict, resource.type, resource.name, id_, differences=tuple(differences))


def _create(resource: PlannedResource, detail: str) -> Finding:
    return Finding(CREATE, resource.type, resource.name, detail=detail)


def _regional_id(value: str, region: str | None) -> str:
    """pulumi-aws 7 imports a regional resource in another region than the provider's with
    `<id>@<region>` (docs/enhanced-region-support.md); always given, so the state records the
    region the program declares whatever aws:region says."""
    return f"{value}@{region}" if region else value


def _assess_one(resource: PlannedResource, account: Account, a: Assessment) -> list[Finding]:
    props, region = resource.properties, resource.region
    if resource.type == p.PULL_THROUGH_CACHE_RULE:
        assert region is not None
        prefix = props["ecr_repository_prefix"]
        rule = account.rules(region).get(prefix)
        if rule is None:
            return [_create(resource, f"no rule {prefix} in {region}")]
        diffs = rule_differences(props, rule, a.resolve, a.kinds)
        return [_found(resource, _regional_id(prefix, region), diffs)]
    if resource.type == p.CREATION_TEMPLATE:
        assert region is not None
        prefix = props["prefix"]
        template = account.templates(region).get(prefix)
        if template is None:
            return [_create(resource, f"no creation template {prefix} in {region}")]
        diffs = template_differences(props, template, a.resolve, a.kinds)
        return [_found(resource, _regional_id(prefix, region), diffs)]
    if resource.type == p.REGISTRY_POLICY:
        assert region is not None
        policy = account.registry_policy(region)
        if isinstance(policy, Missing):
            return [_create(resource, f"{policy.reason} in {region}")]
        diff = policy_difference("policy", policy, props["policy"], KEEP_STATEMENTS)
        registry = a.program.plan.account_id
        return [_found(resource, _regional_id(registry, region), [diff] if diff else [])]
    if resource.type == p.REPOSITORY_POLICY:
        assert region is not None
        repository = props["repository"]
        policy = account.repository_policy(region, repository)
        if isinstance(policy, Missing):
            return [_create(resource, f"{policy.reason} in {region}")]
        diff = policy_difference("policy", policy, props["policy"])
        return [_found(resource, _regional_id(repository, region), [diff] if diff else [])]
    if resource.type == p.ACCOUNT_SETTING:
        assert region is not None
        # An account setting always has a value: there is always something to adopt.
        value = account.account_setting(region, props["name"])
        diffs = [] if value == props["value"] else [Difference("value", value, props["value"])]
        return [_found(resource, _regional_id(props["name"], region), diffs)]
    if resource.type == p.ROLE:
        return _assess_role(resource, account, a)
    if resource.type == p.ROLE_POLICY_ATTACHMENT:
        return [_create(resource, "attaches the managed policy this stack creates")]
    if resource.type in ALERT_TYPES:
        return [_create(resource, "an alert resource (ecr-ptc:alerts): pulumi up creates it")]
    return [_create(resource, "its name is generated by Pulumi when created: nothing to adopt")]


def _assess_role(resource: PlannedResource, account: Account, a: Assessment) -> list[Finding]:
    name = resource.properties.get("name")
    if not name:
        return [_create(resource, "its name is generated by Pulumi when created: nothing to adopt")]
    role = account.role(a.program.plan.region, str(name))
    if isinstance(role, Missing):
        return [_create(resource, role.reason)]
    a.roles[resource.name] = role
    findings = [_found(resource, str(name), role_differences(resource.properties, role))]
    findings.extend(
        Finding(
            LEFT_ALONE,
            "",
            f"inline policy {policy} of role {name}",
            detail="the stack adds its own inline policy and leaves this one as it is",
        )
        for policy in role["InlinePolicyNames"]
    )
    return findings


def _left_alone(program: StackProgram, account: Account) -> list[Finding]:
    """What exists beside the stack in its regions: the stack never changes or deletes it."""
    findings: list[Finding] = []
    why = "not in this stack's config; the stack never changes it"
    plan = program.plan
    rules = {
        (r.region, r.properties["ecr_repository_prefix"])
        for r in plan.of_type(p.PULL_THROUGH_CACHE_RULE)
    }
    templates = {(r.region, r.properties["prefix"]) for r in plan.of_type(p.CREATION_TEMPLATE)}
    for region in sorted({region for region, _ in rules if region is not None}):
        for prefix, rule in sorted(account.rules(region).items()):
            if (region, prefix) not in rules:
                source = rule["upstreamRegistryUrl"]
                what = f"pull-through-cache rule {prefix} ({region}, from {source})"
                findings.append(Finding(LEFT_ALONE, "", what, detail=why))
        for prefix in sorted(account.templates(region)):
            if (region, prefix) not in templates:
                what = f"repository creation template {prefix} ({region})"
                findings.append(Finding(LEFT_ALONE, "", what, detail=why))
    policies = program.plan.of_type(p.REPOSITORY_POLICY)
    if policies and not program.plan.of_type(p.REGISTRY_POLICY):
        region = program.plan.region
        if not isinstance(account.registry_policy(region), Missing):
            detail = "this stack grants through repository policies (grantVia: repository)"
            findings.append(Finding(LEFT_ALONE, "", f"registry policy ({region})", detail=detail))
    if program.plan.of_type(p.REGISTRY_POLICY) and not program.plan.of_type(p.ACCOUNT_SETTING):
        region = program.plan.region
        value = account.account_setting(region, "REGISTRY_POLICY_SCOPE")
        detail = "not managed (ecr-ptc:manageRegistryPolicyScope: false)"
        if value != "V2":
            detail += "; under V1 the registry policy is rejected"
        what = f"account setting REGISTRY_POLICY_SCOPE={value} ({region})"
        findings.append(Finding(LEFT_ALONE, "", what, detail=detail))
    return findings


def assess(program: StackProgram, account: Account) -> list[Finding]:
    """One finding per planned resource, in plan order, then what is left alone. Raises
    CouldNotCheck when a read fails."""
    a = Assessment(program)
    for resource in program.plan.resources:
        a.findings.extend(_assess_one(resource, account, a))
    a.findings.extend(_left_alone(program, account))
    return a.findings


# --- the import file -----------------------------------------------------------------------------


def import_file(program: StackProgram, findings: Sequence[Finding]) -> dict[str, Any]:
    """The `pulumi import --file` document for what exists (pulumi/pulumi
    pkg/cmd/pulumi/operations/import.go, importFile/importSpec). Built as `pulumi preview
    --import-file` builds one (operations/preview.go buildImportFile): each component parent
    listed with `component: true` and no id (the import creates it in the state, empty, as the
    program registers it), children of the root stack without a parent, default providers left
    out (the import creates `default_<version>` from the stack's config), `version` the plugin
    version the program's SDK asks for. Each entry's name is its logical name (the program's
    are unique, so `logicalName` is never needed). The URN each entry gets is
    urn:pulumi:<stack>::<project>::<parent's qualified type>$<type>::<logical name>, the one
    the program's registration gets (import.go parseImportFile; deploy/deployment.go
    generateURN)."""
    adopted = [f for f in findings if f.exists]
    wanted: list[Declared] = []
    for finding in adopted:
        for declared in [*program.ancestors(finding.name), program.declared_as(finding.name)]:
            if declared not in wanted:
                wanted.append(declared)
    ids = {f.name: f.id for f in adopted}
    resources: list[dict[str, Any]] = []
    for declared in wanted:
        spec: dict[str, Any] = {"type": declared.type, "name": declared.name}
        if declared.parent is not None:
            spec["parent"] = declared.parent
        if declared.custom:
            spec["id"] = ids[declared.name]
            spec["version"] = declared.version
        else:
            spec["component"] = True
        resources.append(spec)
    return {"resources": resources}


# --- the command ---------------------------------------------------------------------------------


def boto3_session(profile: str | None) -> Any:
    import boto3

    return boto3.Session(profile_name=profile)


def clients_of(session: Any) -> ClientFor:
    made: dict[tuple[str, str], Any] = {}

    def client_for(service: str, region: str) -> Any:
        if (service, region) not in made:
            made[(service, region)] = session.client(service, region_name=region or None)
        return made[(service, region)]

    return client_for


def _could_not_check(side: Side, stack: str, problem: CouldNotCheck, account: str | None) -> str:
    kind = credential_problem(problem.error)
    whose = f"account {account}" if account else f"the {side.name} account"
    where = f" in {problem.where}" if problem.where else ""
    if kind == "network":
        fix = "Check your connection, VPN or proxy (HTTPS_PROXY)"
    elif kind == "credentials" and "AccessDenied" not in str(problem.error):
        fix = (
            f"Log in (e.g. `aws sso login`), or set {side.profile_variable} to a profile of {whose}"
        )
    else:
        fix = (
            f"Use credentials of {whose} that may call {problem.action} (read-only), e.g. set "
            f"{side.profile_variable}"
        )
    return (
        f"make adopt: stack {stack}: could not check: {problem.action}{where} failed with the "
        f"credentials from {side.credential_source}: {problem.error}. {fix}, then run make "
        "adopt again. No import file was written."
    )


def _commands(stack: str, path: Path, side: Side) -> list[str]:
    profile = f"AWS_PROFILE={side.profile} " if side.profile else ""
    return [
        f"pulumi stack select --create {stack}",
        f"{profile}pulumi import --stack {stack} --file {path} --protect=false "
        "--generate-code=false",
        "make up   # once every stack you adopt is imported; its preview comes first",
    ]


def adopt_stack(
    stack: str,
    output: Path | None,
    env: Mapping[str, str],
    session_for: SessionFor,
    project_dir: Path,
    out: TextIO,
    err: TextIO,
) -> int:
    try:
        side_name = side_of(stack, project_dir)
    except ConfigError as error:
        print(f"make adopt: stack {stack}: {error}", file=err)
        return REFUSED
    variable = f"{side_name.upper()}_AWS_PROFILE"
    side = Side(side_name, stack, env.get(variable) or None)
    region = str((stack_config(stack, project_dir) or {}).get(AWS_REGION_KEY) or "")
    pinned = allowed_accounts(stack, project_dir)
    actual: str | None = None
    backend = state_backend(env, project_dir)
    program: StackProgram | None = None
    if pinned:
        # A refused stack file is the stack's problem, whatever the credentials: say it first.
        # The account is the pinned one (checked below), so this run of the program serves.
        try:
            program = stack_program(stack, pinned[0], project_dir, backend)
        except ConfigError as error:
            print(f"make adopt: stack {stack}: {error}", file=err)
            return REFUSED
    try:
        account = Account(clients_of(session_for(side.profile)))
        actual = account.account_id(region)
        if pinned is not None and actual not in pinned:
            print(
                f"make adopt: stack {stack}: could not check: it is pinned to account "
                f"{' or '.join(pinned)} (aws:allowedAccountIds), but the credentials from "
                f"{side.credential_source} belong to account {actual}. Use credentials of that "
                "account, then run make adopt again. No import file was written.",
                file=err,
            )
            return COULD_NOT_CHECK
        if program is None or program.plan.account_id != actual:
            program = stack_program(stack, actual, project_dir, backend)
        findings = assess(program, account)
    except ConfigError as error:
        print(f"make adopt: stack {stack}: {error}", file=err)
        return REFUSED
    except CouldNotCheck as problem:
        print(_could_not_check(side, stack, problem, pinned[0] if pinned else actual), file=err)
        return COULD_NOT_CHECK
    except BotoCoreError as error:  # a profile that does not exist, no region: before any call
        first = CouldNotCheck("sts:GetCallerIdentity", region, error)
        print(_could_not_check(side, stack, first, pinned[0] if pinned else actual), file=err)
        return COULD_NOT_CHECK
    out.write(f"== stack {stack} ({side_name}, account {program.plan.account_id}) ==\n")
    for finding in findings:
        out.write(finding.line() + "\n")
    existing = [f for f in findings if f.exists]
    verdicts = (ADOPT, DIFFERS, CREATE, LEFT_ALONE)
    counts = {v: sum(f.verdict == v for f in findings) for v in verdicts}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    if not existing:
        out.write(f"nothing to adopt ({summary}): no import file written; make up creates it all\n")
        return WRITTEN
    path = output or project_dir / f"adopt-{stack}.json"
    path.write_text(json.dumps(import_file(program, findings), indent=4) + "\n")
    out.write(
        f"wrote {path} ({summary}). Import it (in {project_dir}, with PULUMI_CONFIG_PASSPHRASE "
        "set as for make up), then deploy:\n"
    )
    for command in _commands(stack, path, side):
        out.write(f"  {command}\n")
    return WRITTEN


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    session_for: SessionFor = boto3_session,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", action="append", required=True, help="repeat for several")
    parser.add_argument("--output", type=Path, help="the import file (one --stack only)")
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR)
    args = parser.parse_args(argv)
    if args.output is not None and len(args.stack) > 1:
        parser.error("--output takes one --stack")
    env = dict(os.environ if env is None else env)
    statuses = [
        adopt_stack(stack, args.output, env, session_for, args.project_dir, out, err)
        for stack in args.stack
    ]
    return max(statuses)


if __name__ == "__main__":
    sys.exit(main())
