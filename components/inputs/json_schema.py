"""The JSON Schema of a stack file, `Pulumi.<stack>.yaml`, from the config models.

Editors that speak JSON Schema (VS Code's YAML extension, JetBrains IDEs, anything using
yaml-language-server) check a stack file against it as it is typed, when the file's first line
is

    # yaml-language-server: $schema=schema/stack-config.schema.json

It is generated, never edited: `make config-schema` writes schema/stack-config.schema.json
(`python -m components.inputs.json_schema`), and a test fails when the checked-in file differs.

The schema knows each key's shape and value rules (the models' patterns and descriptions); the
program still has the last word on what a schema cannot say (which side a stack is, whether an
upstream grants this account, quotas).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from .stack_config import (
    ALLOWED_ACCOUNT_IDS_KEY,
    AWS_REGION_KEY,
    KEYS_BY_NAME,
    DownstreamModel,
    UpstreamModel,
)
from .values import ACCOUNT_ID_PATTERN, Unset

SCHEMA_PATH = "schema/stack-config.schema.json"
# Keys that are not of ecr-ptc: nor of a namespace shaped like it ("ecr", a '-' or '_' or
# nothing, "p" and two letters, in any case).
NEAR_NAMESPACE_PATTERN = "^(?![Ee][Cc][Rr][-_]?[Pp][A-Za-z]{2}:)"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
_SIDE_TEXT = {
    "upstream": "Upstream stacks only.",
    "downstream": "Downstream stacks only.",
    "both": "Either side.",
}


def _model_schema(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    """The model's schema (camelCase aliases, as validation reads it); its $defs go to `defs`."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    for name, definition in schema.pop("$defs", {}).items():
        if defs.setdefault(name, definition) != definition:
            raise ValueError(f"two different definitions named {name}")
    return schema


def _unset_allowed(model: type[BaseModel], alias: str) -> bool:
    """Whether the field reads "" as unset (Pulumi.yaml's default for optional strings)."""
    field = next(f for n, f in model.model_fields.items() if alias in (n, f.alias))
    return Unset in field.metadata


def _with_side(schema: dict[str, Any], side: str) -> dict[str, Any]:
    text = _SIDE_TEXT[side]
    described = schema.get("description")
    return {**schema, "description": f"{described}. {text}" if described else text}


def _ecr_ptc_keys(defs: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for model in (UpstreamModel, DownstreamModel):
        for alias, field_schema in _model_schema(model, defs)["properties"].items():
            if alias == "region":
                continue
            key = KEYS_BY_NAME[alias]
            if _unset_allowed(model, alias):
                field_schema = {**field_schema, "anyOf": [*field_schema["anyOf"], {"const": ""}]}
            field_schema = {**_with_side(field_schema, key.side), "title": key.full}
            if properties.setdefault(key.full, field_schema) != field_schema:
                raise ValueError(f"{key.full} has two different schemas")
    return properties


def stack_config_schema() -> dict[str, Any]:
    """A stack file: `config` holds aws:region, aws:allowedAccountIds, the ecr-ptc: keys of
    either side, and any key of another namespace (other providers' settings)."""
    defs: dict[str, Any] = {}
    region = _model_schema(DownstreamModel, defs)["properties"]["region"]
    ecr_ptc = _ecr_ptc_keys(defs)
    properties = {
        AWS_REGION_KEY: {
            **region,
            "description": f"{region['description']}: this stack's registry",
        },
        ALLOWED_ACCOUNT_IDS_KEY: {
            "description": "the account this stack may change (the AWS provider refuses "
            "credentials of any other); one account, so make plan and the program know it "
            "offline",
            "type": "array",
            "items": {
                "type": "string",
                "pattern": f"^{ACCOUNT_ID_PATTERN}$",
                "description": "an AWS account ID: exactly 12 digits, quoted",
            },
        },
        **dict(sorted(ecr_ptc.items())),
    }
    return {
        "$schema": DIALECT,
        "title": "ecr-ptc stack file (Pulumi.<stack>.yaml)",
        "description": "Generated from components/inputs/stack_config.py by `make config-schema`; "
        "do not edit. A stack is an upstream or a downstream (ecr-ptc:side, or the stack's name): "
        "the program refuses keys of the other side.",
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "required": [AWS_REGION_KEY],
                "properties": properties,
                # Other namespaces (aws:profile, pulumi:tags, ...) are not ours to check; an
                # ecr-ptc: key not listed is a typo, and so is a key of a namespace that
                # resembles ecr-ptc (ecr_ptc:, ECR-PTC:, ecrptc:, ecr-ptx:). The program's rule
                # (config.resembles_namespace) catches more; this is its shape in a pattern.
                "patternProperties": {NEAR_NAMESPACE_PATTERN: True},
                "additionalProperties": False,
            }
        },
        "required": ["config"],
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    return json.dumps(stack_config_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
