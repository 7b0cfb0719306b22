"""`make up`: pre-flight checks that say what is missing, then upstream before downstream."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from scripts.deploy import PreflightError, Side, deploy, main

SIDES = [Side("upstream", "upstream", "up-profile"), Side("downstream", "downstream", None)]
ENV = {"PULUMI_BACKEND_URL": "https://api.pulumi.com"}


class Recorder:
    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail_on = fail_on

    def __call__(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        self.calls.append((args[1:], kwargs["env"].get("AWS_PROFILE")))
        failed = self.fail_on is not None and self.fail_on in args
        return subprocess.CompletedProcess(args, 1 if failed else 0)


def accounts(profile: str | None) -> str:
    return {"up-profile": "111122223333", None: "444455556666"}[profile]


def test_missing_cli_is_named_with_how_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["up"], env={"PATH": "/nonexistent"})
    assert code == 2
    err = capsys.readouterr().err
    assert "Pulumi CLI" in err and "not on PATH" in err and "pulumi.com" in err


def test_self_managed_backend_needs_a_passphrase_variable(tmp_path: Path) -> None:
    env = {"PULUMI_BACKEND_URL": f"file://{tmp_path}/state"}
    with pytest.raises(PreflightError, match="PULUMI_CONFIG_PASSPHRASE"):
        deploy("up", SIDES, env, which=lambda _: "/bin/pulumi", whoami=accounts, run=Recorder())
    recorder = Recorder()
    deploy(
        "up",
        SIDES,
        env | {"PULUMI_CONFIG_PASSPHRASE": ""},
        which=lambda _: "/bin/pulumi",
        whoami=accounts,
        run=recorder,
    )
    assert (tmp_path / "state").is_dir()
    assert recorder.calls


def test_missing_credentials_name_the_side_and_the_variable() -> None:
    def no_credentials(profile: str | None) -> str:
        if profile is None:
            raise RuntimeError("Unable to locate credentials")
        return "111122223333"

    recorder = Recorder()
    with pytest.raises(PreflightError) as caught:
        deploy("up", SIDES, ENV, which=lambda _: "/bin/pulumi", whoami=no_credentials, run=recorder)
    message = str(caught.value)
    assert "downstream" in message and "DOWNSTREAM_AWS_PROFILE" in message
    assert "Unable to locate credentials" in message
    assert recorder.calls == [], "nothing runs before every check has passed"


def test_upstream_goes_first_each_with_its_own_credentials() -> None:
    recorder = Recorder()
    assert (
        deploy("up", SIDES, ENV, which=lambda _: "/bin/pulumi", whoami=accounts, run=recorder) == 0
    )
    assert recorder.calls == [
        (["stack", "select", "--create", "upstream"], "up-profile"),
        (["up", "--stack", "upstream", "--policy-pack", "policy"], "up-profile"),
        (["stack", "select", "--create", "downstream"], None),
        (["up", "--stack", "downstream", "--policy-pack", "policy"], None),
    ]


def test_a_failed_upstream_stops_the_downstream() -> None:
    recorder = Recorder(fail_on="up")
    assert (
        deploy("up", SIDES, ENV, which=lambda _: "/bin/pulumi", whoami=accounts, run=recorder) == 1
    )
    assert [args for args, _ in recorder.calls][-1] == [
        "up",
        "--stack",
        "upstream",
        "--policy-pack",
        "policy",
    ]
    assert all("downstream" not in args for args, _ in recorder.calls)


def test_yes_skips_the_confirmation_of_up_only() -> None:
    recorder = Recorder()
    deploy("up", SIDES, ENV, which=lambda _: "/bin/pulumi", whoami=accounts, run=recorder, yes=True)
    assert (
        ["up", "--stack", "upstream", "--policy-pack", "policy", "--yes"],
        "up-profile",
    ) in recorder.calls
    recorder = Recorder()
    deploy(
        "preview",
        SIDES,
        ENV,
        which=lambda _: "/bin/pulumi",
        whoami=accounts,
        run=recorder,
        yes=True,
    )
    assert (
        ["preview", "--stack", "upstream", "--policy-pack", "policy"],
        "up-profile",
    ) in recorder.calls
