"""`make doctor` and `make fleet-doctor`: every link of the chain, against broken set-ups.

AWS is tests/doctor_fakes.py: botocore's Stubber, each answer computed from a state that starts
as what `make up` of the stack's plan leaves, checked against the service models. One row of the
matrix is one fault; the doctor must name the exact link broken and its cause."""

from __future__ import annotations

import datetime
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
)

from components.plan.policies import CONSUMER_PULL_ACTIONS, TEMPLATE_REPOSITORY_ACTIONS
from components.plan.stack_plan import StackPlan
from scripts import doctor, doctor_fleet
from scripts.doctor import markdown_cell, session_clients, stack_target, target_for
from scripts.doctor_checks import (
    CREATE_REPOSITORY,
    DOCTOR_CANARY_ACTIONS,
    DOCTOR_READ_ACTIONS,
    DOCTOR_UPSTREAM_CANARY_ACTIONS,
    DOCTOR_UPSTREAM_READ_ACTIONS,
    ClientFor,
    Doctor,
    Expected,
    ExpectedRule,
    Link,
    outcome,
    parse_image,
    upstream_repository,
)
from scripts.doctor_policies import BROKEN, OK, UNKNOWN
from scripts.fleet_members import Member
from scripts.plan import plan_repository
from tests.doctor_fakes import (
    CACHE_ROLE,
    CONSUMER,
    DIGEST,
    DOWNSTREAM,
    DOWNSTREAM_STACK,
    MOVED,
    ORGANIZATION,
    OTHER,
    UPSTREAM,
    UPSTREAM_STACK,
    Clock,
    FakeAws,
    FakeRole,
    write_project,
)
from tests.iam_check import access_levels, resource_formats

IMAGE = parse_image("golden/base:1.0")
REGIONS = ("eu-west-1", "eu-central-1")


@dataclass(frozen=True)
class World:
    """A planned upstream and downstream stack: what the doctor expects and what AWS starts as."""

    expected: Expected
    plan: StackPlan
    upstream_plan: StackPlan

    def aws(self) -> FakeAws:
        return FakeAws(self.plan, self.upstream_plan)


def make_world(directory: Path, upstream: dict[str, Any] | None = None) -> World:
    project = write_project(
        directory, {"upstream": upstream or UPSTREAM_STACK, "downstream": DOWNSTREAM_STACK}
    )
    results = {r.stack: r for r in plan_repository(project, ["upstream", "downstream"])}
    plan, upstream_plan = results["downstream"].plan, results["upstream"].plan
    assert plan is not None and upstream_plan is not None
    return World(stack_target("downstream", project), plan, upstream_plan)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("project"))


def check(world: World, aws: FakeAws, image: bool = True, upstream: bool = True) -> list[Link]:
    links = Doctor(
        world.expected,
        aws.clients("downstream"),
        aws.clients("upstream") if upstream else None,
        IMAGE if image else None,
        clock=Clock(),
    ).run()
    for stubber in aws.stubbers:
        stubber.assert_no_pending_responses()
    return links


def by_name(links: list[Link]) -> dict[str, Link]:
    found = {link.name: link for link in links}
    assert len(found) == len(links), "one line per link"
    return found


def with_status(links: list[Link], status: str) -> set[str]:
    return {link.name for link in links if link.status == status}


# --- healthy ------------------------------------------------------------------------------------

HEALTHY_LINKS = [
    "downstream credentials",
    "upstream credentials",
    "rule golden in eu-west-1",
    "rule golden in eu-central-1",
    "cache role trust",
    "cache role permissions",
    "upstream grant",
    "upstream policy scope",
    "template golden in eu-west-1: role",
    "template golden in eu-west-1: tag refresh",
    "template golden in eu-central-1: role",
    "template golden in eu-central-1: tag refresh",
    f"consumer {CONSUMER}",
    "canary golden/base:1.0 in eu-west-1",
    "canary golden/base:1.0 in eu-central-1",
    "cached digest golden/base:1.0 in eu-west-1",
    "cached digest golden/base:1.0 in eu-central-1",
]


def test_a_healthy_set_up_says_ok_on_every_line(world: World) -> None:
    links = check(world, world.aws())
    assert [link.name for link in links] == HEALTHY_LINKS
    assert {link.status for link in links} == {OK}, [k.line() for k in links if k.status != OK]
    assert outcome(links) == (0, f"HEALTHY: all {len(HEALTHY_LINKS)} links ok")
    found = by_name(links)
    assert "pulled in 0.25 s" in found["canary golden/base:1.0 in eu-west-1"].detail
    assert DIGEST in found["cached digest golden/base:1.0 in eu-central-1"].detail
    assert "by account" in found["upstream grant"].detail


def test_without_an_image_there_is_no_canary(world: World) -> None:
    links = check(world, world.aws(), image=False)
    assert [link.name for link in links] == HEALTHY_LINKS[:-4]
    assert outcome(links)[0] == 0


# --- the matrix: one fault a row ----------------------------------------------------------------


def _policy(aws: FakeAws, role: str, sid: str) -> dict[str, Any]:
    [statement] = [s for s in aws.roles[role].policies[0]["Statement"] if s.get("Sid") == sid]
    return statement  # type: ignore[no-any-return]


def account_missing_from_the_grant(aws: FakeAws) -> None:
    assert aws.registry_policy is not None
    aws.registry_policy = aws.registry_policy.replace(DOWNSTREAM, OTHER)


def scope_v1(aws: FakeAws) -> None:
    aws.scope = "V1"


def trust_of_another_principal(aws: FakeAws) -> None:
    aws.roles[CACHE_ROLE].trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecr.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def role_without_a_write_action(aws: FakeAws) -> None:
    fill = _policy(aws, CACHE_ROLE, "FillCache")
    fill["Action"] = [a for a in fill["Action"] if a != "ecr:PutImage"]


def puller_without_create_repository(aws: FakeAws) -> None:
    pull = _policy(aws, CONSUMER, "PullThroughCache")
    pull["Action"] = [a for a in pull["Action"] if a != "ecr:CreateRepository"]


def template_with_tags_and_no_role(aws: FakeAws) -> None:
    aws.template("eu-west-1", "golden")["resourceTags"] = [{"Key": "team", "Value": "platform"}]


def immutable_template(aws: FakeAws) -> None:
    aws.template("eu-west-1", "golden")["imageTagMutability"] = "IMMUTABLE"


def upstream_image_moved(aws: FakeAws) -> None:
    aws.cache_images = {region: {"golden/base": {"1.0": DIGEST}} for region in REGIONS}
    aws.upstream_images["golden/base"]["1.0"] = MOVED


def rule_missing_in_one_region(aws: FakeAws) -> None:
    del aws.rules["eu-central-1"]["golden"]


def credentials_of_the_wrong_account(aws: FakeAws) -> None:
    aws.identity["downstream"] = OTHER


@dataclass(frozen=True)
class Fault:
    name: str
    edit: Callable[[FakeAws], object]
    # Every link it breaks, with what its message must say.
    broken: dict[str, tuple[str, ...]]


FAULTS = (
    Fault(
        "account missing from the grant",
        account_missing_from_the_grant,
        {
            "upstream grant": (
                f"grants this account ({DOWNSTREAM}) nothing",
                f"it grants {OTHER}",
                f"Add {DOWNSTREAM} to the upstream stack's ecr-ptc:downstreamAccountIds",
            )
        },
    ),
    Fault(
        "scope V1",
        scope_v1,
        {"upstream policy scope": ("REGISTRY_POLICY_SCOPE is V1", "Set it to V2")},
    ),
    Fault(
        "trust of another principal",
        trust_of_another_principal,
        {
            "cache role trust": (
                f"the cache role {CACHE_ROLE}: it trusts ecr.amazonaws.com, not "
                "pullthroughcache.ecr.amazonaws.com",
            )
        },
    ),
    Fault(
        "role without a write action",
        role_without_a_write_action,
        {
            "cache role permissions": (
                "ecr:PutImage on arn:aws:ecr:eu-central-1:444455556666:repository/golden/* (implicitDeny)",
                "ecr:PutImage on arn:aws:ecr:eu-west-1:444455556666:repository/golden/* (implicitDeny)",
                "`make up` puts the stack's permission policy back",
            )
        },
    ),
    Fault(
        "puller without CreateRepository",
        puller_without_create_repository,
        {
            f"consumer {CONSUMER}": (
                f"denies {CONSUMER} ecr:CreateRepository on arn:aws:ecr:eu-central-1:444455556666:repository/golden/*",
                "'repository does not exist'",
            )
        },
    ),
    Fault(
        "template with tags and no role",
        template_with_tags_and_no_role,
        {
            "template golden in eu-west-1: role": (
                "adds tags team=platform but has no role (customRoleArn)",
                "aws/containers-roadmap#2398",
            ),
            # A template that tags makes every puller need TagResource, too.
            f"consumer {CONSUMER}": (
                "ecr:TagResource on arn:aws:ecr:eu-west-1:444455556666:repository/golden/*",
            ),
        },
    ),
    Fault(
        "IMMUTABLE template",
        immutable_template,
        {
            "template golden in eu-west-1: tag refresh": (
                "IMMUTABLE without exclusions",
                "never refreshes a cached tag",
            )
        },
    ),
    Fault(
        "upstream image moved",
        upstream_image_moved,
        {
            f"cached digest golden/base:1.0 in {region}": (
                f"stale tag: the cache in {region} serves {DIGEST}",
                f"golden/base:1.0 is now {MOVED}",
            )
            for region in REGIONS
        },
    ),
    Fault(
        "rule missing in one region",
        rule_missing_in_one_region,
        {
            "rule golden in eu-central-1": (
                "no pull-through-cache rule golden in eu-central-1",
                "`make up`",
            ),
            "canary golden/base:1.0 in eu-central-1": ("RepositoryNotFoundException",),
        },
    ),
    Fault(
        "credentials of the wrong account",
        credentials_of_the_wrong_account,
        {
            "downstream credentials": (
                f"are of account {OTHER}",
                f"stack downstream is {DOWNSTREAM}: use credentials of account {DOWNSTREAM}",
            )
        },
    ),
)


TEMPLATE_ROLE = "ecr-ptc-template-role-def5678"


def template_role_without_tag_resource(aws: FakeAws) -> None:
    template = aws.template("eu-west-1", "golden")
    template["resourceTags"] = [{"Key": "team", "Value": "platform"}]
    template["customRoleArn"] = f"arn:aws:iam::{DOWNSTREAM}:role/{TEMPLATE_ROLE}"
    trust = {
        "Effect": "Allow",
        "Principal": {"Service": "ecr.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    create = {
        "Effect": "Allow",
        "Action": ["ecr:CreateRepository"],
        "Resource": f"arn:aws:ecr:*:{DOWNSTREAM}:repository/golden/*",
        "Condition": {"StringEquals": {"aws:RequestedRegion": list(REGIONS)}},
    }
    aws.roles[TEMPLATE_ROLE] = FakeRole(
        template["customRoleArn"], {"Statement": [trust]}, [{"Statement": [create]}]
    )
    pull = _policy(aws, CONSUMER, "PullThroughCache")
    pull["Action"] = [*pull["Action"], "ecr:TagResource"]


def rule_elsewhere(aws: FakeAws) -> None:
    aws.rules["eu-west-1"]["golden"]["upstreamRegistryUrl"] = (
        "999988887777.dkr.ecr.us-east-1.amazonaws.com"
    )


# More ways a link breaks, beyond the ten.
MORE_FAULTS = (
    Fault(
        "the stack's template is gone",
        lambda aws: aws.templates.pop("eu-west-1"),
        {
            "template golden in eu-west-1: role": (
                "no creation template applies to golden in eu-west-1",
            )
        },
    ),
    Fault(
        "the cache role is gone",
        lambda aws: aws.roles.pop(CACHE_ROLE),
        {
            "cache role trust": (f"the cache role {CACHE_ROLE} does not exist",),
            "cache role permissions": (f"the cache role {CACHE_ROLE} does not exist",),
        },
    ),
    Fault(
        "the consumer role is gone",
        lambda aws: aws.roles.pop(CONSUMER),
        {f"consumer {CONSUMER}": ("does not exist",)},
    ),
    Fault(
        "a rule changed by hand",
        rule_elsewhere,
        {
            "rule golden in eu-west-1": (
                "it pulls from 999988887777.dkr.ecr.us-east-1.amazonaws.com",
            )
        },
    ),
    Fault(
        "a rule ECR cannot use",
        lambda aws: aws.validation.__setitem__(("eu-west-1", "golden"), "Unable to assume role"),
        {"rule golden in eu-west-1": ("ECR cannot use it: Unable to assume role",)},
    ),
    Fault(
        "a template role that may not tag",
        template_role_without_tag_resource,
        {
            "template golden in eu-west-1: role": (
                f"denies template golden's role {TEMPLATE_ROLE} ecr:TagResource on "
                f"arn:aws:ecr:eu-west-1:{DOWNSTREAM}:repository/golden/ecr-ptc-doctor-probe",
            )
        },
    ),
)


@pytest.mark.parametrize("fault", FAULTS + MORE_FAULTS, ids=[f.name for f in FAULTS + MORE_FAULTS])
def test_each_fault_is_detected_and_named(world: World, fault: Fault) -> None:
    aws = world.aws()
    fault.edit(aws)
    links = check(world, aws)
    assert with_status(links, BROKEN) == set(fault.broken), [k.line() for k in links]
    found = by_name(links)
    for name, causes in fault.broken.items():
        for cause in causes:
            assert cause in found[name].detail, (name, found[name].detail)
    assert outcome(links)[0] == 1
    assert outcome(links)[1].startswith(f"BROKEN: {len(fault.broken)} of ")


def test_the_wrong_account_checks_nothing_else(world: World) -> None:
    aws = world.aws()
    credentials_of_the_wrong_account(aws)
    links = check(world, aws)
    assert with_status(links, OK) == {
        "upstream credentials",
        "upstream grant",
        "upstream policy scope",
    }
    # Nothing was asked of the wrong account but who it is.
    assert {c[2] for c in aws.calls if c[0] == "downstream"} == {"GetCallerIdentity"}


def test_a_missing_rule_leaves_the_cached_digest_unknown(world: World) -> None:
    aws = world.aws()
    rule_missing_in_one_region(aws)
    found = by_name(check(world, aws))
    assert found["cached digest golden/base:1.0 in eu-central-1"].status == UNKNOWN
    assert found["cached digest golden/base:1.0 in eu-west-1"].status == OK


# --- could not check ----------------------------------------------------------------------------


def test_a_refused_simulation_is_unknown_and_names_the_action(world: World) -> None:
    aws = world.aws()
    aws.fail("downstream", "SimulatePrincipalPolicy", "AccessDenied")
    links = check(world, aws)
    assert with_status(links, UNKNOWN) == {"cache role permissions", f"consumer {CONSUMER}"}
    assert with_status(links, BROKEN) == set()
    detail = by_name(links)["cache role permissions"].detail
    assert "iam:SimulatePrincipalPolicy was refused to the downstream credentials" in detail
    assert outcome(links) == (2, f"COULD NOT CHECK: 2 of {len(HEALTHY_LINKS)} links unknown")


def test_without_upstream_credentials_the_upstream_links_are_unknown(world: World) -> None:
    aws = world.aws()
    links = check(world, aws, upstream=False)
    unknown = with_status(links, UNKNOWN)
    assert unknown == {
        "upstream credentials",
        "upstream grant",
        "upstream policy scope",
        "cached digest golden/base:1.0 in eu-west-1",
        "cached digest golden/base:1.0 in eu-central-1",
    }
    assert "UPSTREAM_AWS_PROFILE" in by_name(links)["upstream credentials"].detail
    assert with_status(links, OK) == set(HEALTHY_LINKS) - unknown
    assert outcome(links)[0] == 2


def test_without_upstream_credentials_the_fix_names_the_variable(world: World) -> None:
    """Whatever the credentials' source is called, the fix names the variable to set, and
    the digest only when there is an image to compare."""
    doctor = Doctor(
        world.expected,
        world.aws().clients("downstream"),
        None,
        None,
        upstream_source="the environment (UPSTREAM_AWS_PROFILE unset)",
    )
    [line] = [link for link in doctor.run() if link.name == "upstream credentials"]
    assert line.detail.startswith(
        f"none given: set UPSTREAM_AWS_PROFILE to a profile of the upstream account {UPSTREAM}"
    ), line.detail
    assert "digest" not in line.detail


def test_an_unreachable_endpoint_is_unknown_not_broken(world: World) -> None:
    aws = world.aws()
    endpoint = "https://api.ecr.eu-central-1.amazonaws.com/"
    aws.fail(
        "downstream",
        "DescribePullThroughCacheRules",
        EndpointConnectionError(endpoint_url=endpoint),
        region="eu-central-1",
    )
    links = check(world, aws, image=False)
    assert with_status(links, UNKNOWN) == {"rule golden in eu-central-1"}
    detail = by_name(links)["rule golden in eu-central-1"].detail
    assert "could not reach AWS for ecr:DescribePullThroughCacheRules (network" in detail
    assert endpoint in detail
    assert outcome(links)[0] == 2


def test_broken_wins_over_could_not_check(world: World) -> None:
    aws = world.aws()
    scope_v1(aws)
    aws.fail("downstream", "SimulatePrincipalPolicy", "AccessDenied")
    links = check(world, aws)
    assert outcome(links) == (
        1,
        f"BROKEN: 1 of {len(HEALTHY_LINKS)} links broken (2 could not be checked)",
    )


def test_credentials_that_cannot_be_found_are_unknown(world: World) -> None:
    def no_profile() -> Any:
        raise ProfileNotFound(profile="workload-admin")

    links = Doctor(world.expected, session_clients(no_profile), None, None).run()
    found = by_name(links)
    assert found["downstream credentials"].status == UNKNOWN
    assert "no usable downstream credentials" in found["downstream credentials"].detail
    assert "workload-admin" in found["downstream credentials"].detail
    assert {link.status for link in links} == {UNKNOWN}
    assert outcome(links)[0] == 2


def test_missing_credentials_say_how_to_log_in(world: World) -> None:
    def nothing() -> Any:
        raise NoCredentialsError()

    links = Doctor(
        world.expected,
        session_clients(nothing),
        None,
        None,
        downstream_source="the environment (DOWNSTREAM_AWS_PROFILE unset)",
    ).run()
    detail = by_name(links)["downstream credentials"].detail
    assert detail.endswith(
        f"Log in (e.g. `aws sso login`), or set DOWNSTREAM_AWS_PROFILE to a profile of account "
        f"{DOWNSTREAM}"
    ), detail


# --- how the upstream grants --------------------------------------------------------------------


def test_a_deny_in_the_registry_policy_is_named(world: World) -> None:
    aws = world.aws()
    assert aws.registry_policy is not None
    policy = json.loads(aws.registry_policy)
    policy["Statement"].append(
        {
            "Sid": "NoImports",
            "Effect": "Deny",
            "Principal": {"AWS": f"arn:aws:iam::{DOWNSTREAM}:root"},
            "Action": "ecr:BatchImportUpstreamImage",
            "Resource": f"arn:aws:ecr:us-east-1:{UPSTREAM}:repository/*",
        }
    )
    aws.registry_policy = json.dumps(policy)
    found = by_name(check(world, aws, image=False))
    assert found["upstream grant"].status == BROKEN
    assert "denies 444455556666 ecr:BatchImportUpstreamImage (statement NoImports)" in (
        found["upstream grant"].detail
    )


def test_no_registry_policy_at_all_is_broken(world: World) -> None:
    aws = world.aws()
    aws.registry_policy = None
    found = by_name(check(world, aws, image=False))
    assert found["upstream grant"].status == BROKEN
    assert "does not exist: it grants no one" in found["upstream grant"].detail


@pytest.fixture(scope="module")
def organization_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    upstream = {k: v for k, v in UPSTREAM_STACK.items() if k != "ecr-ptc:downstreamAccountIds"} | {
        "ecr-ptc:organizationId": ORGANIZATION
    }
    return make_world(tmp_path_factory.mktemp("organization"), upstream)


@pytest.mark.parametrize(
    ("organization", "fault", "status", "said"),
    [
        (ORGANIZATION, None, OK, f"by organization {ORGANIZATION}"),
        ("o-zzzzzzzzzz", None, BROKEN, f"it grants organization {ORGANIZATION}"),
        (None, None, BROKEN, "grants this account (444455556666) nothing"),
        (
            ORGANIZATION,
            "AccessDeniedException",
            UNKNOWN,
            "organizations:DescribeOrganization was refused",
        ),
    ],
)
def test_a_grant_by_organization_is_checked_against_this_accounts(
    organization_world: World, organization: str | None, fault: str | None, status: str, said: str
) -> None:
    aws = organization_world.aws()
    aws.organization = organization
    if fault:
        aws.fail("downstream", "DescribeOrganization", fault)
    found = by_name(check(organization_world, aws, image=False))
    assert found["upstream grant"].status == status
    assert said in found["upstream grant"].detail


def test_a_grant_to_ous_is_ok_for_an_account_of_that_organization(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    upstream = {k: v for k, v in UPSTREAM_STACK.items() if k != "ecr-ptc:downstreamAccountIds"} | {
        "ecr-ptc:organizationId": ORGANIZATION,
        "ecr-ptc:organizationalUnitPaths": [f"{ORGANIZATION}/r-ab12/ou-ab12-11111111/"],
    }
    ous = make_world(tmp_path_factory.mktemp("ous"), upstream)
    found = by_name(check(ous, ous.aws(), image=False))
    assert found["upstream grant"].status == OK
    assert f"by OU paths of {ORGANIZATION} (this account's OU is not checked)" in (
        found["upstream grant"].detail
    )


@pytest.fixture(scope="module")
def repository_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    upstream = UPSTREAM_STACK | {
        "ecr-ptc:grantVia": "repository",
        "ecr-ptc:repositories": ["golden/base"],
    }
    return make_world(tmp_path_factory.mktemp("repository"), upstream)


def test_a_grant_by_repository_policy_is_read_from_each_repository(repository_world: World) -> None:
    assert repository_world.expected.upstream_grant_repositories == ("golden/base",)
    aws = repository_world.aws()
    aws.scope = "V1"  # does not matter: no registry policy is involved
    links = check(repository_world, aws)
    assert {link.status for link in links} == {OK}
    aws = repository_world.aws()
    aws.repository_policies.clear()
    found = by_name(check(repository_world, aws, image=False))
    assert found["upstream grant"].status == BROKEN
    assert "upstream repository golden/base: RepositoryPolicyNotFoundException" in (
        found["upstream grant"].detail
    )


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ecr_prefix", "upstream_prefix", "cache", "upstream"),
    # The mappings of docs/ptc-facts.md, "Prefixes and names".
    [
        ("ecr-public", "ROOT", "ecr-public/a/b", "a/b"),
        ("ROOT", "ROOT", "team/app", "team/app"),
        ("team-a", "team-a", "team-a/x", "team-a/x"),
        ("my-app", "upstream-app", "my-app/x", "upstream-app/x"),
    ],
)
def test_a_cache_repository_maps_to_its_upstream_repository(
    ecr_prefix: str, upstream_prefix: str, cache: str, upstream: str
) -> None:
    rules = [ExpectedRule("eu-west-1", ecr_prefix, upstream_prefix)]
    assert upstream_repository(rules, cache) == (ecr_prefix, upstream)


def test_the_most_specific_rule_wins_and_root_comes_last() -> None:
    rules = [
        ExpectedRule("eu-west-1", "ROOT", "ROOT"),
        ExpectedRule("eu-west-1", "team", "up"),
        ExpectedRule("eu-west-1", "team/a", "up-a"),
    ]
    assert upstream_repository(rules, "team/a/x") == ("team/a", "up-a/x")
    assert upstream_repository(rules, "team/b") == ("team", "up/b")
    assert upstream_repository(rules, "other/b") == ("ROOT", "other/b")
    assert upstream_repository(rules[1:], "other/b") is None


def test_image_is_a_repository_and_a_tag() -> None:
    assert str(parse_image("golden/base:1.0")) == "golden/base:1.0"
    address = parse_image("444455556666.dkr.ecr.eu-west-1.amazonaws.com/golden/base:1.0")
    assert (address.repository, address.tag) == ("golden/base", "1.0")
    for bad in ("golden/base", "golden/base@sha256:" + "a" * 64, ":1.0", "host:5000/base"):
        with pytest.raises(ValueError, match="a cache repository and a tag"):
            parse_image(bad)


# --- the actions the doctor needs ---------------------------------------------------------------


def test_the_doctors_own_actions_exist_and_only_read(world: World) -> None:
    reads = (*DOCTOR_READ_ACTIONS, *DOCTOR_UPSTREAM_READ_ACTIONS, *DOCTOR_UPSTREAM_CANARY_ACTIONS)
    for action in (*reads, *DOCTOR_CANARY_ACTIONS):
        assert resource_formats(action), f"{action} is not an IAM action"
    document = {"Statement": [{"Action": sorted(set(reads))}]}
    assert set(access_levels(document).values()) <= {"Read", "List"}
    # The canary pulls as any puller does: nothing beyond what the consumer policy grants.
    assert set(DOCTOR_CANARY_ACTIONS) <= set(CONSUMER_PULL_ACTIONS)
    assert CREATE_REPOSITORY in TEMPLATE_REPOSITORY_ACTIONS


def test_every_call_the_doctor_makes_is_in_its_action_lists(
    world: World, organization_world: World, repository_world: World
) -> None:
    calls: set[tuple[str, str]] = set()
    for each in (world, organization_world, repository_world):
        aws = each.aws()
        check(each, aws)
        calls |= {(side, f"{service}:{operation}") for side, service, operation, _ in aws.calls}
    downstream = {action for side, action in calls if side == "downstream"}
    upstream = {action for side, action in calls if side == "upstream"}
    assert downstream == set(DOCTOR_READ_ACTIONS) | set(DOCTOR_CANARY_ACTIONS) - {
        # The canary's import and repository creation are ECR's doing inside BatchGetImage.
        "ecr:BatchImportUpstreamImage",
        "ecr:CreateRepository",
    }
    assert upstream == set(DOCTOR_UPSTREAM_READ_ACTIONS) | set(DOCTOR_UPSTREAM_CANARY_ACTIONS)


# --- make doctor ----------------------------------------------------------------------------------


def run_main(
    world: World, project: Path, aws: FakeAws, *argv: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = doctor.main(
        ["--project-dir", str(project), *argv],
        env={"UPSTREAM_AWS_PROFILE": "upstream-reader"} if env is None else env,
        clients=lambda profile: aws.clients(
            "upstream" if profile == "upstream-reader" else "downstream"
        ),
        out=out,
        err=err,
        clock=Clock(),
    )
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(
        tmp_path_factory.mktemp("main"),
        {"upstream": UPSTREAM_STACK, "downstream": DOWNSTREAM_STACK},
    )


def test_make_doctor_prints_one_line_per_link_and_exits_by_the_case(
    world: World, project: Path, tmp_path: Path
) -> None:
    summary, report = tmp_path / "summary.md", tmp_path / "doctor.json"
    env = {"UPSTREAM_AWS_PROFILE": "upstream-reader", "GITHUB_STEP_SUMMARY": str(summary)}
    status, out, _ = run_main(
        world, project, world.aws(), "--image", "golden/base:1.0", "--json", str(report), env=env
    )
    lines = out.splitlines()
    assert status == 0 and lines[-1] == f"HEALTHY: all {len(HEALTHY_LINKS)} links ok"
    # One line per link, the verdicts in one column.
    assert len({line.index(" ok (") for line in lines[:-1]}) == 1
    assert [line[: line.index(" ok (")].rstrip() for line in lines[:-1]] == HEALTHY_LINKS
    document = json.loads(report.read_text())
    assert document["exitCode"] == 0 and len(document["links"]) == len(HEALTHY_LINKS)
    text = summary.read_text()
    assert text.startswith("### make doctor: stack `downstream` (444455556666)")
    assert "| rule golden in eu-west-1 | ok |" in text

    aws = world.aws()
    scope_v1(aws)
    status, out, _ = run_main(world, project, aws)
    assert status == 1 and out.splitlines()[-1].startswith("BROKEN: 1 of ")
    assert "upstream policy scope" in out and "BROKEN: the upstream registry's" in out

    status, out, _ = run_main(world, project, world.aws(), env={})
    assert status == 2 and out.splitlines()[-1].startswith("COULD NOT CHECK: ")


def test_make_doctor_refuses_what_it_cannot_plan(world: World, tmp_path: Path) -> None:
    fleet = DOWNSTREAM_STACK | {"ecr-ptc:accounts": ["210000000001"], "ecr-ptc:side": "downstream"}
    del fleet["aws:allowedAccountIds"]
    project = write_project(tmp_path, {"upstream": UPSTREAM_STACK, "fleet": fleet})
    for argv, said in (
        (["--stack", "fleet"], "make fleet-doctor TEMPLATE=fleet"),
        (["--stack", "upstream"], "a downstream stack"),
        (["--stack", "nope"], "one of the stack files here: fleet, upstream"),
        (["--stack", "upstream", "--image", "golden"], "a downstream stack"),
    ):
        status, out, err = run_main(world, project, world.aws(), *argv)
        assert status == 2 and out == "COULD NOT CHECK: no link was checked\n", argv
        assert said in err, err


def test_image_and_the_json_file_come_from_the_environment_as_make_passes_them(
    world: World, project: Path, tmp_path: Path
) -> None:
    report = tmp_path / "links.json"
    env = {
        "UPSTREAM_AWS_PROFILE": "upstream-reader",
        "IMAGE": "golden/base:1.0",
        "DOCTOR_JSON": str(report),
    }
    status, out, _ = run_main(world, project, world.aws(), env=env)
    assert status == 0 and "canary golden/base:1.0 in eu-west-1" in out
    assert len(json.loads(report.read_text())["links"]) == len(HEALTHY_LINKS)
    aws = world.aws()
    status, out, err = run_main(world, project, aws, env={"IMAGE": "other/base:1.0"})
    assert (
        status == 2 and "a cache repository under a rule prefix of stack downstream (golden)" in err
    )
    assert aws.calls == []


def test_an_upstream_stack_not_here_is_said_before_anything_is_asked(
    world: World, tmp_path: Path
) -> None:
    project = write_project(tmp_path, {"downstream": DOWNSTREAM_STACK})
    aws = world.aws()
    status, _, err = run_main(world, project, aws)
    assert status == 2 and "ecr-ptc:upstreamAccountId and ecr-ptc:upstreamRegion" in err
    assert aws.calls == []


def test_markdown_cells_render_as_text() -> None:
    assert markdown_cell("a | b\n<img src=x> & `c`") == "a \\| b &lt;img src=x&gt; &amp; `c`"


# --- make fleet-doctor ----------------------------------------------------------------------------

MEMBERS = ("210000000001", "210000000002", "210000000003")


@dataclass(frozen=True)
class Fleet:
    project: Path
    plans: dict[str, StackPlan]
    upstream_plan: StackPlan

    def aws(self) -> dict[str, FakeAws]:
        """Each member's accounts, healthy."""
        return {a: FakeAws(plan, self.upstream_plan) for a, plan in self.plans.items()}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    upstream = UPSTREAM_STACK | {"ecr-ptc:downstreamAccountIds": list(MEMBERS)}
    template = {k: v for k, v in DOWNSTREAM_STACK.items() if k != "aws:allowedAccountIds"}
    template |= {"ecr-ptc:accounts": list(MEMBERS), "ecr-ptc:side": "downstream"}
    project = write_project(
        tmp_path_factory.mktemp("fleet"), {"upstream": upstream, "fleet": template}
    )
    results = {r.stack: r for r in plan_repository(project, ["upstream", "fleet"])}
    plans = {a: results[f"fleet-{a}"].plan for a in MEMBERS}
    upstream_plan = results["upstream"].plan
    assert upstream_plan is not None
    return Fleet(project, {a: p for a, p in plans.items() if p is not None}, upstream_plan)


def refused_assume() -> Any:
    raise ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "not authorized to assume"}}, "AssumeRole"
    )


def test_fleet_doctor_checks_every_member_in_one_table(fleet: Fleet, tmp_path: Path) -> None:
    fakes = fleet.aws()
    rule_missing_in_one_region(fakes["210000000002"])
    seen: list[Member] = []

    def clients(member: Member) -> tuple[ClientFor, ClientFor | None]:
        seen.append(member)
        role = f"arn:aws:iam::{member.account_id}:role/ecr-ptc-fleet-preview"
        assert member.preview_role_arn == role
        aws = fakes[member.account_id]
        if member.account_id == "210000000003":
            return session_clients(refused_assume), aws.clients("upstream")
        return aws.clients("downstream"), aws.clients("upstream")

    summary, report = tmp_path / "summary.md", tmp_path / "fleet.json"
    out, err = io.StringIO(), io.StringIO()
    status = doctor_fleet.main(
        ["--template", "fleet", "--project-dir", str(fleet.project), "--json", str(report)],
        env={"GITHUB_STEP_SUMMARY": str(summary), "DOCTOR_PARALLELISM": "3"},
        clients=clients,
        out=out,
        err=err,
        clock=Clock(),
    )
    assert status == 1, err.getvalue()
    assert sorted(m.account_id for m in seen) == list(MEMBERS)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "MEMBER",
        "ACCOUNT",
        "STATUS",
        "OK",
        "BROKEN",
        "UNKNOWN",
        "FIRST",
        "PROBLEM",
    ]
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert rows["fleet-210000000001"].split()[2:6] == ["HEALTHY", "13", "0", "0"]
    assert rows["fleet-210000000002"].split()[2:5] == ["BROKEN", "12", "1"]
    assert "rule golden in eu-central-1: no pull-through-cache rule" in rows["fleet-210000000002"]
    assert rows["fleet-210000000003"].split()[2:5] == ["COULD", "NOT", "CHECK"]
    assert "sts:AssumeRole was refused (AccessDenied): the role must trust" in out.getvalue()
    # The links an unusable member was not asked about are counted, not listed.
    assert "  (9 more links not checked because of that)" in lines
    assert lines[-1] == "BROKEN: 1 of 3 members broken (1 could not be checked)"
    document = json.loads(report.read_text())
    assert [m["status"] for m in document["members"]] == ["HEALTHY", "BROKEN", "COULD NOT CHECK"]
    assert document["exitCode"] == 1
    text = summary.read_text()
    assert text.startswith("### make fleet-doctor: the members of `fleet`")
    assert "| fleet-210000000002 | 210000000002 | **BROKEN** | 12 | 1 | 0 |" in text
    assert "<details><summary>Every link that is not ok</summary>" in text


def test_fleet_doctor_of_a_healthy_fleet_exits_0_and_of_no_fleet_2(fleet: Fleet) -> None:
    fakes = fleet.aws()
    project = fleet.project
    out = io.StringIO()
    status = doctor_fleet.main(
        ["--template", "fleet", "--project-dir", str(project), "--image", "golden/base:1.0"],
        env={},
        clients=lambda m: (
            fakes[m.account_id].clients("downstream"),
            fakes[m.account_id].clients("upstream"),
        ),
        out=out,
        err=io.StringIO(),
        clock=Clock(),
    )
    assert status == 0, out.getvalue()
    assert out.getvalue().splitlines()[-1] == "HEALTHY: all 3 members ok"
    err = io.StringIO()
    status = doctor_fleet.main(
        ["--template", "upstream", "--project-dir", str(project)],
        env={},
        out=io.StringIO(),
        err=err,
    )
    assert status == 2 and "is not a fleet template" in err.getvalue()


def test_a_member_whose_config_is_refused_is_not_checked(fleet: Fleet) -> None:
    project = fleet.project
    member = Member("fleet-210000000001", "210000000001", "arn", {"aws:region": "eu-west-1"}, "")
    [(_, expected, error)] = doctor_fleet.plan_members([member], project)
    assert expected is None and "its config is refused" in error
    reports = doctor_fleet.check_members(
        [(member, None, error)], lambda m: pytest.fail("asked AWS"), None, 1, ""
    )
    assert reports[0].status == 2 and doctor_fleet.fleet_status(reports)[0] == 2


def test_target_for_a_member_plans_it_with_the_members_account(fleet: Fleet) -> None:
    project = fleet.project
    from scripts.fleet import load_members

    [first, *_] = load_members("fleet", project, None)
    expected = target_for(first.stack, first.config, project, first.account_id)
    assert expected.account_id == first.account_id == "210000000001"
    assert expected.upstream_account_id == UPSTREAM


def test_a_member_is_checked_through_its_preview_role_in_its_region() -> None:
    import boto3
    from botocore.stub import Stubber

    member = Member(
        "fleet-210000000001",
        "210000000001",
        "arn:aws:iam::210000000001:role/ecr-ptc-fleet-deploy",
        {"aws:region": "eu-west-1"},
        "arn:aws:iam::210000000001:role/ecr-ptc-fleet-preview",
    )
    sts = boto3.session.Session().client(
        "sts", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(sts) as stubber:
        stubber.add_response(
            "assume_role",
            {
                "Credentials": {
                    "AccessKeyId": "ASIAMEMBEREXAMPLE",
                    "SecretAccessKey": "secret",
                    "SessionToken": "token",
                    "Expiration": datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC),
                }
            },
            {
                "RoleArn": member.preview_role_arn,  # never the deploy role
                "RoleSessionName": "ecr-ptc-doctor",
                "DurationSeconds": 900,
            },
        )
        session = doctor_fleet.member_session(member, sts)
    credentials = session.get_credentials()
    assert credentials.access_key == "ASIAMEMBEREXAMPLE" and credentials.token == "token"
    assert session.region_name == "eu-west-1"
