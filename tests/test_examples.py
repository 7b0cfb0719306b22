"""The example programs of examples/: the Python one runs under Pulumi mocks; the TypeScript,
YAML and Go ones (which need the Pulumi CLI) use exactly the names of provider/schema.json."""

from __future__ import annotations

import importlib.util
import json
import re
import runpy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.runtime.mocks import MockResourceArgs

from tests.pulumi_run import DOWNSTREAM_ACCOUNT, UPSTREAM_ACCOUNT, RecordingMocks
from tests.test_package import run_with_mocks

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCHEMA: dict[str, Any] = json.loads((ROOT / "provider" / "schema.json").read_text())
UPSTREAM = "ecr-ptc:index:UpstreamRegistryAccess"
CACHE = "ecr-ptc:index:PullThroughCache"
ROLE = "aws:iam/role:Role"
RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
REGISTRY_POLICY = "aws:ecr/registryPolicy:RegistryPolicy"
UPSTREAM_URL = f"{UPSTREAM_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"


class TwoAccounts(RecordingMocks):
    """Each AWS provider of the example is another account: answers (caller identity, ARNs)
    in the account of the provider a request goes through."""

    def __init__(self) -> None:
        super().__init__(UPSTREAM_ACCOUNT)

    def _account(self, provider: str | None) -> str:
        return DOWNSTREAM_ACCOUNT if "downstream" in (provider or "") else UPSTREAM_ACCOUNT

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.account_id = self._account(args.provider)
        return super().new_resource(args)

    def call(self, args: Any) -> dict[str, Any]:  # type: ignore[override]
        # As RecordingMocks.call: the SDK accepts a bare dict.
        self.account_id = self._account(args.provider)
        return super().call(args)


def as_installed() -> None:
    """`ecr_ptc` as the wheel installs it: this repository's components/ folder under the
    package name the wheel gives it (its imports are relative: the same code either way)."""
    if "ecr_ptc" in sys.modules:
        return
    folder = Path(__file__).resolve().parent.parent / "components"
    spec = importlib.util.spec_from_file_location(
        "ecr_ptc", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ecr_ptc"] = module
    spec.loader.exec_module(module)


@pytest.fixture(scope="module")
def python_example() -> tuple[TwoAccounts, dict[str, Any]]:
    as_installed()
    project = yaml.safe_load((EXAMPLES / "python" / "Pulumi.yaml").read_text())["name"]
    mocks = TwoAccounts()

    def program() -> None:
        runpy.run_path(str(EXAMPLES / "python" / "__main__.py"), run_name="__main__")

    outputs = run_with_mocks(
        program,
        mocks,
        project=project,
        config={f"{project}:downstreamAccountId": DOWNSTREAM_ACCOUNT},
    )
    return mocks, outputs


def test_python_example_declares_both_components(
    python_example: tuple[TwoAccounts, dict[str, Any]],
) -> None:
    mocks, _ = python_example
    assert [r.name for r in mocks.of_type(UPSTREAM)] == ["upstream"]
    assert [r.name for r in mocks.of_type(CACHE)] == ["cache"]


def test_python_example_grants_the_downstream_account_golden(
    python_example: tuple[TwoAccounts, dict[str, Any]],
) -> None:
    mocks, _ = python_example
    policy = mocks.one(REGISTRY_POLICY)
    assert "upstream" in (policy.provider or "")
    document = json.loads(policy.inputs["policy"])
    text = json.dumps(document)
    assert f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:root" in text
    assert f"arn:aws:ecr:us-east-1:{UPSTREAM_ACCOUNT}:repository/golden/*" in text


def test_python_example_cache_role_and_rules_per_region(
    python_example: tuple[TwoAccounts, dict[str, Any]],
) -> None:
    mocks, _ = python_example
    cache_roles = [
        r
        for r in mocks.of_type(ROLE)
        if "pullthroughcache.ecr.amazonaws.com" in r.inputs["assumeRolePolicy"]
    ]
    assert len(cache_roles) == 1 and "downstream" in (cache_roles[0].provider or "")
    rules = mocks.of_type(RULE)
    assert sorted((r.inputs["region"], r.inputs["ecrRepositoryPrefix"]) for r in rules) == [
        ("eu-central-1", "golden"),
        ("eu-west-1", "golden"),
    ]
    assert {r.inputs["upstreamRegistryUrl"] for r in rules} == {UPSTREAM_URL}
    assert all("downstream" in (r.provider or "") for r in rules)
    # The upstream's account came from its provider (no accountId given): one invoke, upstream's.
    [call] = mocks.calls
    assert "upstream" in call.provider


def test_python_example_outputs(python_example: tuple[TwoAccounts, dict[str, Any]]) -> None:
    _, outputs = python_example
    assert outputs["upstreamRegistryUrl"] == UPSTREAM_URL
    assert outputs["cacheRoleArn"].startswith(f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:role/")
    assert outputs["consumerPolicyArn"].startswith(f"arn:aws:iam::{DOWNSTREAM_ACCOUNT}:policy/")
    assert sorted(outputs["imageUriPrefixes"]) == [
        f"{DOWNSTREAM_ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com/golden",
        f"{DOWNSTREAM_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/golden",
    ]


# --- the examples that need the CLI: the schema's names, nothing else -----------------------------


def _type_properties(prop: dict[str, Any]) -> dict[str, Any] | None:
    """The properties of the object type `prop` refers to (directly or as list items)."""
    ref = prop.get("$ref") or prop.get("items", {}).get("$ref")
    if ref and ref.startswith("#/types/"):
        return dict(SCHEMA["types"][ref.removeprefix("#/types/")]["properties"])
    return None


def unknown_names(properties: dict[str, Any], inputs: dict[str, Any], where: str) -> list[str]:
    """Names in `properties` (as a program writes them) that the schema's `inputs` lack."""
    unknown: list[str] = []
    for name, value in properties.items():
        if name not in inputs:
            unknown.append(f"{where}.{name}")
            continue
        nested = _type_properties(inputs[name])
        values = value if isinstance(value, list) else [value]
        if nested is not None:
            for i, item in enumerate(values):
                if isinstance(item, dict):
                    unknown += unknown_names(item, nested, f"{where}.{name}[{i}]")
    return unknown


def test_yaml_example_uses_the_schemas_names() -> None:
    program = yaml.safe_load((EXAMPLES / "yaml" / "Pulumi.yaml").read_text())
    assert set(program["packages"]) == {"ecr-ptc"}
    # A release tag stands in for the version (README "Releases and pinning"): the example names
    # no version, so a release bumps pyproject.toml alone (tests/test_release.py).
    assert program["packages"]["ecr-ptc"] == "github.com/<owner>/ecr-ptc/provider@vX.Y.Z"
    used = {r["type"] for r in program["resources"].values()}
    assert {UPSTREAM, CACHE} <= used
    unknown: list[str] = []
    for name, resource in program["resources"].items():
        if resource["type"] in SCHEMA["resources"]:
            inputs = SCHEMA["resources"][resource["type"]]["inputProperties"]
            unknown += unknown_names(resource.get("properties") or {}, inputs, name)
            required = SCHEMA["resources"][resource["type"]]["requiredInputs"]
            assert set(required) <= set(resource["properties"]), name
    assert unknown == []
    # Outputs read only the components' declared outputs.
    for expression in program["outputs"].values():
        for resource, attribute in re.findall(r"\$\{(\w+)\.(\w+)\}", expression):
            token = program["resources"][resource]["type"]
            assert attribute in SCHEMA["resources"][token]["properties"], expression


def _ts_object(source: str, start: int) -> str:
    """The `{...}` literal that starts at or after `start`."""
    begin = source.index("{", start)
    depth = 0
    for i in range(begin, len(source)):
        depth += {"{": 1, "}": -1}.get(source[i], 0)
        if depth == 0:
            return source[begin : i + 1]
    raise AssertionError("unbalanced braces")


def _map_inputs() -> set[str]:
    """The inputs whose value is a map of names the caller chooses (tags, resourceTags)."""
    objects = [r["inputProperties"] for r in SCHEMA["resources"].values()]
    objects += [t.get("properties", {}) for t in SCHEMA["types"].values()]
    return {
        name
        for properties in objects
        for name, prop in properties.items()
        if prop.get("type") == "object" and "additionalProperties" in prop
    }


def test_typescript_example_uses_the_schemas_names() -> None:
    source = (EXAMPLES / "typescript" / "index.ts").read_text()
    all_inputs: set[str] = set()
    for resource in SCHEMA["resources"].values():
        all_inputs |= set(resource["inputProperties"])
    for typ in SCHEMA["types"].values():
        all_inputs |= set(typ.get("properties", {}))
    seen: set[str] = set()
    for component in ("UpstreamRegistryAccess", "PullThroughCache"):
        match = re.search(rf"new ecrPtc\.{component}\(\s*\"[\w-]+\",", source)
        assert match, component
        literal = _ts_object(source, match.end())
        # A map's keys (tags) are data, not names of the schema.
        for name in _map_inputs():
            literal = re.sub(rf"\b{name}\s*:\s*\{{[^{{}}]*\}}", f"{name}: MAP", literal)
        names = set(re.findall(r"(\w+)\s*:", literal))
        assert names <= all_inputs, names - all_inputs
        token = f"ecr-ptc:index:{component}"
        top = set(SCHEMA["resources"][token]["inputProperties"])
        assert set(SCHEMA["resources"][token]["requiredInputs"]) <= names & top
        seen.add(component)
    for variable, token in (("upstream", UPSTREAM), ("cache", CACHE)):
        for attribute in re.findall(rf"\b{variable}\.(\w+)\b", source):
            assert attribute in SCHEMA["resources"][token]["properties"], f"{variable}.{attribute}"
    assert seen == {"UpstreamRegistryAccess", "PullThroughCache"}


def test_example_projects_are_their_own() -> None:
    """Each example is a project of its own, beside (not inside) the repository's project."""
    root_project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]
    names = set()
    for example in ("python", "typescript", "yaml", "go"):
        project = yaml.safe_load((EXAMPLES / example / "Pulumi.yaml").read_text())
        assert project["name"] != root_project
        names.add(project["name"])
        assert (EXAMPLES / example / "README.md").is_file()
    assert len(names) == 4
    runtime = yaml.safe_load((EXAMPLES / "typescript" / "Pulumi.yaml").read_text())["runtime"]
    assert runtime["name"] == "nodejs"


def test_python_example_hands_the_upstream_over_typed(
    python_example: tuple[TwoAccounts, dict[str, Any]],
) -> None:
    """`access.upstream` goes into PullThroughCache as it is, and the cache's roles and policy
    carry the example's tags."""
    mocks, outputs = python_example
    source = (EXAMPLES / "python" / "__main__.py").read_text()
    assert '"upstream": access.upstream,' in source
    assert outputs["cacheRoleName"] and outputs["cacheRoleArn"].endswith(outputs["cacheRoleName"])
    tagged = [r for r in mocks.resources if r.inputs.get("tags")]
    assert tagged and all(r.inputs["tags"] == {"team": "platform"} for r in tagged)
    assert {r.typ for r in tagged} == {ROLE, "aws:iam/policy:Policy"}


def test_the_upstream_output_is_the_caches_upstream_input() -> None:
    """One type on both sides, so every language hands one component's output to the other."""
    access = SCHEMA["resources"][UPSTREAM]["properties"]["upstream"]
    cache = SCHEMA["resources"][CACHE]["inputProperties"]["upstream"]
    assert access["$ref"] == cache["$ref"] == "#/types/ecr-ptc:index:UpstreamRegistry"
    yaml_program = yaml.safe_load((EXAMPLES / "yaml" / "Pulumi.yaml").read_text())
    assert yaml_program["resources"]["cache"]["properties"]["upstream"] == "${upstream.upstream}"
    source = (EXAMPLES / "typescript" / "index.ts").read_text()
    assert "upstream: upstream.upstream," in source


def _pascal(name: str) -> str:
    """A schema name as the Go SDK spells it: accountId -> AccountId."""
    return name[0].upper() + name[1:]


def test_go_example_uses_the_schemas_names() -> None:
    """Every identifier main.go takes from the generated Go SDK is one the schema gives it."""
    source = (EXAMPLES / "go" / "main.go").read_text()
    components = {token.rsplit(":", 1)[1] for token in SCHEMA["resources"]}
    sdk = {f"New{c}" for c in components} | {f"{c}Args" for c in components}
    for token in SCHEMA["types"]:
        name = token.rsplit(":", 1)[1]
        sdk |= {name, f"{name}Args", f"{name}Array", f"{name}Output", f"{name}ArrayOutput"}
    used = set(re.findall(r"\becrptc\.(\w+)", source))
    assert {"NewUpstreamRegistryAccess", "NewPullThroughCache"} <= used
    assert used <= sdk, used - sdk
    fields: set[str] = set()
    for resource in SCHEMA["resources"].values():
        fields |= {_pascal(n) for n in resource["inputProperties"]}
    for typ in SCHEMA["types"].values():
        fields |= {_pascal(n) for n in typ.get("properties", {})}
    for match in re.finditer(r"ecrptc\.(\w+)Args\{", source):
        literal = _ts_object(source, match.end() - 1)
        # A map's keys (tags) are data, not names of the schema.
        literal = re.sub(r"pulumi\.StringMap\{[^{}]*\}", "MAP", literal)
        names = set(re.findall(r"^\s*(\w+):", literal, re.MULTILINE))
        assert names <= fields, names - fields
        token = f"ecr-ptc:index:{match.group(1)}"
        if token in SCHEMA["resources"]:
            required = SCHEMA["resources"][token]["requiredInputs"]
            assert {_pascal(n) for n in required} <= names, token
    for variable, token in (("access", UPSTREAM), ("cache", CACHE)):
        outputs = {_pascal(n) for n in SCHEMA["resources"][token]["properties"]}
        for attribute in re.findall(rf"\b{variable}\.(\w+)", source):
            assert attribute in outputs, f"{variable}.{attribute}"
    rule = {_pascal(n) for n in SCHEMA["types"]["ecr-ptc:index:RegionalCacheRule"]["properties"]}
    assert set(re.findall(r"\br\.(\w+)", source)) <= rule
    assert "Upstream: access.Upstream," in source
