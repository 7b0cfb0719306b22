"""A fleet template's run settings (ecr-ptc:operationPreferences), its per-account overrides
(ecr-ptc:accountOverrides), the members file that names its template, and what make plan and
make fleet-members show of each member's config."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from components.inputs.errors import ConfigError
from components.inputs.json_schema import stack_config_schema
from components.inputs.stack_config import (
    AMOUNT_COUNT_MAX,
    COUNT_PATTERN,
    PERCENT_PATTERN,
    Amount,
    OperationPreferences,
    default_max_prune,
    parse,
    parse_amount,
)
from scripts import fleet
from scripts.fleet_members import (
    Member,
    fleet_template,
    from_json,
    members,
    stray_overrides,
    to_json,
)
from scripts.stack_files import cli_config
from tests.test_plan import DOWNSTREAM, UPSTREAM, project, run

A1, A2, A9 = "210000000001", "210000000002", "210000000009"
TEMPLATE: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
    "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden", "upstreamRepositoryPrefix": "golden"}],
    "ecr-ptc:accounts": [A2, A1],
}
PREFERENCES = "ecr-ptc:operationPreferences"
OVERRIDES = "ecr-ptc:accountOverrides"


def kms(account: str, region: str = "eu-west-1", key: str = "a") -> str:
    return f"arn:aws:kms:{region}:{account}:key/mrk-{key * 32}"


def preferences(value: Any = None) -> OperationPreferences:
    config = TEMPLATE if value is None else TEMPLATE | {PREFERENCES: value}
    return fleet_template(config).operation_preferences


def refused(config: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        members("downstream", config)
    # Every refusal names the key, the value it got and what is valid.
    assert str(caught.value).startswith(f"config {caught.value.key}")
    if caught.value.value is not None:
        assert repr(caught.value.value) in str(caught.value)
    return caught.value


# ---- operationPreferences --------------------------------------------------------------------


def test_defaults_are_stacksets_own_a_canary_then_waves_of_a_quarter() -> None:
    assert preferences() == OperationPreferences(
        canary=1,
        wave_size=Amount(percent=25),
        failure_tolerance=Amount(count=0),
        max_prune=None,
        retain_stacks_on_account_removal=False,
    )
    assert preferences({}) == preferences()
    # maxPrune unset: 5 stacks, or 10% of the fleet (rounded down) when that is more.
    assert [default_max_prune(n) for n in (0, 10, 59, 60, 1000)] == [5, 5, 5, 6, 100]
    assert [preferences().prune_limit(n) for n in (10, 1000)] == [5, 100]


def test_every_field_is_read_in_either_form() -> None:
    read = preferences(
        {
            "canary": 0,
            "waveSize": 10,
            "failureTolerance": "10%",
            "maxPrune": "2%",
            "retainStacksOnAccountRemoval": True,
        }
    )
    assert read == OperationPreferences(
        0, Amount(count=10), Amount(percent=10), Amount(percent=2), True
    )
    assert [str(a) for a in (read.wave_size, read.failure_tolerance)] == ["10", "10%"]
    assert read.prune_limit(1000) == 20 and read.prune_limit(10) == 0


def test_percentages_round_down_and_waves_hold_at_least_one() -> None:
    quarter = Amount(percent=25)
    assert [quarter.of(n, at_least=1) for n in (0, 1, 3, 4, 7, 8, 1000)] == [1, 1, 1, 1, 1, 2, 250]
    assert Amount(percent=10).of(19) == 1 and Amount(percent=10).of(9) == 0
    assert Amount(count=3).of(1000) == 3 and Amount(count=0).of(10, at_least=1) == 1
    with pytest.raises(ValueError):
        Amount()


AMOUNT_1 = "a whole number from 1 to 1,000,000, or a percentage from 1% to 100%"
AMOUNT_0 = "a whole number from 0 to 1,000,000, or a percentage from 0% to 100%"


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        ("waveSize", 0, AMOUNT_1),
        ("waveSize", "0%", AMOUNT_1),
        ("waveSize", "101%", AMOUNT_1),
        ("waveSize", "25 %", AMOUNT_1),
        ("waveSize", "2.5%", AMOUNT_1),
        ("waveSize", "٢٥%", AMOUNT_1),  # Arabic-Indic digits: ASCII only
        ("waveSize", "25%\n", AMOUNT_1),
        ("waveSize", 1.5, AMOUNT_1),
        ("waveSize", True, AMOUNT_1),
        ("failureTolerance", -1, AMOUNT_0),
        ("failureTolerance", "007", AMOUNT_0),
        ("failureTolerance", AMOUNT_COUNT_MAX + 1, AMOUNT_0),
        ("maxPrune", "-5%", AMOUNT_0),
        ("maxPrune", [5], AMOUNT_0),
        ("canary", "10%", "a whole number from 0 to 1,000,000"),
        ("canary", -1, "a whole number from 0 to 1,000,000"),
        ("retainStacksOnAccountRemoval", "yes", "true or false"),
        ("waveSze", 3, "did you mean waveSize?"),
    ],
)
def test_a_bad_preference_names_its_key_path_the_value_and_what_is_valid(
    field: str, value: Any, valid: str
) -> None:
    error = refused(TEMPLATE | {PREFERENCES: {field: value}})
    assert error.key == f"{PREFERENCES}.{field}"
    assert error.value == value and valid in error.valid


def test_preferences_that_are_not_a_mapping_are_refused() -> None:
    error = refused(TEMPLATE | {PREFERENCES: "fast"})
    assert error.key == PREFERENCES and "a mapping" in error.valid


@pytest.mark.parametrize(
    ("raw", "minimum", "expected"),
    [("1", 1, Amount(count=1)), ("0", 0, Amount(count=0)), ("25%", 1, Amount(percent=25)),
     ("100%", 1, Amount(percent=100)), ("0%", 0, Amount(percent=0)),
     ("1000000", 0, Amount(count=AMOUNT_COUNT_MAX))],
)  # fmt: skip
def test_the_environment_gives_the_same_values_as_text(
    raw: str, minimum: int, expected: Amount
) -> None:
    assert parse_amount("WAVE_SIZE", raw, minimum) == expected
    assert str(expected) == raw
    # One rule: the config reads the same text the same way.
    field = "waveSize" if minimum else "failureTolerance"
    read = preferences({field: raw})
    assert (read.wave_size if minimum else read.failure_tolerance) == expected


@pytest.mark.parametrize("raw", ["", "0", "0%", "-1", "+1", " 1", "1 ", "1e3", "05", "050%",
                                 "101%", "1%%", "%", "\uff11", "1000001", "12345678"])  # fmt: skip
def test_the_environment_refuses_what_the_config_refuses(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_amount("WAVE_SIZE", raw, 1)
    assert caught.value.key == "WAVE_SIZE" and caught.value.value == raw
    assert caught.value.valid.startswith(AMOUNT_1)
    assert refused(TEMPLATE | {PREFERENCES: {"waveSize": raw}}).valid == caught.value.valid


def test_a_canary_is_a_count_only() -> None:
    assert parse_amount("CANARY", "3", 0, percent=False) == Amount(count=3)
    with pytest.raises(ConfigError) as caught:
        parse_amount("CANARY", "10%", 0, percent=False)
    assert caught.value.valid == "a whole number from 0 to 1,000,000"


def test_the_amount_patterns_are_anchored_and_linear() -> None:
    start = time.perf_counter()
    for pattern in (COUNT_PATTERN, PERCENT_PATTERN):
        compiled = re.compile(pattern, re.ASCII)
        for text in ("1" * 10_000 + "!", "9" * 10_000 + "%", "%" * 10_000, "10" * 5_000 + "x"):
            assert compiled.fullmatch(text) is None
    assert time.perf_counter() - start < 0.1


# ---- fleet keys: only in a template, never in a member ---------------------------------------


@pytest.mark.parametrize(
    ("key", "value"), [(PREFERENCES, {"canary": 0}), (OVERRIDES, {A1: {"roleName": "cache"}})]
)
def test_the_new_keys_are_refused_outside_a_template_and_members_never_see_them(
    key: str, value: Any
) -> None:
    single = {k: v for k, v in TEMPLATE.items() if k != "ecr-ptc:accounts"}
    with pytest.raises(ConfigError) as caught:
        parse(cli_config(single | {key: value}), "downstream")
    assert caught.value.key == key and "fleet template" in caught.value.valid
    for member in members("downstream", TEMPLATE | {key: value}):
        assert key not in member.config


def test_the_schema_describes_both_keys() -> None:
    schema = stack_config_schema()
    keys = schema["properties"]["config"]["properties"]
    assert {PREFERENCES, OVERRIDES} <= set(keys)
    validator = jsonschema.Draft202012Validator(schema)

    def ok(value: dict[str, Any]) -> bool:
        return bool(validator.is_valid({"config": {"aws:region": "eu-west-1", **value}}))

    assert ok({PREFERENCES: {"waveSize": "10%", "failureTolerance": 0, "maxPrune": 3}})
    assert not ok({PREFERENCES: {"waveSize": "0%"}})
    assert not ok({PREFERENCES: {"waveSize": 0}})
    assert not ok({PREFERENCES: {"wave": 1}})
    assert ok({OVERRIDES: {A1: {"regions": ["eu-west-1"], "kmsKeyArn": kms(A1)}}})
    assert not ok({OVERRIDES: {"12345": {"roleName": "x"}}})
    assert not ok({OVERRIDES: {A1: {"profile": "x"}}})


# ---- accountOverrides ------------------------------------------------------------------------

WITH_TEMPLATE = TEMPLATE | {
    "ecr-ptc:repositoryTemplate": {"keepLastImages": 10, "kmsKeyArn": kms(A1)},
    "ecr-ptc:roleName": "ptc-cache",
}


def test_an_override_replaces_the_templates_value_for_its_member_only() -> None:
    config = WITH_TEMPLATE | {
        OVERRIDES: {
            A2: {
                "regions": ["eu-west-1", "eu-central-1"],
                "roleName": "ptc-cache-eu",
                "consumerRoleNames": ["ci-runner"],
                "kmsKeyArn": {
                    "eu-west-1": kms(A2),
                    "eu-central-1": kms(A2, "eu-central-1", "b"),
                },
            }
        }
    }
    first, second = members("downstream", config)
    assert first.config["ecr-ptc:roleName"] == "ptc-cache"
    assert "ecr-ptc:regions" not in first.config
    assert first.config["ecr-ptc:repositoryTemplate"] == WITH_TEMPLATE["ecr-ptc:repositoryTemplate"]
    assert second.config["ecr-ptc:regions"] == ["eu-west-1", "eu-central-1"]
    assert second.config["ecr-ptc:roleName"] == "ptc-cache-eu"
    assert second.config["ecr-ptc:consumerRoleNames"] == ["ci-runner"]
    assert second.config["ecr-ptc:repositoryTemplate"] == {
        "keepLastImages": 10,
        "kmsKeyArn": {"eu-central-1": kms(A2, "eu-central-1", "b"), "eu-west-1": kms(A2)},
    }
    assert fleet_template(config).overrides[A2]["roleName"] == "ptc-cache-eu"


@pytest.mark.parametrize(
    ("override", "key", "valid"),
    [
        ({"regions": ["eu-west-9"]}, f'["{A1}"].regions[0]', "an AWS region name"),
        ({"regions": ["eu-west-1", "eu-west-1"]}, f'["{A1}"].regions[1]', "each value once"),
        ({"regions": ["cn-north-1"]}, f'["{A1}"].regions[0]', "same partition"),
        ({"regions": "eu-west-1"}, f'["{A1}"].regions', "a YAML list"),
        ({"roleName": "has space"}, f'["{A1}"].roleName', "an IAM role name"),
        ({"roleName": 7}, f'["{A1}"].roleName', "an IAM role name"),
        ({"consumerRoleNames": ["App", "app"]}, f'["{A1}"].consumerRoleNames[1]', "ignore case"),
        ({"consumerRoleNames": ["PTC-CACHE"]}, f'["{A1}"].consumerRoleNames[0]', "cache role"),
        ({"rolename": "x"}, f'["{A1}"].rolename', "did you mean roleName?"),
        ({"upstreamStack": "x"}, f'["{A1}"].upstreamStack',
         "consumerRoleNames, kmsKeyArn, regions, roleName"),
        ({}, f'["{A1}"]', "at least one of consumerRoleNames, kmsKeyArn, regions, roleName"),
        (["eu-west-1"], f'["{A1}"]', "a mapping"),
        ({"kmsKeyArn": "alias/x"}, f'["{A1}"].kmsKeyArn', "a KMS key ARN"),
        ({"kmsKeyArn": kms(A1, "eu-west-2")}, f'["{A1}"].kmsKeyArn', "a key in eu-west-1"),
        ({"kmsKeyArn": kms(A9)}, f'["{A1}"].kmsKeyArn', f"a key of account {A1}"),
    ],
)  # fmt: skip
def test_a_bad_override_is_refused_as_the_same_key_at_the_top_would_be(
    override: Any, key: str, valid: str
) -> None:
    error = refused(WITH_TEMPLATE | {OVERRIDES: {A1: override}})
    assert error.key == f"{OVERRIDES}{key}"
    assert valid in error.valid, error


def test_an_override_that_breaks_another_template_value_says_whose_config() -> None:
    # The template's single key covers one region; the member's two regions need a map.
    error = refused(WITH_TEMPLATE | {OVERRIDES: {A1: {"regions": ["eu-west-1", "us-east-1"]}}})
    assert error.key == "ecr-ptc:repositoryTemplate.kmsKeyArn"
    assert f'member {A1}, with {OVERRIDES}["{A1}"] applied' in error.valid


def test_a_kms_key_for_a_template_without_repository_template_is_refused() -> None:
    error = refused(TEMPLATE | {OVERRIDES: {A1: {"kmsKeyArn": kms(A1)}}})
    assert error.key == f'{OVERRIDES}["{A1}"].kmsKeyArn'
    assert "unset unless the template sets ecr-ptc:repositoryTemplate" in error.valid


@pytest.mark.parametrize("account", ["21000000001", "2100000000011", "acct", "21000000000٢"])
def test_an_override_key_that_is_no_account_id_is_refused(account: str) -> None:
    error = refused(TEMPLATE | {OVERRIDES: {account: {"roleName": "x"}}})
    assert error.key == f'{OVERRIDES}["{account}"]' and error.value == account
    assert "exactly 12 digits, quoted" in error.valid


def test_an_unquoted_account_that_lost_its_leading_zero_in_the_stack_file(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.downstream.yaml").write_text(
        "config:\n"
        "  aws:region: eu-west-1\n"
        "  ecr-ptc:upstreamStack: organization/ecr-ptc/upstream\n"
        "  ecr-ptc:rules: [{ecrRepositoryPrefix: golden}]\n"
        "  ecr-ptc:accounts: ['012345678901']\n"
        "  ecr-ptc:accountOverrides:\n"
        "    012345678901: {roleName: cache}\n"
    )
    err = io.StringIO()
    assert fleet.main(["members", "--template", "downstream"], project_dir=tmp_path, err=err) == 2
    # Read as the CLI reads it: a number, so a key of 11 digits (the stack file reader's form).
    assert f'{OVERRIDES}["12345678901' in err.getvalue()
    assert "exactly 12 digits, quoted" in err.getvalue()


def test_a_kms_key_of_another_account_is_refused_for_each_member_without_an_override() -> None:
    error = refused(WITH_TEMPLATE)
    assert error.key == "ecr-ptc:repositoryTemplate.kmsKeyArn" and error.value == kms(A1)
    assert f"a key of the member {A2}'s own account: this ARN names account {A1}" in error.valid
    assert f'Set {OVERRIDES}["{A2}"].kmsKeyArn to a key of account {A2}' in error.valid
    fixed = WITH_TEMPLATE | {OVERRIDES: {A2: {"kmsKeyArn": kms(A2)}}}
    assert [m.account_id for m in members("downstream", fixed)] == [A1, A2]
    # A map names the region whose key is another account's.
    by_region = WITH_TEMPLATE | {
        "ecr-ptc:regions": ["eu-west-1", "eu-central-1"],
        "ecr-ptc:repositoryTemplate": {
            "kmsKeyArn": {"eu-west-1": kms(A1), "eu-central-1": kms(A1, "eu-central-1")}
        },
    }
    error = refused(by_region)
    assert error.key == "ecr-ptc:repositoryTemplate.kmsKeyArn.eu-central-1"
    assert f'{OVERRIDES}["{A2}"].kmsKeyArn' in error.valid


def test_an_override_of_no_member_is_a_warning_naming_it() -> None:
    config = TEMPLATE | {
        "ecr-ptc:excludeAccountIds": [A1],
        OVERRIDES: {A1: {"roleName": "x"}, A2: {"roleName": "y"}, A9: {"roleName": "z"}},
    }
    found = members("downstream", config)
    assert [m.account_id for m in found] == [A2]
    first, second = stray_overrides(fleet_template(config), found)
    assert first.startswith(f'warning: {OVERRIDES}["{A1}"] applies to no member')
    assert "ecr-ptc:excludeAccountIds" in first
    assert second.startswith(f'warning: {OVERRIDES}["{A9}"]') and "ecr-ptc:accounts" in second
    with_ous = config | {"ecr-ptc:organizationalUnitIds": ["ou-ab12-11111111"]}
    assert "ACTIVE account under" in stray_overrides(fleet_template(with_ous), found)[1]
    assert stray_overrides(fleet_template(TEMPLATE), found) == []


# ---- the members file names its template -----------------------------------------------------


def test_the_members_file_round_trips_and_names_its_template() -> None:
    fleet_members = members("downstream", TEMPLATE)
    text = to_json(fleet_members, "downstream")
    assert text == to_json(list(reversed(fleet_members)), "downstream")
    assert json.loads(text)["template"] == "downstream"
    assert from_json(text, "downstream") == fleet_members


def members_file_refusal(text: str, template: str = "downstream") -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        from_json(text, template)
    assert caught.value.key.startswith("MEMBERS")
    return caught.value


def test_a_members_file_of_another_template_is_refused() -> None:
    text = to_json(members("downstream-eu", TEMPLATE), "downstream-eu")
    error = members_file_refusal(text)
    assert error.value == "downstream-eu"
    assert "'downstream'" in error.valid and "make -s fleet-members" in error.valid


def test_the_old_list_only_members_file_is_refused() -> None:
    old = json.dumps([m.to_json() for m in members("downstream", TEMPLATE)])
    error = members_file_refusal(old)
    assert error.key == "MEMBERS" and "older version" in error.valid
    assert "regenerate it with `make -s fleet-members TEMPLATE=downstream" in error.valid


def test_a_member_of_another_stack_name_is_refused() -> None:
    document = json.loads(to_json(members("downstream", TEMPLATE), "downstream"))
    document["members"][1]["stack"] = f"fleet-eu-{A2}"
    error = members_file_refusal(json.dumps(document))
    assert error.key == "MEMBERS members[1].stack" and error.value == f"fleet-eu-{A2}"
    assert f"'downstream-{A2}'" in error.valid
    document["members"][1]["stack"] = f"downstream-{A1}"
    assert members_file_refusal(json.dumps(document)).value == f"downstream-{A1}"
    for broken in ("{", "[]", '{"template": "downstream"}', "7"):
        assert members_file_refusal(broken).key == "MEMBERS"


def test_a_duplicated_or_malformed_member_is_refused() -> None:
    member = Member(f"downstream-{A1}", A1, "arn", {}).to_json()
    twice = json.dumps({"template": "downstream", "members": [member, member]})
    assert members_file_refusal(twice).key == "MEMBERS members[1].accountId"
    short = json.dumps({"template": "downstream", "members": [{**member, "accountId": "1"}]})
    assert "12 digits" in members_file_refusal(short).valid


# ---- make plan and make fleet-members show each member's effective config -------------------

PLANNED = {k: v for k, v in DOWNSTREAM.items() if k != "aws:allowedAccountIds"} | {
    "ecr-ptc:accounts": ["444455556666", "777788889999"],
    OVERRIDES: {"777788889999": {"regions": ["eu-west-1"], "roleName": "cache-eu"}},
}
PLANNED_UPSTREAM = UPSTREAM | {"ecr-ptc:downstreamAccountIds": ["444455556666", "777788889999"]}


def test_make_plan_shows_where_each_members_config_differs_from_the_template(
    tmp_path: Path,
) -> None:
    project_dir = project(tmp_path, upstream=PLANNED_UPSTREAM, downstream=PLANNED)
    code, out, err = run(project_dir)
    assert code == 0, err
    overridden = out[out.index("=== stack downstream-777788889999") :]
    assert (
        'ecr-ptc:regions: ["eu-west-1"]  (ecr-ptc:accountOverrides["777788889999"])' in overridden
    )
    assert 'ecr-ptc:roleName: "cache-eu"' in overridden
    assert 'aws:allowedAccountIds: ["777788889999"]  (set by the fleet)' in overridden
    plain = out[out.index("=== stack downstream-444455556666") : out.index(overridden)]
    assert "ecr-ptc:regions" not in plain.split("resources")[0]
    code, out, err = run(project_dir, "--json")
    assert code == 0, err
    stacks = {s["stack"]: s for s in json.loads(out)}
    member = stacks["downstream-777788889999"]
    assert member["config"]["ecr-ptc:regions"] == ["eu-west-1"]
    assert member["override"] == {"regions": ["eu-west-1"], "roleName": "cache-eu"}
    assert set(member["differsFromTemplate"]) == {
        "aws:allowedAccountIds",
        "aws:assumeRoles",
        "ecr-ptc:regions",
        "ecr-ptc:roleName",
    }
    # The override reached the plan: one region, the role named by it.
    assert {r["region"] for r in member["resources"] if r["region"] != "global"} == {"eu-west-1"}
    assert stacks["downstream-444455556666"]["override"] == {}


def test_make_plan_notes_an_override_of_no_member_and_refuses_a_foreign_key(
    tmp_path: Path,
) -> None:
    stray = PLANNED | {OVERRIDES: {"123412341234": {"roleName": "x"}}}
    code, out, err = run(project(tmp_path, upstream=PLANNED_UPSTREAM, downstream=stray))
    assert code == 0, err
    assert (
        'note: fleet template downstream: warning: ecr-ptc:accountOverrides["123412341234"]' in out
    )
    foreign = PLANNED | {
        "ecr-ptc:regions": ["eu-west-1"],
        "ecr-ptc:repositoryTemplate": {"kmsKeyArn": kms("444455556666")},
    }
    code, out, err = run(project(tmp_path, upstream=PLANNED_UPSTREAM, downstream=foreign))
    assert code == 1
    assert "=== stack downstream (Pulumi.downstream.yaml) ===\nREFUSED: config " in out
    assert 'ecr-ptc:accountOverrides["777788889999"].kmsKeyArn' in err


def test_make_fleet_members_prints_each_members_config_with_its_override(
    tmp_path: Path,
) -> None:
    (tmp_path / "Pulumi.downstream.yaml").write_text(json.dumps({"config": PLANNED}))
    out = io.StringIO()
    assert fleet.main(["members", "--template", "downstream"], project_dir=tmp_path, out=out) == 0
    document = json.loads(out.getvalue())
    config = {m["accountId"]: m["config"] for m in document["members"]}
    assert config["777788889999"]["ecr-ptc:roleName"] == "cache-eu"
    assert "ecr-ptc:roleName" not in config["444455556666"]
    assert all(OVERRIDES not in c for c in config.values())
