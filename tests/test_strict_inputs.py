"""Validation as strict as the APIs the config feeds: no input hangs, widens a grant or reaches
AWS wrong.

The rows below run through the whole program as `pulumi up` runs it (tests/test_refusals.py's
harness): each bad input is refused as one clean message naming its key, with nothing
registered; each valid edge case is accepted and creates what it says.
"""

from __future__ import annotations

import json
import random
import re
import time
from typing import Any

import pytest
from pydantic import TypeAdapter

from components.inputs import values
from components.inputs.errors import ConfigError
from components.inputs.stack_config import KEYS, parse_fleet, resembles_namespace
from components.rules import aws_names, policy_rules
from components.rules.policy_rules import CACHE_READ_ACTIONS
from policy import guardrails
from scripts.stack_files import cli_config
from tests.pulumi_run import DOWNSTREAM_ACCOUNT, UPSTREAM_ACCOUNT
from tests.test_refusals import (
    ARN_HEAD,
    DOWN,
    EXCLUSION,
    ONE_REGION,
    TEMPLATE,
    Bad,
    X,
    check,
    down,
    kms,
    output,
    registry_statements,
    run_down,
    run_up,
    up,
)

SHARED = f"{ARN_HEAD}golden/*"
ORG = "o-abcdefghij"
READ: dict[str, Any] = {
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
    "Action": "ecr:BatchGetImage",
    "Resource": f"{ARN_HEAD}*",
}
IN_ORG = {"StringEquals": {"aws:PrincipalOrgID": ORG}}
WITH_ORG = {"ecr-ptc:organizationId": ORG}
ALL_READ = ", ".join(CACHE_READ_ACTIONS)


def deny(**fields: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Principal": "*", "Action": "ecr:*", **fields}


# fmt: off
NAMESPACES = [
    up("namespace-with-underscore", {"ecr_ptc:repositoryPrefix": "golden"},
       "ecr_ptc:repositoryPrefix", "'golden'", "did you mean ecr-ptc:repositoryPrefix?"),
    up("namespace-misspelled", {"ecr-ptx:repositoryPrefix": "golden"},
       "ecr-ptx:repositoryPrefix", "'golden'", "did you mean ecr-ptc:repositoryPrefix?"),
    up("namespace-upper-case", {"ECR-PTC:repositoryPrefix": "golden"},
       "ECR-PTC:repositoryPrefix", "'golden'", "did you mean ecr-ptc:repositoryPrefix?"),
    down("namespace-without-dash", {"ecrptc:regions": ["eu-west-1"]},
         "ecrptc:regions", "'[\"eu-west-1\"]'", "did you mean ecr-ptc:regions?"),
    down("namespace-and-key-misspelled", {"ecr_ptc:regoins": ["eu-west-1"]},
         "ecr_ptc:regoins", "'[\"eu-west-1\"]'", "did you mean ecr-ptc:regions?"),
    up("our-key-under-another-namespace", {"ecr:repositoryPrefix": "golden"},
       "ecr:repositoryPrefix", "'golden'", "did you mean ecr-ptc:repositoryPrefix?"),
    up("namespace-typo-without-a-close-key", {"ecr_ptc:foo": "1"},
       "ecr_ptc:foo", "'1'", "the known keys are ecr-ptc:accountOverrides, ecr-ptc:accountPreviewRoleName"),
]

STATEMENTS = [
    up("allow-ecr-star-to-star", {X: [{"Effect": "Allow", "Principal": "*", "Action": "ecr:*", "Resource": "*"}]},
       f"{X}[0].Action", "'ecr:*'", "an action an ECR policy may allow, named exactly (no wildcard)"),
    up("allow-with-NotPrincipal", {X: [{**{k: v for k, v in READ.items() if k != "Principal"}, "NotPrincipal": {"AWS": "arn:aws:iam::999988887777:root"}}]},
       f"{X}[0].NotPrincipal", "{'AWS': 'arn:aws:iam::999988887777:root'}", "unset in an Allow"),
    up("allow-with-NotAction", {X: [{**{k: v for k, v in READ.items() if k != "Action"}, "NotAction": "ecr:PutImage"}]},
       f"{X}[0].NotAction", "'ecr:PutImage'", "unset in an Allow: NotAction grants everything it does not list"),
    up("allow-with-NotResource", {X: [{**{k: v for k, v in READ.items() if k != "Resource"}, "NotResource": SHARED}]},
       f"{X}[0].NotResource", repr(SHARED), "unset in an Allow"),
    up("allow-a-write-to-a-grantee", {X: [READ | {"Principal": {"AWS": f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:root"}, "Action": ["ecr:BatchGetImage", "ecr:PutImage"]}]},
       f"{X}[0].Action[1]", "'ecr:PutImage'", "an action an ECR policy may allow"),
    up("allow-s3", {X: [READ | {"Action": "s3:GetObject"}]},
       f"{X}[0].Action", "'s3:GetObject'", "an ECR policy governs ECR actions only"),
    up("action-without-a-service", {X: [READ | {"Action": "BatchGetImage"}]},
       f"{X}[0].Action", "'BatchGetImage'", "'ecr:' and its name"),
    up("deny-of-a-misspelled-action", {X: [deny(Action="ecr:BatchGetImages")]},
       f"{X}[0].Action", "'ecr:BatchGetImages'", "an action IAM defines for ECR"),
    up("deny-of-a-pattern-matching-nothing", {X: [deny(Action="ecr:Fetch*")]},
       f"{X}[0].Action", "'ecr:Fetch*'", "a pattern that matches an ECR action"),
    up("operator-StringNotEqual", {X: [deny(Condition={"StringNotEqual": {"aws:PrincipalOrgID": ORG}})]},
       f"{X}[0].Condition.StringNotEqual", "'StringNotEqual'", "did you mean StringNotEquals?"),
    up("operator-StringEqualz", {X: [deny(Condition={"StringEqualz": {"aws:PrincipalOrgID": ORG}})]},
       f"{X}[0].Condition.StringEqualz", "'StringEqualz'", "did you mean StringEquals?"),
    up("operator-Null-IfExists", {X: [deny(Condition={"NullIfExists": {"aws:PrincipalOrgID": "true"}})]},
       f"{X}[0].Condition.NullIfExists", "'NullIfExists'", "an IAM condition operator"),
    up("operator-with-an-empty-block", {X: [deny(Condition={"StringNotEquals": {}})]},
       f"{X}[0].Condition.StringNotEquals", "{}", "at least one key"),
    up("condition-value-a-mapping", {X: [deny(Condition={"StringNotEquals": {"aws:PrincipalOrgID": {"id": ORG}}})]},
       f"{X}[0].Condition.StringNotEquals.aws:PrincipalOrgID", "{'id': 'o-abcdefghij'}",
       "a string (or a number, or true or false), or a non-empty list of them"),
    up("condition-value-an-empty-list", {X: [deny(Condition={"StringNotEquals": {"aws:PrincipalOrgID": []}})]},
       f"{X}[0].Condition.StringNotEquals.aws:PrincipalOrgID", "[]", "a non-empty list"),
    up("Bool-condition-of-maybe", {X: [deny(Condition={"Bool": {"aws:SecureTransport": "maybe"}})]},
       f"{X}[0].Condition.Bool.aws:SecureTransport", "'maybe'", "true or false, as Bool compares"),
    up("Numeric-condition-of-text", {X: [deny(Condition={"NumericLessThan": {"aws:MultiFactorAuthAge": "abc"}})]},
       f"{X}[0].Condition.NumericLessThan.aws:MultiFactorAuthAge", "'abc'", "a number"),
    up("IpAddress-condition-of-text", {X: [deny(Condition={"NotIpAddress": {"aws:SourceIp": "not-an-ip"}})]},
       f"{X}[0].Condition.NotIpAddress.aws:SourceIp", "'not-an-ip'", "an IPv4 or IPv6 address or CIDR"),
    up("Date-condition-of-a-word", {X: [deny(Condition={"DateGreaterThan": {"aws:CurrentTime": "yesterday"}})]},
       f"{X}[0].Condition.DateGreaterThan.aws:CurrentTime", "'yesterday'", "ISO 8601"),
    up("role-name-over-64-characters", {X: [READ | {"Principal": {"AWS": "arn:aws:iam::999988887777:role/" + "r" * 65}}]},
       f"{X}[0].Principal.AWS", repr("arn:aws:iam::999988887777:role/" + "r" * 65), "an IAM ARN"),
    up("role-with-an-empty-path-segment", {X: [READ | {"Principal": {"AWS": "arn:aws:iam::999988887777:role//x"}}]},
       f"{X}[0].Principal.AWS", "'arn:aws:iam::999988887777:role//x'", "an IAM ARN"),
    up("empty-Principal", {X: [READ | {"Principal": {}}]},
       f"{X}[0].Principal", "{}", "'*' or a mapping of principal type (AWS or Service)"),
    up("empty-AWS-principal-list", {X: [READ | {"Principal": {"AWS": []}}]},
       f"{X}[0].Principal.AWS", "[]", "at least one principal"),
    up("empty-Action", {X: [READ | {"Action": []}]}, f"{X}[0].Action", "[]", "at least one action"),
    up("empty-Resource", {X: [READ | {"Resource": []}]}, f"{X}[0].Resource", "[]", "at least one resource"),
    up("wildcard-account-in-a-principal", {X: [READ | {"Principal": {"AWS": "arn:aws:iam::*:root"}}]},
       f"{X}[0].Principal.AWS", "'arn:aws:iam::*:root'", "with no wildcard"),
    up("principal-of-another-partition", {X: [READ | {"Principal": {"AWS": "arn:aws-cn:iam::999988887777:root"}}]},
       f"{X}[0].Principal.AWS", "'arn:aws-cn:iam::999988887777:root'", "a principal of this stack's partition (aws)"),
    up("federated-principal", {X: [READ | {"Principal": {"Federated": "cognito-identity.amazonaws.com"}}]},
       f"{X}[0].Principal.Federated", "'Federated'", "AWS or Service"),
    up("allow-on-star", {X: [READ | {"Resource": "*"}]},
       f"{X}[0].Resource", "'*'", "an Allow names repositories, not '*'"),
    up("allow-without-a-resource", {X: [{k: v for k, v in READ.items() if k != "Resource"}]},
       f"{X}[0].Resource", "None", "the repository ARNs this Allow shares"),
    up("resource-of-another-registry", {X: [READ | {"Resource": "arn:aws:ecr:us-east-1:999988887777:repository/*"}]},
       f"{X}[0].Resource", "'arn:aws:ecr:us-east-1:999988887777:repository/*'",
       f"a repository ARN of this registry, arn:aws:ecr:us-east-1:{UPSTREAM_ACCOUNT}:repository/"),
    up("resource-of-another-region", {X: [READ | {"Resource": f"arn:aws:ecr:eu-west-1:{UPSTREAM_ACCOUNT}:repository/*"}]},
       f"{X}[0].Resource", f"'arn:aws:ecr:eu-west-1:{UPSTREAM_ACCOUNT}:repository/*'", "a repository ARN of this registry"),
    up("resource-not-a-repository", {X: [deny(Resource="arn:aws:s3:::bucket/*")]},
       f"{X}[0].Resource", "'arn:aws:s3:::bucket/*'", "'*' or a repository ARN of this registry"),
    up("wildcard-principal-of-another-organization", {**WITH_ORG, X: [READ | {"Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-zzzzzzzzzz"}}}]},
       f"{X}[0].Principal", "'*'", "a condition pinning the organization o-abcdefghij"),
    up("wildcard-principal-with-no-organization-granted", {X: [READ | {"Principal": "*", "Condition": IN_ORG}]},
       f"{X}[0].Principal", "'*'", "this stack grants no organization"),
    up("deny-of-a-listed-grantee-account", {X: [deny(Principal={"AWS": DOWNSTREAM_ACCOUNT})]},
       f"{X}[0]", repr(deny(Principal={"AWS": DOWNSTREAM_ACCOUNT})), f"to the granted account {DOWNSTREAM_ACCOUNT}"),
    up("deny-NotPrincipal-sparing-only-a-grantees-root",
       {X: [{"Effect": "Deny", "NotPrincipal": {"AWS": f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:root"}, "Action": "ecr:*", "Resource": "*"}]},
       f"{X}[0]", repr({"Effect": "Deny", "NotPrincipal": {"AWS": f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:root"}, "Action": "ecr:*", "Resource": "*"}),
       f"does not deny {ALL_READ} to every account"),
    up("deny-of-every-existing-name-of-the-share",
       {"ecr-ptc:repositoryPrefix": "golden", X: [deny(Resource=f"{ARN_HEAD}golden/?*")]},
       f"{X}[0]", repr(deny(Resource=f"{ARN_HEAD}golden/?*")), f"does not deny {ALL_READ} to every account"),
    up("action-pattern-with-too-many-wildcards", {X: [deny(Action="ecr:*" + "?" * 20)]},
       f"{X}[0].Action", repr("ecr:*" + "?" * 20), "at most 6 wildcards"),
    up("resource-pattern-with-too-many-wildcards", {X: [deny(Resource=f"{ARN_HEAD}golden/*a" + "?" * 18)]},
       f"{X}[0].Resource", repr(f"{ARN_HEAD}golden/*a" + "?" * 18), "at most 6 wildcards"),
    up("deny-by-NotResource-keeping-part-of-the-share",
       {"ecr-ptc:repositoryPrefix": "golden", X: [deny(NotResource=f"{ARN_HEAD}golden/public/*")]},
       f"{X}[0]", repr(deny(NotResource=f"{ARN_HEAD}golden/public/*")), f"does not deny {ALL_READ} to every account"),
]

BOUNDS = [
    down("6-exclusion-filters", {TEMPLATE: {**EXCLUSION, "imageTagMutabilityExclusionFilters": [f"v{i}*" for i in range(6)]}},
         f"{TEMPLATE}.imageTagMutabilityExclusionFilters", "'6 items'", "1 to 5 tag filters"),
    down("100-exclusion-filters", {TEMPLATE: {**EXCLUSION, "imageTagMutabilityExclusionFilters": [f"v{i}*" for i in range(100)]}},
         f"{TEMPLATE}.imageTagMutabilityExclusionFilters", "'100 items'", "1 to 5 tag filters"),
    down("expire-after-1e20-days", {TEMPLATE: {"expireUntaggedAfterDays": 10**20}},
         f"{TEMPLATE}.expireUntaggedAfterDays", str(10**20), "a whole number from 1 to 2,147,483,647"),
    down("expire-after-a-float", {TEMPLATE: {"expireUntaggedAfterDays": 1.5}},
         f"{TEMPLATE}.expireUntaggedAfterDays", "1.5", "a whole number"),
    down("keep-2-to-the-31-images", {TEMPLATE: {"keepLastImages": 2**31}},
         f"{TEMPLATE}.keepLastImages", str(2**31), "from 1 to 2,147,483,647"),
    down("tag-key-with-a-hash", {TEMPLATE: {"resourceTags": {"team#1": "a"}}},
         f"{TEMPLATE}.resourceTags.team#1", "'team#1'", "'#' is not allowed"),
    down("tag-key-with-markup", {TEMPLATE: {"resourceTags": {"<script>": "a"}}},
         f"{TEMPLATE}.resourceTags.<script>", "'<script>'", "'<' is not allowed"),
    down("tag-value-with-markup", {TEMPLATE: {"resourceTags": {"team": "<b>"}}},
         f"{TEMPLATE}.resourceTags.team", "'<b>'", "a tag value of at most 256"),
    down("tag-key-of-129-characters", {TEMPLATE: {"resourceTags": {"k" * 129: "a"}}},
         f"{TEMPLATE}.resourceTags.{'k' * 129}", repr("k" * 129), "a tag key of 1 to 128"),
    down("consumer-role-is-the-cache-role", {"ecr-ptc:roleName": "shared", "ecr-ptc:consumerRoleNames": ["Shared"]},
         "ecr-ptc:consumerRoleNames[0]", "'Shared'", "a role other than the cache role"),
    down("consumer-roles-differing-in-case", {"ecr-ptc:consumerRoleNames": ["App", "app"]},
         "ecr-ptc:consumerRoleNames[1]", "'app'", "IAM names ignore case"),
    down("two-allowed-accounts", {"aws:allowedAccountIds": [DOWNSTREAM_ACCOUNT, "777788889999"]},
         "aws:allowedAccountIds", f"['{DOWNSTREAM_ACCOUNT}', '777788889999']", "exactly one account ID"),
    up("two-allowed-accounts-upstream", {"aws:allowedAccountIds": [UPSTREAM_ACCOUNT, UPSTREAM_ACCOUNT]},
       "aws:allowedAccountIds", f"['{UPSTREAM_ACCOUNT}', '{UPSTREAM_ACCOUNT}']", "exactly one account ID"),
    down("excludeAccountIds-outside-a-template", {"ecr-ptc:excludeAccountIds": ["777788889999"]},
         "ecr-ptc:excludeAccountIds", "'[\"777788889999\"]'", "unset unless this stack file is a fleet template"),
    down("accountRoleName-outside-a-template", {"ecr-ptc:accountRoleName": "Admin"},
         "ecr-ptc:accountRoleName", "'Admin'", "unset unless this stack file is a fleet template"),
    output("output-pattern-with-a-double-slash", {"repositoryArnPattern": f"{ARN_HEAD}golden//*"},
           "repositoryArnPattern", repr(f"{ARN_HEAD}golden//*"), f"{ARN_HEAD}<prefix>/*"),
    output("output-pattern-with-a-long-namespace", {"repositoryArnPattern": f"{ARN_HEAD}{'g' * 31}/*"},
           "repositoryArnPattern", repr(f"{ARN_HEAD}{'g' * 31}/*"), f"{ARN_HEAD}<prefix>/*"),
]

MESSAGES = [
    down("region-typo-gets-the-closest-region", {"ecr-ptc:regions": ["eu-west-1", "eu-centrl-1"]},
         "ecr-ptc:regions[1]", "'eu-centrl-1'", "(did you mean eu-central-1?)"),
    up("oversized-extra-statement-is-blamed", {X: [READ | {"Sid": "Big", "Principal": {"AWS": [str(100000000000 + i) for i in range(900)]}}]},
       f"{X}[0]", "'13642 characters'", "shorten this statement (the largest part of the policy)"),
    up("many-small-statements-are-blamed-together",
       {X: [deny(Sid=f"Guard{i}", Resource=f"{ARN_HEAD}private{i}/*") for i in range(100)]},
       X, "'100 statements, 13680 characters'", "merge or drop some"),
    down("empty-grant-says-so", {}, "ecr-ptc:upstreamStack", "'organization/ecr-ptc/upstream'",
         "it grants no account and no organization", outputs={"downstreamAccountIds": []}),
    down("kms-map-names-the-missing-and-extra-regions",
         {TEMPLATE: {"kmsKeyArn": {"eu-west-1": kms("eu-west-1"), "eu-centrl-1": kms("eu-west-1")}}},
         f"{TEMPLATE}.kmsKeyArn", "['eu-centrl-1', 'eu-west-1']",
         "missing eu-central-1; eu-centrl-1 is not in ecr-ptc:regions (did you mean eu-central-1?)"),
]
# fmt: on

BAD: list[Bad] = NAMESPACES + STATEMENTS + BOUNDS + MESSAGES


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in BAD])
def test_refused_with_one_clean_message(case: Bad) -> None:
    check(case)


def test_the_key_of_every_namespace_typo_is_one_the_program_knows() -> None:
    for case in NAMESPACES:
        namespace, _, name = case.key.partition(":")
        ours = {k.name.lower() for k in KEYS}
        assert resembles_namespace(namespace) or name.lower() in ours, namespace


# --- accepted: valid input the old checks refused or hung on ---------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "golden/my-very-long-repository-name-for-the-frontend-team",
        "golden/" + "0123456789abcdef" * 2,
        "golden/a---b/c__d/e.f_g",
        "golden/" + "/".join(["a" * 30] * 8),
    ],
)
def test_realistic_repository_names_are_accepted(name: str) -> None:
    result = run_up(
        {
            "ecr-ptc:repositoryPrefix": "golden",
            "ecr-ptc:grantVia": "repository",
            "ecr-ptc:repositories": [name],
        }
    )
    policies = result.mocks.of_type("aws:ecr/repositoryPolicy:RepositoryPolicy")
    assert [p.inputs["repository"] for p in policies] == [name]


@pytest.mark.parametrize(
    ("changes", "statement"),
    [
        # NotResource keeping exactly the shared namespace: it denies nothing that is shared.
        ({"ecr-ptc:repositoryPrefix": "golden"}, deny(NotResource=SHARED)),
        # A named role of a grantee, not the grantee's account.
        ({}, deny(Principal={"AWS": f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:role/ci-untrusted"})),
        # The namespace repository `golden` itself is not under golden/*.
        ({"ecr-ptc:repositoryPrefix": "golden"}, deny(Resource=f"{ARN_HEAD}golden")),
        # A sub-namespace of the share: the rest stays shared.
        ({"ecr-ptc:repositoryPrefix": "golden"}, deny(Resource=f"{ARN_HEAD}golden/private/*")),
        # One outside account under an organization grant.
        ({**WITH_ORG, "ecr-ptc:downstreamAccountIds": []}, deny(Principal={"AWS": "999988887777"})),
    ],
)
def test_denies_that_take_nothing_shared_are_kept(
    changes: dict[str, Any], statement: dict[str, Any]
) -> None:
    result = run_up({**changes, X: [statement]})
    assert statement in registry_statements(result)


def test_a_wildcard_principal_of_the_granted_organization_is_kept() -> None:
    statement = READ | {"Principal": "*", "Condition": IN_ORG}
    result = run_up({**WITH_ORG, X: [statement]})
    assert statement in registry_statements(result)


def test_numbers_and_booleans_in_conditions_are_kept() -> None:
    statement = deny(
        Action="ecr:DeleteRepository",
        Condition={"NumericGreaterThan": {"aws:MultiFactorAuthAge": 3600}},
    )
    assert statement in registry_statements(run_up({X: [statement]}))


def test_lifecycle_counts_at_the_bound_are_accepted() -> None:
    template = {"keepLastImages": 2**31 - 1, "expireUntaggedAfterDays": 1}
    created = run_down({TEMPLATE: template}).mocks.of_type(
        "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate"
    )
    rules = json.loads(created[0].inputs["lifecyclePolicy"])["rules"]
    assert [r["selection"]["countNumber"] for r in rules] == [1, 2**31 - 1]


def test_five_exclusion_filters_and_unicode_tags_are_accepted() -> None:
    filters = [f"v{i}*" for i in range(5)]
    tags = {"équipe": "plate-forme", "cost center": "1 2", "a.b:c/d=e+f-g@h_i": "ok"}
    created = run_down(
        {
            **ONE_REGION,
            TEMPLATE: {
                **EXCLUSION,
                "imageTagMutabilityExclusionFilters": filters,
                "resourceTags": tags,
            },
        }
    ).mocks.of_type("aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate")
    assert len(created[0].inputs["imageTagMutabilityExclusionFilters"]) == 5
    assert created[0].inputs["resourceTags"] == tags


# --- the same text whatever the order of every list ------------------------------------------


def _shuffled(value: Any, rng: random.Random) -> Any:
    """`value` with every list in another order, at every depth."""
    if isinstance(value, dict):
        return {k: _shuffled(v, rng) for k, v in value.items()}
    if isinstance(value, list):
        items = [_shuffled(v, rng) for v in value]
        rng.shuffle(items)
        return items
    return value


def test_shuffling_every_list_changes_no_byte_of_any_input() -> None:
    config: dict[str, Any] = {
        **WITH_ORG,
        "ecr-ptc:downstreamAccountIds": [DOWNSTREAM_ACCOUNT, "777788889999", "123456789012"],
        X: [
            deny(
                Sid="Guard",
                Principal={"AWS": ["arn:aws:iam::999988887777:root", "123412341234"]},
                Action=["ecr:DeleteRepository", "ecr:PutImage", "ecr:BatchDeleteImage"],
                Resource=[f"{ARN_HEAD}golden/b/*", f"{ARN_HEAD}golden/a/*", f"{ARN_HEAD}c"],
                Condition={"StringNotEquals": {"aws:SourceVpce": ["vpce-2", "vpce-1", "vpce-3"]}},
            ),
            READ
            | {
                "Sid": "Replication",
                "Principal": {"AWS": ["999988887777", "arn:aws:iam::888877776666:root"]},
                "Action": ["ecr:ReplicateImage", "ecr:CreateRepository"],
                "Resource": [f"{ARN_HEAD}b/*", f"{ARN_HEAD}a/*"],
            },
        ],
    }
    first = run_up(config)
    rng = random.Random(13)
    for _ in range(3):
        again = run_up(_shuffled(config, rng))

        def inputs(result: Any) -> dict[str, Any]:
            return {r.name: r.inputs for r in result.mocks.resources if r.typ.startswith("aws:")}

        assert inputs(again) == inputs(first)
        assert again.outputs == first.outputs


# --- every pattern linear-time ---------------------------------------------------------------

_TYPES = {
    name: TypeAdapter(value).json_schema()["pattern"]
    for name, value in vars(values).items()
    if getattr(value, "__metadata__", None) and "pattern" in TypeAdapter(value).json_schema()
}
_COMPILED = {
    f"{module.__name__}.{name}": value.pattern
    for module in (policy_rules, guardrails, aws_names)
    for name, value in vars(module).items()
    if isinstance(value, re.Pattern)
}
PATTERNS = {**_TYPES, **_COMPILED}
# Valid values of the longest length each type takes (256 characters where AWS takes that many).
LONGEST_VALID = {
    "RepositoryName": "/".join(["a" * 31] * 8),
    "Prefix": "a" * 14 + "/" + "b" * 15,
    "SharedPrefix": "a-" * 14 + "ab",
    "RoleName": "r" * 64,
    "TagFilter": "a*" * 2 + "b" * 124,
    "StackName": "/".join(["o" * 84, "p" * 84, "s" * 86]),
}
# Near misses: long runs of what a pattern repeats, then one character it refuses.
ALPHABET = ["a", "0", "-", "_", ".", "/", ":", "*"]
NEAR_MISSES = [c * 10_000 + "!" for c in ALPHABET] + [
    (a + b) * 5_000 + "!" for a in ALPHABET[:6] for b in ALPHABET[:6] if a != b
]


def test_every_pattern_type_is_covered() -> None:
    assert {"RepositoryName", "Prefix", "AccountId", "RoleArn", "KmsKeyArn"} <= set(PATTERNS)
    assert len(_COMPILED) >= 8, _COMPILED
    for name, valid in LONGEST_VALID.items():
        assert re.fullmatch(PATTERNS[name].strip("^$"), valid, re.ASCII), name


def test_no_pattern_backtracks_on_adversarial_input() -> None:
    """Every pattern against every near miss and its longest valid value: well under a second
    for all together when each is linear; one exponential pattern takes minutes (the old
    repository-name pattern took 0.7 s on 24 letters, doubling with each more)."""
    compiled = {name: re.compile(p.removeprefix("^").removesuffix("$"), re.ASCII)
                for name, p in PATTERNS.items()}  # fmt: skip
    start = time.perf_counter()
    for name, pattern in compiled.items():
        for text in NEAR_MISSES:
            assert pattern.fullmatch(text) is None, name
        if name in LONGEST_VALID:
            assert pattern.fullmatch(LONGEST_VALID[name]) is not None, name
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"{len(compiled)} patterns took {elapsed:.2f} s"


# --- permissions boundary and IAM path of the roles the stack creates --------------------------

BOUNDARY = f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:policy/boundaries/ecr-ptc-boundary"

# fmt: off
LIMITS = [
    down("boundary-not-a-policy-arn", {"ecr-ptc:permissionsBoundaryArn": f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:role/x"},
         "ecr-ptc:permissionsBoundaryArn", f"'arn:aws:iam::{DOWNSTREAM_ACCOUNT}:role/x'", "a managed policy ARN"),
    down("boundary-of-another-partition", {"ecr-ptc:permissionsBoundaryArn": f"arn:aws-cn:iam::{DOWNSTREAM_ACCOUNT}:policy/b"},
         "ecr-ptc:permissionsBoundaryArn", f"'arn:aws-cn:iam::{DOWNSTREAM_ACCOUNT}:policy/b'", "a policy of this stack's partition (aws)"),
    down("path-without-slashes", {"ecr-ptc:iamPath": "ecr-ptc"}, "ecr-ptc:iamPath", "'ecr-ptc'", "an IAM path"),
    down("path-with-an-empty-segment", {"ecr-ptc:iamPath": "/a//"}, "ecr-ptc:iamPath", "'/a//'", "an IAM path"),
    down("accountPreviewRoleName-outside-a-template", {"ecr-ptc:accountPreviewRoleName": "Reader"},
         "ecr-ptc:accountPreviewRoleName", "'Reader'", "unset unless this stack file is a fleet template"),
]
# fmt: on


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in LIMITS])
def test_boundary_path_and_fleet_role_refusals(case: Bad) -> None:
    check(case)


def test_every_role_the_stack_creates_carries_the_boundary_and_the_path() -> None:
    result = run_down(
        {
            "ecr-ptc:permissionsBoundaryArn": BOUNDARY,
            "ecr-ptc:iamPath": "/ecr-ptc/",
            TEMPLATE: {"resourceTags": {"team": "platform"}},
        }
    )
    roles = result.mocks.of_type("aws:iam/role:Role")
    assert len(roles) == 2, [r.name for r in roles]  # the cache role and the template role
    for role in roles:
        assert role.inputs["permissionsBoundary"] == BOUNDARY, role.name
        assert role.inputs["path"] == "/ecr-ptc/", role.name


def test_without_a_boundary_the_roles_have_none() -> None:
    for role in run_down({}).mocks.of_type("aws:iam/role:Role"):
        assert "permissionsBoundary" not in role.inputs and "path" not in role.inputs


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        (
            {"ecr-ptc:accountRoleName": "Admin", "ecr-ptc:accountPreviewRoleName": "admin"},
            "ecr-ptc:accountPreviewRoleName",
        ),
        (
            {
                "ecr-ptc:accounts": [
                    {
                        "accountId": "777788889999",
                        "roleArn": "arn:aws:iam::777788889999:role/deploy",
                        "previewRoleArn": "arn:aws:iam::777788889999:role/deploy",
                    }
                ]
            },
            "ecr-ptc:accounts[0].previewRoleArn",
        ),
    ],
)
def test_a_fleet_never_previews_with_its_deploy_role(changes: dict[str, Any], key: str) -> None:
    template = {**DOWN, "ecr-ptc:accounts": ["777788889999"], **changes}
    with pytest.raises(ConfigError) as refused:
        parse_fleet(cli_config(template))
    assert refused.value.key == key
    assert "a read-only role other than" in refused.value.valid


OU_PATH = "o-abcdefghij/r-ab12/ou-ab12-abcdefgh/"
OU_GRANT = {"ecr-ptc:downstreamAccountIds": [], "ecr-ptc:organizationalUnitPaths": [OU_PATH]}


def test_an_ou_grant_may_add_a_wildcard_statement_within_its_ous() -> None:
    statement = READ | {
        "Principal": "*",
        "Condition": {"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": f"{OU_PATH}*"}},
    }
    assert statement in registry_statements(run_up({**OU_GRANT, X: [statement]}))


def test_an_ou_grant_may_not_widen_to_the_whole_organization() -> None:
    statement = READ | {"Principal": "*", "Condition": IN_ORG}
    case = up(
        "ou-grant-widened-to-the-organization",
        {**OU_GRANT, **WITH_ORG, X: [statement]},
        f"{X}[0].Principal",
        "'*'",
        "paths under the OUs this stack grants",
    )
    check(case)


def test_typed_condition_values_iam_takes_are_kept() -> None:
    statement = deny(
        Condition={
            "Bool": {"aws:SecureTransport": "false"},
            "NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]},
            "DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"},
            "ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/ci-*"},
        }
    )
    assert statement in registry_statements(run_up({X: [statement]}))
