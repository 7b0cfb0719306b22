"""`make verify`: ask ECR whether every deployed pull-through-cache rule works.

Reads the downstream stack's `rules` output and calls ValidatePullThroughCacheRule for each rule
in its region, with the downstream account's credentials (DOWNSTREAM_AWS_PROFILE, or the ambient
ones). One line per rule; exit 1 if any rule is not valid, 2 if it could not check at all.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.contract import RULES_OUTPUT
from scripts.deploy import PROJECT_DIR, PreflightError, check_backend, check_cli

EcrClientFor = Callable[[str], Any]  # region -> boto3 ECR client


@dataclass(frozen=True)
class RuleCheck:
    region: str
    ecr_repository_prefix: str
    valid: bool
    detail: str

    def line(self) -> str:
        status = "valid  " if self.valid else "INVALID"
        return f"{status} {self.region:<15} {self.ecr_repository_prefix:<31} {self.detail}"


def read_rules(
    stack: str, pulumi: str, env: Mapping[str, str], run: Callable[..., Any] = subprocess.run
) -> list[dict[str, str]]:
    result = run(
        [pulumi, "stack", "output", RULES_OUTPUT, "--json", "--stack", stack],
        cwd=PROJECT_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PreflightError(
            f"could not read output {RULES_OUTPUT!r} of stack {stack!r}: "
            f"{result.stderr.strip() or result.stdout.strip()}. Deploy it first (`make up`)."
        )
    rules = json.loads(result.stdout or "null")
    if not isinstance(rules, list) or not rules:
        raise PreflightError(f"stack {stack!r} has no rules in its {RULES_OUTPUT!r} output")
    return rules


def verify(rules: Sequence[Mapping[str, str]], client_for: EcrClientFor) -> list[RuleCheck]:
    from botocore.exceptions import BotoCoreError, ClientError

    checks = []
    for rule in rules:
        region, prefix = rule["region"], rule["ecrRepositoryPrefix"]
        try:
            answer = client_for(region).validate_pull_through_cache_rule(ecrRepositoryPrefix=prefix)
        except (ClientError, BotoCoreError) as err:
            checks.append(RuleCheck(region, prefix, False, f"could not validate: {err}"))
            continue
        if answer.get("isValid"):
            detail = (
                f"pulls from {answer.get('upstreamRegistryUrl', rule.get('upstreamRegistryUrl'))}"
            )
            checks.append(RuleCheck(region, prefix, True, detail))
        else:
            checks.append(
                RuleCheck(region, prefix, False, answer.get("failure") or "ECR gave no reason")
            )
    return checks


def boto3_clients(profile: str | None) -> EcrClientFor:
    import boto3

    session = boto3.Session(profile_name=profile)
    return lambda region: session.client("ecr", region_name=region)


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[..., Any] = subprocess.run,
    clients: Callable[[str | None], EcrClientFor] = boto3_clients,
) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", default="downstream")
    args = parser.parse_args(argv)
    env = dict(os.environ if env is None else env)
    profile = env.get("DOWNSTREAM_AWS_PROFILE") or None
    if profile:
        env["AWS_PROFILE"] = profile
    try:
        pulumi = check_cli(which)
        check_backend(env)
        rules = read_rules(args.stack, pulumi, env, run)
    except PreflightError as err:
        print(f"make verify: {err}", file=sys.stderr)
        return 2
    checks = verify(rules, clients(profile))
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.valid]
    print(f"{len(checks) - len(failed)} of {len(checks)} rules valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
