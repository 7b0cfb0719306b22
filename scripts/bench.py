"""`make bench`: how much room the quotas leave, and what evaluating the program costs.

(a) The largest number of rules whose policies fit every IAM/ECR size quota, in the worst case
    for size: every ecrRepositoryPrefix and upstreamRepositoryPrefix 30 characters (the most AWS
    allows), an upstream that shares every repository (so each rule reads its own upstream
    namespace), and a repository template with a KMS key in each region and resource tags. It
    calls the plan functions (components/plan/stack_plan.py) with more and more rules until one
    policy is refused; AWS itself caps rules at 50 per registry. Then the size of each policy at
    50 rules.
(b) The mocked evaluation time of the whole downstream program (tests/pulumi_run.run_program):
    50 rules in 8 regions against 1 rule in 1 region, the median of several runs.
(c) Every validation pattern against the near misses of tests/test_strict_inputs.py (10,000
    characters each), and for comparison the repository-name pattern of 0.2, whose empty
    separator made it exponential.
(d) The fleet driver's overhead (scripts/bench_fleet), when that module exists.

No Pulumi CLI and no AWS. Timings vary by machine; they stay out of `make test`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import re
import statistics
import time
from typing import Any

from components.inputs.stack_config import CacheRule, DownstreamConfig, parse_downstream
from components.plan.contract import UpstreamFacts
from components.plan.policies import PolicyTooLargeError
from components.plan.stack_plan import (
    consumer_policy_text,
    plan_downstream,
    role_permissions_text,
    template_role_permissions_text,
)
from components.rules import quotas
from components.rules.aws_names import region
from scripts.stack_files import cli_config
from tests.pulumi_run import (
    DOWNSTREAM_ACCOUNT,
    UPSTREAM_ACCOUNT,
    RecordingMocks,
    run_program,
)

REGION_COUNTS = (1, 4, 8, 17)
# Seventeen regions of the aws partition, this stack's own (eu-west-1) first.
REGIONS = (
    "eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "eu-west-2", "eu-west-3",
    "eu-north-1", "us-east-2", "us-west-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2",
    "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "ca-central-1", "sa-east-1",
)  # fmt: skip
UPSTREAM_STACK = "organization/ecr-ptc/upstream"
UPSTREAM_REGION = "us-east-1"
SEARCH_LIMIT = 1000
TIMED_RUNS = 7
COMPONENT = "ecr-ptc"
KMS_KEY_ID = "12345678-1234-1234-1234-123456789012"
# The repository-name pattern of 0.2: `[-]*` lets a separator be empty, so a run of letters
# splits in exponentially many ways before a mismatch is known.
_OLD_PART = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
OLD_REPOSITORY_NAME = rf"(?:{_OLD_PART}/)*{_OLD_PART}"


def prefix(i: int, letter: str) -> str:
    """A distinct prefix of exactly quotas.PREFIX_MAX_CHARS characters."""
    return f"{i:04d}".ljust(quotas.PREFIX_MAX_CHARS, letter)


def rules(n: int) -> list[dict[str, str]]:
    return [
        {"ecrRepositoryPrefix": prefix(i, "a"), "upstreamRepositoryPrefix": prefix(i, "b")}
        for i in range(n)
    ]


def stack_config(n_rules: int, n_regions: int) -> dict[str, Any]:
    regions = list(REGIONS[:n_regions])
    return {
        "aws:region": regions[0],
        "ecr-ptc:upstreamStack": UPSTREAM_STACK,
        "ecr-ptc:regions": regions,
        "ecr-ptc:rules": rules(n_rules),
        "ecr-ptc:repositoryTemplate": {
            "kmsKeyArn": {
                r: f"arn:aws:kms:{r}:{DOWNSTREAM_ACCOUNT}:key/{KMS_KEY_ID}" for r in regions
            },
            "resourceTags": {"team": "platform"},
        },
    }


def raw(values: dict[str, Any]) -> dict[str, str]:
    return cli_config(values)


def upstream_facts() -> UpstreamFacts:
    where = region(UPSTREAM_REGION)
    return UpstreamFacts(
        account_id=UPSTREAM_ACCOUNT,
        region=where,
        downstream_account_ids=(DOWNSTREAM_ACCOUNT,),
        organization_id=None,
        repository_prefix=None,
    )


def with_rules(config: DownstreamConfig, n: int) -> DownstreamConfig:
    """`config` (parsed, so at most AWS's 50 rules) with n rules: past 50 only the plan can tell
    which policy would overflow first."""
    return dataclasses.replace(
        config,
        rules=tuple(
            CacheRule(r["ecrRepositoryPrefix"], r["upstreamRepositoryPrefix"]) for r in rules(n)
        ),
    )


def most_rules_that_fit(n_regions: int) -> tuple[int, str]:
    config = parse_downstream(raw(stack_config(quotas.MAX_RULES_PER_REGISTRY, n_regions)))
    facts = upstream_facts()
    for n in range(1, SEARCH_LIMIT + 1):
        try:
            plan_downstream(with_rules(config, n), facts, DOWNSTREAM_ACCOUNT, COMPONENT)
        except PolicyTooLargeError as err:
            return n - 1, err.valid.split(";")[0]
    return SEARCH_LIMIT, f"nothing up to {SEARCH_LIMIT} rules"


def policy_sizes(n_regions: int) -> dict[str, tuple[int, int]]:
    config = parse_downstream(raw(stack_config(quotas.MAX_RULES_PER_REGISTRY, n_regions)))
    template = config.repository_template
    assert template is not None
    return {
        "cache role": (
            len(role_permissions_text(config, upstream_facts(), DOWNSTREAM_ACCOUNT)),
            quotas.ROLE_INLINE_POLICIES_MAX_CHARS,
        ),
        "template role (KMS)": (
            len(template_role_permissions_text(config, template, DOWNSTREAM_ACCOUNT)),
            quotas.ROLE_INLINE_POLICIES_MAX_CHARS,
        ),
        "consumer": (
            len(consumer_policy_text(config, DOWNSTREAM_ACCOUNT)),
            quotas.MANAGED_POLICY_MAX_CHARS,
        ),
    }


def upstream_outputs() -> dict[str, Any]:
    return upstream_facts().to_outputs()


def evaluation_ms(n_rules: int, n_regions: int) -> tuple[float, int]:
    """The median wall time of the whole downstream program under mocks, and what it declared."""
    config = stack_config(n_rules, n_regions)
    times, declared = [], 0
    for _ in range(TIMED_RUNS):
        mocks = RecordingMocks(DOWNSTREAM_ACCOUNT, {UPSTREAM_STACK: upstream_outputs()})
        start = time.perf_counter()
        run_program(config, "downstream", mocks)
        times.append((time.perf_counter() - start) * 1000)
        declared = len([r for r in mocks.resources if r.typ.startswith("aws:")])
    return statistics.median(times), declared


def main() -> None:
    cap = quotas.MAX_RULES_PER_REGISTRY
    print(
        f"(a) rules that fit every IAM/ECR policy quota: {quotas.PREFIX_MAX_CHARS}-character "
        "ecrRepositoryPrefix and upstreamRepositoryPrefix,"
    )
    print("    a repository template with a KMS key per region and resource tags")
    print(f"    {'regions':>7}  {'rules that fit':>14}  first policy over its quota")
    for n_regions in REGION_COUNTS:
        fit, first = most_rules_that_fit(n_regions)
        print(f"    {n_regions:>7}  {fit:>14}  {first}")
    print(f"    AWS caps rules at {cap} per registry (not adjustable): at most {cap} rules apply.")
    print(f"\n    policy sizes at {cap} rules, in characters (quota):")
    sizes = {n: policy_sizes(n) for n in REGION_COUNTS}
    names = list(sizes[REGION_COUNTS[0]])
    print(f"    {'regions':>7}  " + "  ".join(f"{name:>24}" for name in names))
    for n_regions, row in sizes.items():
        cells = [f"{size:,} / {limit:,} ({size / limit:.0%})" for size, limit in row.values()]
        print(f"    {n_regions:>7}  " + "  ".join(f"{c:>24}" for c in cells))

    print(f"\n(b) mocked evaluation of the whole downstream program, median of {TIMED_RUNS} runs")
    evaluation_ms(1, 1)  # warm-up: imports, botocore's endpoint data
    small, small_count = evaluation_ms(1, 1)
    large, large_count = evaluation_ms(cap, 8)
    print(f"    1 rule x 1 region:     {small:8.1f} ms  ({small_count} AWS resources)")
    print(f"    {cap} rules x 8 regions: {large:8.1f} ms  ({large_count} AWS resources)")
    print(f"    ratio: {large / small:.1f}x")

    print("\n(c) validation patterns on adversarial input")
    from tests.test_strict_inputs import NEAR_MISSES, PATTERNS

    timings = []
    for name, pattern in PATTERNS.items():
        compiled = re.compile(pattern.removeprefix("^").removesuffix("$"), re.ASCII)
        start = time.perf_counter()
        for text in NEAR_MISSES:
            compiled.fullmatch(text)
        timings.append((time.perf_counter() - start, name))
    slowest, name = max(timings)
    total = sum(t for t, _ in timings)
    print(
        f"    {len(PATTERNS)} patterns x {len(NEAR_MISSES)} near misses of 10,000 characters: "
        f"{total * 1000:.1f} ms in all; slowest {name}, {slowest * 1000:.1f} ms"
    )
    old = re.compile(OLD_REPOSITORY_NAME, re.ASCII)
    for letters in (16, 18, 20, 22):
        start = time.perf_counter()
        old.fullmatch("a" * letters + "!")
        took = (time.perf_counter() - start) * 1000
        print(f"    0.2's repository-name pattern, {letters} letters and a '!': {took:8.1f} ms")

    if importlib.util.find_spec("scripts.bench_fleet") is not None:
        print("\n(d) ", end="")
        importlib.import_module("scripts.bench_fleet").main()


if __name__ == "__main__":
    main()
