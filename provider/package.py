"""The ecr-ptc component package: its name, components, version and schema.

`provider/__main__.py` serves these components to Pulumi programs in any language;
`make schema` writes their schema to provider/schema.json, which tests/test_package.py compares
with a fresh one, so a change of the components' public interface is always a deliberate one.
"""

import importlib.metadata
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pulumi
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.provider.experimental.schema import generate_schema

from components.downstream import PullThroughCache
from components.upstream import UpstreamRegistryAccess

NAME = "ecr-ptc"
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


def schema() -> dict[str, Any]:
    """The package schema, as the component host serves it, inferred offline by the analyzer."""
    result = Analyzer(NAME).analyze(COMPONENTS)
    spec = generate_schema(
        NAME,
        version(),
        None,
        result["component_definitions"],
        result["type_definitions"],
        sorted(result["dependencies"], key=lambda d: f"{d.name}{d.version}"),
    )
    return dict(spec.to_json())


def schema_text() -> str:
    """provider/schema.json's exact content: pretty, sorted keys, a trailing newline."""
    return json.dumps(schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    # `make schema`: python -m provider.package > provider/schema.json
    sys.stdout.write(schema_text())
