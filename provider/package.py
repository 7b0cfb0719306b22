"""The ecr-ptc component package: its name, components, version and schema.

`provider/__main__.py` serves these components to Pulumi programs in any language;
`make schema` writes their schema to provider/schema.json, which tests/test_package.py compares
with a fresh one, so a change of the components' public interface is always a deliberate one.
"""

import importlib.metadata
import inspect
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pulumi
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.provider.experimental.schema import generate_schema

from components.declare.downstream import PullThroughCache
from components.declare.upstream import UpstreamRegistryAccess

NAME = "ecr-ptc"
# The schema's namespace: generated SDKs are @ecrptc/ecr-ptc (Node.js), Ecrptc.EcrPtc (.NET) and
# com.ecrptc.ecrptc (Java), not under Pulumi's own @pulumi/ and Pulumi. namespace. One word: Java
# and .NET take it into identifiers.
NAMESPACE = "ecrptc"
# Inputs kept under a former name: type token -> property -> what to use instead.
DEPRECATED = {
    f"{NAME}:index:RepositoryTemplate": {"kmsKeyArn": "Use kmsKeyArns (the same map)."},
}
COMPONENTS: list[type[pulumi.ComponentResource]] = [UpstreamRegistryAccess, PullThroughCache]
ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = Path(__file__).resolve().parent / "schema.json"


def version() -> str:
    """ecr-ptc's version, the one of pyproject.toml. From the checkout the components are
    imported from when there is one (a clone by `pulumi package add`, or this repository), else
    from the installed distribution."""
    pyproject = ROOT / "pyproject.toml"
    if pyproject.is_file():
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    return importlib.metadata.version(NAME)


def _cleaned(value: Any) -> Any:
    """Every description dedented (inspect.cleandoc): Python 3.13 dedents docstrings itself,
    3.11 and 3.12 do not, and the schema must be the same under each."""
    if isinstance(value, dict):
        return {
            k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else _cleaned(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    return value


def schema() -> dict[str, Any]:
    """The package schema, inferred offline by the analyzer: the one source of what the
    component host serves and of provider/schema.json."""
    result = Analyzer(NAME).analyze(COMPONENTS)
    spec = generate_schema(
        NAME,
        version(),
        NAMESPACE,
        result["component_definitions"],
        result["type_definitions"],
        sorted(result["dependencies"], key=lambda d: f"{d.name}{d.version}"),
    )
    document: dict[str, Any] = _cleaned(spec.to_json())
    for token, properties in DEPRECATED.items():
        for name, message in properties.items():
            document["types"][token]["properties"][name]["deprecationMessage"] = message
    return document


def schema_text() -> str:
    """provider/schema.json's exact content: pretty, sorted keys, a trailing newline."""
    return json.dumps(schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    # `make schema`: python -m provider.package > provider/schema.json
    sys.stdout.write(schema_text())
