"""Two AWS accounts, downstream and upstream, as `make doctor` sees them through botocore's Stubber.

Each call is answered from `FakeAws`'s state at the moment it is made: a `before-parameter-build`
handler computes the answer and queues it on the client's Stubber, which checks it against the
service model (and the request against the model's input) before the client returns it. A fault
is an edit of the state. IAM's policy simulator is a small evaluator of the policies held here:
actions and resources as globs, and StringEquals / Bool conditions against the ContextEntries the
call passes (a key it leaves out is reported missing, as the simulator does).
"""

from __future__ import annotations

import copy
import datetime
import fnmatch
import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name
from botocore.stub import Stubber

from components.plan.stack_plan import (
    CREATION_TEMPLATE,
    MANAGED_POLICY,
    PULL_THROUGH_CACHE_RULE,
    REGISTRY_POLICY,
    REPOSITORY_POLICY,
    ROLE,
    ROLE_POLICY,
    StackPlan,
)
from scripts.doctor_checks import ClientFor

DOWNSTREAM = "444455556666"
UPSTREAM = "111122223333"
OTHER = "999988887777"
ORGANIZATION = "o-a1b2c3d4e5"
CACHE_ROLE = "ecr-ptc-role-abc1234"
CONSUMER = "app"
DIGEST = "sha256:" + "a" * 64
MOVED = "sha256:" + "b" * 64
WHEN = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)

UPSTREAM_STACK = {
    "aws:region": "us-east-1",
    "aws:allowedAccountIds": [UPSTREAM],
    "ecr-ptc:downstreamAccountIds": [DOWNSTREAM],
    "ecr-ptc:repositoryPrefix": "golden",
}
DOWNSTREAM_STACK = {
    "aws:region": "eu-west-1",
    "aws:allowedAccountIds": [DOWNSTREAM],
    "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
    "ecr-ptc:regions": ["eu-west-1", "eu-central-1"],
    "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden", "upstreamRepositoryPrefix": "golden"}],
    "ecr-ptc:repositoryTemplate": {"expireUntaggedAfterDays": 14, "keepLastImages": 100},
    "ecr-ptc:consumerRoleNames": [CONSUMER],
}


def write_project(directory: Path, stacks: Mapping[str, Mapping[str, Any]]) -> Path:
    """A project folder with these stack files (JSON is YAML) and a bare Pulumi.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Pulumi.yaml").write_text("name: ecr-ptc\nruntime: python\n")
    for name, config in stacks.items():
        (directory / f"Pulumi.{name}.yaml").write_text(json.dumps({"config": dict(config)}))
    return directory


def role_arn(name: str, account: str = DOWNSTREAM) -> str:
    return f"arn:aws:iam::{account}:role/{name}"


@dataclass
class FakeRole:
    arn: str
    trust: dict[str, Any]
    policies: list[dict[str, Any]] = field(default_factory=list)


# --- IAM's simulator, small --------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(patterns: Any, value: str, case: bool = True) -> bool:
    if case:
        return any(fnmatch.fnmatchcase(value, p) for p in _list(patterns))
    return any(fnmatch.fnmatchcase(value.lower(), str(p).lower()) for p in _list(patterns))


def _condition(
    condition: Mapping[str, Any], context: Mapping[str, list[str]]
) -> tuple[bool, list[str]]:
    missing: list[str] = []
    for operator, block in condition.items():
        for key, wanted in block.items():
            if key not in context:
                missing.append(key)
                return False, missing
            values = [str(v).lower() if operator == "Bool" else str(v) for v in _list(wanted)]
            given = [v.lower() if operator == "Bool" else v for v in context[key]]
            if operator not in ("StringEquals", "Bool") or not set(given) & set(values):
                return False, missing
    return True, missing


def simulate(
    policies: list[dict[str, Any]], action: str, resource: str, context: Mapping[str, list[str]]
) -> tuple[str, list[str]]:
    decision, missing = "implicitDeny", []
    for document in policies:
        for statement in _list(document.get("Statement", [])):
            if not _matches(statement.get("Action", []), action, case=False):
                continue
            if not _matches(statement.get("Resource", "*"), resource):
                continue
            holds, absent = _condition(statement.get("Condition", {}), context)
            missing += absent
            if not holds:
                continue
            if statement["Effect"] == "Deny":
                return "explicitDeny", []
            decision = "allowed"
    return decision, sorted(set(missing)) if decision != "allowed" else []


# --- the accounts -------------------------------------------------------------------------------


class AwsError(Exception):
    """An error answer: its code, message and HTTP status."""

    def __init__(self, code: str, message: str = "", status: int = 400) -> None:
        super().__init__(code)
        self.code, self.message, self.status = code, message or code, status


Fault = str | Exception  # an error code to answer with, or an exception to raise


_SESSION = botocore.session.get_session()


class FakeAws:
    """The downstream and upstream accounts of a planned stack, healthy until edited."""

    def __init__(self, plan: StackPlan, upstream_plan: StackPlan | None) -> None:
        self.account = plan.account_id
        self.identity = {"downstream": self.account, "upstream": UPSTREAM}
        self.rules: dict[str, dict[str, dict[str, Any]]] = {}
        self.validation: dict[tuple[str, str], str] = {}
        self.templates: dict[str, list[dict[str, Any]]] = {}
        self.roles: dict[str, FakeRole] = {}
        self.registry_policy: str | None = None
        self.repository_policies: dict[str, str] = {}
        self.scope = "V2"
        self.organization: str | None = ORGANIZATION
        self.upstream_images: dict[str, dict[str, str]] = {"golden/base": {"1.0": DIGEST}}
        self.cache_images: dict[str, dict[str, dict[str, str]]] = {}
        self.faults: dict[tuple[str, ...], Fault] = {}
        self.calls: list[tuple[str, str, str, str]] = []  # side, service, operation, region
        self.stubbers: list[Stubber] = []
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._from_plans(plan, upstream_plan)

    def _from_plans(self, plan: StackPlan, upstream_plan: StackPlan | None) -> None:
        roles = plan.of_type(ROLE)
        cache_role = next(r for r in roles if r.name.endswith("-role") and r.group == "main")
        cache_policy = next(
            p for p in plan.of_type(ROLE_POLICY) if p.name == f"{cache_role.name}-policy"
        )
        self.roles[CACHE_ROLE] = FakeRole(
            role_arn(CACHE_ROLE, self.account),
            json.loads(cache_role.properties["assume_role_policy"]),
            [json.loads(cache_policy.properties["policy"])],
        )
        [consumer] = plan.of_type(MANAGED_POLICY)
        self.roles[CONSUMER] = FakeRole(
            role_arn(CONSUMER, self.account),
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            },
            [json.loads(consumer.properties["policy"])],
        )
        for rule in plan.of_type(PULL_THROUGH_CACHE_RULE):
            p = rule.properties
            self.rules.setdefault(p["region"], {})[p["ecr_repository_prefix"]] = {
                "ecrRepositoryPrefix": p["ecr_repository_prefix"],
                "upstreamRegistryUrl": p["upstream_registry_url"],
                "upstreamRepositoryPrefix": p["upstream_repository_prefix"],
                "registryId": self.account,
                "customRoleArn": role_arn(CACHE_ROLE, self.account),
                "upstreamRegistry": "ecr",
                "createdAt": WHEN,
            }
        for template in plan.of_type(CREATION_TEMPLATE):
            p = template.properties
            self.templates.setdefault(p["region"], []).append(
                {
                    "prefix": p["prefix"],
                    "appliedFor": list(p["applied_fors"]),
                    "encryptionConfiguration": {"encryptionType": "AES256"},
                    "imageTagMutability": p["image_tag_mutability"],
                    "resourceTags": [],
                    "lifecyclePolicy": p.get("lifecycle_policy") or "",
                    "description": p["description"],
                    "createdAt": WHEN,
                    "updatedAt": WHEN,
                }
            )
        if upstream_plan is not None:
            for policy in upstream_plan.of_type(REGISTRY_POLICY):
                self.registry_policy = str(policy.properties["policy"])
            for policy in upstream_plan.of_type(REPOSITORY_POLICY):
                name = str(policy.properties["repository"])
                self.repository_policies[name] = str(policy.properties["policy"])

    # -- edits --

    def fail(self, side: str, operation: str, fault: Fault, region: str = "") -> None:
        """Answer `operation` (its API name) with an error code, or raise an exception."""
        self.faults[(side, operation, region)] = fault

    def template(self, region: str, prefix: str) -> dict[str, Any]:
        return next(t for t in self.templates[region] if t["prefix"] == prefix)

    # -- clients --

    def clients(self, side: str) -> ClientFor:
        def client(service: str, region: str) -> Any:
            key = (side, service, region)
            if key not in self._clients:
                made = _SESSION.create_client(
                    service, region_name=region, aws_access_key_id="x", aws_secret_access_key="x"
                )
                stubber = Stubber(made)
                # First, and registered before the Stubber's own check that an answer is queued.
                made.meta.events.register_first(
                    "before-parameter-build.*.*", self._answerer(side, service, region, stubber)
                )
                stubber.activate()
                self.stubbers.append(stubber)
                self._clients[key] = made
            return self._clients[key]

        return client

    def _answerer(
        self, side: str, service: str, region: str, stubber: Stubber
    ) -> Callable[..., None]:
        def answer(params: dict[str, Any], model: Any, **_: Any) -> None:
            operation = model.name
            self.calls.append((side, service, operation, region))
            method = xform_name(operation)
            fault = self.faults.get(
                (side, operation, region), self.faults.get((side, operation, ""))
            )
            try:
                if isinstance(fault, Exception):
                    raise fault
                if isinstance(fault, str):
                    raise AwsError(fault, status=403 if "Denied" in fault else 400)
                response = getattr(self, f"_{service}_{method}")(side, region, params)
            except AwsError as err:
                stubber.add_client_error(
                    method,
                    service_error_code=err.code,
                    service_message=err.message,
                    http_status_code=err.status,
                )
                return
            stubber.add_response(method, response)

        return answer

    # -- sts, organizations --

    def _sts_get_caller_identity(self, side: str, region: str, params: Any) -> dict[str, Any]:
        account = self.identity[side]
        return {
            "UserId": "AROAEXAMPLEEXAMPLE1:doctor",
            "Account": account,
            "Arn": f"arn:aws:sts::{account}:assumed-role/doctor/me",
        }

    def _organizations_describe_organization(
        self, side: str, region: str, params: Any
    ) -> dict[str, Any]:
        if self.organization is None:
            raise AwsError("AWSOrganizationsNotInUseException")
        return {
            "Organization": {
                "Id": self.organization,
                "Arn": f"arn:aws:organizations::{UPSTREAM}:organization/{self.organization}",
                "MasterAccountId": UPSTREAM,
            }
        }

    # -- iam --

    def _iam_get_role(self, side: str, region: str, params: Any) -> dict[str, Any]:
        role = self.roles.get(params["RoleName"])
        if role is None:
            raise AwsError("NoSuchEntity", status=404)
        return {
            "Role": {
                "Path": "/",
                "RoleName": params["RoleName"],
                "RoleId": "AROAEXAMPLEEXAMPLE12",
                "Arn": role.arn,
                "CreateDate": WHEN,
                # IAM answers with the document URL-encoded; botocore decodes it.
                "AssumeRolePolicyDocument": urllib.parse.quote(json.dumps(role.trust)),
            }
        }

    def _iam_simulate_principal_policy(self, side: str, region: str, params: Any) -> dict[str, Any]:
        role = next(r for r in self.roles.values() if r.arn == params["PolicySourceArn"])
        context = {
            e["ContextKeyName"]: list(e["ContextKeyValues"])
            for e in params.get("ContextEntries", [])
        }
        results = []
        for action in params["ActionNames"]:
            for resource in params.get("ResourceArns", ["*"]):
                decision, missing = simulate(role.policies, action, resource, context)
                results.append(
                    {
                        "EvalActionName": action,
                        "EvalResourceName": resource,
                        "EvalDecision": decision,
                        "MatchedStatements": [],
                        "MissingContextValues": missing,
                    }
                )
        return {"EvaluationResults": results, "IsTruncated": False}

    # -- ecr --

    def _ecr_describe_pull_through_cache_rules(
        self, side: str, region: str, params: Any
    ) -> dict[str, Any]:
        return {
            "pullThroughCacheRules": [copy.deepcopy(r) for r in self.rules.get(region, {}).values()]
        }

    def _ecr_validate_pull_through_cache_rule(
        self, side: str, region: str, params: Any
    ) -> dict[str, Any]:
        prefix = params["ecrRepositoryPrefix"]
        rule = self.rules.get(region, {}).get(prefix)
        if rule is None:
            raise AwsError("PullThroughCacheRuleNotFoundException")
        failure = self.validation.get((region, prefix))
        return {
            "ecrRepositoryPrefix": prefix,
            "registryId": self.account,
            "upstreamRegistryUrl": rule["upstreamRegistryUrl"],
            "customRoleArn": rule["customRoleArn"],
            "upstreamRepositoryPrefix": rule["upstreamRepositoryPrefix"],
            "isValid": failure is None,
            "failure": failure or "",
        }

    def _ecr_describe_repository_creation_templates(
        self, side: str, region: str, params: Any
    ) -> dict[str, Any]:
        return {
            "registryId": self.account,
            "repositoryCreationTemplates": copy.deepcopy(self.templates.get(region, [])),
        }

    def _ecr_get_registry_policy(self, side: str, region: str, params: Any) -> dict[str, Any]:
        if self.registry_policy is None:
            raise AwsError("RegistryPolicyNotFoundException")
        return {"registryId": UPSTREAM, "policyText": self.registry_policy}

    def _ecr_get_repository_policy(self, side: str, region: str, params: Any) -> dict[str, Any]:
        name = params["repositoryName"]
        if name not in self.repository_policies:
            raise AwsError("RepositoryPolicyNotFoundException")
        return {
            "registryId": UPSTREAM,
            "repositoryName": name,
            "policyText": self.repository_policies[name],
        }

    def _ecr_get_account_setting(self, side: str, region: str, params: Any) -> dict[str, Any]:
        return {"name": params["name"], "value": self.scope}

    def _ecr_batch_get_image(self, side: str, region: str, params: Any) -> dict[str, Any]:
        repository, tag = params["repositoryName"], params["imageIds"][0]["imageTag"]
        ruled = any(repository.startswith(f"{p}/") for p in self.rules.get(region, {}))
        if repository not in self.cache_images.get(region, {}) and not ruled:
            raise AwsError(
                "RepositoryNotFoundException",
                f"The repository with name '{repository}' does not exist in the registry with id '{self.account}'",
            )
        cached = self.cache_images.setdefault(region, {}).setdefault(repository, {})
        if tag not in cached:
            # A pull through the cache: ECR copies the upstream's image (the rule's mapping).
            upstream = self.upstream_images.get(repository, {}).get(tag)
            if upstream is None:
                return {
                    "images": [],
                    "failures": [
                        {
                            "imageId": {"imageTag": tag},
                            "failureCode": "ImageNotFound",
                            "failureReason": "Requested image not found",
                        }
                    ],
                }
            cached[tag] = upstream
        return {
            "images": [
                {
                    "registryId": self.account,
                    "repositoryName": repository,
                    "imageId": {"imageDigest": cached[tag], "imageTag": tag},
                    "imageManifest": "{}",
                    "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json",
                }
            ],
            "failures": [],
        }

    def _ecr_describe_images(self, side: str, region: str, params: Any) -> dict[str, Any]:
        repository, tag = params["repositoryName"], params["imageIds"][0]["imageTag"]
        digest = self.upstream_images.get(repository, {}).get(tag)
        if digest is None:
            raise AwsError("ImageNotFoundException")
        return {
            "imageDetails": [
                {
                    "registryId": UPSTREAM,
                    "repositoryName": repository,
                    "imageDigest": digest,
                    "imageTags": [tag],
                }
            ]
        }


class Clock:
    """A quarter of a second between readings."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now
