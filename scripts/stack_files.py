"""The project's stack files, read as the Pulumi CLI reads them, without the CLI.

`Pulumi.<stack>.yaml` holds a stack's config; `Pulumi.yaml` declares the project's keys and their
defaults. The CLI hands the program every key, fully qualified, as a string (JSON for lists,
objects and booleans), defaults filled in: `cli_config` gives the program exactly that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.config import NAMESPACE
from components.config_error import ConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent
STACK_FILE_PREFIX = "Pulumi."
PROJECT_FILE = "Pulumi.yaml"


def qualify(key: str) -> str:
    """A key as `pulumi config` shows it: bare keys belong to the project."""
    return key if ":" in key else f"{NAMESPACE}:{key}"


def stack_file(project_dir: Path, stack: str) -> Path:
    return project_dir / f"{STACK_FILE_PREFIX}{stack}.yaml"


def stack_names(project_dir: Path = PROJECT_DIR) -> list[str]:
    """Every stack that has a stack file here, sorted."""
    return sorted(
        p.name.removeprefix(STACK_FILE_PREFIX).removesuffix(".yaml")
        for p in project_dir.glob(f"{STACK_FILE_PREFIX}*.yaml")
        if p.name != PROJECT_FILE
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML as the Pulumi CLI reads stack files: a key given twice is an error, not "the last
    one wins"."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path) -> Any:
    """A YAML file, or a ConfigError naming the file, the line and the problem."""
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path.name} line {mark.line + 1}" if mark is not None else path.name
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(where, problem, "valid YAML, each key once") from None


def stack_file_config(project_dir: Path, stack: str) -> dict[str, Any]:
    """The `config:` of `Pulumi.<stack>.yaml`: keys fully qualified, values as YAML gives them."""
    path = stack_file(project_dir, stack)
    if not path.is_file():
        raise ConfigError(
            "stack", stack, f"the name of a stack file in {project_dir} ({path.name} is missing)"
        )
    document = load_yaml(path) or {}
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path.name}: config", config, "a mapping of config keys to values")
    return {qualify(str(k)): v for k, v in config.items()}


def project_defaults(project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The defaults Pulumi.yaml declares, which the CLI applies to keys a stack leaves unset."""
    project = load_yaml(project_dir / PROJECT_FILE) or {}
    return {
        qualify(key): declaration["default"]
        for key, declaration in (project.get("config") or {}).items()
        if isinstance(declaration, dict) and "default" in declaration
    }


def as_cli_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Values as the CLI hands them to a program: strings, JSON for everything else."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def cli_config(values: Mapping[str, Any], project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """What the program receives for a stack with these config values."""
    return as_cli_strings({**project_defaults(project_dir), **values})
