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


def stack_file_config(project_dir: Path, stack: str) -> dict[str, Any]:
    """The `config:` of `Pulumi.<stack>.yaml`: keys fully qualified, values as YAML gives them."""
    path = stack_file(project_dir, stack)
    if not path.is_file():
        raise ConfigError(
            "stack", stack, f"the name of a stack file in {project_dir} ({path.name} is missing)"
        )
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path.name}: config", config, "a mapping of config keys to values")
    return {qualify(str(k)): v for k, v in config.items()}


def project_defaults(project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The defaults Pulumi.yaml declares, which the CLI applies to keys a stack leaves unset."""
    project = yaml.safe_load((project_dir / PROJECT_FILE).read_text()) or {}
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
