"""`make adopt`: hand-made rules, templates and a registry policy found with the stack's
credentials, and a `pulumi import --file` document whose entries resolve to exactly the URNs
the program registers. AWS is botocore's Stubber (every request and response checked against
botocore's models); the program runs under the tests' own mocks, apart from the script's.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from scripts.adopt import main
from scripts.adopt_compare import policy_changes
from scripts.plan import plan_repository
from tests.pulumi_run import (
    DOWNSTREAM_ACCOUNT,
    UPSTREAM_ACCOUNT,
    RecordingMocks,
    fixture_project,
    run_program,
)

PROJECT = "ecr-ptc"
UPSTREAM_STACK = "organization/ecr-ptc/upstream"
STACK_TYPE = "pulumi:pulumi:Stack"
RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
TEMPLATE = "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate"
REGISTRY_POLICY = "aws:ecr/registryPolicy:RegistryPolicy"
ACCOUNT_SETTING = "aws:ecr/accountSetting:AccountSetting"
ROLE = "aws:iam/role:Role"
UPSTREAM_URL = f"{UPSTREAM_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
HAND_MADE_ROLE = f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:role/hand-made-ptc"
# The grant as someone wrote it by hand: other order, lists of one, the account's ID.
HAND_MADE_GRANT: dict[str, Any] = {
    "Sid": "EcrPtcDownstreamAccountsRead",
    "Effect": "Allow",
    "Principal": {"AWS": [DOWNSTREAM_ACCOUNT]},
    "Action": [
        "ecr:GetImageCopyStatus",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchImportUpstreamImage",
    ],
    "Resource": [f"arn:aws:ecr:us-east-1:{UPSTREAM_ACCOUNT}:repository/golden/*"],
}
LIFECYCLE_BY_HAND = {
    "rules": [
        {
            "rulePriority": 2,
            "description": "Keep the last 100 images",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": 100,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 1,
            "description": "Expire untagged images after 14 days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 14,
            },
            "action": {"type": "expire"},
        },
    ]
}


class StubbedAccount:
    """A boto3 session whose clients are stubbed: one client per service and region, each
    answering in the order its calls are made."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.profiles: list[str | None] = []
        self.stubbers: dict[tuple[str, str], Stubber] = {}
        self.clients: dict[tuple[str, str], Any] = {}

    def __call__(self, profile: str | None) -> StubbedAccount:
        self.profiles.append(profile)
        return self

    def client(self, service: str, region_name: str | None = None) -> Any:
        return self.clients[(service, region_name or "")]

    def stubber(self, service: str, region: str) -> Stubber:
        if (service, region) not in self.stubbers:
            client = boto3.client(
                service,
                region_name=region,
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
            self.clients[(service, region)] = client
            self.stubbers[(service, region)] = Stubber(client)
            self.stubbers[(service, region)].activate()
        return self.stubbers[(service, region)]

    def answer(self, service: str, region: str, method: str, response: dict[str, Any]) -> None:
        self.stubber(service, region).add_response(method, response)

    def refuse(self, service: str, region: str, method: str, code: str) -> None:
        self.stubber(service, region).add_client_error(
            method,
            service_error_code=code,
            service_message=f"{code} for test",
            http_status_code=400,
        )

    def identity(self, region: str) -> None:
        self.answer(
            "sts",
            region,
            "get_caller_identity",
            {
                "Account": self.account,
                "Arn": f"arn:aws:iam::{self.account}:user/admin",
                "UserId": "AIDAEXAMPLE",
            },
        )

    def all_answered(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


def rule(
    prefix: str, upstream_prefix: str = "golden", role: str = HAND_MADE_ROLE
) -> dict[str, Any]:
    return {
        "ecrRepositoryPrefix": prefix,
        "upstreamRegistryUrl": UPSTREAM_URL,
        "registryId": DOWNSTREAM_ACCOUNT,
        "customRoleArn": role,
        "upstreamRepositoryPrefix": upstream_prefix,
    }


def template(prefix: str, **changes: Any) -> dict[str, Any]:
    return {
        "prefix": prefix,
        "description": f"Cache repositories of pull-through-cache rule {prefix} (ecr-ptc)",
        "encryptionConfiguration": {"encryptionType": "AES256"},
        "imageTagMutability": "MUTABLE",
        "lifecyclePolicy": json.dumps(LIFECYCLE_BY_HAND),
        "appliedFor": ["PULL_THROUGH_CACHE"],
        **changes,
    }


def project(tmp_path: Path, downstream: Mapping[str, Any] | None = None) -> Path:
    """The fixture stacks (upstream 111122223333, downstream 444455556666 in eu-west-1 and
    eu-central-1 with a creation template), the downstream's config changed by `downstream`."""
    directory = fixture_project(tmp_path)
    path = directory / "Pulumi.downstream.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"].update(downstream or {})
    path.write_text(json.dumps(document))
    return directory


def adopt(
    directory: Path, stack: str, account: StubbedAccount, env: Mapping[str, str] | None = None
) -> tuple[int, str, str, dict[str, Any] | None]:
    out, err = io.StringIO(), io.StringIO()
    path = directory / f"adopt-{stack}.json"
    argv = ["--stack", stack, "--project-dir", str(directory), "--output", str(path)]
    status = main(argv, dict(env or {}), account, out, err)
    written = json.loads(path.read_text()) if path.exists() else None
    return status, out.getvalue(), err.getvalue(), written


def downstream_account(
    templates: dict[str, list[dict[str, Any]]], rules: dict[str, list[dict[str, Any]]]
) -> StubbedAccount:
    """In plan order: each region's templates, then its rules."""
    account = StubbedAccount(DOWNSTREAM_ACCOUNT)
    account.identity("eu-west-1")
    for region in ("eu-west-1", "eu-central-1"):
        account.answer(
            "ecr",
            region,
            "describe_repository_creation_templates",
            {"registryId": DOWNSTREAM_ACCOUNT, "repositoryCreationTemplates": templates[region]},
        )
    for region in ("eu-west-1", "eu-central-1"):
        account.answer(
            "ecr",
            region,
            "describe_pull_through_cache_rules",
            {"pullThroughCacheRules": rules[region]},
        )
    return account


# --- what the program registers, computed here from the program's own run -----------------------


def registered(directory: Path, stack: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Every resource the program registers for `stack`, by logical name: its type and the URN
    the engine gives it (the root stack's type is left out of its children's URNs, every other
    parent's qualified type kept: pulumi/pulumi pkg/resource/deploy/deployment.go generateURN),
    and its inputs."""
    results = {r.stack: r for r in plan_repository(directory)}
    upstream = run_program(
        dict(results["upstream"].values), "upstream", RecordingMocks(UPSTREAM_ACCOUNT)
    )
    if stack == "upstream":
        run = upstream
    else:
        mocks = RecordingMocks(DOWNSTREAM_ACCOUNT, {UPSTREAM_STACK: upstream.outputs})
        run = run_program(dict(results[stack].values), stack, mocks)
    by_urn = {r.urn: (name, r) for name, r in run.monitor.registrations.items()}

    def qualified(name: str) -> str:
        registration = run.monitor.registrations[name]
        parent = by_urn.get(registration.parent)
        if parent is None or parent[1].typ == STACK_TYPE:
            return registration.typ
        return f"{qualified(parent[0])}${registration.typ}"

    resources = {
        name: {"type": r.typ, "urn": f"urn:pulumi:{stack}::{PROJECT}::{qualified(name)}::{name}"}
        for name, r in run.monitor.registrations.items()
        if r.typ != STACK_TYPE
    }
    inputs = {r.name: dict(r.inputs) for r in run.mocks.resources}
    return resources, inputs


def file_urns(document: Mapping[str, Any], stack: str) -> dict[str, str]:
    """The URN `pulumi import --file` gives each entry: its parent's qualified type, its type
    and its logical name (pulumi/pulumi pkg/cmd/pulumi/operations/import.go parseImportFile:
    logicalName defaults to name, the parent is named by its entry's name)."""
    entries = {e["name"]: e for e in document["resources"]}

    def qualified(entry: Mapping[str, Any]) -> str:
        parent = entry.get("parent")
        return entry["type"] if parent is None else f"{qualified(entries[parent])}${entry['type']}"

    return {
        name: f"urn:pulumi:{stack}::{PROJECT}::{qualified(e)}::{e.get('logicalName', name)}"
        for name, e in entries.items()
    }


def assert_importable(document: Mapping[str, Any]) -> None:
    """What parseImportFile refuses: a missing type or name, a custom resource without an ID, a
    component with one, a parent that is not in the file, a name used twice."""
    names = [e["name"] for e in document["resources"]]
    assert len(names) == len(set(names)), names
    for entry in document["resources"]:
        assert entry["type"] and entry["name"], entry
        assert set(entry) <= {"type", "name", "id", "parent", "version", "component", "logicalName"}
        assert entry.get("component") is (None if "id" in entry else True), entry
        assert entry.get("parent") in (None, *names), entry
        assert "provider" not in entry  # the program uses the default provider


def import_id(type_: str, declared: Mapping[str, Any]) -> str:
    """The ID pulumi-aws imports each type by (its docs' Import sections), from the inputs the
    program gives it; `@<region>` for a regional resource (docs/enhanced-region-support.md)."""
    if type_ == ROLE:
        return str(declared["name"])
    key = {RULE: "ecrRepositoryPrefix", TEMPLATE: "prefix", ACCOUNT_SETTING: "name"}.get(type_)
    value = declared[key] if key else UPSTREAM_ACCOUNT  # a registry policy: the registry's ID
    return f"{value}@{declared['region']}"


def assert_matches_program(document: Mapping[str, Any], directory: Path, stack: str) -> None:
    resources, inputs = registered(directory, stack)
    urns = file_urns(document, stack)
    for entry in document["resources"]:
        logical = entry.get("logicalName", entry["name"])
        assert logical in resources, f"{logical}: the program registers no such resource"
        assert entry["type"] == resources[logical]["type"], logical
        assert urns[entry["name"]] == resources[logical]["urn"], logical
        if "id" in entry:
            assert entry["version"] == importlib.metadata.version("pulumi_aws")
            assert entry["id"] == import_id(entry["type"], inputs[logical]), logical


def lines(out: str, verdict: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(f"{verdict} ")]


# --- downstream ---------------------------------------------------------------------------------


def test_hand_made_rules_in_two_regions_and_a_template_are_adopted(tmp_path: Path) -> None:
    directory = project(tmp_path, {"ecr-ptc:cacheRoleArn": HAND_MADE_ROLE})
    account = downstream_account(
        templates={"eu-west-1": [template("golden")], "eu-central-1": [template("ROOT")]},
        rules={
            "eu-west-1": [
                rule("golden"),
                {**rule("ecr-public"), "upstreamRegistryUrl": "public.ecr.aws"},
            ],
            "eu-central-1": [rule("golden")],
        },
    )
    status, out, err, document = adopt(
        directory, "downstream", account, {"DOWNSTREAM_AWS_PROFILE": "workload"}
    )
    assert (status, err) == (0, ""), err
    account.all_answered()
    assert account.profiles == ["workload"]
    assert lines(out, "adopt") == [
        f"adopt {TEMPLATE} ecr-ptc-template-eu-west-1-golden id=golden@eu-west-1",
        f"adopt {RULE} ecr-ptc-eu-west-1-golden id=golden@eu-west-1",
        f"adopt {RULE} ecr-ptc-eu-central-1-golden id=golden@eu-central-1",
    ]
    assert lines(out, "create") == [
        f"create {TEMPLATE} ecr-ptc-template-eu-central-1-golden: no creation template golden in eu-central-1",
        "create aws:iam/policy:Policy ecr-ptc-consumer-policy: its name is generated by Pulumi when created: nothing to adopt",
    ]
    assert lines(out, "left-alone") == [
        "left-alone repository creation template ROOT (eu-central-1): not in this stack's config; the stack never changes it",
        "left-alone pull-through-cache rule ecr-public (eu-west-1, from public.ecr.aws): not in this stack's config; the stack never changes it",
    ]
    assert lines(out, "differs") == []
    assert document is not None
    assert_importable(document)
    assert_matches_program(document, directory, "downstream")
    # The two components above the adopted ones, then the adopted ones: nothing else.
    assert [(e["type"], e["name"]) for e in document["resources"]] == [
        ("ecr-ptc:index:PullThroughCache", "ecr-ptc"),
        ("ecr-ptc:downstream:CacheRepositoryTemplates", "ecr-ptc-template"),
        (TEMPLATE, "ecr-ptc-template-eu-west-1-golden"),
        (RULE, "ecr-ptc-eu-west-1-golden"),
        (RULE, "ecr-ptc-eu-central-1-golden"),
    ]
    assert (
        f"pulumi import --stack downstream --file {directory / 'adopt-downstream.json'} --protect=false --generate-code=false"
        in out
    )
    assert "AWS_PROFILE=workload pulumi import" in out


def test_what_differs_is_named_and_still_imported(tmp_path: Path) -> None:
    directory = project(tmp_path)  # no cacheRoleArn: the stack creates its own cache role
    account = downstream_account(
        templates={
            "eu-west-1": [template("golden", imageTagMutability="IMMUTABLE")],
            "eu-central-1": [template("golden")],
        },
        rules={
            "eu-west-1": [rule("golden")],
            "eu-central-1": [rule("golden", upstream_prefix="ROOT")],
        },
    )
    status, out, err, document = adopt(directory, "downstream", account)
    assert (status, err) == (0, ""), err
    account.all_answered()
    differs = lines(out, "differs")
    assert differs == [
        f'differs {TEMPLATE} ecr-ptc-template-eu-west-1-golden id=golden@eu-west-1: imageTagMutability: "IMMUTABLE" -> "MUTABLE"; pulumi up will update it',
        f"differs {RULE} ecr-ptc-eu-west-1-golden id=golden@eu-west-1: customRoleArn: {HAND_MADE_ROLE} -> the role this stack creates (ecr-ptc-role) (or set ecr-ptc:cacheRoleArn to keep the role it has); pulumi up will update it",
        f"differs {RULE} ecr-ptc-eu-central-1-golden id=golden@eu-central-1: upstreamRepositoryPrefix: ROOT -> golden; customRoleArn: {HAND_MADE_ROLE} -> the role this stack creates (ecr-ptc-role) (or set ecr-ptc:cacheRoleArn to keep the role it has); pulumi up REPLACES it (upstreamRepositoryPrefix cannot change in place)",
    ]
    assert lines(out, "adopt") == [
        f"adopt {TEMPLATE} ecr-ptc-template-eu-central-1-golden id=golden@eu-central-1"
    ]
    assert "create aws:iam/role:Role ecr-ptc-role: its name is generated" in out
    assert document is not None
    assert_importable(document)
    assert_matches_program(document, directory, "downstream")
    assert len([e for e in document["resources"] if "id" in e]) == 4


def test_nothing_there_writes_no_file_and_creates_everything(tmp_path: Path) -> None:
    directory = project(tmp_path)
    account = downstream_account(
        templates={"eu-west-1": [], "eu-central-1": []},
        rules={"eu-west-1": [], "eu-central-1": []},
    )
    status, out, err, document = adopt(directory, "downstream", account)
    assert (status, err, document) == (0, "", None)
    assert lines(out, "adopt") == lines(out, "differs") == []
    assert len(lines(out, "create")) == 7
    assert "nothing to adopt (0 adopt, 0 differs, 7 create, 0 left-alone)" in out


def test_access_denied_could_not_check(tmp_path: Path) -> None:
    directory = project(tmp_path)
    account = StubbedAccount(DOWNSTREAM_ACCOUNT)
    account.identity("eu-west-1")
    account.refuse(
        "ecr", "eu-west-1", "describe_repository_creation_templates", "AccessDeniedException"
    )
    status, out, err, document = adopt(
        directory, "downstream", account, {"DOWNSTREAM_AWS_PROFILE": "ro"}
    )
    assert (status, out, document) == (2, "", None)
    assert err.count("\n") == 1, err
    assert "ecr:DescribeRepositoryCreationTemplates in eu-west-1" in err
    assert "profile 'ro' (DOWNSTREAM_AWS_PROFILE)" in err
    assert (
        f"Use credentials of account {DOWNSTREAM_ACCOUNT} that may call ecr:DescribeRepositoryCreationTemplates"
        in err
    )


def test_credentials_of_another_account_could_not_check(tmp_path: Path) -> None:
    directory = project(tmp_path)
    account = StubbedAccount(UPSTREAM_ACCOUNT)
    account.identity("eu-west-1")
    status, _, err, document = adopt(directory, "downstream", account)
    assert (status, document) == (2, None)
    assert (
        f"pinned to account {DOWNSTREAM_ACCOUNT}" in err
        and f"belong to account {UPSTREAM_ACCOUNT}" in err
    )


def test_a_refused_stack_file_is_said_before_any_aws_call(tmp_path: Path) -> None:
    """The stack pins its account, so a bad value is the stack's problem, reported as such (1)
    whatever the credentials, not hidden behind a credentials failure (2)."""
    directory = project(tmp_path, {"ecr-ptc:repositoryTemplate": {"keepLastImages": 0}})
    status, out, err, document = adopt(directory, "downstream", StubbedAccount(DOWNSTREAM_ACCOUNT))
    assert (status, out, document) == (1, "", None)
    assert err == (
        "make adopt: stack downstream: config ecr-ptc:repositoryTemplate.keepLastImages: 0 is "
        "not valid: a whole number from 1 to 2,147,483,647: a lifecycle rule's countNumber\n"
    )


def test_a_fleet_template_is_refused(tmp_path: Path) -> None:
    directory = project(tmp_path, {"ecr-ptc:accounts": [DOWNSTREAM_ACCOUNT]})
    status, _, err, _ = adopt(directory, "downstream", StubbedAccount(DOWNSTREAM_ACCOUNT))
    assert status == 1
    assert "fleet template" in err


# --- upstream -----------------------------------------------------------------------------------


def upstream_account(policy: Mapping[str, Any] | None, scope: str = "V2") -> StubbedAccount:
    account = StubbedAccount(UPSTREAM_ACCOUNT)
    account.identity("us-east-1")
    account.answer(
        "ecr", "us-east-1", "get_account_setting", {"name": "REGISTRY_POLICY_SCOPE", "value": scope}
    )
    if policy is None:
        account.refuse("ecr", "us-east-1", "get_registry_policy", "RegistryPolicyNotFoundException")
    else:
        account.answer(
            "ecr",
            "us-east-1",
            "get_registry_policy",
            {"registryId": UPSTREAM_ACCOUNT, "policyText": json.dumps(policy)},
        )
    return account


def test_a_hand_made_registry_policy_is_adopted(tmp_path: Path) -> None:
    directory = project(tmp_path)
    account = upstream_account({"Version": "2012-10-17", "Statement": [HAND_MADE_GRANT]})
    status, out, err, document = adopt(
        directory, "upstream", account, {"UPSTREAM_AWS_PROFILE": "images"}
    )
    assert (status, err) == (0, ""), err
    account.all_answered()
    assert account.profiles == ["images"]
    assert lines(out, "adopt") == [
        f"adopt {ACCOUNT_SETTING} ecr-ptc-registry-policy-scope id=REGISTRY_POLICY_SCOPE@us-east-1",
        f"adopt {REGISTRY_POLICY} ecr-ptc-registry-policy id={UPSTREAM_ACCOUNT}@us-east-1",
    ]
    assert document is not None
    assert_importable(document)
    assert_matches_program(document, directory, "upstream")
    assert [e["name"] for e in document["resources"]] == [
        "ecr-ptc",
        "ecr-ptc-registry-policy-scope",
        "ecr-ptc-registry-policy",
    ]


def test_statements_others_own_are_named_before_the_stack_drops_them(tmp_path: Path) -> None:
    directory = project(tmp_path)
    replication = {
        "Sid": "ReplicationFromProd",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
        "Action": ["ecr:ReplicateImage", "ecr:CreateRepository"],
        "Resource": f"arn:aws:ecr:us-east-1:{UPSTREAM_ACCOUNT}:repository/*",
    }
    policy = {"Version": "2012-10-17", "Statement": [replication, HAND_MADE_GRANT]}
    account = upstream_account(policy, scope="V1")
    status, out, _, document = adopt(directory, "upstream", account)
    assert status == 0
    assert lines(out, "differs") == [
        f"differs {ACCOUNT_SETTING} ecr-ptc-registry-policy-scope id=REGISTRY_POLICY_SCOPE@us-east-1: value: V1 -> V2; pulumi up will update it",
        f"differs {REGISTRY_POLICY} ecr-ptc-registry-policy id={UPSTREAM_ACCOUNT}@us-east-1: policy: 2 statements -> adds 0, removes 1 (ReplicationFromProd) (keep statements others own with ecr-ptc:extraRegistryPolicyStatements); pulumi up will update it",
    ]
    assert document is not None
    assert_matches_program(document, directory, "upstream")


def test_no_registry_policy_yet(tmp_path: Path) -> None:
    directory = project(tmp_path)
    account = upstream_account(None)
    status, out, _, document = adopt(directory, "upstream", account)
    assert status == 0
    assert (
        f"create {REGISTRY_POLICY} ecr-ptc-registry-policy: no registry policy in us-east-1" in out
    )
    # The account setting always exists: it alone is imported.
    assert document is not None
    assert [e["name"] for e in document["resources"]] == [
        "ecr-ptc",
        "ecr-ptc-registry-policy-scope",
    ]


@pytest.mark.parametrize(
    "extra", [{}, {"Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}}]
)
def test_policy_equivalence_is_by_meaning(extra: dict[str, Any]) -> None:
    ours = json.dumps({"Version": "2012-10-17", "Statement": [{**HAND_MADE_GRANT, **extra}]})
    respelled = {
        **HAND_MADE_GRANT,
        "Principal": {"AWS": f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:root"},
        "Action": sorted(HAND_MADE_GRANT["Action"]),
        "Resource": HAND_MADE_GRANT["Resource"][0],
        **extra,
    }
    assert policy_changes({"Statement": respelled}, ours) == ([], [])
    assert policy_changes({"Statement": [{**respelled, "Effect": "Deny"}]}, ours) != ([], [])


def test_a_named_cache_role_is_adopted_and_its_rules_keep_it(tmp_path: Path) -> None:
    directory = project(tmp_path, {"ecr-ptc:roleName": "hand-made-ptc"})
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["pullthroughcache.ecr.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    account = downstream_account(
        templates={"eu-west-1": [template("golden")], "eu-central-1": [template("golden")]},
        rules={"eu-west-1": [rule("golden")], "eu-central-1": [rule("golden")]},
    )
    boundary = f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:policy/ecr-ptc-role-boundary"
    account.answer(
        "iam",
        "eu-west-1",
        "get_role",
        {
            "Role": {
                "Path": "/",
                "RoleName": "hand-made-ptc",
                "RoleId": "AROAEXAMPLEEXAMPLE123",
                "Arn": HAND_MADE_ROLE,
                "CreateDate": "2024-01-01T00:00:00Z",
                "AssumeRolePolicyDocument": json.dumps(trust),
                "Description": "made by hand",
                "PermissionsBoundary": {
                    "PermissionsBoundaryType": "Policy",
                    "PermissionsBoundaryArn": boundary,
                },
            }
        },
    )
    account.answer(
        "iam",
        "eu-west-1",
        "list_role_policies",
        {"PolicyNames": ["ptc-by-hand"], "IsTruncated": False},
    )
    status, out, err, document = adopt(directory, "downstream", account)
    assert (status, err) == (0, ""), err
    account.all_answered()
    assert lines(out, "differs") == [
        f'differs aws:iam/role:Role ecr-ptc-role id=hand-made-ptc: description: "made by hand" -> "Assumed by ECR pull through cache to copy images from {UPSTREAM_URL}"; pulumi up will update it'
    ]
    # The rules point at the adopted role: nothing to change.
    assert f"adopt {RULE} ecr-ptc-eu-west-1-golden id=golden@eu-west-1" in out
    assert f"adopt {RULE} ecr-ptc-eu-central-1-golden id=golden@eu-central-1" in out
    assert "create aws:iam/rolePolicy:RolePolicy ecr-ptc-role-policy" in out
    assert lines(out, "left-alone") == [
        "left-alone inline policy ptc-by-hand of role hand-made-ptc: the stack adds its own inline policy and leaves this one as it is"
    ]
    assert document is not None
    assert_importable(document)
    assert_matches_program(document, directory, "downstream")
    role = next(e for e in document["resources"] if e["type"] == "aws:iam/role:Role")
    assert (role["id"], role["parent"]) == ("hand-made-ptc", "ecr-ptc")


def test_both_stacks_each_with_its_own_credentials(tmp_path: Path) -> None:
    directory = project(tmp_path, {"ecr-ptc:cacheRoleArn": HAND_MADE_ROLE})
    upstream = upstream_account({"Version": "2012-10-17", "Statement": [HAND_MADE_GRANT]})
    downstream = downstream_account(
        templates={"eu-west-1": [], "eu-central-1": []},
        rules={"eu-west-1": [rule("golden")], "eu-central-1": []},
    )
    accounts = {"images": upstream, "workload": downstream}
    out, err = io.StringIO(), io.StringIO()
    env = {"UPSTREAM_AWS_PROFILE": "images", "DOWNSTREAM_AWS_PROFILE": "workload"}
    argv = ["--stack", "upstream", "--stack", "downstream", "--project-dir", str(directory)]
    status = main(argv, env, lambda profile: accounts[str(profile)], out, err)
    assert (status, err.getvalue()) == (0, "")
    upstream.all_answered()
    downstream.all_answered()
    for stack in ("upstream", "downstream"):
        document = json.loads((directory / f"adopt-{stack}.json").read_text())
        assert_importable(document)
        assert_matches_program(document, directory, stack)
