"""`make verify`: ask ECR whether every deployed pull-through-cache rule works.

Reads the downstream stack's `rules` output and calls ValidatePullThroughCacheRule for each rule
in its region, with the downstream account's credentials (DOWNSTREAM_AWS_PROFILE, or the ambient
ones). One line per rule, then a last line saying which case happened. Exit status 0 if every rule
is valid, 1 if any rule is invalid, 2 if it could not check (no CLI, no passphrase, stack not
deployed, AWS unreachable or credentials refused). `make` reports any non-zero status of a recipe
as its own status 2; run `.venv/bin/python -m scripts.verify` to get 0/1/2 directly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError

from components.inputs.errors import ConfigError
from components.plan.contract import RULES_OUTPUT
from scripts.deploy import (
    PreflightError,
    Which,
    check_backend,
    check_cli,
    on_path,
    stack_outputs,
)

EcrClientFor = Callable[[str], Any]  # region -> boto3 ECR client

ALL_VALID, SOME_INVALID, COULD_NOT_CHECK = 0, 1, 2
# ECR's answer when the rule itself is missing: the rule is broken, not the check.
RULE_MISSING = "PullThroughCacheRuleNotFoundException"


@dataclass(frozen=True)
class RuleCheck:
    region: str
    ecr_repository_prefix: str
    valid: bool
    detail: str
    # False when ECR could not be asked (network, credentials): neither valid nor invalid.
    checked: bool = True

    def line(self) -> str:
        status = "valid  " if self.valid else ("INVALID" if self.checked else "UNKNOWN")
        return f"{status} {self.region:<15} {self.ecr_repository_prefix:<31} {self.detail}"


def read_rules(
    stack: str, pulumi: str, env: Mapping[str, str], run: Callable[..., Any] = subprocess.run
) -> list[dict[str, str]]:
    result = stack_outputs(pulumi, stack, env, run, RULES_OUTPUT)
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
        except ClientError as err:
            missing = err.response.get("Error", {}).get("Code") == RULE_MISSING
            checks.append(
                RuleCheck(region, prefix, False, f"could not validate: {err}", checked=missing)
            )
            continue
        except BotoCoreError as err:
            checks.append(RuleCheck(region, prefix, False, f"could not validate: {err}", False))
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


def outcome(checks: Sequence[RuleCheck]) -> tuple[int, str]:
    """The exit status and the last line, which names the case."""
    invalid = [c for c in checks if c.checked and not c.valid]
    unchecked = [c for c in checks if not c.checked]
    total = len(checks)
    if invalid:
        return SOME_INVALID, f"INVALID: {len(invalid)} of {total} rules invalid"
    if unchecked:
        return COULD_NOT_CHECK, (
            f"COULD NOT CHECK: {len(unchecked)} of {total} rules could not be validated"
        )
    return ALL_VALID, f"VALID: all {total} rules valid"


def boto3_clients(profile: str | None) -> EcrClientFor:
    import boto3

    session = boto3.Session(profile_name=profile)
    return lambda region: session.client("ecr", region_name=region)


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    which: Which | None = None,
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
        pulumi = check_cli(which or on_path(env), "verify")
        check_backend(env)
        rules = read_rules(args.stack, pulumi, env, run)
        client_for = clients(profile)
    except (PreflightError, ConfigError) as err:
        print(f"make verify: {err}", file=sys.stderr)
        print("COULD NOT CHECK: no rule was validated")
        return COULD_NOT_CHECK
    except BotoCoreError as err:  # e.g. DOWNSTREAM_AWS_PROFILE names no profile
        print(
            f"make verify: the downstream account's AWS credentials: {err}. Set "
            "DOWNSTREAM_AWS_PROFILE to a profile of that account, then run `make verify` again",
            file=sys.stderr,
        )
        print("COULD NOT CHECK: no rule was validated")
        return COULD_NOT_CHECK
    checks = verify(rules, client_for)
    for check in checks:
        print(check.line())
    status, last_line = outcome(checks)
    print(last_line)
    return status


if __name__ == "__main__":
    sys.exit(main())
