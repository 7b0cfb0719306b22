"""Bad input, run through the whole program as `pulumi up` runs it.

Each row of BAD is one value a user (or a broken upstream stack) could hand the program. The
program must refuse it as one clean message, "config <key>: <value> is not valid: <what is
valid>" (exit 1, no traceback, no `aws:` resource registered): `expect_refusal` checks that,
and the row checks the key named, the value shown and a fragment of what is valid.

Then the valid edge cases that must still be accepted, and one check that the harness itself
tells a refusal from a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from components.inputs.errors import ConfigError
from tests.pulumi_run import (
    CALLER_IDENTITY,
    DOWNSTREAM_ACCOUNT,
    UPSTREAM_ACCOUNT,
    ProgramFailed,
    ProgramRun,
    RecordingMocks,
    expect_refusal,
    run_program,
)
from tests.test_downstream_stack import BASE, UPSTREAM_OUTPUTS, UPSTREAM_STACK

UP: dict[str, Any] = {
    "aws:region": "us-east-1",
    "ecr-ptc:downstreamAccountIds": [DOWNSTREAM_ACCOUNT, "777788889999"],
}
DOWN: dict[str, Any] = BASE
# A downstream with an upstream managed elsewhere (ecr-ptc:upstreamAccountId/upstreamRegion).
DIRECT: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "ecr-ptc:upstreamAccountId": UPSTREAM_ACCOUNT,
    "ecr-ptc:upstreamRegion": "us-east-1",
    "ecr-ptc:rules": [{"ecrRepositoryPrefix": "central"}],
}
ONE_REGION: dict[str, Any] = {"ecr-ptc:regions": []}


def fullwidth(digits: str) -> str:
    """`digits` as FULLWIDTH DIGIT characters (U+FF10...): Unicode digits, not ASCII ones."""
    return "".join(chr(0xFF10 + int(d)) for d in digits)


FULLWIDTH_ACCOUNT = fullwidth(DOWNSTREAM_ACCOUNT)
# ARABIC-INDIC DIGITs (U+0661...): `\d` in a Python pattern accepts them; AWS does not.
ARABIC_INDIC_ACCOUNT = "".join(chr(0x0660 + int(d)) for d in UPSTREAM_ACCOUNT)

X = "ecr-ptc:extraRegistryPolicyStatements"
TEMPLATE = "ecr-ptc:repositoryTemplate"
KMS_KEY = "12345678-1234-1234-1234-123456789012"
UPSTREAM_KEY = f"ecr-ptc:upstreamStack ({UPSTREAM_STACK}), output"
ARN_HEAD = f"arn:aws:ecr:us-east-1:{UPSTREAM_ACCOUNT}:repository/"
GRANT_ALLOW: dict[str, Any] = {
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
    "Action": "ecr:BatchGetImage",
    "Resource": f"arn:aws:ecr:us-east-1:{UPSTREAM_ACCOUNT}:repository/*",
}
DENY_ALL: dict[str, Any] = {"Effect": "Deny", "Principal": "*", "Action": "ecr:*", "Resource": "*"}
ALL_READ = (
    "ecr:BatchGetImage, ecr:BatchImportUpstreamImage, ecr:GetDownloadUrlForLayer, "
    "ecr:GetImageCopyStatus"
)
EXCLUSION = {"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION"}
SEVENTEEN_REGIONS = [
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2", "eu-west-3",
    "eu-central-1", "eu-north-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2",
    "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "ca-central-1", "sa-east-1",
]  # fmt: skip
EIGHT_REGIONS = SEVENTEEN_REGIONS[:8]


def rules(n: int, width: int = 6) -> list[dict[str, str]]:
    """n rules whose prefixes have `width` characters (2 to 30)."""
    return [
        {
            "ecrRepositoryPrefix": f"{i:02d}".ljust(width, "a"),
            "upstreamRepositoryPrefix": f"{i:02d}".ljust(width, "b"),
        }
        for i in range(n)
    ]


@dataclass(frozen=True)
class Bad:
    id: str
    side: Literal["upstream", "downstream"]
    changes: dict[str, Any]
    key: str  # the key the message names
    shown: str  # the value as the message shows it: its repr
    valid: str  # a fragment of what the message says is valid
    outputs: dict[str, Any] = field(default_factory=dict)  # changes to the upstream's outputs
    account: str | None = None  # the deploying account, if not the side's usual one
    base: dict[str, Any] | None = None  # the stack's other config, if not UP/DOWN


def up(id: str, changes: dict[str, Any], key: str, shown: str, valid: str, **kw: Any) -> Bad:
    return Bad(id, "upstream", changes, key, shown, valid, **kw)


def down(id: str, changes: dict[str, Any], key: str, shown: str, valid: str, **kw: Any) -> Bad:
    return Bad(id, "downstream", changes, key, shown, valid, **kw)


def output(id: str, outputs: dict[str, Any], name: str, shown: str, valid: str) -> Bad:
    return down(id, {}, f"{UPSTREAM_KEY} {name}", shown, valid, outputs=outputs)


def kms(region_name: str, account: str = DOWNSTREAM_ACCOUNT, key: str = KMS_KEY) -> str:
    return f"arn:aws:kms:{region_name}:{account}:key/{key}"


# fmt: off
TRAILING_NEWLINE = [
    up("nl-account-id", {"ecr-ptc:downstreamAccountIds": ["444455556666\n"]},
       "ecr-ptc:downstreamAccountIds[0]", "'444455556666\\n'", "exactly 12 digits"),
    up("nl-organization-id", {"ecr-ptc:organizationId": "o-abcdefghij\n"},
       "ecr-ptc:organizationId", "'o-abcdefghij\\n'", "'o-' then 10 to 32"),
    up("nl-ou-path", {"ecr-ptc:organizationalUnitPaths": ["o-abcdefghij/r-ab12/ou-ab12-abcdefgh/\n"]},
       "ecr-ptc:organizationalUnitPaths[0]", "'o-abcdefghij/r-ab12/ou-ab12-abcdefgh/\\n'",
       "'o-<org>/r-<root>/ou-<ou>/'"),
    up("nl-repository-prefix", {"ecr-ptc:repositoryPrefix": "golden\n"},
       "ecr-ptc:repositoryPrefix", "'golden\\n'", "lower-case letters"),
    up("nl-repository-name", {"ecr-ptc:grantVia": "repository", "ecr-ptc:repositories": ["golden/base\n"]},
       "ecr-ptc:repositories[0]", "'golden/base\\n'", "an ECR repository name"),
    up("nl-upstream-aws-region", {"aws:region": "us-east-1\n"},
       "aws:region", "'us-east-1\\n'", "an AWS region name"),
    up("nl-upstream-allowed-account", {"aws:allowedAccountIds": ["111122223333\n"]},
       "aws:allowedAccountIds[0]", "'111122223333\\n'", "exactly 12 digits"),
    up("nl-sid", {X: [GRANT_ALLOW | {"Sid": "Replication\n"}]},
       f"{X}[0].Sid", "'Replication\\n'", "ASCII letters and digits"),
    up("nl-grant-via", {"ecr-ptc:grantVia": "registry\n"},
       "ecr-ptc:grantVia", "'registry\\n'", "'registry' or 'repository'"),
    down("nl-region", {"aws:region": "eu-west-1\n"},
         "aws:region", "'eu-west-1\\n'", "an AWS region name"),
    down("nl-regions", {"ecr-ptc:regions": ["eu-west-1", "eu-central-1\n"]},
         "ecr-ptc:regions[1]", "'eu-central-1\\n'", "an AWS region name"),
    down("nl-upstream-stack", {"ecr-ptc:upstreamStack": f"{UPSTREAM_STACK}\n"},
         "ecr-ptc:upstreamStack", f"'{UPSTREAM_STACK}\\n'", "<organization>/<project>/<stack>"),
    down("nl-upstream-account-id", {"ecr-ptc:upstreamAccountId": "111122223333\n"},
         "ecr-ptc:upstreamAccountId", "'111122223333\\n'", "exactly 12 digits", base=DIRECT),
    down("nl-upstream-region", {"ecr-ptc:upstreamRegion": "us-east-1\n"},
         "ecr-ptc:upstreamRegion", "'us-east-1\\n'", "an AWS region name", base=DIRECT),
    down("nl-ecr-prefix", {"ecr-ptc:rules": [{"ecrRepositoryPrefix": "central\n"}]},
         "ecr-ptc:rules[0].ecrRepositoryPrefix", "'central\\n'", "2 to 30 characters"),
    down("nl-root-prefix", {"ecr-ptc:rules": [{"ecrRepositoryPrefix": "ROOT\n"}]},
         "ecr-ptc:rules[0].ecrRepositoryPrefix", "'ROOT\\n'", "or ROOT"),
    down("nl-upstream-prefix",
         {"ecr-ptc:rules": [{"ecrRepositoryPrefix": "central", "upstreamRepositoryPrefix": "golden\n"}]},
         "ecr-ptc:rules[0].upstreamRepositoryPrefix", "'golden\\n'", "2 to 30 characters"),
    down("nl-role-name", {"ecr-ptc:roleName": "ecr-ptc-cache\n"},
         "ecr-ptc:roleName", "'ecr-ptc-cache\\n'", "an IAM role name"),
    down("nl-consumer-role-name", {"ecr-ptc:consumerRoleNames": ["app\n"]},
         "ecr-ptc:consumerRoleNames[0]", "'app\\n'", "an IAM role name"),
    down("nl-kms-key-arn", {**ONE_REGION, TEMPLATE: {"kmsKeyArn": kms("eu-west-1") + "\n"}},
         f"{TEMPLATE}.kmsKeyArn", repr(kms("eu-west-1") + "\n"), "a KMS key ARN"),
    down("nl-tag-filter", {TEMPLATE: {**EXCLUSION, "imageTagMutabilityExclusionFilters": ["latest\n"]}},
         f"{TEMPLATE}.imageTagMutabilityExclusionFilters[0]", "'latest\\n'", "a tag filter"),
    down("nl-allowed-account", {"aws:allowedAccountIds": ["444455556666\n"]},
         "aws:allowedAccountIds[0]", "'444455556666\\n'", "exactly 12 digits"),
    down("nl-side", {"ecr-ptc:side": "downstream\n"},
         "ecr-ptc:side", "'downstream\\n'", "'upstream' or 'downstream'"),
    down("nl-mutability", {TEMPLATE: {"imageTagMutability": "MUTABLE\n"}},
         f"{TEMPLATE}.imageTagMutability", "'MUTABLE\\n'", "'IMMUTABLE_WITH_EXCLUSION'"),
    down("nl-fleet-account-role-name",
         {"ecr-ptc:accounts": ["444455556666"], "ecr-ptc:accountRoleName": "Admin\n"},
         "ecr-ptc:accountRoleName", "'Admin\\n'", "an IAM role name"),
    down("nl-fleet-ou-id", {"ecr-ptc:organizationalUnitIds": ["ou-ab12-abcdefgh\n"]},
         "ecr-ptc:organizationalUnitIds[0]", "'ou-ab12-abcdefgh\\n'", "an organizational unit ID"),
    down("nl-fleet-role-arn",
         {"ecr-ptc:accounts": [{"accountId": "444455556666", "roleArn": "arn:aws:iam::444455556666:role/x\n"}]},
         "ecr-ptc:accounts[0].roleArn", "'arn:aws:iam::444455556666:role/x\\n'", "an IAM role ARN"),
    down("nl-fleet-exclude",
         {"ecr-ptc:organizationalUnitIds": ["ou-ab12-abcdefgh"], "ecr-ptc:excludeAccountIds": ["777788889999\n"]},
         "ecr-ptc:excludeAccountIds[0]", "'777788889999\\n'", "exactly 12 digits"),
]

NON_ASCII = [
    up("fullwidth-account-id", {"ecr-ptc:downstreamAccountIds": [FULLWIDTH_ACCOUNT]},
       "ecr-ptc:downstreamAccountIds[0]", repr(FULLWIDTH_ACCOUNT), "exactly 12 digits"),
    up("fullwidth-allowed-account", {"aws:allowedAccountIds": [fullwidth(UPSTREAM_ACCOUNT)]},
       "aws:allowedAccountIds[0]", repr(fullwidth(UPSTREAM_ACCOUNT)), "exactly 12 digits"),
    up("accented-repository-prefix", {"ecr-ptc:repositoryPrefix": "golden-é"},
       "ecr-ptc:repositoryPrefix", "'golden-é'", "lower-case letters"),
    up("accented-repository-name", {"ecr-ptc:grantVia": "repository", "ecr-ptc:repositories": ["golden-é"]},
       "ecr-ptc:repositories[0]", "'golden-é'", "lower-case letters and digits"),
    up("fullwidth-organization-id", {"ecr-ptc:organizationId": "o-abcdefghi" + fullwidth("1")},
       "ecr-ptc:organizationId", repr("o-abcdefghi" + fullwidth("1")), "lower-case letters or digits"),
    down("accented-ecr-prefix", {"ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden-é"}]},
         "ecr-ptc:rules[0].ecrRepositoryPrefix", "'golden-é'", "lower-case letters"),
    down("arabic-indic-upstream-account", {"ecr-ptc:upstreamAccountId": ARABIC_INDIC_ACCOUNT},
         "ecr-ptc:upstreamAccountId", repr(ARABIC_INDIC_ACCOUNT), "exactly 12 digits", base=DIRECT),
    down("accented-role-name", {"ecr-ptc:roleName": "rôle"},
         "ecr-ptc:roleName", "'rôle'", "ASCII letters"),
    down("fullwidth-region-digit", {"ecr-ptc:regions": ["eu-west-" + fullwidth("1")]},
         "ecr-ptc:regions[0]", repr("eu-west-" + fullwidth("1")), "an AWS region name"),
    down("fullwidth-kms-account", {**ONE_REGION, TEMPLATE: {"kmsKeyArn": kms("eu-west-1", FULLWIDTH_ACCOUNT)}},
         f"{TEMPLATE}.kmsKeyArn", repr(kms("eu-west-1", FULLWIDTH_ACCOUNT)), "a KMS key ARN"),
]

REGIONS = [
    down("misspelled-region", {"ecr-ptc:regions": ["eu-west-1", "eu-centrl-1"]},
         "ecr-ptc:regions[1]", "'eu-centrl-1'", "not a region of any AWS partition"),
    up("region-that-does-not-exist", {"aws:region": "us-east-7"},
       "aws:region", "'us-east-7'", "not a region of any AWS partition"),
    down("upper-case-region", {"ecr-ptc:regions": ["EU-WEST-1"]},
         "ecr-ptc:regions[0]", "'EU-WEST-1'", "an AWS region name such as us-east-1"),
    down("iso-partition", {"aws:region": "us-iso-east-1"},
         "aws:region", "'us-iso-east-1'", "supported partitions: aws, aws-cn, aws-us-gov"),
    up("iso-b-partition", {"aws:region": "us-isob-east-1"},
       "aws:region", "'us-isob-east-1'", "supported partitions"),
    down("eusc-partition", {"ecr-ptc:regions": ["eusc-de-east-1"]},
         "ecr-ptc:regions[0]", "'eusc-de-east-1'", "supported partitions"),
    down("regions-of-two-partitions", {"ecr-ptc:regions": ["eu-west-1", "cn-north-1"]},
         "ecr-ptc:regions[1]", "'cn-north-1'", "one IAM role cannot serve two partitions"),
    down("direct-upstream-of-another-partition", {"ecr-ptc:upstreamRegion": "cn-north-1"},
         "ecr-ptc:upstreamRegion", "'cn-north-1'", "same partition", base=DIRECT),
    down("duplicate-region", {"ecr-ptc:regions": ["eu-west-1", "eu-west-1"]},
         "ecr-ptc:regions[1]", "'eu-west-1'", "each value once"),
]

KEYS = [
    up("misspelled-repositoryPrefix", {"ecr-ptc:repositoryPrefx": "golden"},
       "ecr-ptc:repositoryPrefx", "'golden'", "did you mean ecr-ptc:repositoryPrefix?"),
    down("misspelled-rules", {"ecr-ptc:rule": [{"ecrRepositoryPrefix": "central"}]},
         "ecr-ptc:rule", repr(json.dumps([{"ecrRepositoryPrefix": "central"}])),
         "did you mean ecr-ptc:rules?"),
    down("misspelled-regions", {"ecr-ptc:regoins": ["eu-west-1"]},
         "ecr-ptc:regoins", "'[\"eu-west-1\"]'", "did you mean ecr-ptc:regions?"),
    down("unknown-key", {"ecr-ptc:zzzzzzzz": "1"},
         "ecr-ptc:zzzzzzzz", "'1'", "the known keys are ecr-ptc:accountOverrides, ecr-ptc:accountPreviewRoleName"),
    down("misspelled-rule-field", {"ecr-ptc:rules": [{"ecrRepositoryPrefx": "central"}]},
         "ecr-ptc:rules[0].ecrRepositoryPrefx", "'central'", "ecrRepositoryPrefix, upstreamRepositoryPrefix"),
    down("misspelled-template-field", {TEMPLATE: {"keepLastImage": 3}},
         f"{TEMPLATE}.keepLastImage", "3", "keepLastImages"),
    up("downstream-key-rules-in-upstream", {"ecr-ptc:rules": [{"ecrRepositoryPrefix": "central"}]},
       "ecr-ptc:rules", repr(json.dumps([{"ecrRepositoryPrefix": "central"}])),
       "unset in an upstream stack: it configures the downstream stack"),
    up("downstream-key-regions-in-upstream", {"ecr-ptc:regions": ["eu-west-1"]},
       "ecr-ptc:regions", "'[\"eu-west-1\"]'", "configures the downstream stack"),
    up("downstream-key-upstreamStack-in-upstream", {"ecr-ptc:upstreamStack": UPSTREAM_STACK},
       "ecr-ptc:upstreamStack", repr(UPSTREAM_STACK), "configures the downstream stack"),
    up("fleet-key-in-upstream", {"ecr-ptc:accounts": ["444455556666"]},
       "ecr-ptc:accounts", "'[\"444455556666\"]'", "configures the downstream stack"),
    down("upstream-key-downstreamAccountIds-in-downstream", {"ecr-ptc:downstreamAccountIds": ["444455556666"]},
         "ecr-ptc:downstreamAccountIds", "'[\"444455556666\"]'",
         "unset in a downstream stack: it configures the upstream stack"),
    down("upstream-key-repositoryPrefix-in-downstream", {"ecr-ptc:repositoryPrefix": "golden"},
         "ecr-ptc:repositoryPrefix", "'golden'", "configures the upstream stack"),
    down("upstream-key-extra-statements-in-downstream", {X: [GRANT_ALLOW]},
         X, repr(json.dumps([GRANT_ALLOW])), "configures the upstream stack"),
    down("side-says-upstream-for-downstream-config", {"ecr-ptc:side": "upstream"},
         "ecr-ptc:upstreamStack", repr(UPSTREAM_STACK), "configures the downstream stack"),
]

UPSTREAM_OUTPUT_ERRORS = [
    output("output-account-abc", {"upstreamAccountId": "abc"},
           "upstreamAccountId", "'abc'", "exactly 12 digits"),
    output("output-account-newline", {"upstreamAccountId": "111122223333\n"},
           "upstreamAccountId", "'111122223333\\n'", "exactly 12 digits"),
    output("output-region-moon", {"upstreamRegion": "moon-1"},
           "upstreamRegion", "'moon-1'", "an AWS region name"),
    output("output-pattern-not-an-arn", {"repositoryArnPattern": "golden/*"},
           "repositoryArnPattern", "'golden/*'", f"{ARN_HEAD}* or {ARN_HEAD}<prefix>/*"),
    output("output-pattern-of-another-account",
           {"repositoryArnPattern": "arn:aws:ecr:us-east-1:999988887777:repository/*"},
           "repositoryArnPattern", "'arn:aws:ecr:us-east-1:999988887777:repository/*'",
           "of the upstream's own account and region"),
    output("output-pattern-of-another-region",
           {"repositoryArnPattern": f"arn:aws:ecr:us-west-2:{UPSTREAM_ACCOUNT}:repository/*"},
           "repositoryArnPattern", f"'arn:aws:ecr:us-west-2:{UPSTREAM_ACCOUNT}:repository/*'",
           "of the upstream's own account and region"),
    output("output-pattern-of-another-partition",
           {"repositoryArnPattern": f"arn:aws-cn:ecr:us-east-1:{UPSTREAM_ACCOUNT}:repository/*"},
           "repositoryArnPattern", f"'arn:aws-cn:ecr:us-east-1:{UPSTREAM_ACCOUNT}:repository/*'",
           f"{ARN_HEAD}*"),
    output("output-pattern-newline", {"repositoryArnPattern": f"{ARN_HEAD}golden/*\n"},
           "repositoryArnPattern", repr(f"{ARN_HEAD}golden/*\n"), f"{ARN_HEAD}<prefix>/*"),
    output("output-pattern-root-namespace", {"repositoryArnPattern": f"{ARN_HEAD}ROOT/*"},
           "repositoryArnPattern", repr(f"{ARN_HEAD}ROOT/*"), f"{ARN_HEAD}<prefix>/*"),
    output("output-downstream-account-bad", {"downstreamAccountIds": ["44445555666"]},
           "downstreamAccountIds[0]", "'44445555666'", "exactly 12 digits"),
    output("output-organization-id-bad", {"organizationId": "org"},
           "organizationId", "'org'", "an AWS Organizations ID"),
    output("output-ou-path-bad", {"organizationalUnitPaths": ["o-x"]},
           "organizationalUnitPaths[0]", "'o-x'", "an organization path"),
]
DOWNSTREAM_IDS_NOT_A_LIST = output(
    "output-downstream-accounts-not-a-list", {"downstreamAccountIds": "444455556666"},
    "downstreamAccountIds", "'444455556666'", "a list",
)

STATEMENTS = [
    up("statement-Actions", {X: [{**GRANT_ALLOW, "Actions": GRANT_ALLOW["Action"]}]},
       f"{X}[0].Actions", "'ecr:BatchGetImage'", "a known field; did you mean Action? this mapping takes Action, Condition"),
    up("statement-Effect-Maybe", {X: [GRANT_ALLOW | {"Effect": "Maybe"}]},
       f"{X}[0].Effect", "'Maybe'", "one of 'Allow' or 'Deny'"),
    up("statement-Principal-and-NotPrincipal",
       {X: [{"Effect": "Allow", "Principal": "*", "NotPrincipal": {"AWS": "*"}, "Action": "ecr:*"}]},
       f"{X}[0]", repr({"Effect": "Allow", "Principal": "*", "NotPrincipal": {"AWS": "*"}, "Action": "ecr:*"}),
       "exactly one of Principal or NotPrincipal"),
    up("statement-Principal-a-bare-arn", {X: [GRANT_ALLOW | {"Principal": "arn:aws:iam::999988887777:root"}]},
       f"{X}[0].Principal", "'arn:aws:iam::999988887777:root'", "'*' or a mapping of principal type"),
    up("statement-NotPrincipal-star",
       {X: [{"Effect": "Deny", "NotPrincipal": "*", "Action": "ecr:*", "Resource": "*"}]},
       f"{X}[0].NotPrincipal", "'*'", "a mapping of principal type"),
    up("statement-no-Action", {X: [{"Effect": "Allow", "Principal": "*", "Resource": "*"}]},
       f"{X}[0]", repr({"Effect": "Allow", "Principal": "*", "Resource": "*"}),
       "exactly one of Action or NotAction"),
    up("statement-Resource-and-NotResource", {X: [GRANT_ALLOW | {"NotResource": "*"}]},
       f"{X}[0]", repr(GRANT_ALLOW | {"NotResource": "*"}), "Resource or NotResource, not both"),
    up("unconditional-deny-ecr-star-to-star", {X: [DENY_ALL]},
       f"{X}[0]", repr(DENY_ALL), f"does not deny {ALL_READ} to every account this stack grants"),
    up("unconditional-deny-NotAction",
       {X: [{"Effect": "Deny", "Principal": "*", "NotAction": ["ecr:BatchGetImage"], "Resource": "*"}]},
       f"{X}[0]", repr({"Effect": "Deny", "Principal": "*", "NotAction": ["ecr:BatchGetImage"], "Resource": "*"}),
       "does not deny ecr:BatchImportUpstreamImage, ecr:GetDownloadUrlForLayer, ecr:GetImageCopyStatus"),
    up("unconditional-deny-to-a-grantee",
       {X: [{"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "ecr:Batch*", "Resource": "*"}]},
       f"{X}[0]", repr({"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "ecr:Batch*", "Resource": "*"}),
       "does not deny ecr:BatchGetImage, ecr:BatchImportUpstreamImage to the granted account 444455556666"),
    up("deny-with-an-empty-Condition", {X: [DENY_ALL | {"Condition": {}}]},
       f"{X}[0].Condition", "{}", "an empty Condition is no condition"),
    up("unconditional-deny-by-NotResource-covering-the-share",
       {X: [{"Effect": "Deny", "Principal": "*", "Action": "ecr:*", "NotResource": f"{ARN_HEAD}other/*"}]},
       f"{X}[0]", repr({"Effect": "Deny", "Principal": "*", "Action": "ecr:*", "NotResource": f"{ARN_HEAD}other/*"}),
       "would break pulls through the cache"),
    up("duplicate-Sid", {X: [GRANT_ALLOW | {"Sid": "Replication"}, GRANT_ALLOW | {"Sid": "Replication"}]},
       f"{X}[1].Sid", "'Replication'", "a unique Sid; item 0 has it too"),
    up("owned-Sid", {X: [GRANT_ALLOW | {"Sid": "EcrPtcDownstreamAccountsRead"}]},
       f"{X}[0].Sid", "'EcrPtcDownstreamAccountsRead'", "(owned by ecr-ptc)"),
    up("statement-not-a-mapping", {X: ["Allow everything"]},
       f"{X}[0]", "'Allow everything'", "a mapping with the fields Action"),
    up("statements-not-a-list", {X: GRANT_ALLOW},
       X, repr(GRANT_ALLOW), "a YAML list"),
    up("statements-with-grantVia-repository",
       {"ecr-ptc:grantVia": "repository", "ecr-ptc:repositories": ["golden/base"], X: [GRANT_ALLOW]},
       X, repr([GRANT_ALLOW]), "empty unless ecr-ptc:grantVia is 'registry'"),
]

PAIRING = [
    down("this-account-not-granted", {}, "ecr-ptc:upstreamStack", repr(UPSTREAM_STACK),
         "an upstream that grants this account (444455556666); it grants only 777788889999",
         outputs={"downstreamAccountIds": ["777788889999"]}),
    down("pinned-account-not-granted", {"aws:allowedAccountIds": ["777788889999"]},
         "ecr-ptc:upstreamStack", repr(UPSTREAM_STACK), "grants this account (777788889999)"),
    down("rule-outside-the-upstream-prefix",
         {"ecr-ptc:rules": [{"ecrRepositoryPrefix": "team", "upstreamRepositoryPrefix": "other"}]},
         "ecr-ptc:rules[0].upstreamRepositoryPrefix", "'other'",
         "inside the upstream's ecr-ptc:repositoryPrefix 'golden'",
         outputs={"repositoryArnPattern": f"{ARN_HEAD}golden/*"}),
    down("same-registry", {}, "ecr-ptc:regions", "'eu-west-1'", "would be the same registry",
         account=UPSTREAM_ACCOUNT,
         outputs={"upstreamRegion": "eu-west-1", "downstreamAccountIds": [UPSTREAM_ACCOUNT],
                  "repositoryArnPattern": f"arn:aws:ecr:eu-west-1:{UPSTREAM_ACCOUNT}:repository/*"}),
    down("upstream-of-another-partition", {}, "ecr-ptc:upstreamStack", repr(UPSTREAM_STACK),
         "an upstream in this stack's partition (aws)",
         outputs={"upstreamRegion": "cn-north-1",
                  "repositoryArnPattern": f"arn:aws-cn:ecr:cn-north-1:{UPSTREAM_ACCOUNT}:repository/*"}),
    down("upstream-stack-and-direct-upstream", {"ecr-ptc:upstreamAccountId": UPSTREAM_ACCOUNT},
         "ecr-ptc:upstreamStack", repr(UPSTREAM_STACK), "not both"),
    up("repository-outside-the-prefix",
       {"ecr-ptc:repositoryPrefix": "golden", "ecr-ptc:grantVia": "repository", "ecr-ptc:repositories": ["other/base"]},
       "ecr-ptc:repositories[0]", "'other/base'", "a repository under ecr-ptc:repositoryPrefix 'golden'"),
    up("ou-path-of-another-organization",
       {"ecr-ptc:organizationId": "o-abcdefghij",
        "ecr-ptc:organizationalUnitPaths": ["o-zzzzzzzzzz/r-ab12/ou-ab12-abcdefgh/"]},
       "ecr-ptc:organizationalUnitPaths", "['o-zzzzzzzzzz/r-ab12/ou-ab12-abcdefgh/']",
       "paths in the organization o-abcdefghij"),
]

QUOTAS = [
    down("51-rules", {"ecr-ptc:rules": rules(51)}, "ecr-ptc:rules", "'51 items'",
         "1 to 50 rules: AWS's quota of pull-through-cache rules per registry"),
    down("no-rules", {"ecr-ptc:rules": []}, "ecr-ptc:rules", "'0 items'", "1 to 50 rules"),
    up("400-accounts-in-the-registry-policy",
       {"ecr-ptc:downstreamAccountIds": [str(100000000000 + i) for i in range(400)]},
       "ecr-ptc:downstreamAccountIds", "'400 accounts'",
       "over the AWS quota of 10240; grant the organization with ecr-ptc:organizationId"),
    down("51-tags", {TEMPLATE: {"resourceTags": {f"k{i}": "v" for i in range(51)}}},
         f"{TEMPLATE}.resourceTags", "'51 tags'", "at most 50 tags"),
    down("31-character-prefix", {"ecr-ptc:rules": [{"ecrRepositoryPrefix": "a" * 31}]},
         "ecr-ptc:rules[0].ecrRepositoryPrefix", repr("a" * 31), "2 to 30 characters"),
    down("65-character-role-name", {"ecr-ptc:roleName": "r" * 65},
         "ecr-ptc:roleName", repr("r" * 65), "1 to 64"),
]

TEMPLATES = [
    down("bad-mutability", {TEMPLATE: {"imageTagMutability": "SOMETIMES"}},
         f"{TEMPLATE}.imageTagMutability", "'SOMETIMES'", "'MUTABLE_WITH_EXCLUSION'"),
    down("filters-with-IMMUTABLE", {TEMPLATE: {"imageTagMutability": "IMMUTABLE", "imageTagMutabilityExclusionFilters": ["latest"]}},
         f"{TEMPLATE}.imageTagMutabilityExclusionFilters", "['latest']",
         "unset unless imageTagMutability is MUTABLE_WITH_EXCLUSION or IMMUTABLE_WITH_EXCLUSION"),
    down("filters-with-default-MUTABLE", {TEMPLATE: {"imageTagMutabilityExclusionFilters": ["latest"]}},
         f"{TEMPLATE}.imageTagMutabilityExclusionFilters", "['latest']", "unset unless"),
    down("WITH_EXCLUSION-without-filters", {TEMPLATE: EXCLUSION},
         f"{TEMPLATE}.imageTagMutabilityExclusionFilters", "[]", "at least one tag filter"),
    down("filter-with-3-wildcards", {TEMPLATE: {**EXCLUSION, "imageTagMutabilityExclusionFilters": ["*a*b*"]}},
         f"{TEMPLATE}.imageTagMutabilityExclusionFilters[0]", "'*a*b*'", "at most 2 '*' wildcards"),
    down("filter-with-a-space", {TEMPLATE: {**EXCLUSION, "imageTagMutabilityExclusionFilters": ["a b"]}},
         f"{TEMPLATE}.imageTagMutabilityExclusionFilters[0]", "'a b'", "letters, digits and ._*-"),
    down("duplicate-filter", {TEMPLATE: {**EXCLUSION, "imageTagMutabilityExclusionFilters": ["a*", "a*"]}},
         f"{TEMPLATE}.imageTagMutabilityExclusionFilters[1]", "'a*'", "each value once"),
    down("empty-description", {TEMPLATE: {"description": ""}},
         f"{TEMPLATE}.description", "''", "a string of 1 or more characters"),
    down("257-character-description", {TEMPLATE: {"description": "d" * 257}},
         f"{TEMPLATE}.description", repr("d" * 257), "1 to 256 characters"),
    down("kms-alias", {**ONE_REGION, TEMPLATE: {"kmsKeyArn": "arn:aws:kms:eu-west-1:444455556666:alias/ecr"}},
         f"{TEMPLATE}.kmsKeyArn", "'arn:aws:kms:eu-west-1:444455556666:alias/ecr'", "(not an alias)"),
    down("kms-key-of-another-region", {**ONE_REGION, TEMPLATE: {"kmsKeyArn": kms("us-east-1")}},
         f"{TEMPLATE}.kmsKeyArn", repr(kms("us-east-1")), "a key in eu-west-1 (aws)"),
    down("kms-map-key-of-another-region",
         {TEMPLATE: {"kmsKeyArn": {"eu-west-1": kms("eu-west-1"), "eu-central-1": kms("eu-west-1")}}},
         f"{TEMPLATE}.kmsKeyArn.eu-central-1", repr(kms("eu-west-1")), "a key in eu-central-1"),
    down("kms-one-key-for-two-regions", {TEMPLATE: {"kmsKeyArn": kms("eu-west-1")}},
         f"{TEMPLATE}.kmsKeyArn", repr(kms("eu-west-1")), "a map of region to key ARN covering every region"),
    down("kms-map-missing-a-region", {TEMPLATE: {"kmsKeyArn": {"eu-west-1": kms("eu-west-1")}}},
         f"{TEMPLATE}.kmsKeyArn", "['eu-west-1']", "one key ARN for each region of ecr-ptc:regions"),
    down("kms-key-of-another-partition",
         {**ONE_REGION, TEMPLATE: {"kmsKeyArn": "arn:aws-cn:kms:eu-west-1:444455556666:key/" + KMS_KEY}},
         f"{TEMPLATE}.kmsKeyArn", repr("arn:aws-cn:kms:eu-west-1:444455556666:key/" + KMS_KEY),
         "a key in eu-west-1 (aws)"),
    down("expire-after-0-days", {TEMPLATE: {"expireUntaggedAfterDays": 0}},
         f"{TEMPLATE}.expireUntaggedAfterDays", "0", "a whole number from 1 to 2,147,483,647"),
    down("expire-after-a-string", {TEMPLATE: {"expireUntaggedAfterDays": "14"}},
         f"{TEMPLATE}.expireUntaggedAfterDays", "'14'", "a whole number"),
    down("tag-key-aws-prefix", {TEMPLATE: {"resourceTags": {"aws:team": "x"}}},
         f"{TEMPLATE}.resourceTags.aws:team", "'aws:team'", "not starting with 'aws:'"),
    down("template-not-a-mapping", {TEMPLATE: ["MUTABLE"]},
         TEMPLATE, "['MUTABLE']", "a mapping with the fields description"),
]

FLEET_AND_PINNING = [
    down("fleet-template-accounts", {"ecr-ptc:accounts": ["444455556666"]},
         "ecr-ptc:accounts / ecr-ptc:organizationalUnitIds", "'downstream'", "`make fleet-up`"),
    down("fleet-template-ous", {"ecr-ptc:organizationalUnitIds": ["ou-ab12-abcdefgh"]},
         "ecr-ptc:accounts / ecr-ptc:organizationalUnitIds", "'downstream'", "`make fleet-up`"),
    down("allowed-two-accounts-one-bad", {"aws:allowedAccountIds": ["444455556666", "7777"]},
         "aws:allowedAccountIds[1]", "'7777'", "exactly 12 digits"),
    up("allowed-bad-id", {"aws:allowedAccountIds": ["4444"]},
       "aws:allowedAccountIds[0]", "'4444'", "exactly 12 digits"),
    up("allowed-unquoted-id", {"aws:allowedAccountIds": [111122223333]},
       "aws:allowedAccountIds[0]", "111122223333", "quoted"),
    up("allowed-not-a-list", {"aws:allowedAccountIds": "111122223333"},
       "aws:allowedAccountIds", "111122223333", "a YAML list of 12-digit account IDs"),
]

OTHER = [
    down("rules-not-a-list", {"ecr-ptc:rules": "central"}, "ecr-ptc:rules", "'central'", "a YAML list of rules"),
    down("rule-not-a-mapping", {"ecr-ptc:rules": ["central"]},
         "ecr-ptc:rules[0]", "'central'", "a mapping with the fields ecrRepositoryPrefix"),
    down("duplicate-rule", {"ecr-ptc:rules": [{"ecrRepositoryPrefix": "a1"}, {"ecrRepositoryPrefix": "a1/"}]},
         "ecr-ptc:rules[1].ecrRepositoryPrefix", "'a1/'", "each value once; it repeats item 0"),
    down("ROOT-rule-with-an-upstream-prefix",
         {"ecr-ptc:rules": [{"ecrRepositoryPrefix": "ROOT", "upstreamRepositoryPrefix": "golden"}]},
         "ecr-ptc:rules[0].upstreamRepositoryPrefix", "'golden'", "unset when ecrRepositoryPrefix is ROOT"),
    down("prefix-with-a-double-slash", {"ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden//base"}]},
         "ecr-ptc:rules[0].ecrRepositoryPrefix", "'golden//base'", "a repository namespace"),
    down("stack-name-not-fully-qualified", {"ecr-ptc:upstreamStack": "ecr-ptc/upstream"},
         "ecr-ptc:upstreamStack", "'ecr-ptc/upstream'", "<organization>/<project>/<stack>"),
    down("no-region", {"aws:region": ""}, "aws:region", "None", "the region of this stack's registry"),
    up("repository-name-ending-in-a-dash", {"ecr-ptc:grantVia": "repository", "ecr-ptc:repositories": ["golden-"]},
       "ecr-ptc:repositories[0]", "'golden-'", "separated by '.', '_', '__', '-'"),
    up("shared-prefix-ROOT", {"ecr-ptc:repositoryPrefix": "ROOT"},
       "ecr-ptc:repositoryPrefix", "'ROOT'", "leave the key unset to share every repository"),
    up("boolean-as-a-word", {"ecr-ptc:manageRegistryPolicyScope": "yes"},
       "ecr-ptc:manageRegistryPolicyScope", "'yes'", "true or false"),
]
# fmt: on

BAD = (
    TRAILING_NEWLINE
    + NON_ASCII
    + REGIONS
    + KEYS
    + UPSTREAM_OUTPUT_ERRORS
    + STATEMENTS
    + PAIRING
    + QUOTAS
    + TEMPLATES
    + FLEET_AND_PINNING
    + OTHER
)


def _mocks(side: str, outputs: dict[str, Any], account: str | None) -> RecordingMocks:
    if side == "upstream":
        return RecordingMocks(account or UPSTREAM_ACCOUNT)
    return RecordingMocks(
        account or DOWNSTREAM_ACCOUNT, {UPSTREAM_STACK: UPSTREAM_OUTPUTS | outputs}
    )


def refuse(case: Bad) -> ConfigError:
    base = case.base if case.base is not None else (UP if case.side == "upstream" else DOWN)
    mocks = _mocks(case.side, case.outputs, case.account)
    return expect_refusal({**base, **case.changes}, case.side, mocks)


def check(case: Bad) -> None:
    error = refuse(case)
    message = str(error)
    assert error.key == case.key, message
    expected = (
        f"config {case.key} is not set: "
        if case.shown == "None"
        else f"config {case.key}: {case.shown} is not valid: "
    )
    assert message.startswith(expected), message
    assert case.valid in error.valid, message


def test_the_table_covers_at_least_70_bad_inputs() -> None:
    assert len(BAD) >= 70
    assert len({case.id for case in BAD}) == len(BAD), "each case has its own id"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in BAD])
def test_refused_with_one_clean_message(case: Bad) -> None:
    check(case)


def test_upstream_output_not_a_list_says_what_is_valid() -> None:
    case = DOWNSTREAM_IDS_NOT_A_LIST
    error = refuse(case)
    assert (error.key, repr(error.value)) == (case.key, case.shown)
    assert "Input should be" not in error.valid, str(error)


def test_upstream_output_not_a_list_is_refused_cleanly() -> None:
    case = DOWNSTREAM_IDS_NOT_A_LIST
    error = refuse(case)
    assert (error.key, repr(error.value)) == (case.key, case.shown)
    assert "list" in error.valid


# --- valid edge cases: accepted, and what they create ------------------------------------------

RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
CREATION_TEMPLATE = "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate"
REGISTRY_POLICY = "aws:ecr/registryPolicy:RegistryPolicy"
REPOSITORY_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"


def run_up(changes: dict[str, Any]) -> ProgramRun:
    return run_program({**UP, **changes}, "upstream", RecordingMocks(UPSTREAM_ACCOUNT))


def run_down(changes: dict[str, Any], outputs: dict[str, Any] | None = None) -> ProgramRun:
    return run_program({**DOWN, **changes}, "downstream", _mocks("downstream", outputs or {}, None))


def registry_statements(result: ProgramRun) -> list[dict[str, Any]]:
    policy = json.loads(result.mocks.one(REGISTRY_POLICY).inputs["policy"])
    return policy["Statement"]  # type: ignore[no-any-return]


def test_repository_names_with_double_underscore_and_runs_of_dashes() -> None:
    names = ["golden/base__slim", "golden/a---b", "team--x/c.d_e"]
    result = run_up({"ecr-ptc:grantVia": "repository", "ecr-ptc:repositories": names})
    policies = result.mocks.of_type(REPOSITORY_POLICY)
    assert sorted(p.inputs["repository"] for p in policies) == sorted(names)
    assert result.mocks.of_type(REGISTRY_POLICY) == []


@pytest.mark.parametrize("mutability", ["IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION"])
def test_mutability_with_exclusion_filters(mutability: str) -> None:
    template = {"imageTagMutability": mutability, "imageTagMutabilityExclusionFilters": ["latest"]}
    result = run_down({TEMPLATE: template})
    created = result.mocks.of_type(CREATION_TEMPLATE)
    assert len(created) == 4  # 2 rules x 2 regions
    for resource in created:
        assert resource.inputs["imageTagMutability"] == mutability
        assert resource.inputs["imageTagMutabilityExclusionFilters"] == [
            {"filter": "latest", "filterType": "WILDCARD"}
        ]


def test_30_character_prefixes() -> None:
    prefix = "golden/" + "b" * 23
    assert len(prefix) == 30
    ecr_prefix = "c" * 30
    shared = run_up({"ecr-ptc:repositoryPrefix": prefix})
    assert shared.outputs["repositoryArnPattern"] == f"{ARN_HEAD}{prefix}/*"
    result = run_down(
        {
            "ecr-ptc:rules": [
                {"ecrRepositoryPrefix": ecr_prefix, "upstreamRepositoryPrefix": prefix}
            ]
        },
        {"repositoryArnPattern": shared.outputs["repositoryArnPattern"]},
    )
    assert {(r.inputs["ecrRepositoryPrefix"], r.inputs["upstreamRepositoryPrefix"])
            for r in result.mocks.of_type(RULE)} == {(ecr_prefix, prefix)}  # fmt: skip


def test_50_rules_in_8_regions_fit_every_quota() -> None:
    result = run_down(
        {
            "ecr-ptc:regions": EIGHT_REGIONS,
            "ecr-ptc:rules": rules(50, 30),
            TEMPLATE: {"kmsKeyArn": {r: kms(r) for r in EIGHT_REGIONS}, "resourceTags": {"a": "b"}},
            "ecr-ptc:consumerRoleNames": ["app"],
        }
    )
    assert len(result.mocks.of_type(RULE)) == 400
    assert len(result.mocks.of_type(CREATION_TEMPLATE)) == 400
    assert len(result.outputs["rules"]) == 400


def test_a_conditional_deny_guard_is_kept() -> None:
    guard = {
        "Sid": "OrganizationOnly",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "ecr:*",
        "Resource": "*",
        "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}},
    }
    assert guard in registry_statements(run_up({X: [guard]}))


def test_an_unconditional_deny_on_another_namespace_is_kept() -> None:
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "ecr:*",
        "Resource": f"{ARN_HEAD}private/*",
    }
    result = run_up({"ecr-ptc:repositoryPrefix": "golden", X: [deny]})
    assert deny in registry_statements(result)


def test_organizational_unit_paths() -> None:
    path = "o-abcdefghij/r-ab12/ou-ab12-abcdefgh/"
    result = run_up(
        {
            "ecr-ptc:downstreamAccountIds": [],
            "ecr-ptc:organizationId": "o-abcdefghij",
            "ecr-ptc:organizationalUnitPaths": [path],
        }
    )
    [statement] = registry_statements(result)
    assert statement["Condition"] == {
        "ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": f"{path}*"}
    }
    assert result.outputs["organizationalUnitPaths"] == [path]
    # ... and a downstream in any account of that OU pairs with it.
    outputs = {
        "downstreamAccountIds": [],
        "organizationId": "o-abcdefghij",
        "organizationalUnitPaths": [path],
    }
    assert len(run_down({}, outputs).mocks.of_type(RULE)) == 4


def test_reordering_rules_and_regions_changes_nothing() -> None:
    forward: dict[str, Any] = {
        "ecr-ptc:regions": ["eu-west-1", "eu-central-1", "us-west-2"],
        "ecr-ptc:rules": rules(5),
        TEMPLATE: {"keepLastImages": 10},
        "ecr-ptc:consumerRoleNames": ["app", "batch"],
    }
    backward = {
        **forward,
        "ecr-ptc:regions": forward["ecr-ptc:regions"][::-1],
        "ecr-ptc:rules": forward["ecr-ptc:rules"][::-1],
        "ecr-ptc:consumerRoleNames": ["batch", "app"],
    }
    a, b = run_down(forward), run_down(backward)
    assert a.outputs == b.outputs

    def inputs(result: ProgramRun) -> dict[str, dict[str, Any]]:
        return {r.name: r.inputs for r in result.mocks.resources if r.typ.startswith("aws:")}

    assert inputs(a) == inputs(b)
    assert len(inputs(a)) > 30


# --- the harness: a crash is not a refusal ----------------------------------------------------


class CrashingMocks(RecordingMocks):
    def call(self, args: Any) -> dict[str, Any]:  # type: ignore[override]
        if args.token == CALLER_IDENTITY:
            raise RuntimeError("the credentials broke")
        return super().call(args)


def test_a_crash_is_reported_as_an_unhandled_exception_not_a_refusal() -> None:
    with pytest.raises(ProgramFailed) as failed:
        run_program(UP, "upstream", CrashingMocks(UPSTREAM_ACCOUNT))
    run = failed.value.run
    assert run.exit_code == 32
    [message] = run.errors
    assert message.startswith("Program failed with an unhandled exception")
    assert "Traceback" in message and "the credentials broke" in message
    with pytest.raises(AssertionError, match="not a refusal"):
        expect_refusal(UP, "upstream", CrashingMocks(UPSTREAM_ACCOUNT))
