"""The component package (provider/): its schema, its entry point, and the components as the
package's host calls them, under Pulumi mocks. No Pulumi CLI and no AWS involved."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import runpy
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi.provider.experimental
import pulumi.runtime.settings
import pytest
import yaml

import provider.host
from components.declare import downstream as downstream_module
from components.declare import upstream as upstream_module
from components.declare.downstream import PullThroughCache, PullThroughCacheArgs
from components.declare.upstream import UpstreamRegistryAccess, UpstreamRegistryAccessArgs
from components.inputs.errors import ConfigError
from provider import package
from tests.pulumi_run import (
    DOWNSTREAM_ACCOUNT,
    UPSTREAM_ACCOUNT,
    ProgramFailed,
    RecordingMocks,
    run_like_language_host,
)

ROOT = Path(__file__).resolve().parent.parent
PROVIDER = ROOT / "provider"
UPSTREAM = "ecr-ptc:index:UpstreamRegistryAccess"
CACHE = "ecr-ptc:index:PullThroughCache"
RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
TEMPLATE = "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate"
REGISTRY_POLICY = "aws:ecr/registryPolicy:RegistryPolicy"


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return dict(json.loads((PROVIDER / "schema.json").read_text()))


# --- the schema ---------------------------------------------------------------------------------


def test_schema_json_is_what_the_components_declare() -> None:
    """An API change is deliberate: it shows as a diff of provider/schema.json."""
    assert (PROVIDER / "schema.json").read_text() == package.schema_text(), (
        "provider/schema.json differs from the components' interface: run `make schema` and "
        "commit provider/schema.json (check the change is the one meant: it is the package's API)"
    )


def test_schema_offers_exactly_the_two_components(schema: dict[str, Any]) -> None:
    assert schema["name"] == "ecr-ptc"
    assert sorted(schema["resources"]) == sorted([UPSTREAM, CACHE])
    assert all(r["isComponent"] for r in schema["resources"].values())
    assert schema["dependencies"] == []  # no other package's types in the interface


def test_schema_version_is_the_projects(schema: dict[str, Any]) -> None:
    assert schema["version"] == pyproject()["project"]["version"] == package.version()


def test_required_inputs(schema: dict[str, Any]) -> None:
    resources, types = schema["resources"], schema["types"]
    assert resources[UPSTREAM]["requiredInputs"] == ["region"]
    assert sorted(resources[CACHE]["requiredInputs"]) == ["regions", "rules", "upstream"]
    assert types["ecr-ptc:index:CacheRule"]["required"] == ["ecrRepositoryPrefix"]
    assert sorted(types["ecr-ptc:index:UpstreamRegistry"]["required"]) == [
        "accountId",
        "region",
    ]
    assert "required" not in types["ecr-ptc:index:RepositoryTemplate"]


def test_outputs(schema: dict[str, Any]) -> None:
    resources = schema["resources"]
    assert sorted(resources[UPSTREAM]["properties"]) == [
        "accountId",
        "alertTopicArns",
        "outputs",
        "registryUrl",
        "repositoryArnPattern",
        "upstream",
    ]
    assert sorted(resources[CACHE]["properties"]) == [
        "alertTopicArns",
        "consumerPolicyArn",
        "roleArn",
        "roleName",
        "rules",
    ]


def test_typed_outputs(schema: dict[str, Any]) -> None:
    """`rules` is a list of a declared object type; `upstream` is exactly the cache's input."""
    resources, types = schema["resources"], schema["types"]
    rules = resources[CACHE]["properties"]["rules"]
    assert rules["items"]["$ref"] == "#/types/ecr-ptc:index:RegionalCacheRule"
    assert sorted(types["ecr-ptc:index:RegionalCacheRule"]["required"]) == [
        "ecrRepositoryPrefix",
        "imageUriPrefix",
        "region",
        "upstreamRegistryUrl",
        "upstreamRepositoryPrefix",
    ]
    upstream = resources[UPSTREAM]["properties"]["upstream"]
    assert upstream["$ref"] == resources[CACHE]["inputProperties"]["upstream"]["$ref"]


def test_type_names_take_no_args_suffix(schema: dict[str, Any]) -> None:
    """Generated SDKs add `Args` to input types themselves: CacheRuleArgs, not CacheRuleArgsArgs.
    Nor `Output`, which the Go SDK adds to a type's output wrapper."""
    for token in schema["types"]:
        assert not token.endswith(("Args", "Output")), token


def test_enums(schema: dict[str, Any]) -> None:
    types = schema["types"]
    grant_via = schema["resources"][UPSTREAM]["inputProperties"]["grantVia"]
    assert grant_via["$ref"] == "#/types/ecr-ptc:index:GrantVia"
    assert [e["value"] for e in types["ecr-ptc:index:GrantVia"]["enum"]] == [
        "registry",
        "repository",
    ]
    mutability = types["ecr-ptc:index:RepositoryTemplate"]["properties"]["imageTagMutability"]
    assert mutability["$ref"] == "#/types/ecr-ptc:index:ImageTagMutability"
    assert [e["value"] for e in types["ecr-ptc:index:ImageTagMutability"]["enum"]] == [
        "MUTABLE",
        "IMMUTABLE",
        "MUTABLE_WITH_EXCLUSION",
        "IMMUTABLE_WITH_EXCLUSION",
    ]


def test_namespace(schema: dict[str, Any]) -> None:
    """Generated SDKs are the package's own (@ecrptc/ecr-ptc), not under Pulumi's @pulumi/."""
    assert schema["namespace"] == package.NAMESPACE == "ecrptc"


def test_kms_key_arn_is_a_deprecated_alias_of_kms_key_arns(schema: dict[str, Any]) -> None:
    properties = schema["types"]["ecr-ptc:index:RepositoryTemplate"]["properties"]
    assert "deprecationMessage" not in properties["kmsKeyArns"]
    assert "kmsKeyArns" in properties["kmsKeyArn"]["deprecationMessage"]
    assert properties["kmsKeyArn"]["additionalProperties"] == properties["kmsKeyArns"][
        "additionalProperties"
    ] | {"description": properties["kmsKeyArn"]["description"]}


def test_every_input_says_whether_it_is_required(schema: dict[str, Any]) -> None:
    objects = [
        (token, r["inputProperties"], r.get("requiredInputs", []))
        for token, r in schema["resources"].items()
    ]
    objects += [
        (token, t["properties"], t.get("required", []))
        for token, t in schema["types"].items()
        if "properties" in t and token != "ecr-ptc:index:RegionalCacheRule"
    ]
    for token, properties, required in objects:
        for name, prop in properties.items():
            said = "Required." if name in required else "Optional."
            assert prop["description"].startswith(said), f"{token}.{name}"


def _descriptions(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "description" and isinstance(item, str):
                yield item
            else:
                yield from _descriptions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _descriptions(item)


def test_no_description_keeps_source_indentation(schema: dict[str, Any]) -> None:
    """Python 3.13 dedents docstrings, 3.11 and 3.12 do not: the schema must not show it."""
    for description in _descriptions(schema):
        assert description == inspect.cleandoc(description), description


def test_the_schema_is_the_same_with_docstrings_dedented(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As Python 3.13 compiles the components: every class docstring already dedented."""
    before = package.schema_text()
    for module in (downstream_module, upstream_module):
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__ and value.__doc__:
                monkeypatch.setattr(value, "__doc__", inspect.cleandoc(value.__doc__))
    assert package.schema_text() == before


def input_properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for token, resource in schema["resources"].items():
        for name, prop in resource["inputProperties"].items():
            yield f"{token}.{name}", prop
    for token, typ in schema["types"].items():
        for name, prop in typ.get("properties", {}).items():
            yield f"{token}.{name}", prop


def test_every_input_is_described(schema: dict[str, Any]) -> None:
    undescribed = [name for name, prop in input_properties(schema) if not prop.get("description")]
    assert undescribed == []
    assert all(r.get("description") for r in schema["resources"].values())


def test_inputs_are_camel_case_like_config(schema: dict[str, Any]) -> None:
    for name, _ in input_properties(schema):
        assert "_" not in name.rsplit(".", 1)[1], name


# --- provider/ ----------------------------------------------------------------------------------


def test_main_hosts_the_two_components_at_the_projects_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """...and serves provider/package.py's schema (the one provider/schema.json holds)."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(provider.host, "host", lambda *args, **kwargs: calls.append((args, kwargs)))
    runpy.run_path(str(PROVIDER / "__main__.py"), run_name="__main__")
    [(args, kwargs)] = calls
    served = {**dict(zip(("components", "name", "version", "schema"), args, strict=False))}
    served.update(kwargs)
    assert served["components"] == [UpstreamRegistryAccess, PullThroughCache]
    assert served["name"] == "ecr-ptc"
    assert served["version"] == pyproject()["project"]["version"]
    assert served["schema"] == package.schema()


def test_main_imports_the_components_of_its_own_repository(tmp_path: Path) -> None:
    """Pulumi runs `python provider/ <engine args>`: only provider/ is on sys.path, and the
    components must come from the repository around it, whatever the working directory."""
    script = (
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='imported');"
        "print(sys.modules['components'].__file__)"
    )
    found = subprocess.run(
        [sys.executable, "-c", script, str(PROVIDER)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", "")},
    ).stdout.strip()
    assert Path(found) == ROOT / "components" / "__init__.py"


def test_plugin_runs_with_uv_from_its_own_locked_environment() -> None:
    plugin = yaml.safe_load((PROVIDER / "PulumiPlugin.yaml").read_text())
    assert plugin["runtime"] == {
        "name": "python",
        "options": {"toolchain": "uv", "virtualenv": ".venv"},
    }
    # Pulumi refuses a directory with both a PulumiPlugin.yaml and a Pulumi.yaml.
    assert not (PROVIDER / "Pulumi.yaml").exists()
    assert (PROVIDER / "uv.lock").is_file()


def test_plugin_dependencies_are_the_projects() -> None:
    """The package serves the repository's components: the same runtime dependencies, each
    pinned exactly to the version the repository's lock runs (`make lock` regenerates
    provider/uv.lock with the others), within the library's ranges."""
    from packaging.requirements import Requirement

    own = [
        Requirement(r)
        for r in tomllib.loads((PROVIDER / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    ranges = {Requirement(r).name: Requirement(r) for r in pyproject()["project"]["dependencies"]}
    assert sorted(r.name for r in own) == sorted(ranges)
    project_lock = tomllib.loads((ROOT / "uv.lock").read_text())
    tested = {p["name"]: p.get("version") for p in project_lock["package"]}
    lock = tomllib.loads((PROVIDER / "uv.lock").read_text())
    locked = {p["name"]: p.get("version") for p in lock["package"]}
    for requirement in own:
        [pin] = list(requirement.specifier)
        assert pin.operator == "==", requirement
        assert locked[requirement.name] == pin.version == tested[requirement.name], requirement
        assert ranges[requirement.name].specifier.contains(pin.version), requirement


# --- the components as the package's host calls them ----------------------------------------------


def run_with_mocks(
    declare: Callable[[], None],
    mocks: RecordingMocks,
    *,
    project: str = "consumer",
    config: dict[str, str] | None = None,
    preview: bool = False,
) -> dict[str, Any]:
    """Run `declare` as a Pulumi program's body under mocks, as the language host runs one, and
    return its stack outputs. Raises the program's own error when it fails."""
    try:
        run = run_like_language_host(declare, mocks, project, "dev", config or {}, preview)
    except ProgramFailed as failed:
        raise failed.__cause__ or failed from None
    return dict(run.outputs)


def cache_args(**changes: Any) -> dict[str, Any]:
    """PullThroughCache arguments as the host hands them over: snake_case names (its mapping
    from the schema's camelCase), plain values."""
    return {
        "account_id": DOWNSTREAM_ACCOUNT,
        "regions": ["eu-west-1", "eu-central-1"],
        "rules": [{"ecr_repository_prefix": "central"}],
        "upstream": {
            "account_id": UPSTREAM_ACCOUNT,
            "region": "us-east-1",
            "downstream_account_ids": [DOWNSTREAM_ACCOUNT],
        },
        **changes,
    }


def upstream_args(**changes: Any) -> dict[str, Any]:
    return {"region": "us-east-1", "downstream_account_ids": [DOWNSTREAM_ACCOUNT], **changes}


def cache(args: dict[str, Any], name: str = "cache") -> Callable[[], None]:
    def declare() -> None:
        component = PullThroughCache(name, PullThroughCacheArgs(**args))  # type: ignore[typeddict-item]
        pulumi.export("roleArn", component.role_arn)
        pulumi.export("rules", component.rules)
        pulumi.export("consumerPolicyArn", component.consumer_policy_arn)

    return declare


def upstream(
    args: dict[str, Any], opts: pulumi.ResourceOptions | None = None
) -> Callable[[], None]:
    def declare() -> None:
        component = UpstreamRegistryAccess("registry", UpstreamRegistryAccessArgs(**args), opts)  # type: ignore[typeddict-item]
        pulumi.export("accountId", component.account_id)
        pulumi.export("registryUrl", component.registry_url)

    return declare


def refused(declare: Callable[[], None], account: str = DOWNSTREAM_ACCOUNT) -> ConfigError:
    """The component refuses its arguments before declaring anything: one clean message (a
    RunError, which the host and `pulumi up` print without a traceback), no AWS resource."""
    mocks = RecordingMocks(account)
    with pytest.raises(ConfigError) as raised:
        run_with_mocks(declare, mocks)
    error = raised.value
    assert isinstance(error, pulumi.RunError)
    assert str(error).startswith(f"{error.key}: "), str(error)
    assert not str(error).startswith("config "), str(error)
    assert "Traceback" not in str(error)
    registered = [r.name for r in mocks.resources if r.typ.startswith("aws:")]
    assert registered == [], f"registered before the refusal: {registered}"
    return error


@pytest.mark.parametrize(
    ("args", "argument", "value"),
    [
        (
            cache_args(rules=[{"ecr_repository_prefix": "Central"}]),
            "rules[0].ecrRepositoryPrefix",
            "'Central'",
        ),
        (cache_args(regions=["eu-centrl-1"]), "regions[0]", "'eu-centrl-1'"),
        (
            cache_args(rules=[{"ecr_repository_prefix": f"team-{i}"} for i in range(51)]),
            "rules",
            "51 items",
        ),
        (
            cache_args(upstream={"account_id": "abc", "region": "us-east-1"}),
            "upstream.accountId",
            "'abc'",
        ),
        (
            cache_args(upstream={"account_id": UPSTREAM_ACCOUNT, "region": "moon-1"}),
            "upstream.region",
            "'moon-1'",
        ),
        (cache_args(account_id="4444"), "accountId", "'4444'"),
        (
            cache_args(repository_template={"expire_untagged_after_days": 0}),
            "repositoryTemplate.expireUntaggedAfterDays",
            "0",
        ),
    ],
)
def test_bad_cache_arguments_are_refused_naming_the_argument(
    args: dict[str, Any], argument: str, value: str
) -> None:
    error = refused(cache(args))
    assert error.key == f"PullThroughCache 'cache' argument {argument}"
    assert value in str(error) and " is not valid: " in str(error)


def test_the_refusal_reads_like_the_configs() -> None:
    error = refused(cache(cache_args(rules=[{"ecr_repository_prefix": "Central"}])))
    assert str(error).startswith(
        "PullThroughCache 'cache' argument rules[0].ecrRepositoryPrefix: 'Central' is not valid: "
        "2 to 30 characters of lower-case letters"
    )


def test_a_rule_outside_the_upstreams_share_is_refused() -> None:
    args = cache_args(
        rules=[{"ecr_repository_prefix": "team", "upstream_repository_prefix": "other"}],
        upstream={
            "account_id": UPSTREAM_ACCOUNT,
            "region": "us-east-1",
            "repository_prefix": "golden",
        },
    )
    error = refused(cache(args))
    assert error.key == "PullThroughCache 'cache' argument rules[0].upstreamRepositoryPrefix"


@pytest.mark.parametrize(
    ("args", "argument", "value"),
    [
        (upstream_args(region="eu-centrl-1"), "region", "'eu-centrl-1'"),
        (upstream_args(downstream_account_ids=["abc"]), "downstreamAccountIds[0]", "'abc'"),
        (upstream_args(account_id="abc"), "accountId", "'abc'"),
        (upstream_args(grant_via="everything"), "grantVia", "'everything'"),
    ],
)
def test_bad_upstream_arguments_are_refused_naming_the_argument(
    args: dict[str, Any], argument: str, value: str
) -> None:
    error = refused(upstream(args), account=UPSTREAM_ACCOUNT)
    assert error.key == f"UpstreamRegistryAccess 'registry' argument {argument}"
    assert value in str(error)


def test_arguments_as_known_outputs_and_integral_floats() -> None:
    """What the host hands over: values with dependencies as Outputs, integers as floats."""

    def declare() -> None:  # Outputs belong to the program's event loop
        args = cache_args(
            regions=pulumi.Output.from_input(["eu-west-1"]),
            rules=[{"ecr_repository_prefix": pulumi.Output.from_input("central")}],
            upstream={
                "account_id": pulumi.Output.from_input(UPSTREAM_ACCOUNT),
                "region": "us-east-1",
            },
            repository_template={"expire_untagged_after_days": 7.0, "keep_last_images": 10.0},
        )
        cache(args)()

    mocks = RecordingMocks(DOWNSTREAM_ACCOUNT)
    outputs = run_with_mocks(declare, mocks)
    [rule] = mocks.of_type(RULE)
    assert (
        rule.inputs["upstreamRegistryUrl"] == f"{UPSTREAM_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
    )
    [template] = mocks.of_type(TEMPLATE)
    lifecycle = json.loads(template.inputs["lifecyclePolicy"])
    counts = {r["selection"]["countNumber"] for r in lifecycle["rules"]}
    assert counts == {7, 10} and all(isinstance(c, int) for c in counts)
    assert outputs["rules"][0]["imageUriPrefix"] == (
        f"{DOWNSTREAM_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/central"
    )


def test_an_unknown_structural_argument_is_refused() -> None:
    def declare() -> None:
        loop = asyncio.get_event_loop()
        value: asyncio.Future[Any] = loop.create_future()
        known: asyncio.Future[bool] = loop.create_future()
        value.set_result(None)
        known.set_result(False)
        cache(cache_args(regions=pulumi.Output(set(), value, known)))()

    error = refused(declare)
    assert error.key == "PullThroughCache 'cache' argument arguments"
    assert "known when the component is declared" in str(error)


def test_the_callers_aws_provider_answers_whose_account_it_is() -> None:
    """Through the package the host passes the caller's providers as `providers=`: the
    getCallerIdentity invoke (no accountId given) must go through that provider."""
    mocks = RecordingMocks(UPSTREAM_ACCOUNT)

    def declare() -> None:
        provider = pulumi.ProviderResource("aws", "upstream-account")
        upstream(upstream_args(), pulumi.ResourceOptions(providers={"aws": provider}))()

    outputs = run_with_mocks(declare, mocks)
    [call] = mocks.calls
    assert "upstream-account" in call.provider
    assert outputs["accountId"] == UPSTREAM_ACCOUNT
    assert len(mocks.of_type(REGISTRY_POLICY)) == 1


def test_the_package_and_the_policy_pack_run_on_the_versions_the_tests_run_on() -> None:
    def versions(lock: Path) -> dict[str, str]:
        return {p["name"]: p["version"] for p in tomllib.loads(lock.read_text())["package"]}

    tested = versions(ROOT / "uv.lock")
    for lock in (PROVIDER / "uv.lock", ROOT / "policy" / "uv.lock"):
        other = versions(lock)
        differ = {n: (tested[n], v) for n, v in other.items() if n in tested and tested[n] != v}
        assert differ == {}, f"{lock}: (make test's, this lock's) {differ}; run `make lock`"
