"""The component host: Pulumi's own, with every argument resolved before it maps them.

Pulumi's component host (`pulumi.provider.experimental.component_provider_host`, Pulumi 3.272)
maps the camelCase inputs a program sends to the components' Python arguments, and for an input
of an object type it keeps the fields only when the value is a plain dict: anything else becomes
`{}`. The values that arrive as something else are exactly the ones a program cannot write
inline: an object given as one output (a stack reference's `upstream`, a computed
`repositoryTemplate`), an object holding a secret anywhere (the whole object arrives as one
secret output), an object with an input dependency, and an object not yet known in a preview.
So a whole `upstream` output was refused as "Missing required input 'upstream.accountId'", and a
whole `repositoryTemplate` output was dropped without a word: the creation templates were made
MUTABLE, without their lifecycle policy.

This host waits for every argument before the mapping, so the mapping and the components see
plain values, and carries what the waiting would lose:

- secret: when any argument was secret, every output of the component is secret, and so is
  every input of every resource it declares (which of them came from the secret is not
  tracked, so all of them are treated as if they did);
- dependencies: every resource the component declares depends on the resources its arguments
  came from, as it would have had it used the outputs;
- unknown in a preview: the component is registered alone, its outputs unknown, and its
  resources appear in the update, once the value is known (as for resources declared in an
  `apply`). An argument unknown outside a preview is refused, naming it.

A refused argument (the components raise a RunError naming it) comes back as that one message,
where Pulumi's host appends a traceback of the component.

Waiting for every argument costs nothing here: the components need all of them when they are
declared anyway, as the arguments decide which resources exist. This module can go once Pulumi's
host maps output-valued object inputs itself (`ComponentProvider.map_input_properties` in
pulumi/provider/experimental/component.py); check with tests/test_provider_grpc.py, whose
`without_the_host` tests show what Pulumi's host does.
"""

import copy
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.runtime
from pulumi.output import UNKNOWN
from pulumi.provider import ConstructResult, main
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.provider.server import ComponentInitError
from pulumi.runtime.sync_await import _sync_await


@dataclass
class Arguments:
    """A component's arguments, waited for: their values and what the waiting took off them."""

    values: dict[str, Any] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    secret: bool = False
    dependencies: list[pulumi.Resource] = field(default_factory=list)


async def resolve(inputs: Mapping[str, Any]) -> Arguments:
    """Every argument's value, deeply, with whether any is secret or unknown and what they
    depend on."""
    arguments = Arguments()
    for key, value in inputs.items():
        output = pulumi.Output.from_input(value)
        arguments.values[key] = await output.future(with_unknowns=True)
        if not await output.is_known():
            arguments.unknown.append(key)
        arguments.secret = arguments.secret or await output.is_secret()
        arguments.dependencies += await output.resources()
    return arguments


def carry(arguments: Arguments) -> pulumi.ResourceTransformation:
    """A transformation, inherited by every resource the component declares, that gives each the
    secrecy and dependencies of the arguments they were planned from."""

    def transformation(
        args: pulumi.ResourceTransformationArgs,
    ) -> pulumi.ResourceTransformationResult:
        props = dict(args.props)
        if arguments.secret:
            props = {k: v if v is None else pulumi.Output.secret(v) for k, v in props.items()}
        opts = pulumi.ResourceOptions.merge(
            args.opts, pulumi.ResourceOptions(depends_on=arguments.dependencies)
        )
        return pulumi.ResourceTransformationResult(props, opts)

    return transformation


class ComponentHost(ComponentProvider):
    """Pulumi's ComponentProvider, constructing from waited-for arguments (see the module), and
    serving `schema` when given one instead of the schema it infers itself."""

    def __init__(
        self,
        components: list[type[pulumi.ComponentResource]],
        name: str,
        version: str,
        schema: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(components, name, None, version)
        if schema is not None:
            self.schema = json.dumps(schema)

    def construct(
        self,
        name: str,
        resource_type: str,
        inputs: pulumi.Inputs,
        options: pulumi.ResourceOptions | None = None,
    ) -> ConstructResult:
        arguments = _sync_await(resolve(inputs))
        if arguments.secret or arguments.dependencies:
            options = copy.copy(options) or pulumi.ResourceOptions()
            options.transformations = [*(options.transformations or []), carry(arguments)]
        if arguments.unknown:
            return self.unknown(name, resource_type, arguments, options)
        try:
            result = super().construct(name, resource_type, arguments.values, options)
        except ComponentInitError as err:
            # A refused argument (a RunError) is one clean message, not a traceback of the host.
            if isinstance(err.inner, pulumi.RunError):
                raise pulumi.InputPropertiesError(str(err.inner), []) from None
            raise
        if arguments.secret:
            result.state = {k: pulumi.Output.secret(v) for k, v in result.state.items()}
        return result

    def unknown(
        self,
        name: str,
        resource_type: str,
        arguments: Arguments,
        options: pulumi.ResourceOptions | None,
    ) -> ConstructResult:
        """A preview with an argument not yet known: the component alone, every output
        unknown. Outside a preview an unknown argument is refused."""
        self.validate_resource_type(self._name, resource_type)
        component_name = resource_type.rsplit(":", maxsplit=1)[-1]
        keys = ", ".join(arguments.unknown)
        if not pulumi.runtime.is_dry_run():
            valid = "a value known when the component is declared"
            argument = f"{component_name} {name!r} argument {keys}"
            raise pulumi.InputPropertiesError(
                f"{argument}: an unknown value is not valid: {valid}",
                [{"property_path": key, "reason": valid} for key in arguments.unknown],
            )
        definition = self._component_defs[component_name]
        component = pulumi.ComponentResource(resource_type, name, None, options)
        pulumi.log.info(
            f"{keys} not known until the update: its resources are planned then", component
        )
        unknown: pulumi.Output[Any] = pulumi.Output.from_input(UNKNOWN)
        if arguments.secret:
            unknown = pulumi.Output.secret(unknown)
        component.register_outputs({})
        return ConstructResult(component.urn, {k: unknown for k in definition.outputs})


def host(
    components: list[type[pulumi.ComponentResource]],
    name: str,
    version: str,
    schema: Mapping[str, Any] | None = None,
) -> None:
    """Serve `components` as the package `name`, as `component_provider_host` does, with the
    host above. Pulumi runs the plugin with the engine's address as its argument."""
    main(ComponentHost(components, name, version, schema), sys.argv[1:])
