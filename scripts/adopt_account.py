"""What exists in the stack's account, read with boto3 (`make adopt`). Read-only calls only:
ecr:DescribePullThroughCacheRules, ecr:DescribeRepositoryCreationTemplates, ecr:GetRegistryPolicy,
ecr:GetRepositoryPolicy, ecr:GetAccountSetting, iam:GetRole, iam:ListRolePolicies and
sts:GetCallerIdentity.

A call AWS refuses, or that cannot reach AWS, raises CouldNotCheck naming the IAM action and the
region, so the one-line message says what to allow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# "Not found" answers: the thing does not exist, which is an answer, not a failure.
REGISTRY_POLICY_MISSING = "RegistryPolicyNotFoundException"
REPOSITORY_POLICY_MISSING = "RepositoryPolicyNotFoundException"
REPOSITORY_MISSING = "RepositoryNotFoundException"
ROLE_MISSING = "NoSuchEntity"

ClientFor = Callable[[str, str], Any]  # (service, region) -> boto3 client


class CouldNotCheck(Exception):
    """An AWS call failed; `action` is the IAM action (ecr:GetRegistryPolicy), `where` its
    region (or "" for a global service)."""

    def __init__(self, action: str, where: str, error: Exception) -> None:
        super().__init__(f"{action}{f' in {where}' if where else ''}: {error}")
        self.action = action
        self.where = where
        self.error = error


@dataclass(frozen=True)
class Missing:
    """What AWS answered instead of the thing: why it is not there."""

    reason: str


@dataclass
class Account:
    """The stack's account, read lazily, each call at most once."""

    client_for: ClientFor
    _cache: dict[tuple[str, ...], Any] = field(default_factory=dict)

    def _client(self, service: str, region: str) -> Any:
        return self.client_for(service, region)

    def _call(self, key: tuple[str, ...], read: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = read()
        return self._cache[key]

    def account_id(self, region: str) -> str:
        def read() -> str:
            answer = _api(self._client("sts", region), region, "get_caller_identity")
            return str(answer["Account"])

        return str(self._call(("sts", region), read))

    def rules(self, region: str) -> dict[str, dict[str, Any]]:
        """Every pull-through-cache rule of the registry in `region`, by ecrRepositoryPrefix."""

        def read() -> dict[str, dict[str, Any]]:
            pages = _pages(self._client("ecr", region), region, "describe_pull_through_cache_rules")
            return {r["ecrRepositoryPrefix"]: r for p in pages for r in p["pullThroughCacheRules"]}

        return dict(self._call(("rules", region), read))

    def templates(self, region: str) -> dict[str, dict[str, Any]]:
        """Every repository creation template of the registry in `region`, by prefix."""

        def read() -> dict[str, dict[str, Any]]:
            client = self._client("ecr", region)
            pages = _pages(client, region, "describe_repository_creation_templates")
            return {t["prefix"]: t for p in pages for t in p["repositoryCreationTemplates"]}

        return dict(self._call(("templates", region), read))

    def registry_policy(self, region: str) -> str | Missing:
        def read() -> str | Missing:
            client = self._client("ecr", region)
            try:
                answer = _api(client, region, "get_registry_policy", (REGISTRY_POLICY_MISSING,))
            except _NotThere:
                return Missing("no registry policy")
            return str(answer["policyText"])

        found: str | Missing = self._call(("registry-policy", region), read)
        return found

    def repository_policy(self, region: str, repository: str) -> str | Missing:
        def read() -> str | Missing:
            client = self._client("ecr", region)
            missing = (REPOSITORY_POLICY_MISSING, REPOSITORY_MISSING)
            try:
                answer = _api(
                    client, region, "get_repository_policy", missing, repositoryName=repository
                )
            except _NotThere as gone:
                if gone.code == REPOSITORY_MISSING:
                    return Missing(f"no repository {repository}: pulumi up fails until it exists")
                return Missing(f"repository {repository} has no policy")
            return str(answer["policyText"])

        found: str | Missing = self._call(("repository-policy", region, repository), read)
        return found

    def account_setting(self, region: str, name: str) -> str:
        def read() -> str:
            answer = _api(self._client("ecr", region), region, "get_account_setting", name=name)
            return str(answer["value"])

        return str(self._call(("setting", region, name), read))

    def role(self, region: str, name: str) -> dict[str, Any] | Missing:
        """The IAM role `name` with its inline policy names (`InlinePolicyNames`). IAM is global;
        `region` only picks the partition's endpoint."""

        def read() -> dict[str, Any] | Missing:
            client = self._client("iam", region)
            try:
                role = _api(client, "", "get_role", (ROLE_MISSING,), RoleName=name)["Role"]
            except _NotThere:
                return Missing(f"no role {name}")
            pages = _pages(client, "", "list_role_policies", RoleName=name)
            return {**role, "InlinePolicyNames": [n for p in pages for n in p["PolicyNames"]]}

        found: dict[str, Any] | Missing = self._call(("role", name), read)
        return found


class _NotThere(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _action(client: Any, method: str) -> str:
    """The IAM action of a client method: ecr:DescribePullThroughCacheRules."""
    operation = client.meta.method_to_api_mapping[method]
    return f"{client.meta.service_model.signing_name}:{operation}"


def _api(
    client: Any, region: str, method: str, missing: tuple[str, ...] = (), **kwargs: Any
) -> Any:
    return _checked(client, region, method, lambda: getattr(client, method)(**kwargs), missing)


def _pages(client: Any, region: str, method: str, **kwargs: Any) -> list[dict[str, Any]]:
    paginator = client.get_paginator(method)
    # Drained inside the check, so a refusal on a later page is reported like one on the first.
    pages: list[dict[str, Any]] = _checked(
        client, region, method, lambda: list(paginator.paginate(**kwargs))
    )
    return pages


def _checked(
    client: Any, region: str, method: str, call: Callable[[], Any], missing: tuple[str, ...] = ()
) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in missing:
            raise _NotThere(code) from None
        raise CouldNotCheck(_action(client, method), region, err) from None
    except BotoCoreError as err:
        raise CouldNotCheck(_action(client, method), region, err) from None
