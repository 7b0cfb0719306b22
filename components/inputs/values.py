"""The value types of ecr-ptc's configuration, as pydantic types: one place for each rule.

Each type checks the whole string against an ASCII pattern (`[0-9]`, not `\\d`; the pattern must
match to the end, so a trailing newline is refused) and, when it does not match, says what is
valid in words a user can act on. The same text is the type's description in the JSON Schema that
editors use to check stack files.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from ..rules import quotas
from ..rules.aws_names import ROOT_PREFIX, UnknownRegionError, region

# The error type every domain check raises; its message is "what is valid".
INVALID = "ecr_ptc_invalid"


def invalid(valid: str) -> PydanticCustomError:
    # Braces in the text would be read as placeholders; the text is passed as a value instead.
    return PydanticCustomError(INVALID, "{valid}", {"valid": valid})


def _pattern_type(
    pattern: str,
    valid: str,
    min_length: int = 1,
    max_length: int | None = None,
    extra: Callable[[str], str | None] | None = None,
) -> Any:
    compiled = re.compile(pattern, re.ASCII)

    def check(value: object) -> str:
        if (
            not isinstance(value, str)
            or len(value) < min_length
            or (max_length is not None and len(value) > max_length)
            or compiled.fullmatch(value) is None
        ):
            raise invalid(valid)
        problem = extra(value) if extra is not None else None
        if problem is not None:
            raise invalid(problem)
        return value

    schema: dict[str, Any] = {
        "type": "string",
        "pattern": f"^{pattern}$",
        "minLength": min_length,
        "description": valid,
    }
    if max_length is not None:
        schema["maxLength"] = max_length
    return Annotated[str, PlainValidator(check), WithJsonSchema(schema)]


def _empty_is_unset(value: object) -> object:
    """Pulumi.yaml declares "" as the default of optional string keys: "" means unset."""
    return None if value == "" else value


Unset = BeforeValidator(_empty_is_unset)

ACCOUNT_ID_PATTERN = r"[0-9]{12}"
AccountId = _pattern_type(ACCOUNT_ID_PATTERN, "an AWS account ID: exactly 12 digits, quoted")

OrganizationId = _pattern_type(
    r"o-[a-z0-9]{10,32}",
    "an AWS Organizations ID: 'o-' then 10 to 32 lower-case letters or digits",
)
OrganizationalUnitId = _pattern_type(
    r"ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}",
    "an organizational unit ID: 'ou-', 4 to 32 lower-case letters or digits, '-', then 8 to 32",
)
OrganizationalUnitPath = _pattern_type(
    r"o-[a-z0-9]{10,32}/r-[0-9a-z]{4,32}(/ou-[0-9a-z]{4,32}-[a-z0-9]{8,32})+/",
    "an organization path 'o-<org>/r-<root>/ou-<ou>/' (one or more ou- segments, ending "
    "with '/'), as aws:PrincipalOrgPaths matches it",
)

# AWS's rule for ecrRepositoryPrefix and upstreamRepositoryPrefix (CreatePullThroughCacheRule).
_NAME_PART = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
PREFIX_PATTERN = rf"(?:{_NAME_PART}(?:/{_NAME_PART})*/?|{ROOT_PREFIX})"
PREFIX_VALID = (
    f"{quotas.PREFIX_MIN_CHARS} to {quotas.PREFIX_MAX_CHARS} characters of lower-case letters, "
    "digits, '.', '_', '-' and '/' (a repository namespace, e.g. 'team-a' or 'golden/base'), "
    "or ROOT"
)
Prefix = _pattern_type(
    PREFIX_PATTERN, PREFIX_VALID, quotas.PREFIX_MIN_CHARS, quotas.PREFIX_MAX_CHARS
)
SharedPrefix = _pattern_type(
    PREFIX_PATTERN,
    PREFIX_VALID.removesuffix(", or ROOT") + " (not ROOT)",
    quotas.PREFIX_MIN_CHARS,
    quotas.PREFIX_MAX_CHARS,
    extra=lambda v: (
        "a namespace, not ROOT (leave the key unset to share every repository)"
        if v == ROOT_PREFIX
        else None
    ),
)

# AWS's CreateRepository model (botocore's RepositoryName): parts of [a-z0-9] joined by exactly
# one separator, '.', '_', '__' or a run of '-', and '/' between parts. Each separator is
# non-empty, so a name matches one way only and the match takes linear time.
REPOSITORY_NAME_PATTERN = rf"{_NAME_PART}(?:/{_NAME_PART})*"
RepositoryName = _pattern_type(
    REPOSITORY_NAME_PATTERN,
    f"an ECR repository name: {quotas.REPOSITORY_NAME_MIN_CHARS} to "
    f"{quotas.REPOSITORY_NAME_MAX_CHARS} characters, lower-case letters and digits in parts "
    "separated by '.', '_', '__', '-' (or a run of '-') and '/'",
    quotas.REPOSITORY_NAME_MIN_CHARS,
    quotas.REPOSITORY_NAME_MAX_CHARS,
)

RoleName = _pattern_type(
    r"[A-Za-z0-9+=,.@_-]+",
    f"an IAM role name: 1 to {quotas.ROLE_NAME_MAX_CHARS} ASCII letters, digits or +=,.@_-",
    1,
    quotas.ROLE_NAME_MAX_CHARS,
)

KMS_KEY_ARN_PATTERN = (
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):kms:(?P<region>[a-z0-9-]+):[0-9]{12}:key/"
    r"(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
KmsKeyArn = _pattern_type(
    KMS_KEY_ARN_PATTERN,
    "a KMS key ARN, arn:<partition>:kms:<region>:<account>:key/<key-id> (not an alias)",
)

# IAM's Sid: ASCII letters and digits only.
StatementId = _pattern_type(
    r"[A-Za-z0-9]+", "a statement ID (Sid) of ASCII letters and digits only, e.g. 'ReplicationRead'"
)

STACK_NAME_PATTERN = r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+"
StackName = _pattern_type(
    STACK_NAME_PATTERN,
    "a fully qualified stack name <organization>/<project>/<stack>, "
    "e.g. organization/ecr-ptc/upstream",
)

# IAM paths (CreateRole's Path): '/' alone, or '/'-separated segments of printable ASCII other
# than '/', starting and ending with '/'. Each segment is delimited, so the match is linear.
_IAM_PATH_SEGMENT = r"[\x21-\x2e\x30-\x7e]+"
IAM_PATH_PATTERN = rf"/(?:{_IAM_PATH_SEGMENT}/)*"
IamPath = _pattern_type(
    IAM_PATH_PATTERN,
    f"an IAM path: '/' or '/<segment>/.../', printable ASCII, at most "
    f"{quotas.IAM_PATH_MAX_CHARS} characters (e.g. /ecr-ptc/)",
    1,
    quotas.IAM_PATH_MAX_CHARS,
)
POLICY_ARN_PATTERN = (
    r"arn:(?:aws|aws-cn|aws-us-gov):iam::(?:[0-9]{12}|aws):policy/"
    rf"(?:{_IAM_PATH_SEGMENT}/)*[A-Za-z0-9+=,.@_-]{{1,128}}"
)
PolicyArn = _pattern_type(
    POLICY_ARN_PATTERN,
    "a managed policy ARN, arn:<partition>:iam::<12-digit account>:policy/<path/name>",
)

ROLE_ARN_PATTERN = (
    r"arn:(?:aws|aws-cn|aws-us-gov):iam::[0-9]{12}:role/"
    r"(?:[A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,64}"
)
RoleArn = _pattern_type(
    ROLE_ARN_PATTERN, "an IAM role ARN, arn:<partition>:iam::<12-digit account>:role/<name>"
)

# Image tag filters of a creation template (botocore's ImageTagMutabilityExclusionFilterValue),
# with at most two wildcards (pulumi-aws's
# RepositoryCreationTemplateImageTagMutabilityExclusionFilter).
TagFilter = _pattern_type(
    r"[A-Za-z0-9._*-]+",
    f"a tag filter of 1 to {quotas.EXCLUSION_FILTER_MAX_CHARS} letters, digits and ._*- with at "
    f"most {quotas.EXCLUSION_FILTER_MAX_WILDCARDS} '*' wildcards",
    1,
    quotas.EXCLUSION_FILTER_MAX_CHARS,
    extra=lambda v: (
        f"a tag filter with at most {quotas.EXCLUSION_FILTER_MAX_WILDCARDS} '*' wildcards"
        if v.count("*") > quotas.EXCLUSION_FILTER_MAX_WILDCARDS
        else None
    ),
)

# AWS's tagging rule, as its tagging APIs state it: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$ (Unicode
# letters, separators such as spaces, numbers, and _.:/=+-@). Python's re has no \p{...}: the
# Unicode category of each character is checked instead, in one pass.
TAG_SYMBOLS = "_.:/=+-@"
TAG_CHARACTERS = "letters, digits, spaces and _.:/=+-@"


def tag_text_problem(text: str) -> str | None:
    """Which character of `text` AWS's tagging rule refuses, or None."""
    for ch in text:
        if ch not in TAG_SYMBOLS and unicodedata.category(ch)[0] not in "LZN":
            return f"{ch!r} is not allowed: use {TAG_CHARACTERS}"
    return None


def _region_check(value: object) -> str:
    if not isinstance(value, str):
        raise invalid("an AWS region name such as us-east-1, as a string")
    try:
        region(value)
    except UnknownRegionError as err:
        raise invalid(f"an AWS region name such as us-east-1 ({err})") from None
    return value


RegionName = Annotated[
    str,
    PlainValidator(_region_check),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}$",
            "description": "an AWS region of the aws, aws-cn or aws-us-gov partition",
        }
    ),
]


def _known_region_problem(name: str, what: str) -> str | None:
    try:
        region(name)
    except UnknownRegionError as err:
        return f"{what} in a region of the aws, aws-cn or aws-us-gov partition ({err})"
    return None


# An EventBridge event bus (PutTargets' Arn, at most 1,600 characters; the name as CreateEventBus
# takes it, 1 to 256 of letters, digits and ._-/). Each part is delimited by ':' or the end, so
# the match is linear.
EVENT_BUS_ARN_PATTERN = (
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):events:(?P<region>[a-z0-9-]+):"
    rf"(?P<account>[0-9]{{12}}):event-bus/(?P<name>[A-Za-z0-9._/-]{{1,{quotas.EVENT_BUS_NAME_MAX_CHARS}}})"
)
EventBusArn = _pattern_type(
    EVENT_BUS_ARN_PATTERN,
    "an EventBridge event bus ARN, arn:<partition>:events:<region>:<12-digit account>:"
    "event-bus/<name> (e.g. a central monitoring account's bus)",
    1,
    quotas.EVENT_TARGET_ARN_MAX_CHARS,
    extra=lambda v: _known_region_problem(v.split(":")[3], "an event bus"),
)

# What SNS's Subscribe takes as the endpoint of each protocol this program subscribes (SNS's own
# documentation of Subscribe). Every pattern is anchored, ASCII and linear: each repeated part is
# delimited by a character it cannot hold.
_PARTITION = r"(?:aws|aws-cn|aws-us-gov)"
SUBSCRIPTION_ENDPOINTS: dict[str, tuple[str, str, int]] = {
    # protocol: (pattern, what is valid, most characters)
    "email": (
        r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",
        "an email address, e.g. platform-alerts@example.com",
        quotas.EMAIL_ADDRESS_MAX_CHARS,
    ),
    "email-json": (
        r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",
        "an email address, e.g. platform-alerts@example.com",
        quotas.EMAIL_ADDRESS_MAX_CHARS,
    ),
    "https": (
        r"https://[\x21-\x7e]+",
        "an https:// URL of printable ASCII, no spaces",
        quotas.SUBSCRIPTION_URL_MAX_CHARS,
    ),
    "http": (
        r"http://[\x21-\x7e]+",
        "an http:// URL of printable ASCII, no spaces",
        quotas.SUBSCRIPTION_URL_MAX_CHARS,
    ),
    "sms": (
        r"\+[1-9][0-9]{1,14}",
        "a phone number in E.164 form, '+' and up to 15 digits, e.g. +14155550100",
        16,
    ),
    "sqs": (
        rf"arn:{_PARTITION}:sqs:[a-z0-9-]+:[0-9]{{12}}:[A-Za-z0-9_-]{{1,80}}",
        "an SQS queue ARN, arn:<partition>:sqs:<region>:<account>:<queue> (a standard queue: an "
        "SNS standard topic cannot deliver to a FIFO queue)",
        quotas.EVENT_TARGET_ARN_MAX_CHARS,
    ),
    "lambda": (
        rf"arn:{_PARTITION}:lambda:[a-z0-9-]+:[0-9]{{12}}:function:[A-Za-z0-9_-]{{1,64}}"
        r"(?::[A-Za-z0-9$_-]{1,128})?",
        "a Lambda function ARN, arn:<partition>:lambda:<region>:<account>:function:<name>"
        "[:<version or alias>]",
        quotas.EVENT_TARGET_ARN_MAX_CHARS,
    ),
}
# The protocols, as a type (tests/test_alerts.py checks it lists SUBSCRIPTION_ENDPOINTS' keys).
SubscriptionProtocolName = Literal["email", "email-json", "https", "http", "sms", "sqs", "lambda"]
SUBSCRIPTION_PROTOCOLS: tuple[str, ...] = get_args(SubscriptionProtocolName)

# The endpoint's first check: printable ASCII, no spaces, of a length no protocol exceeds; the
# form of its protocol is checked with the protocol, which says what that form is
# (components/inputs/stack_config.py). The JSON Schema gives the union of the forms (each
# alternative linear, tried one after the other).
_ENDPOINT_VALID = (
    "the endpoint for the protocol: an email address (email, email-json), an http(s):// URL, "
    "an E.164 phone number (sms), an SQS queue or Lambda function ARN; printable ASCII, no spaces"
)
_PRINTABLE = re.compile(r"[\x21-\x7e]+", re.ASCII)


def _endpoint_check(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # YAML reads +14155550100 as a number, dropping the + an E.164 number needs.
        raise invalid("a string: quote a phone number, e.g. '+14155550100'")
    if (
        not isinstance(value, str)
        or len(value) > quotas.SUBSCRIPTION_URL_MAX_CHARS
        or _PRINTABLE.fullmatch(value) is None
    ):
        raise invalid(_ENDPOINT_VALID)
    return value


SubscriptionEndpoint = Annotated[
    str,
    PlainValidator(_endpoint_check),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^(?:"
            + "|".join(dict.fromkeys(p for p, _, _ in SUBSCRIPTION_ENDPOINTS.values()))
            + ")$",
            "minLength": 1,
            "maxLength": quotas.SUBSCRIPTION_URL_MAX_CHARS,
            "description": _ENDPOINT_VALID,
        }
    ),
]


def subscription_endpoint_problem(protocol: str, endpoint: str) -> str | None:
    """What `endpoint` must be for `protocol`, when it is not that."""
    pattern, valid, most = SUBSCRIPTION_ENDPOINTS[protocol]
    if len(endpoint) > most or re.fullmatch(pattern, endpoint, re.ASCII) is None:
        return f"{valid}, at most {most:,} characters, for protocol {protocol}"
    if protocol in ("sqs", "lambda"):
        return _known_region_problem(endpoint.split(":")[3], f"a {protocol} endpoint")
    return None
