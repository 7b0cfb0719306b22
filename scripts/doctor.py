"""`make doctor`: every link of a downstream stack's pull-through-cache chain, each asked of AWS.

What should exist is the stack's offline plan (`make plan`'s: components.declare.program
`plan_stack`, planned against the upstream stack file's planned outputs, or the upstream given by
account and region), so no Pulumi CLI and no state backend is needed. What exists is asked with
the downstream account's credentials (DOWNSTREAM_AWS_PROFILE, or the ambient ones) and, for the
upstream's links, the upstream account's (UPSTREAM_AWS_PROFILE; unset: those links are UNKNOWN).
`--image <repo:tag>` (make doctor IMAGE=...) adds a canary pull through the cache in each region.

One line per link, `ok`, `BROKEN: <cause and fix>` or `UNKNOWN: <why>`, then a last line naming
the case. Exit status 0 when every link is ok, 1 when any is broken, 2 when some could not be
checked (or the doctor could not start). `make` reports any non-zero status as its own 2: run
`.venv/bin/python -m scripts.doctor` to get 0/1/2 directly. With GITHUB_STEP_SUMMARY set, the
links are appended to it as a markdown table; `--json FILE` writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from components.declare.program import direct_upstream, plan_stack
from components.inputs.errors import ConfigError
from components.inputs.stack_config import (
    ALLOWED_ACCOUNT_IDS_KEY,
    UPSTREAM_STACK,
    DownstreamConfig,
    allowed_account_id,
    is_fleet_template,
    parse,
)
from components.plan.contract import UpstreamFacts, upstream_repository_arns
from components.plan.stack_plan import (
    CREATION_TEMPLATE,
    PULL_THROUGH_CACHE_RULE,
    REPOSITORY_POLICY,
    ROLE_POLICY_ATTACHMENT,
    StackPlan,
)
from components.rules.aws_names import ROOT_PREFIX
from scripts.ci_roles import CACHE_ROLE_PREFIX
from scripts.doctor_checks import (
    ClientFor,
    Doctor,
    Expected,
    ExpectedRule,
    Image,
    Link,
    lines,
    outcome,
    parse_image,
    upstream_repository,
)
from scripts.doctor_policies import BROKEN, OK, UNKNOWN
from scripts.stack_files import (
    PROJECT_DIR,
    cli_config,
    short_name,
    stack_file_config,
    stack_names,
)

SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"
IMAGE_VARIABLE = "IMAGE"
JSON_VARIABLE = "DOCTOR_JSON"
# (the upstream's facts, its plan when its stack file is here), by upstream stack name.
Upstreams = MutableMapping[str, tuple[UpstreamFacts, StackPlan | None]]


# --- what should exist ----------------------------------------------------------------------------


def upstream_of(
    config: DownstreamConfig, project_dir: Path, upstreams: Upstreams | None = None
) -> tuple[UpstreamFacts, StackPlan | None]:
    """The upstream as `make plan` plans the downstream against it: given by account and region,
    or the planned outputs of the upstream stack file (and that plan: how it grants)."""
    direct = direct_upstream(config)
    if direct is not None:
        return direct, None
    stack = config.upstream_stack
    assert stack is not None, "config parsing guarantees an upstream"
    if upstreams is not None and stack in upstreams:
        return upstreams[stack]
    from scripts.plan import plan_repository

    short = short_name(stack)
    if short not in stack_names(project_dir):
        raise ConfigError(
            UPSTREAM_STACK.full,
            stack,
            f"an upstream stack whose file is here (Pulumi.{short}.yaml): the doctor knows what "
            "the upstream grants from its planned outputs, offline. Run it where that file is, "
            "or name the upstream with ecr-ptc:upstreamAccountId and ecr-ptc:upstreamRegion",
        )
    [result] = plan_repository(project_dir, [short])
    if result.plan is None:
        assert result.error is not None
        raise ConfigError(
            UPSTREAM_STACK.full, stack, f"an upstream stack that plans; it does not: {result.error}"
        )
    found = (UpstreamFacts.from_outputs(stack, result.plan.outputs), result.plan)
    if upstreams is not None:
        upstreams[stack] = found
    return found


def expected_state(
    stack: str,
    config: DownstreamConfig,
    facts: UpstreamFacts,
    plan: StackPlan,
    upstream_plan: StackPlan | None,
) -> Expected:
    """What `make up` of this plan leaves in AWS, as the doctor compares it."""
    rules = tuple(
        ExpectedRule(
            str(r.properties["region"]),
            str(r.properties["ecr_repository_prefix"]),
            str(r.properties.get("upstream_repository_prefix") or ROOT_PREFIX),
        )
        for r in plan.of_type(PULL_THROUGH_CACHE_RULE)
    )
    repositories = (
        tuple(str(r.properties["repository"]) for r in upstream_plan.of_type(REPOSITORY_POLICY))
        if upstream_plan is not None
        else ()
    )
    return Expected(
        stack=stack,
        account_id=plan.account_id,
        partition=config.region.partition,
        home_region=config.region.name,
        regions=tuple(r.name for r in config.regions),
        rules=rules,
        upstream_account_id=facts.account_id,
        upstream_region=facts.region.name,
        upstream_registry_url=facts.registry_url,
        upstream_reads=tuple(upstream_repository_arns(facts, config.rules)),
        cache_role_arn=config.cache_role_arn,
        cache_role_name=config.role_name,
        cache_role_autoname_prefix=CACHE_ROLE_PREFIX,
        templates=tuple(
            (str(r.properties["region"]), str(r.properties["prefix"]))
            for r in plan.of_type(CREATION_TEMPLATE)
        ),
        consumer_roles=tuple(
            str(r.properties["role"]) for r in plan.of_type(ROLE_POLICY_ATTACHMENT)
        ),
        upstream_grant_repositories=repositories,
    )


def target_for(
    stack: str,
    values: Mapping[str, Any],
    project_dir: Path = PROJECT_DIR,
    account_id: str | None = None,
    upstreams: Upstreams | None = None,
) -> Expected:
    """The expected state of the downstream stack with these config values (its stack file's, or
    a fleet member's), planned as `make plan` plans it."""
    raw = cli_config(values, project_dir)
    config = parse(raw, stack)
    if not isinstance(config, DownstreamConfig):
        raise ConfigError(
            "stack",
            stack,
            "a downstream stack: the doctor checks a downstream's chain, the upstream's grant "
            "included (run it on a downstream of this upstream, with UPSTREAM_AWS_PROFILE)",
        )
    account = allowed_account_id(raw) or account_id
    if account is None:
        raise ConfigError(
            ALLOWED_ACCOUNT_IDS_KEY,
            None,
            "the one account this stack deploys to, e.g. ['444455556666']: the doctor plans the "
            "stack offline, as make plan does, and checks that account",
        )
    facts, upstream_plan = upstream_of(config, project_dir, upstreams)
    plan = plan_stack(config, account, facts)
    return expected_state(stack, config, facts, plan, upstream_plan)


def stack_target(stack: str, project_dir: Path = PROJECT_DIR) -> Expected:
    if stack not in stack_names(project_dir):
        raise ConfigError(
            "--stack", stack, f"one of the stack files here: {', '.join(stack_names(project_dir))}"
        )
    values = stack_file_config(project_dir, stack)
    if is_fleet_template(cli_config(values, project_dir)):
        raise ConfigError(
            "--stack",
            stack,
            "a stack that is deployed itself; this one is a fleet template: run `make "
            f"fleet-doctor TEMPLATE={stack}` for its members",
        )
    return target_for(stack, values, project_dir)


def check_image(expected: Expected, image: Image | None) -> None:
    """IMAGE names a cache repository under one of the stack's rules."""
    if image is not None and upstream_repository(expected.rules, image.repository) is None:
        prefixes = ", ".join(sorted({r.ecr_repository_prefix for r in expected.rules}))
        raise ValueError(
            f"IMAGE={image}: a cache repository under a rule prefix of stack {expected.stack} "
            f"({prefixes}), as pulled from the cache: <prefix>/<repository>:<tag>"
        )


# --- credentials ----------------------------------------------------------------------------------


def session_clients(make_session: Callable[[], Any]) -> ClientFor:
    """Clients of one boto3 session, made when first asked for (a profile that does not exist
    fails the first call, which the doctor reports) and shared by threads (boto3 clients are
    thread-safe; making them is not)."""
    lock = threading.Lock()
    made: dict[Any, Any] = {}

    def client(service: str, region: str) -> Any:
        with lock:
            if "session" not in made:
                made["session"] = make_session()
            if (service, region) not in made:
                made[(service, region)] = made["session"].client(service, region_name=region)
            return made[(service, region)]

    return client


def profile_clients(profile: str | None) -> ClientFor:
    def make() -> Any:
        import boto3

        return boto3.Session(profile_name=profile)

    return session_clients(make)


def profile_source(variable: str, profile: str | None) -> str:
    return f"profile {profile!r} ({variable})" if profile else f"the environment ({variable} unset)"


# --- output ---------------------------------------------------------------------------------------


def markdown_cell(text: str) -> str:
    """Text as one markdown table cell that renders as text: no HTML, no row or cell breaks."""
    return (
        " ".join(str(text).split())
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
    )


STATUS_MARK = {OK: "ok", BROKEN: "**BROKEN**", UNKNOWN: "UNKNOWN"}


def links_markdown(links: Sequence[Link]) -> str:
    rows = ["| Link | Status | Detail |", "| --- | --- | --- |"]
    rows += [
        f"| {markdown_cell(k.name)} | {STATUS_MARK[k.status]} | {markdown_cell(k.detail)} |"
        for k in links
    ]
    return "\n".join(rows) + "\n"


def append_summary(env: Mapping[str, str], text: str) -> None:
    path = env.get(SUMMARY_VARIABLE)
    if path:
        with open(path, "a", encoding="utf-8") as summary:
            summary.write(text)


def report_json(stack: str, account: str, links: Sequence[Link]) -> dict[str, Any]:
    status, last = outcome(links)
    return {
        "stack": stack,
        "accountId": account,
        "exitCode": status,
        "summary": last,
        "links": [k.to_json() for k in links],
    }


# --- the command ----------------------------------------------------------------------------------


def add_report_arguments(parser: argparse.ArgumentParser, json_help: str) -> None:
    """--image, --json and --project-dir, the options make doctor and make fleet-doctor share."""
    parser.add_argument(
        "--image", default=None, help="<cache repository>:<tag>, a canary pull (default: $IMAGE)"
    )
    parser.add_argument("--json", default=None, help=json_help)
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR)


def report_options(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str]:
    """The canary image and the JSON file: the option if given, else the environment (not
    make's command line: make would expand `$(...)` in a value)."""
    image_text = env.get(IMAGE_VARIABLE, "") if args.image is None else args.image
    json_file = env.get(JSON_VARIABLE, "") if args.json is None else args.json
    return image_text, json_file


def write_json(path: str, document: Mapping[str, Any]) -> None:
    """The report as JSON, when a file was asked for."""
    if path:
        Path(path).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    clients: Callable[[str | None], ClientFor] = profile_clients,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", default="downstream")
    add_report_arguments(parser, "also write the links to this file (default: $DOCTOR_JSON)")
    args = parser.parse_args(argv)
    env = dict(os.environ if env is None else env)
    image_text, json_file = report_options(args, env)
    try:
        expected = stack_target(args.stack, args.project_dir)
        image: Image | None = parse_image(image_text) if image_text else None
        check_image(expected, image)
    except (ConfigError, ValueError) as error:
        print(f"make doctor: {error}", file=err)
        print("COULD NOT CHECK: no link was checked", file=out)
        return 2
    downstream = env.get("DOWNSTREAM_AWS_PROFILE") or None
    upstream = env.get("UPSTREAM_AWS_PROFILE") or None
    doctor = Doctor(
        expected,
        clients(downstream),
        clients(upstream) if upstream else None,
        image,
        clock=clock,
        downstream_source=profile_source("DOWNSTREAM_AWS_PROFILE", downstream),
        upstream_source=profile_source("UPSTREAM_AWS_PROFILE", upstream),
    )
    links = doctor.run()
    for line in lines(links):
        print(line, file=out)
    status, last = outcome(links)
    print(last, file=out)
    write_json(json_file, report_json(expected.stack, expected.account_id, links))
    append_summary(
        env,
        f"### make doctor: stack `{markdown_cell(expected.stack)}` "
        f"({expected.account_id})\n\n**{markdown_cell(last)}**\n\n{links_markdown(links)}\n",
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
