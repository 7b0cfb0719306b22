"""The component package as the engine runs it: `python provider/ <engine address>` (what
pulumi-language-python's RunPlugin starts for a provider plugin with a __main__.py), its port
read from its first line of output, then GetSchema and Construct over gRPC, with inputs encoded
as any language's SDK sends them (camelCase; secrets, output values and unknowns in Pulumi's
wire format), against a fake resource monitor that records what the components register.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from google.protobuf import empty_pb2, struct_pb2  # type: ignore[import-untyped]
from pulumi.output import Unknown
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc
from pulumi.runtime.proto.engine_pb2 import INFO

from provider.package import NAME, schema, version
from tests.fake_monitor import CALLER_IDENTITY, FakeMonitor

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_ACCOUNT = "111122223333"
DOWNSTREAM_ACCOUNT = "444455556666"
STACK_REFERENCE = "urn:pulumi:dev::consumer::pulumi:pulumi:StackReference::upstream"

CACHE = f"{NAME}:index:PullThroughCache"
UPSTREAM = f"{NAME}:index:UpstreamRegistryAccess"
RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
TEMPLATE = "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate"
REGISTRY_POLICY = "aws:ecr/registryPolicy:RegistryPolicy"

# Pulumi's wire format (sdk/go/common/resource/sig): a special key marks secrets and output
# values; a fixed string stands for an unknown value.
SIG = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
OUTPUT_VALUE_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def secret(value: Any) -> dict[str, Any]:
    return {SIG: SECRET_SIG, "value": value}


def output_value(
    value: Any = None,
    *,
    known: bool = True,
    is_secret: bool = False,
    dependencies: tuple[str, ...] = (),
) -> dict[str, Any]:
    """An output as an SDK sends it to a component package (the engine accepts output values)."""
    result: dict[str, Any] = {SIG: OUTPUT_VALUE_SIG}
    if known:
        result["value"] = value
    if is_secret:
        result["secret"] = True
    if dependencies:
        result["dependencies"] = list(dependencies)
    return result


def test_the_wire_format_is_the_sdks() -> None:
    assert (rpc._special_sig_key, rpc._special_secret_sig) == (SIG, SECRET_SIG)
    assert (rpc._special_output_value_sig, rpc.UNKNOWN) == (OUTPUT_VALUE_SIG, UNKNOWN)


# --- the plugin process and the fake engine ---------------------------------------------------


@dataclass
class Plugin:
    stub: provider_pb2_grpc.ResourceProviderStub
    monitor: FakeMonitor


def start(command: list[str], monitor: FakeMonitor, log: Path) -> subprocess.Popen[bytes]:
    """Start a plugin as the language host does: the engine's address its last argument, the
    program's directory (here an unrelated one) its working directory."""
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [*command, monitor.address],
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=log.parent,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )


def announced(process: subprocess.Popen[bytes], log: Path) -> str:
    """The gRPC address the plugin announces on its first line of output."""
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    assert line.isdigit(), f"the plugin did not start: {line!r}\n{log.read_text()}"
    return f"127.0.0.1:{line}"


@contextmanager
def serve(monitor: FakeMonitor, *commands: list[str]) -> Iterator[list[Plugin]]:
    """Every command as a running plugin, started side by side; stopped afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        logs = [Path(tmp) / f"plugin-{i}.log" for i in range(len(commands))]
        started = [start(c, monitor, log) for c, log in zip(commands, logs, strict=True)]
        channels: list[grpc.Channel] = []
        try:
            for process, log in zip(started, logs, strict=True):
                channels.append(grpc.insecure_channel(announced(process, log)))
            yield [Plugin(provider_pb2_grpc.ResourceProviderStub(c), monitor) for c in channels]
        finally:
            for channel in channels:
                channel.close()
            for process in started:
                process.terminate()
                process.wait(timeout=10)
                if process.stdout is not None:
                    process.stdout.close()


# The SDK's own host, for showing what goes wrong without provider/host.py.
SDK_HOST = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from pulumi.provider.experimental import component_provider_host
from provider.package import COMPONENTS, NAME, version
component_provider_host(COMPONENTS, NAME, version=version())
"""


@pytest.fixture(scope="module")
def plugins() -> Iterator[tuple[Plugin, Plugin]]:
    package = [sys.executable, str(ROOT / "provider")]
    sdk_host = [sys.executable, "-c", SDK_HOST]
    with FakeMonitor(DOWNSTREAM_ACCOUNT) as monitor, serve(monitor, package, sdk_host) as started:
        yield started[0], started[1]


@pytest.fixture
def package(plugins: tuple[Plugin, Plugin]) -> Plugin:
    return plugins[0]


@pytest.fixture
def sdk_host(plugins: tuple[Plugin, Plugin]) -> Plugin:
    return plugins[1]


# --- Construct as the engine sends it ---------------------------------------------------------


def struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(dict(values))
    return result


@dataclass
class Constructed:
    urn: str
    state: dict[str, Any]
    """The component's outputs, secrets unwrapped, unknowns as Unknown."""
    secrets: set[str]
    """The outputs sent as secrets."""
    dependencies: dict[str, set[str]]
    """The resources each output depends on (the response's stateDependencies)."""


def construct(
    plugin: Plugin,
    typ: str,
    inputs: Mapping[str, Any],
    *,
    name: str = "cache",
    preview: bool = False,
    input_dependencies: Mapping[str, list[str]] | None = None,
    account_id: str = DOWNSTREAM_ACCOUNT,
) -> Constructed:
    monitor = plugin.monitor
    monitor.reset(preview=preview)
    monitor.account_id = account_id
    request = provider_pb2.ConstructRequest(
        project=monitor.project,
        stack=monitor.stack,
        organization="organization",
        dryRun=preview,
        parallel=16,
        monitorEndpoint=monitor.address,
        type=typ,
        name=name,
        parent=monitor.stack_urn,
        inputs=struct(inputs),
        inputDependencies={
            key: provider_pb2.ConstructRequest.PropertyDependencies(urns=urns)
            for key, urns in (input_dependencies or {}).items()
        },
    )
    response = plugin.stub.Construct(request, timeout=60)
    state = dict(rpc.deserialize_properties(response.state, keep_unknowns=True))
    return Constructed(
        urn=response.urn,
        state={k: rpc.unwrap_rpc_secret(v) for k, v in state.items()},
        secrets={k for k, v in state.items() if rpc.is_rpc_secret(v)},
        dependencies={k: set(v.urns) for k, v in response.stateDependencies.items()},
    )


def refused(plugin: Plugin, typ: str, inputs: Mapping[str, Any], **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        construct(plugin, typ, inputs, **kwargs)
    return raised.value


UPSTREAM_OBJECT = {
    "accountId": UPSTREAM_ACCOUNT,
    "region": "us-east-1",
    "downstreamAccountIds": [DOWNSTREAM_ACCOUNT],
}
TEMPLATE_OBJECT = {"imageTagMutability": "IMMUTABLE", "expireUntaggedAfterDays": 14}


def cache_inputs(**changes: Any) -> dict[str, Any]:
    """PullThroughCache inputs as a TypeScript or YAML program sends them."""
    return {
        "accountId": DOWNSTREAM_ACCOUNT,
        "regions": ["eu-west-1", "eu-central-1"],
        "rules": [{"ecrRepositoryPrefix": "central"}],
        "upstream": UPSTREAM_OBJECT,
        **changes,
    }


@cache
def cache_outputs() -> set[str]:
    """PullThroughCache's outputs, as the schema declares them."""
    return set(schema()["resources"][CACHE]["properties"])


def lifecycle_counts(template: Any) -> set[Any]:
    policy = json.loads(template.inputs["lifecyclePolicy"])
    return {r["selection"]["countNumber"] for r in policy["rules"]}


def assert_rules_reach_the_upstream(monitor: FakeMonitor) -> None:
    rules = monitor.of_type(RULE)
    assert {r.inputs["region"] for r in rules} == {"eu-west-1", "eu-central-1"}
    for rule in rules:
        assert rule.inputs["upstreamRegistryUrl"] == (
            f"{UPSTREAM_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
        )


def assert_immutable_templates_with_their_lifecycle(monitor: FakeMonitor) -> None:
    templates = monitor.of_type(TEMPLATE)
    assert {t.inputs["region"] for t in templates} == {"eu-west-1", "eu-central-1"}
    for template in templates:
        assert template.inputs["imageTagMutability"] == "IMMUTABLE"
        assert lifecycle_counts(template) == {14}


# --- the package's schema and version ---------------------------------------------------------


def test_the_plugin_serves_the_packages_schema_and_version(package: Plugin) -> None:
    served = package.stub.GetSchema(provider_pb2.GetSchemaRequest(version=0), timeout=30)
    assert json.loads(served.schema) == schema()
    info = package.stub.GetPluginInfo(empty_pb2.Empty())
    assert info.version == version()


# --- (a) plain camelCase inputs ---------------------------------------------------------------


def test_plain_camel_case_inputs_construct_the_upstream_component(package: Plugin) -> None:
    """No accountId: the component asks the caller's AWS credentials whose account it is."""
    built = construct(
        package,
        UPSTREAM,
        {"region": "us-east-1", "downstreamAccountIds": [DOWNSTREAM_ACCOUNT]},
        name="registry",
        account_id=UPSTREAM_ACCOUNT,
    )
    monitor = package.monitor
    assert [i.token for i in monitor.invokes] == [CALLER_IDENTITY]
    [policy] = monitor.of_type(REGISTRY_POLICY)
    statement = json.loads(policy.inputs["policy"])["Statement"]
    assert f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:root" in json.dumps(statement)
    assert built.state["accountId"] == UPSTREAM_ACCOUNT
    assert built.state["registryUrl"] == f"{UPSTREAM_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
    assert monitor.by_urn(built.urn).typ == UPSTREAM
    assert built.secrets == set()


def test_plain_camel_case_inputs_construct_the_cache(package: Plugin) -> None:
    built = construct(package, CACHE, cache_inputs(repositoryTemplate=TEMPLATE_OBJECT))
    monitor = package.monitor
    assert_rules_reach_the_upstream(monitor)
    assert_immutable_templates_with_their_lifecycle(monitor)
    assert monitor.invokes == []
    assert built.state["roleArn"].startswith("arn:aws:fake::")
    assert {r["imageUriPrefix"] for r in built.state["rules"]} == {
        f"{DOWNSTREAM_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/central"
        for region in ("eu-west-1", "eu-central-1")
    }
    assert built.secrets == set()
    component = monitor.by_urn(built.urn)
    assert component.typ == CACHE and component.parent == monitor.stack_urn


def test_camel_case_alerts_reach_the_alert_resources(package: Plugin) -> None:
    """`alerts` as any language sends it: nested objects, the protocol as the enum's string."""
    subscription = {"protocol": "email", "endpoint": "platform-alerts@example.com"}
    built = construct(
        package, CACHE, cache_inputs(alerts={"topic": {"subscriptions": [subscription]}})
    )
    monitor = package.monitor
    subscriptions = monitor.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert sorted(r.inputs["region"] for r in subscriptions) == ["eu-central-1", "eu-west-1"]
    assert {r.inputs["protocol"] for r in subscriptions} == {"email"}
    assert set(built.state["alertTopicArns"]) == {"eu-west-1", "eu-central-1"}
    bus = "arn:aws:events:us-east-1:999988887777:event-bus/central"
    built = construct(package, UPSTREAM, {"region": "us-east-1", "accountId": UPSTREAM_ACCOUNT,
                                          "downstreamAccountIds": [DOWNSTREAM_ACCOUNT],
                                          "alerts": {"eventBusArn": bus}}, name="registry")  # fmt: skip
    [target] = [
        r
        for r in monitor.of_type("aws:cloudwatch/eventTarget:EventTarget")
        if r.inputs["arn"] == bus
    ]
    assert target.inputs["region"] == "us-east-1" and target.inputs["roleArn"]
    assert built.state["alertTopicArns"] == {}


def test_the_rules_output_depends_on_every_rule(package: Plugin) -> None:
    """A program that pulls from `imageUriPrefix` waits for the rule behind it: the engine is
    told that `rules` depends on every rule resource (and the role output on the role)."""
    built = construct(package, CACHE, cache_inputs())
    monitor = package.monitor
    rules = {r.urn for r in monitor.of_type(RULE)}
    assert len(rules) == 2
    assert rules <= built.dependencies["rules"], built.dependencies.get("rules")
    roles = {r.urn for r in monitor.of_type("aws:iam/role:Role")}
    assert roles and roles <= built.dependencies["roleArn"]


# --- (b) a whole upstream as one value --------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "input_dependencies"),
    [
        (output_value(UPSTREAM_OBJECT, dependencies=(STACK_REFERENCE,)), None),
        (output_value(UPSTREAM_OBJECT), None),
        # Without output values an SDK sends the object with its dependencies beside it.
        (UPSTREAM_OBJECT, {"upstream": [STACK_REFERENCE]}),
        # A secret field makes the whole object arrive as one secret.
        ({**UPSTREAM_OBJECT, "accountId": secret(UPSTREAM_ACCOUNT)}, None),
    ],
    ids=["output-with-dependency", "output", "plain-with-dependency", "secret-field"],
)
def test_a_whole_upstream_output_reaches_the_rules(
    package: Plugin, upstream: dict[str, Any], input_dependencies: dict[str, list[str]] | None
) -> None:
    construct(
        package, CACHE, cache_inputs(upstream=upstream), input_dependencies=input_dependencies
    )
    monitor = package.monitor
    assert_rules_reach_the_upstream(monitor)
    depends = STACK_REFERENCE in json.dumps([upstream, input_dependencies])
    for rule in monitor.of_type(RULE):
        assert (STACK_REFERENCE in rule.dependencies) == depends


def test_without_the_host_a_whole_upstream_output_is_refused_as_missing(sdk_host: Plugin) -> None:
    """What the SDK's host does with the same request: the object becomes {}."""
    error = refused(sdk_host, CACHE, cache_inputs(upstream=output_value(UPSTREAM_OBJECT)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "upstream.accountId" in str(error.trailing_metadata())
    assert sdk_host.monitor.of_type(RULE) == []


# --- (c) a whole repositoryTemplate as one value ----------------------------------------------


def test_a_whole_template_output_makes_immutable_templates_with_their_lifecycle(
    package: Plugin,
) -> None:
    construct(
        package,
        CACHE,
        cache_inputs(
            repositoryTemplate=output_value(TEMPLATE_OBJECT, dependencies=(STACK_REFERENCE,))
        ),
    )
    assert_immutable_templates_with_their_lifecycle(package.monitor)
    for template in package.monitor.of_type(TEMPLATE):
        assert STACK_REFERENCE in template.dependencies
        assert template.secrets == set()


def test_without_the_host_a_whole_template_output_is_dropped(sdk_host: Plugin) -> None:
    construct(sdk_host, CACHE, cache_inputs(repositoryTemplate=output_value(TEMPLATE_OBJECT)))
    templates = sdk_host.monitor.of_type(TEMPLATE)
    assert sdk_host.monitor.of_type(RULE)  # the component was built ...
    for template in templates:  # ... without the template's settings
        assert template.inputs.get("imageTagMutability") != "IMMUTABLE"
        assert "lifecyclePolicy" not in template.inputs


# --- (d) a secret template --------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [secret(TEMPLATE_OBJECT), output_value(TEMPLATE_OBJECT, is_secret=True)],
    ids=["secret", "secret-output"],
)
def test_a_secret_template_reaches_the_resources_and_keeps_them_secret(
    package: Plugin, template: dict[str, Any]
) -> None:
    built = construct(package, CACHE, cache_inputs(repositoryTemplate=template))
    monitor = package.monitor
    assert_immutable_templates_with_their_lifecycle(monitor)
    for resource in monitor.of_type(TEMPLATE):
        assert {"imageTagMutability", "lifecyclePolicy"} <= resource.secrets
    # Every output of the component is secret; the values are still there.
    assert built.secrets == set(built.state) == cache_outputs()
    assert built.state["roleArn"].startswith("arn:aws:fake::")


# --- (e) an unknown object in a preview -------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [UNKNOWN, output_value(known=False, dependencies=(STACK_REFERENCE,))],
    ids=["unknown", "unknown-output"],
)
def test_an_unknown_template_in_a_preview_defers_the_resources(
    package: Plugin, template: Any
) -> None:
    built = construct(package, CACHE, cache_inputs(repositoryTemplate=template), preview=True)
    monitor = package.monitor
    # Not a cache without a template (or with an empty, MUTABLE one): the component alone.
    assert [r.typ for r in monitor.resources] == [CACHE]
    assert monitor.of_type(TEMPLATE) == []
    assert set(built.state) == cache_outputs()
    assert all(isinstance(v, Unknown) for v in built.state.values())
    [(_, urn, message)] = [log for log in monitor.logs if log[0] == INFO]
    assert urn == built.urn and "repositoryTemplate" in message
    depends = STACK_REFERENCE in json.dumps(template)
    assert (STACK_REFERENCE in monitor.by_urn(built.urn).dependencies) == depends


def test_an_unknown_upstream_in_a_preview_defers_the_resources(package: Plugin) -> None:
    built = construct(package, CACHE, cache_inputs(upstream=UNKNOWN), preview=True)
    assert [r.typ for r in package.monitor.resources] == [CACHE]
    assert all(isinstance(v, Unknown) for v in built.state.values())


def test_a_known_template_in_a_preview_is_planned(package: Plugin) -> None:
    construct(
        package, CACHE, cache_inputs(repositoryTemplate=output_value(TEMPLATE_OBJECT)), preview=True
    )
    assert_immutable_templates_with_their_lifecycle(package.monitor)


def test_an_unknown_outside_a_preview_is_refused_naming_it(package: Plugin) -> None:
    error = refused(package, CACHE, cache_inputs(repositoryTemplate=UNKNOWN))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(error.details()).startswith(
        "PullThroughCache 'cache' argument repositoryTemplate: an unknown value is not valid: "
    )
    assert package.monitor.resources == []


# --- (f) a refused argument -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "argument", "value"),
    [
        (
            cache_inputs(upstream={**UPSTREAM_OBJECT, "accountId": "abc"}),
            "upstream.accountId",
            "'abc'",
        ),
        (
            cache_inputs(upstream=output_value({**UPSTREAM_OBJECT, "accountId": "abc"})),
            "upstream.accountId",
            "'abc'",
        ),
        (
            cache_inputs(repositoryTemplate={"expireUntaggedAfterDays": 0}),
            "repositoryTemplate.expireUntaggedAfterDays",
            "0",
        ),
    ],
    ids=["plain", "output", "template"],
)
def test_a_refused_argument_is_one_clear_error_naming_it(
    package: Plugin, inputs: dict[str, Any], argument: str, value: str
) -> None:
    error = refused(package, CACHE, inputs)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    message = str(error.details())
    assert message.startswith(
        f"PullThroughCache 'cache' argument {argument}: {value} is not valid: "
    )
    assert "Traceback" not in message and 'File "' not in message
    assert [r.typ for r in package.monitor.resources if r.typ.startswith("aws:")] == []
