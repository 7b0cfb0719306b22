"""`make verify`: one line per rule from ECR's own validation, non-zero on any failure.
ECR is stubbed with botocore's Stubber: real request validation, no network."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from scripts.deploy import PreflightError
from scripts.verify import main, read_rules, verify

RULES = [
    {
        "ecrRepositoryPrefix": "golden",
        "region": "eu-west-1",
        "upstreamRegistryUrl": "111122223333.dkr.ecr.us-east-1.amazonaws.com",
    },
    {
        "ecrRepositoryPrefix": "golden",
        "region": "eu-central-1",
        "upstreamRegistryUrl": "111122223333.dkr.ecr.us-east-1.amazonaws.com",
    },
]


def stubbed_clients(answers: dict[str, dict[str, Any] | str]) -> tuple[Any, list[Stubber]]:
    stubbers: list[Stubber] = []
    clients: dict[str, Any] = {}
    for region, answer in answers.items():
        client = boto3.client(
            "ecr", region_name=region, aws_access_key_id="test", aws_secret_access_key="test"
        )
        stubber = Stubber(client)
        expected = {"ecrRepositoryPrefix": "golden"}
        if isinstance(answer, str):
            stubber.add_client_error(
                "validate_pull_through_cache_rule",
                service_error_code=answer,
                service_message="no rule golden",
                expected_params=expected,
            )
        else:
            stubber.add_response("validate_pull_through_cache_rule", answer, expected)
        stubber.activate()
        stubbers.append(stubber)
        clients[region] = client
    return clients.__getitem__, stubbers


def valid(region: str) -> dict[str, Any]:
    return {
        "ecrRepositoryPrefix": "golden",
        "registryId": "444455556666",
        "upstreamRegistryUrl": "111122223333.dkr.ecr.us-east-1.amazonaws.com",
        "isValid": True,
        "failure": "",
    }


def test_every_rule_valid() -> None:
    client_for, stubbers = stubbed_clients(
        {"eu-west-1": valid("eu-west-1"), "eu-central-1": valid("eu-central-1")}
    )
    checks = verify(RULES, client_for)
    assert [c.valid for c in checks] == [True, True]
    assert "pulls from 111122223333.dkr.ecr.us-east-1.amazonaws.com" in checks[0].line()
    for s in stubbers:
        s.assert_no_pending_responses()


def test_failure_reported_as_aws_gives_it() -> None:
    failure = "Unable to assume role arn:aws:iam::444455556666:role/x"
    invalid = valid("eu-central-1") | {"isValid": False, "failure": failure}
    client_for, _ = stubbed_clients({"eu-west-1": valid("eu-west-1"), "eu-central-1": invalid})
    checks = verify(RULES, client_for)
    assert [c.valid for c in checks] == [True, False]
    assert failure in checks[1].line() and "eu-central-1" in checks[1].line()


def test_missing_rule_is_a_failure_not_a_crash() -> None:
    client_for, _ = stubbed_clients(
        {
            "eu-west-1": "PullThroughCacheRuleNotFoundException",
            "eu-central-1": valid("eu-central-1"),
        }
    )
    checks = verify(RULES, client_for)
    assert not checks[0].valid and "PullThroughCacheRuleNotFoundException" in checks[0].detail


def test_rules_are_read_from_the_stack_output() -> None:
    calls: list[list[str]] = []

    def run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, stdout=json.dumps(RULES), stderr="")

    assert read_rules("downstream-eu", "/bin/pulumi", {}, run) == RULES
    assert calls == [
        ["/bin/pulumi", "stack", "output", "rules", "--json", "--stack", "downstream-eu"]
    ]


def test_undeployed_stack_says_so() -> None:
    def run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(
            args, 255, stdout="", stderr="error: no stack named 'downstream' found"
        )

    with pytest.raises(PreflightError, match=r"no stack named 'downstream'.*make up"):
        read_rules("downstream", "/bin/pulumi", {}, run)


def test_missing_cli_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    # Looked up on the PATH of the environment given: the same answer on a machine with the CLI.
    assert main([], env={"PATH": "/nonexistent"}) == 2
    assert "Pulumi CLI" in capsys.readouterr().err


def test_a_downstream_profile_that_does_not_exist_is_could_not_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, stdout=json.dumps(RULES), stderr="")

    env = {"DOWNSTREAM_AWS_PROFILE": "does-not-exist", "PULUMI_BACKEND_URL": "https://x"}
    assert main([], env=env, which=lambda _: "/bin/pulumi", run=run) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(
        "make verify: the downstream account's AWS credentials: The config profile "
        "(does-not-exist) could not be found."
    )
    assert captured.err.count("\n") == 1
    assert captured.out == "COULD NOT CHECK: no rule was validated\n"


def test_main_prints_a_line_per_rule_and_fails_on_any_invalid(
    capsys: pytest.CaptureFixture[str],
) -> None:
    invalid = valid("eu-central-1") | {
        "isValid": False,
        "failure": "Upstream registry denied access",
    }
    client_for, _ = stubbed_clients({"eu-west-1": valid("eu-west-1"), "eu-central-1": invalid})
    profiles: list[str | None] = []

    def clients(profile: str | None) -> Any:
        profiles.append(profile)
        return client_for

    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert kwargs["env"]["AWS_PROFILE"] == "workload"
        return subprocess.CompletedProcess(args, 0, stdout=json.dumps(RULES), stderr="")

    code = main(
        [],
        env={"DOWNSTREAM_AWS_PROFILE": "workload", "PULUMI_BACKEND_URL": "https://api.pulumi.com"},
        which=lambda _: "/bin/pulumi",
        run=run,
        clients=clients,
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert profiles == ["workload"]
    assert out[0].startswith("valid") and "eu-west-1" in out[0]
    assert out[1].startswith("INVALID") and "Upstream registry denied access" in out[1]
    assert out[-1] == "INVALID: 1 of 2 rules invalid"


def test_self_managed_backend_without_passphrase_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    env = {"PULUMI_BACKEND_URL": f"file://{tmp_path}/state"}
    assert main([], env=env, which=lambda _: "/bin/pulumi") == 2
    captured = capsys.readouterr()
    assert "PULUMI_CONFIG_PASSPHRASE" in captured.err
    assert captured.out.splitlines()[-1] == "COULD NOT CHECK: no rule was validated"
    assert not (tmp_path / "state").exists(), "make verify creates no state folder"


def test_missing_cli_says_run_make_verify_again(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env={}, which=lambda _: None) == 2
    captured = capsys.readouterr()
    assert "run `make verify` again" in captured.err and "make up" not in captured.err
    assert captured.out.splitlines()[-1].startswith("COULD NOT CHECK")


class Unreachable:
    """An ECR client whose endpoint cannot be reached."""

    def validate_pull_through_cache_rule(self, **_: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://api.ecr.eu-west-1.amazonaws.com/")


def run_main(client_for: Any) -> int:
    def run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, stdout=json.dumps(RULES), stderr="")

    return main(
        [],
        env={"PULUMI_BACKEND_URL": "https://api.pulumi.com"},
        which=lambda _: "/bin/pulumi",
        run=run,
        clients=lambda _: client_for,
    )


def test_all_valid_exits_0_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    client_for, _ = stubbed_clients(
        {"eu-west-1": valid("eu-west-1"), "eu-central-1": valid("eu-central-1")}
    )
    assert run_main(client_for) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "VALID: all 2 rules valid"


def test_unreachable_ecr_is_could_not_check_not_invalid(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_main(lambda region: Unreachable()) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("UNKNOWN") and "Could not connect" in out[0]
    assert out[-1] == "COULD NOT CHECK: 2 of 2 rules could not be validated"


def test_refused_credentials_are_could_not_check(capsys: pytest.CaptureFixture[str]) -> None:
    client_for, _ = stubbed_clients(
        {"eu-west-1": "ExpiredTokenException", "eu-central-1": "ExpiredTokenException"}
    )
    assert run_main(client_for) == 2
    assert capsys.readouterr().out.splitlines()[-1].startswith("COULD NOT CHECK")


def test_a_missing_rule_makes_the_run_invalid(capsys: pytest.CaptureFixture[str]) -> None:
    client_for, _ = stubbed_clients(
        {
            "eu-west-1": "PullThroughCacheRuleNotFoundException",
            "eu-central-1": valid("eu-central-1"),
        }
    )
    assert run_main(client_for) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "INVALID: 1 of 2 rules invalid"
