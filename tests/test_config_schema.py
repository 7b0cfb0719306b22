"""The JSON Schema of stack files: current, and it agrees with the program on the shipped files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from components.inputs.json_schema import (
    NEAR_NAMESPACE_PATTERN,
    SCHEMA_PATH,
    render,
    stack_config_schema,
)
from scripts.stack_files import stack_names
from tests.pulumi_run import FIXTURES, PROJECT_DIR

SCHEMA_LINE = "# yaml-language-server: $schema="


def stack_file(stack: str, directory: Path = FIXTURES) -> dict[str, Any]:
    """A stack file's document: the fixtures' by default, whatever the shipped ones say."""
    return yaml.safe_load((directory / f"Pulumi.{stack}.yaml").read_text())  # type: ignore[no-any-return]


def named_schema(path: Path) -> Path | None:
    """The schema a stack file's first line names for editors, resolved as editors do."""
    first = path.read_text().splitlines()[0]
    if not first.startswith(SCHEMA_LINE):
        return None
    return (path.parent / first.removeprefix(SCHEMA_LINE)).resolve()


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((PROJECT_DIR / SCHEMA_PATH).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator().iter_errors(document)
    ]


def test_the_checked_in_schema_is_current() -> None:
    checked_in = (PROJECT_DIR / SCHEMA_PATH).read_text()
    assert checked_in == render(), f"{SCHEMA_PATH} is stale: run `make config-schema`"


@pytest.mark.parametrize("stack", stack_names(PROJECT_DIR))
def test_shipped_stack_files_validate(stack: str) -> None:
    # Whatever valid config a user puts there; the first line naming the schema is theirs to keep.
    assert errors(stack_file(stack, PROJECT_DIR)) == []
    named = named_schema(PROJECT_DIR / f"Pulumi.{stack}.yaml")
    assert named is None or named == (PROJECT_DIR / SCHEMA_PATH).resolve()


@pytest.mark.parametrize("stack", ["upstream", "downstream"])
def test_the_example_stack_files_validate_and_name_the_schema(stack: str) -> None:
    assert errors(stack_file(stack)) == []
    assert named_schema(FIXTURES / f"Pulumi.{stack}.yaml") == (PROJECT_DIR / SCHEMA_PATH).resolve()


def test_every_key_of_either_side_is_described() -> None:
    config = stack_config_schema()["properties"]["config"]
    assert config["additionalProperties"] is False
    assert config["patternProperties"] == {NEAR_NAMESPACE_PATTERN: True}
    for key, schema in config["properties"].items():
        assert schema.get("description"), key


def with_config(stack: str, **changes: Any) -> dict[str, Any]:
    document = stack_file(stack)
    return {**document, "config": {**document["config"], **changes}}


@pytest.mark.parametrize(
    ("stack", "changes", "where"),
    [
        ("upstream", {"ecr-ptc:repositoryPrefx": "golden"}, "config"),
        ("downstream", {"ecr-ptc:regoins": ["eu-west-1"]}, "config"),
        ("upstream", {"ecr-ptc:downstreamAccountIds": ["44445555666"]}, "config/ecr-ptc:downstreamAccountIds/0"),
        ("upstream", {"ecr-ptc:downstreamAccountIds": [444455556666]}, "config/ecr-ptc:downstreamAccountIds/0"),
        ("downstream", {"aws:allowedAccountIds": ["4444"]}, "config/aws:allowedAccountIds/0"),
        ("downstream", {"ecr-ptc:rules": [{"ecrRepositoryPrefx": "golden"}]}, "config/ecr-ptc:rules/0"),
        ("downstream", {"ecr-ptc:repositoryTemplate": {"imageTagMutability": "SOMETIMES"}},
         "config/ecr-ptc:repositoryTemplate"),
        ("downstream", {"ecr-ptc:rules": [{"ecrRepositoryPrefix": "Golden"}]}, "config/ecr-ptc:rules/0/ecrRepositoryPrefix"),
        ("upstream", {"ecr_ptc:repositoryPrefix": "golden"}, "config"),
        ("upstream", {"ECR-PTC:repositoryPrefix": "golden"}, "config"),
        ("upstream", {"ecr-ptx:repositoryPrefix": "golden"}, "config"),
        ("downstream", {"ecrptc:regions": ["eu-west-1"]}, "config"),
    ],
)  # fmt: skip
def test_bad_keys_and_values_fail_the_schema(
    stack: str, changes: dict[str, Any], where: str
) -> None:
    found = errors(with_config(stack, **changes))
    assert found, changes
    assert any(e.startswith(f"{where}:") for e in found), found


def test_other_namespaces_and_empty_optional_strings_pass() -> None:
    document = with_config(
        "upstream",
        **{"aws:profile": "prod", "pulumi:tags": {"team": "a"}, "ecr-ptc:organizationId": ""},
    )
    assert errors(document) == []


def test_a_stack_file_without_a_region_fails() -> None:
    document = stack_file("upstream")
    config = {k: v for k, v in document["config"].items() if k != "aws:region"}
    assert errors({**document, "config": config}) != []


NAMESPACES = ["ecr_ptc", "ECR-PTC", "Ecr_Ptc", "ecrptc", "ecr-ptx", "ecr-pct", "ecr-public",
              "aws-native", "kubernetes", "ecr", "pulumi", "eks"]  # fmt: skip


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_the_schema_refuses_a_namespace_only_where_the_program_does(namespace: str) -> None:
    from components.inputs.stack_config import resembles_namespace

    refused_by_schema = errors(with_config("upstream", **{f"{namespace}:x": "1"})) != []
    if refused_by_schema:
        assert resembles_namespace(namespace), namespace
    if namespace in ("ecr_ptc", "ECR-PTC", "ecrptc", "ecr-ptx"):
        assert refused_by_schema, namespace
    if namespace in ("aws-native", "kubernetes", "pulumi", "ecr-public"):
        assert not refused_by_schema and not resembles_namespace(namespace), namespace
