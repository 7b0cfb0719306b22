"""The two stacks together: the upstream's real exports feed the downstream's StackReference;
the shipped stack files, whatever valid config they hold, plan and evaluate cleanly; the
project's config schema."""

from __future__ import annotations

from pathlib import Path

import yaml

from components.inputs.stack_config import KEYS
from components.plan import contract
from components.rules.aws_names import known_regions, region, registry_host
from scripts.plan import plan_repository
from scripts.stack_files import stack_file_config, stack_names
from tests.pulumi_run import (
    DOWNSTREAM_ACCOUNT,
    PROJECT_DIR,
    UPSTREAM_ACCOUNT,
    ProgramRun,
    RecordingMocks,
    fixture_project,
    run_program,
)

RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
UPSTREAM_STACK = "organization/ecr-ptc/upstream"


def _deploy(project_dir: Path = PROJECT_DIR) -> dict[str, ProgramRun]:
    """Run every stack of `project_dir` under mocks as `make up` (or `make fleet-up`, for a
    fleet template's members) would deploy them: in `make plan`'s order (upstreams first), each
    with the account its plan names, each downstream reading the outputs of the upstream stack
    it names. Nothing here knows what the files say, so a user's own accounts, regions, rules
    and fleets keep these tests green."""
    runs: dict[str, ProgramRun] = {}
    for result in plan_repository(project_dir):
        assert result.plan is not None, f"{result.stack}: {result.error}"
        upstream = str(result.values.get("ecr-ptc:upstreamStack", ""))
        outputs = {upstream: runs[upstream.rsplit("/", 1)[-1]].outputs} if upstream else {}
        mocks = RecordingMocks(result.plan.account_id, outputs)
        runs[result.stack] = run_program(dict(result.values), result.stack, mocks)
    return runs


def test_shipped_stack_files_plan_cleanly() -> None:
    results = plan_repository()
    assert results, "no stack files"
    assert [(r.stack, str(r.error)) for r in results if r.error is not None] == []
    assert {r.plan.side for r in results if r.plan is not None} == {"upstream", "downstream"}


def test_shipped_stacks_evaluate_connect_and_declare_their_plan() -> None:
    runs = _deploy()
    results = plan_repository()
    planned = {r.stack: r.plan for r in results}
    planned_values = {r.stack: r.values for r in results}
    for name, run in runs.items():
        plan = planned[name]
        assert plan is not None
        # What `make plan` prints is what `pulumi up` declares.
        declared = sorted((r.typ, r.name) for r in run.mocks.resources if r.typ.startswith("aws:"))
        assert declared == sorted((r.type, r.name) for r in plan.resources), name
        outputs = (
            contract.UPSTREAM_OUTPUTS if plan.side == "upstream" else contract.DOWNSTREAM_OUTPUTS
        )
        assert set(run.outputs) == set(outputs), name
        if plan.side == "downstream":
            config = planned_values[name]
            upstream = runs[str(config["ecr-ptc:upstreamStack"]).rsplit("/", 1)[-1]].outputs
            rules = run.mocks.of_type(RULE)
            assert {r.inputs["upstreamRegistryUrl"] for r in rules} == {
                upstream["upstreamRegistryUrl"]
            }
            regions = config.get("ecr-ptc:regions") or [config["aws:region"]]
            assert {r.inputs["region"] for r in rules} == set(regions)
            assert run.outputs["rules"] == plan.outputs["rules"]


def _edited_copy(tmp_path: Path) -> Path:
    """The example stack files as a new user edits them: other accounts, one more region, one
    more rule."""
    fixture_project(tmp_path)
    up = yaml.safe_load((tmp_path / "Pulumi.upstream.yaml").read_text())
    up["config"]["aws:allowedAccountIds"] = ["210987654321"]
    up["config"]["ecr-ptc:downstreamAccountIds"] = ["123456789012"]
    (tmp_path / "Pulumi.upstream.yaml").write_text(yaml.safe_dump(up))
    down = yaml.safe_load((tmp_path / "Pulumi.downstream.yaml").read_text())
    config = down["config"]
    config["aws:allowedAccountIds"] = ["123456789012"]
    regions = config.get("ecr-ptc:regions") or [config["aws:region"]]
    partition = known_regions()[config["aws:region"]]
    extra = next(
        r for r, p in sorted(known_regions().items()) if p == partition and r not in regions
    )
    config["ecr-ptc:regions"] = [*regions, extra]
    shared = up["config"].get("ecr-ptc:repositoryPrefix")
    config["ecr-ptc:rules"].append(
        {"ecrRepositoryPrefix": "extra-cache-test"}
        | ({"upstreamRepositoryPrefix": shared} if shared else {})
    )
    (tmp_path / "Pulumi.downstream.yaml").write_text(yaml.safe_dump(down))
    return tmp_path


def test_edited_stack_files_plan_and_deploy_with_the_new_values(tmp_path: Path) -> None:
    project = _edited_copy(tmp_path)
    results = {r.stack: r for r in plan_repository(project)}
    assert all(r.error is None for r in results.values()), results
    down = results["downstream"].plan
    assert down is not None and down.account_id == "123456789012"
    config = stack_file_config(project, "downstream")
    rules = down.of_type("aws:ecr/pullThroughCacheRule:PullThroughCacheRule")
    assert (config["ecr-ptc:regions"][-1], "extra-cache-test") in {
        (r.properties["region"], r.properties["ecr_repository_prefix"]) for r in rules
    }
    upstream_region = region(stack_file_config(project, "upstream")["aws:region"])
    assert {r.properties["upstream_registry_url"] for r in rules} == {
        registry_host("210987654321", upstream_region)
    }
    runs = _deploy(project)
    assert runs["downstream"].outputs["roleArn"].startswith("arn:aws:iam::123456789012:role/")


def test_readme_example_pull() -> None:
    """The README's example: golden in eu-west-1 from the upstream's golden namespace."""
    upstream = run_program(
        {
            "aws:region": "us-east-1",
            "ecr-ptc:downstreamAccountIds": [DOWNSTREAM_ACCOUNT],
            "ecr-ptc:repositoryPrefix": "golden",
        },
        "upstream",
        RecordingMocks(UPSTREAM_ACCOUNT),
    )
    downstream = run_program(
        {
            "aws:region": "eu-west-1",
            "ecr-ptc:upstreamStack": UPSTREAM_STACK,
            "ecr-ptc:rules": [
                {"ecrRepositoryPrefix": "golden", "upstreamRepositoryPrefix": "golden"}
            ],
        },
        "downstream",
        RecordingMocks(DOWNSTREAM_ACCOUNT, {UPSTREAM_STACK: upstream.outputs}),
    )
    assert downstream.outputs["rules"] == [
        {
            "ecrRepositoryPrefix": "golden",
            "upstreamRepositoryPrefix": "golden",
            "region": "eu-west-1",
            "upstreamRegistryUrl": "111122223333.dkr.ecr.us-east-1.amazonaws.com",
            "imageUriPrefix": "444455556666.dkr.ecr.eu-west-1.amazonaws.com/golden",
        }
    ]
    facts = contract.UpstreamFacts.from_outputs(UPSTREAM_STACK, upstream.outputs)
    assert facts.to_outputs() == upstream.outputs
    for name in contract.REQUIRED_UPSTREAM_OUTPUTS:
        assert upstream.outputs[name] is not None, name


def test_pulumi_yaml_declares_every_key_the_program_reads() -> None:
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    declared = project["config"]
    typed = {k.full: k for k in KEYS if k.pulumi_type is not None}
    assert set(declared) == set(typed), (
        "Pulumi.yaml config block and components/inputs/stack_config.py KEYS differ"
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
    for stack in stack_names(PROJECT_DIR):
        for key, value in stack_file_config(PROJECT_DIR, stack).items():
            if key in project:
                assert isinstance(value, python_types[project[key]["type"]]), (stack, key)


def test_readme_documents_every_key_and_output() -> None:
    readme = (PROJECT_DIR / "README.md").read_text()
    for key in KEYS:
        assert f"`{key.full}`" in readme, key.full
    for output in (*contract.UPSTREAM_OUTPUTS, *contract.DOWNSTREAM_OUTPUTS):
        assert f"`{output}`" in readme, output
    assert "make up" in readme and "make test" in readme
