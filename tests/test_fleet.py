"""Fleet templates: which accounts become members, with which stack, role and config."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import EndpointConnectionError, NoCredentialsError
from botocore.stub import Stubber

from components.inputs.errors import ConfigError
from scripts import fleet
from scripts.fleet_members import (
    SLOTS,
    Member,
    OrganizationsUnavailable,
    batch,
    batch_count,
    members,
    parse_batch,
    slot,
    to_json,
)
from scripts.stack_files import PROJECT_DIR
from tests.pulumi_run import RecordingMocks, expect_refusal, run_program

TEMPLATE: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
    "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden", "upstreamRepositoryPrefix": "golden"}],
    "ecr-ptc:accounts": ["210000000002", "210000000001"],
}
NOT_A_TEMPLATE = {k: v for k, v in TEMPLATE.items() if k != "ecr-ptc:accounts"}
OU_ROOT = "ou-ab12-11111111"
OU_CHILD = "ou-ab12-22222222"
OU_GRANDCHILD = "ou-ab12-33333333"


def organizations() -> tuple[Any, Stubber]:
    client = boto3.client(
        "organizations",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client, Stubber(client)


def account(
    account_id: str, state: str | None = "ACTIVE", status: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": account_id, "Name": f"acct-{account_id}"}
    if state is not None:
        entry["State"] = state
    if status is not None:
        entry["Status"] = status
    return entry


def stub_tree(stubber: Stubber) -> None:
    """OU_ROOT: 310000000001 (active), 310000000002 (suspended), 310000000009 (active, to be
    excluded) and OU_CHILD; OU_CHILD: two pages, 310000000003 (active) then 310000000004 (only the
    old Status field, ACTIVE) and 310000000005 (PENDING_CLOSURE), and OU_GRANDCHILD:
    310000000006 (active)."""
    accounts, ous = "list_accounts_for_parent", "list_organizational_units_for_parent"
    stubber.add_response(
        accounts,
        {
            "Accounts": [
                account("310000000001"),
                account("310000000002", "SUSPENDED"),
                account("310000000009"),
            ]
        },
        {"ParentId": OU_ROOT},
    )
    stubber.add_response(
        ous, {"OrganizationalUnits": [{"Id": OU_CHILD, "Name": "child"}]}, {"ParentId": OU_ROOT}
    )
    stubber.add_response(
        accounts,
        {"Accounts": [account("310000000003")], "NextToken": "page-2"},
        {"ParentId": OU_CHILD},
    )
    stubber.add_response(
        accounts,
        {
            "Accounts": [
                account("310000000004", state=None, status="ACTIVE"),
                account("310000000005", "PENDING_CLOSURE"),
            ]
        },
        {"ParentId": OU_CHILD, "NextToken": "page-2"},
    )
    stubber.add_response(
        ous,
        {"OrganizationalUnits": [{"Id": OU_GRANDCHILD, "Name": "grandchild"}]},
        {"ParentId": OU_CHILD},
    )
    stubber.add_response(
        accounts, {"Accounts": [account("310000000006")]}, {"ParentId": OU_GRANDCHILD}
    )
    stubber.add_response(ous, {"OrganizationalUnits": []}, {"ParentId": OU_GRANDCHILD})


@pytest.fixture
def org() -> Iterator[tuple[Any, Stubber]]:
    client, stubber = organizations()
    with stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_listed_accounts_become_one_stack_each_pinned_to_their_account() -> None:
    result = members("downstream", TEMPLATE)
    assert [m.stack for m in result] == ["downstream-210000000001", "downstream-210000000002"]
    first = result[0]
    assert first.role_arn == "arn:aws:iam::210000000001:role/ecr-ptc-fleet-deploy"
    # Previews hold the read-only role, never the deploy role.
    assert first.preview_role_arn == "arn:aws:iam::210000000001:role/ecr-ptc-fleet-preview"
    assert first.role_for("preview") == first.preview_role_arn
    assert first.config_for("preview")["aws:assumeRoles"] == [{"roleArn": first.preview_role_arn}]
    assert first.config_for("up")["aws:assumeRoles"] == [{"roleArn": first.role_arn}]
    assert first.config == {
        "aws:region": "eu-west-1",
        "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
        "ecr-ptc:rules": TEMPLATE["ecr-ptc:rules"],
        "aws:allowedAccountIds": ["210000000001"],
        "aws:assumeRoles": [{"roleArn": first.role_arn}],
    }


def test_role_name_and_explicit_role_arn_and_partition_from_the_region() -> None:
    config = TEMPLATE | {
        "aws:region": "cn-north-1",
        "ecr-ptc:accountRoleName": "AWSControlTowerExecution",
        "ecr-ptc:accounts": [
            "210000000001",
            {
                "accountId": "210000000002",
                "roleArn": "arn:aws-cn:iam::210000000002:role/ops/deploy",
            },
        ],
    }
    result = {m.account_id: m.role_arn for m in members("downstream", config)}
    assert result == {
        "210000000001": "arn:aws-cn:iam::210000000001:role/AWSControlTowerExecution",
        "210000000002": "arn:aws-cn:iam::210000000002:role/ops/deploy",
    }


def test_ous_nested_active_only_excluded_skipped_explicit_role_wins(
    org: tuple[Any, Stubber],
) -> None:
    client, stubber = org
    stub_tree(stubber)
    config = TEMPLATE | {
        "ecr-ptc:accounts": [
            {"accountId": "310000000003", "roleArn": "arn:aws:iam::310000000003:role/special"},
            "210000000001",
        ],
        "ecr-ptc:organizationalUnitIds": [OU_ROOT],
        "ecr-ptc:excludeAccountIds": ["310000000009"],
    }
    result = members("downstream", config, client)
    assert {m.account_id: m.role_arn.rsplit("/", 1)[-1] for m in result} == {
        "210000000001": "ecr-ptc-fleet-deploy",
        "310000000001": "ecr-ptc-fleet-deploy",
        "310000000003": "special",  # listed and found under OU_CHILD: once, the explicit role
        "310000000004": "ecr-ptc-fleet-deploy",  # Status when State is absent
        "310000000006": "ecr-ptc-fleet-deploy",  # two levels down
    }
    assert all("ecr-ptc:organizationalUnitIds" not in m.config for m in result)
    assert all("ecr-ptc:excludeAccountIds" not in m.config for m in result)


def members_json(config: dict[str, Any]) -> str:
    return to_json(members("downstream", config), "downstream")


def test_output_is_byte_identical_and_adding_an_account_changes_no_other_entry() -> None:
    reordered = TEMPLATE | {"ecr-ptc:accounts": ["210000000001", "210000000002"]}
    assert members_json(TEMPLATE) == members_json(reordered)
    document = json.loads(members_json(TEMPLATE))
    assert set(document) == {"template", "members"} and document["template"] == "downstream"
    before = {m["accountId"]: m for m in document["members"]}
    grown = TEMPLATE | {"ecr-ptc:accounts": ["210000000002", "210000000000", "210000000001"]}
    after = {m["accountId"]: m for m in json.loads(members_json(grown))["members"]}
    assert set(after) - set(before) == {"210000000000"}
    assert all(after[a] == before[a] for a in before)


def test_make_fleet_members_prints_members_of_the_stack_file(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.fleet-eu.yaml").write_text(
        yaml.safe_dump(
            {
                "config": {
                    "aws:region": "eu-west-1",
                    "ecr-ptc:side": "downstream",
                    # a bare key belongs to the project, as in `pulumi config`
                    "accounts": ["210000000001"],
                    "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden"}],
                    "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
                }
            }
        )
    )
    out = io.StringIO()
    assert fleet.main(["members", "--template", "fleet-eu"], project_dir=tmp_path, out=out) == 0
    document = json.loads(out.getvalue())
    assert document["template"] == "fleet-eu"
    [member] = document["members"]
    assert member["stack"] == "fleet-eu-210000000001"
    assert member["config"]["ecr-ptc:side"] == "downstream"
    assert "ecr-ptc:accounts" not in member["config"]


def test_a_stack_that_is_not_a_template_is_refused_by_the_fleet_commands(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.downstream.yaml").write_text(yaml.safe_dump({"config": NOT_A_TEMPLATE}))
    err = io.StringIO()
    code = fleet.main(["members", "--template", "downstream"], project_dir=tmp_path, err=err)
    assert code == 2
    assert "ecr-ptc:accounts" in err.getvalue() and "not a fleet template" in err.getvalue()
    assert members("downstream", NOT_A_TEMPLATE) == []


@pytest.mark.parametrize(
    ("change", "key", "valid"),
    [
        ({"ecr-ptc:accounts": [210000000001]}, "ecr-ptc:accounts[0]", "12 digits, quoted"),
        ({"ecr-ptc:accounts": "210000000001"}, "ecr-ptc:accounts", "a YAML list"),
        (
            {"ecr-ptc:accounts": ["210000000001", "210000000001"]},
            "ecr-ptc:accounts[1]",
            "repeats item 0",
        ),
        (
            {"ecr-ptc:accounts": [{"accountId": "210000000001", "role": "x"}]},
            "ecr-ptc:accounts[0].role",
            "accountId, previewRoleArn, roleArn",
        ),
        (
            {
                "ecr-ptc:accounts": [
                    {"accountId": "210000000001", "roleArn": "arn:aws:iam::999999999999:role/x"}
                ]
            },
            "ecr-ptc:accounts[0].roleArn",
            "a role of account 210000000001",
        ),
        (
            {"ecr-ptc:accounts": [{"accountId": "210000000001", "roleArn": "deploy"}]},
            "ecr-ptc:accounts[0].roleArn",
            "an IAM role ARN",
        ),
        (
            {"ecr-ptc:organizationalUnitIds": ["r-ab12"]},
            "ecr-ptc:organizationalUnitIds[0]",
            "organizational unit ID",
        ),
        ({"ecr-ptc:excludeAccountIds": ["12345"]}, "ecr-ptc:excludeAccountIds[0]", "12 digits"),
        (
            {"ecr-ptc:accountRoleName": "role name with spaces"},
            "ecr-ptc:accountRoleName",
            "IAM role name",
        ),
        ({"aws:region": "mars-1"}, "aws:region", "AWS region name"),
        (
            {"aws:assumeRoles": [{"roleArn": "arn:aws:iam::1:role/x"}]},
            "aws:assumeRoles",
            "the fleet sets",
        ),
        ({"ecr-ptc:side": "upstream"}, "ecr-ptc:accounts", "fleets are downstream stacks"),
    ],
)
def test_bad_fleet_keys_name_the_key_the_value_and_what_is_valid(
    change: dict[str, Any], key: str, valid: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        members("downstream", TEMPLATE | change)
    assert caught.value.key == key
    assert valid in caught.value.valid
    assert repr(caught.value.value) in str(caught.value)


def test_a_template_whose_side_the_program_cannot_tell_is_refused() -> None:
    """Its members are named <template>-<account>: the program could not tell their side
    either, so the run is refused before any member, naming the key to set."""
    with pytest.raises(ConfigError) as caught:
        members("fleet", TEMPLATE)
    assert caught.value.key == "ecr-ptc:side" and "'upstream' or 'downstream'" in caught.value.valid
    assert members("fleet", TEMPLATE | {"ecr-ptc:side": "downstream"})


def test_fleet_keys_without_a_fleet_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        members(
            "downstream", {"aws:region": "eu-west-1", "ecr-ptc:excludeAccountIds": ["210000000001"]}
        )
    assert caught.value.key == "ecr-ptc:excludeAccountIds"
    assert "fleet template" in caught.value.valid


def fleet_of(n: int) -> list[Member]:
    return [Member(f"downstream-{i:012d}", f"{i:012d}", "arn", {}) for i in range(n)]


@pytest.mark.parametrize(("size", "count"), [(0, 3), (1, 3), (7, 3), (10, 10), (1000, 256)])
def test_batches_partition_the_members_exactly(size: int, count: int) -> None:
    everyone = fleet_of(size)
    parts = [batch(list(reversed(everyone)), i, count) for i in range(1, count + 1)]
    assert sorted((m for part in parts for m in part), key=lambda m: m.account_id) == everyone
    for part in parts:
        assert part == sorted(part, key=lambda m: m.account_id)
    # Batch i of N holds the slots [(i-1)*SLOTS//N, i*SLOTS//N).
    for i, part in enumerate(parts, start=1):
        assert all((i - 1) * SLOTS // count <= slot(m.account_id) < i * SLOTS // count
                   for m in part)  # fmt: skip


def batch_of(fleet: list[Member], count: int) -> dict[str, int]:
    return {m.account_id: i for i in range(1, count + 1) for m in batch(fleet, i, count)}


@pytest.mark.parametrize("count", [1, 2, 7, 40, 256])
def test_adding_or_removing_accounts_moves_no_other_member_to_another_batch(count: int) -> None:
    rng = random.Random(count)
    for size in (1, 10, 100, 1000):
        fleet = [Member(f"downstream-{a}", a, "arn", {}) for a in accounts(rng, size)]
        before = batch_of(fleet, count)
        removed = rng.sample(fleet, len(fleet) // 3)
        added = [Member(f"downstream-{a}", a, "arn", {}) for a in accounts(rng, size // 2 + 1)]
        changed = [m for m in fleet if m not in removed] + added
        after = batch_of(changed, count)
        assert all(after[a] == before[a] for a in after if a in before)
        assert len(after) == len(changed)  # every member in exactly one batch


def accounts(rng: random.Random, n: int) -> list[str]:
    return [f"{rng.randrange(10**12):012d}" for _ in range(n)]


def test_an_accounts_slot_is_fixed_and_spread() -> None:
    assert slot("210000000001") == slot("210000000001")
    assert {slot(f"{i:012d}") for i in range(5000)} == set(range(SLOTS))
    assert SLOTS == 256


def test_batch_count_respects_the_matrix_limit_and_batch_syntax() -> None:
    assert [batch_count(n, 25) for n in (0, 1, 25, 26, 6400, 10000)] == [0, 1, 1, 2, 256, 256]
    assert parse_batch("2/8") == (2, 8)
    for bad in ("0/3", "4/3", "2", "a/b"):
        with pytest.raises(ConfigError) as caught:
            parse_batch(bad)
        assert caught.value.key == "BATCH" and caught.value.value == bad


def test_the_template_itself_is_never_deployed() -> None:
    error = expect_refusal(
        TEMPLATE,
        "downstream",
        RecordingMocks("210000000001", {TEMPLATE["ecr-ptc:upstreamStack"]: {}}),
    )
    assert "fleet template" in str(error)
    assert "make fleet-preview" in str(error) and "make fleet-up" in str(error)
    assert "downstream-<accountId>" in str(error)


def test_a_member_runs_the_ordinary_downstream_program() -> None:
    upstream = {
        "upstreamAccountId": "111122223333",
        "upstreamRegion": "us-east-1",
        "upstreamRegistryUrl": "111122223333.dkr.ecr.us-east-1.amazonaws.com",
        "repositoryArnPattern": "arn:aws:ecr:us-east-1:111122223333:repository/golden/*",
        "downstreamAccountIds": [],
        "organizationId": "o-abcdefghij",
    }
    for member in members("downstream", TEMPLATE):
        mocks = RecordingMocks(member.account_id, {TEMPLATE["ecr-ptc:upstreamStack"]: upstream})
        run = run_program(dict(member.config), member.stack, mocks)
        assert run.outputs["roleArn"].startswith(f"arn:aws:iam::{member.account_id}:role/")
        # The account came from the member's aws:allowedAccountIds: no caller-identity invoke.
        assert mocks.calls == []


# ---- Organizations that cannot be asked: one line saying what is missing ---------------------

OU_TEMPLATE = NOT_A_TEMPLATE | {"ecr-ptc:organizationalUnitIds": [OU_ROOT]}


class Failing:
    """An Organizations client whose every call fails with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_paginator(self, name: str) -> Failing:
        return self

    def paginate(self, **_: Any) -> Any:
        raise self.error


def refusal(client: Any) -> str:
    with pytest.raises(OrganizationsUnavailable) as caught:
        members("downstream", OU_TEMPLATE, client)
    message = str(caught.value)
    assert message.startswith(
        f"could not list the accounts under ecr-ptc:organizationalUnitIds ({OU_ROOT}): "
    )
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("AccessDeniedException", "management account or of a delegated administrator"),
        ("ParentNotFoundException", "Check the OU IDs"),
        ("AWSOrganizationsNotInUseException", "management account"),
        ("TooManyRequestsException", "TooManyRequestsException"),
    ],
)
def test_organizations_refusing_is_one_line_naming_what_to_use(
    org: tuple[Any, Stubber], code: str, expected: str
) -> None:
    client, stubber = org
    stubber.add_client_error(
        "list_accounts_for_parent",
        service_error_code=code,
        service_message="refused by the stub",
        expected_params={"ParentId": OU_ROOT},
    )
    message = refusal(client)
    assert code in message and "refused by the stub" in message and expected in message


def test_no_credentials_or_no_network_is_one_line_saying_which() -> None:
    message = refusal(Failing(NoCredentialsError()))
    assert "no usable AWS credentials" in message and "AWS_PROFILE" in message
    unreachable = EndpointConnectionError(
        endpoint_url="https://organizations.us-east-1.amazonaws.com/"
    )
    message = refusal(Failing(unreachable))
    assert "network problem, not a credentials one" in message


def test_the_ambient_credentials_missing_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default client, from this test run's empty AWS config: no profile, no credentials
    (found before any request is sent), then a profile that does not exist."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    assert "no usable AWS credentials (Unable to locate credentials)" in refusal(None)
    monkeypatch.setenv("AWS_PROFILE", "does-not-exist")
    message = refusal(None)
    assert "The config profile (does-not-exist) could not be found (AWS_PROFILE)" in message


def test_make_fleet_members_without_credentials_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.downstream.yaml").write_text(yaml.safe_dump({"config": OU_TEMPLATE}))
    out, err = io.StringIO(), io.StringIO()
    code = fleet.main(
        ["members", "--template", "downstream"],
        organizations=Failing(NoCredentialsError()),
        project_dir=tmp_path,
        out=out,
        err=err,
    )
    assert code == 2 and out.getvalue() == ""
    assert err.getvalue().startswith("fleet: could not list the accounts under ")
    assert err.getvalue().count("\n") == 1


def test_make_fleet_members_with_a_missing_profile_in_a_real_process(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.downstream.yaml").write_text(yaml.safe_dump({"config": OU_TEMPLATE}))
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "scripts.fleet", "members", "--template", "downstream",
         "--project-dir", str(tmp_path)],
        cwd=PROJECT_DIR,
        env={
            "PATH": os.environ.get("PATH", ""),
            "AWS_PROFILE": "does-not-exist",
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(
        f"fleet: could not list the accounts under ecr-ptc:organizationalUnitIds ({OU_ROOT}): "
        "The config profile (does-not-exist) could not be found (AWS_PROFILE)."
    )


def test_each_member_uses_the_boundary_of_its_own_account() -> None:
    template = {
        **TEMPLATE,
        "ecr-ptc:permissionsBoundaryArn": "arn:aws:iam::999999999999:policy/b/ecr-ptc-role-boundary",
    }
    for member in members("downstream", template):
        assert member.config["ecr-ptc:permissionsBoundaryArn"] == (
            f"arn:aws:iam::{member.account_id}:policy/b/ecr-ptc-role-boundary"
        )
    aws_managed = {**TEMPLATE, "ecr-ptc:permissionsBoundaryArn": "arn:aws:iam::aws:policy/X"}
    for member in members("downstream", aws_managed):
        assert member.config["ecr-ptc:permissionsBoundaryArn"] == "arn:aws:iam::aws:policy/X"
