"""Component arguments in, validated config out: the components take `pulumi.Input` arguments
(from this program, or from any Pulumi language through the package) and validate them with the
same rules and messages as stack config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi.runtime.sync_await import _sync_await

from .errors import ConfigError


def known(name: str, value: Any) -> Any:
    """`value` with every Output in it resolved. Structure-deciding arguments (how many rules,
    which regions) must be known when the component is declared, as they decide which resources
    exist. Pulumi's synchronous invokes wait for a value the same way."""
    output = pulumi.Output.from_input(value)
    if not _sync_await(output.is_known()):
        raise ConfigError(
            name,
            "an unknown value",
            "a value known when the component is declared (it decides which resources exist); "
            "pass a literal or an output of an invoke, not an output of a resource still to be "
            "created",
        )
    return _plain(_sync_await(output.future()))


def dependencies(value: Any) -> list[pulumi.Resource]:
    """The resources `value`'s outputs come from: what `known` takes off it, for the component
    to depend on (as it would have, had it used the outputs)."""
    return list(_sync_await(pulumi.Output.from_input(value).resources()))


def _plain(value: Any) -> Any:
    # Enum members (GrantVia, ImageTagMutability) are checked as the strings they stand for.
    if isinstance(value, Enum):
        return _plain(value.value)
    # The component host hands integers over as floats (7.0): give them back as integers.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def camel_keys(value: Any) -> Any:
    """An argument object's snake_case field names (Python) as the camelCase names of config and
    the schema; a list of such objects, each. Only the object's own field names: the keys of a
    map it holds (resource tags, region -> KMS key) are data and stay as they are."""
    if isinstance(value, Mapping):
        return {to_camel(k): v for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def flat_config(values: Mapping[str, Any]) -> dict[str, str]:
    """Values as the Pulumi CLI hands config to a program: strings, JSON for the rest."""
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in values.items()
        if value is not None
    }


class ArgumentError(ConfigError):
    """A refused component argument: a ConfigError (key, value, valid; a RunError, so one clean
    message), worded for the argument rather than for stack config."""

    def __init__(self, key: str, value: object, valid: str) -> None:
        super().__init__(key, value, valid)
        self.args = (f"{key}: {value!r} is not valid: {valid}",)


def as_argument_error(err: ConfigError, component: str, keys: Mapping[str, str]) -> ConfigError:
    """The same refusal, naming the component's argument instead of the config key."""
    key = err.key
    for config_key, argument in sorted(keys.items(), key=lambda kv: -len(kv[0])):
        if key == config_key or key.startswith((f"{config_key}.", f"{config_key}[")):
            key = argument + key[len(config_key) :]
            break
    return ArgumentError(f"{component} argument {key}", err.value, err.valid)


def aws_invoke_options(opts: pulumi.ResourceOptions | None) -> pulumi.InvokeOptions:
    """Invoke options that reach AWS through the provider the component's resources will use:
    `provider=`, else the "aws" entry of `providers=` (how the package's host passes a caller's
    providers, and a common way in Python), else the parent's (inherited), else the default."""
    if opts is None:
        return pulumi.InvokeOptions()
    provider, providers = opts.provider, opts.providers
    if provider is None and isinstance(providers, Mapping):
        provider = providers.get("aws")
    elif provider is None and isinstance(providers, list):
        provider = next((p for p in providers if p.package == "aws"), None)
    return pulumi.InvokeOptions(parent=opts.parent, provider=provider)


def caller_account(opts: pulumi.ResourceOptions | None) -> str:
    """The account of the credentials the component's AWS provider uses."""
    return str(aws.get_caller_identity(opts=aws_invoke_options(opts)).account_id)
