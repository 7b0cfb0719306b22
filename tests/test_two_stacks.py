"""The two stacks together: the upstream's real exports feed the downstream's StackReference,
and the shipped stack files evaluate cleanly. Plus the project's config schema."""

from __future__ import annotations

from typing import Any

import yaml

from components import contract
from components.config import KEYS
from tests.pulumi_run import (
    DOWNSTREAM_ACCOUNT,
    PROJECT_DIR,
    UPSTREAM_ACCOUNT,
    RecordingMocks,
    run_program,
    stack_file_config,
)

RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"


def deploy_shipped_stacks() -> tuple[dict[str, Any], dict[str, Any], RecordingMocks]:
    upstream = run_program(
        stack_file_config("upstream"), "upstream", RecordingMocks(UPSTREAM_ACCOUNT)
    )
    downstream_config = stack_file_config("downstream")
    mocks = RecordingMocks(
        DOWNSTREAM_ACCOUNT, {downstream_config["ecr-ptc:upstreamStack"]: upstream.outputs}
    )
    downstream = run_program(downstream_config, "downstream", mocks)
    return upstream.outputs, downstream.outputs, mocks


def test_shipped_stacks_evaluate_and_connect() -> None:
    up, down, mocks = deploy_shipped_stacks()
    assert set(up) == set(contract.UPSTREAM_OUTPUTS)
    assert set(down) == set(contract.DOWNSTREAM_OUTPUTS)
    rules = mocks.of_type(RULE)
    assert {r.inputs["upstreamRegistryUrl"] for r in rules} == {up["upstreamRegistryUrl"]}
    assert {r.inputs["region"] for r in rules} == {"eu-west-1", "eu-central-1"}
    templates = mocks.of_type("aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate")
    assert {(t.inputs["region"], t.inputs["prefix"]) for t in templates} == {
        ("eu-west-1", "golden"),
        ("eu-central-1", "golden"),
    }
    # The README's example pull works with these files.
    assert {
        "ecrRepositoryPrefix": "golden",
        "upstreamRepositoryPrefix": "golden",
        "region": "eu-west-1",
        "upstreamRegistryUrl": "111122223333.dkr.ecr.us-east-1.amazonaws.com",
        "imageUriPrefix": "444455556666.dkr.ecr.eu-west-1.amazonaws.com/golden",
    } in down["rules"]


def test_every_upstream_output_the_downstream_needs_is_exported() -> None:
    up, _, _ = deploy_shipped_stacks()
    for name in contract.REQUIRED_UPSTREAM_OUTPUTS:
        assert up[name] is not None, name
    facts = contract.UpstreamFacts.from_outputs("organization/ecr-ptc/upstream", up)
    assert facts.to_outputs() == up


def test_pulumi_yaml_declares_every_key_the_program_reads() -> None:
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    declared = project["config"]
    typed = {k.full: k for k in KEYS if k.pulumi_type is not None}
    assert set(declared) == set(typed), (
        "Pulumi.yaml config block and components/config.py KEYS differ"
    )
    for name, key in typed.items():
        declaration = declared[name]
        assert declaration["type"] == key.pulumi_type, name
        # Pulumi makes a declared key without a default required in every stack.
        assert declaration["default"] == key.default, name
        assert declaration.get("description"), name
        if key.items is not None:
            assert declaration["items"] == {"type": key.items}, name
    untyped = [k.full for k in KEYS if k.pulumi_type is None]
    text = (PROJECT_DIR / "Pulumi.yaml").read_text()
    for name in untyped:
        assert f"#   {name}" in text, f"{name} must be described in Pulumi.yaml's comment"


def test_shipped_stack_values_match_the_declared_types() -> None:
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())["config"]
    python_types = {"string": str, "boolean": bool, "array": list}
    for stack in ("upstream", "downstream"):
        for key, value in stack_file_config(stack).items():
            if key in project:
                assert isinstance(value, python_types[project[key]["type"]]), (stack, key)


def test_readme_documents_every_key_and_output() -> None:
    readme = (PROJECT_DIR / "README.md").read_text()
    for key in KEYS:
        assert f"`{key.full}`" in readme, key.full
    for output in (*contract.UPSTREAM_OUTPUTS, *contract.DOWNSTREAM_OUTPUTS):
        assert f"`{output}`" in readme, output
    assert "make up" in readme and "make test" in readme
