"""The alert rules' event patterns, as plain data: what an ecr-ptc stack is told about.

Downstream: ECR's "ECR Pull Through Cache Action" events (sent directly to EventBridge, best
effort) of this stack's rules whose sync-status is anything but SUCCESS. Upstream: CloudTrail's
record of the API calls that change what the registry grants ("AWS API Call via CloudTrail",
which reach EventBridge only while a CloudTrail trail logs the account's management events).
Fields as AWS's "Amazon ECR events and EventBridge" (ECR User Guide) and "AWS service events
delivered via AWS CloudTrail" (EventBridge User Guide) document them.

Both patterns pin `account` to the stack's own: a default bus also receives what other accounts
forward to it (a rule of theirs targeting this bus), and those events are not this stack's.
`source` and `detail-type` are the values components/rules/policy_rules.py pins for the plan, the
policy pack and the CI roles alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..rules.policy_rules import CACHE_ACTION_DETAIL_TYPE, CLOUDTRAIL_DETAIL_TYPE, ECR_SOURCE

ECR_EVENT_SOURCE = "ecr.amazonaws.com"
# The one sync-status AWS documents; the failures' values are not, so anything else is a failure.
SYNC_SUCCESS = "SUCCESS"
# The API calls that change what an upstream registry grants: its registry policy, a repository
# policy, and the account setting that decides what a registry policy may hold.
GRANT_CHANGE_EVENT_NAMES = (
    "DeleteRegistryPolicy",
    "DeleteRepositoryPolicy",
    "PutAccountSetting",
    "PutRegistryPolicy",
    "SetRepositoryPolicy",
)


def prefix_values(ecr_repository_prefixes: Iterable[str]) -> list[str]:
    """The values detail.ecr-repository-prefix may hold for these rules: each prefix as
    configured (ROOT included) and, for one configured with a trailing '/', also without it (AWS
    documents the field only by an example without one)."""
    values = set()
    for prefix in ecr_repository_prefixes:
        values.add(prefix)
        values.add(prefix.rstrip("/"))
    return sorted(values)


def cache_failure_pattern(
    ecr_repository_prefixes: Iterable[str], account_id: str
) -> dict[str, Any]:
    """Every cache fill of these rules, in this account, that did not succeed."""
    return {
        "account": [account_id],
        "source": [ECR_SOURCE],
        "detail-type": [CACHE_ACTION_DETAIL_TYPE],
        "detail": {
            "ecr-repository-prefix": prefix_values(ecr_repository_prefixes),
            "sync-status": [{"anything-but": SYNC_SUCCESS}],
        },
    }


def grant_change_pattern(account_id: str) -> dict[str, Any]:
    """Every call, in this account, of the APIs that change what the registry grants (failed
    ones included: an attempt is worth knowing about)."""
    return {
        "account": [account_id],
        "source": [ECR_SOURCE],
        "detail-type": [CLOUDTRAIL_DETAIL_TYPE],
        "detail": {
            "eventSource": [ECR_EVENT_SOURCE],
            "eventName": list(GRANT_CHANGE_EVENT_NAMES),
        },
    }
