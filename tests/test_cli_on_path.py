"""`make test` gives the same results on a machine with the Pulumi CLI (or the AWS CLI) installed
as on one without: every command looks `pulumi` up on the PATH of the environment it is given,
never on the PATH of whoever runs the tests. Each check below runs twice, once with a stand-in
`pulumi` and `aws` first on this process's PATH, and must end the same both times, without
running either."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
import yaml

from scripts import deploy, fleet, plan, verify
from scripts.stack_files import PROJECT_DIR

NOWHERE = {"PATH": "/nonexistent"}


def stand_in(directory: Path, name: str, log: Path) -> Path:
    """An executable `name` that records its arguments and fails, as a broken install would."""
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit 1\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture(params=[False, True], ids=["no-cli-on-path", "stand-in-cli-on-path"])
def machine(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The log of the stand-ins; with the param, they are first on this process's PATH."""
    log = tmp_path / "ran.log"
    log.write_text("")
    for name in ("pulumi", "aws"):
        stand_in(tmp_path / "bin", name, log)
    if request.param:
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


def test_make_verify_without_the_cli_in_its_environment(
    machine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify.main([], env=NOWHERE) == verify.COULD_NOT_CHECK
    assert "the Pulumi CLI (`pulumi`) is not on PATH" in capsys.readouterr().err
    assert machine.read_text() == ""


def test_make_up_and_preview_without_the_cli_in_their_environment(
    machine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("up", "preview"):
        assert deploy.main([command], env=NOWHERE) == 2
        assert capsys.readouterr().err.startswith(
            f"make {command}: the Pulumi CLI (`pulumi`) is not on PATH"
        )
    status, message = deploy.upstream_deployed("downstream", NOWHERE)
    assert status == deploy.UNKNOWN and "not on PATH" in message
    assert machine.read_text() == ""


def test_make_fleet_up_without_the_cli_in_its_environment(machine: Path, tmp_path: Path) -> None:
    template = {
        "aws:region": "eu-west-1",
        "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
        "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden"}],
        "ecr-ptc:accounts": ["210000000001"],
    }
    (tmp_path / "Pulumi.yaml").write_text("name: ecr-ptc\nruntime: python\n")
    (tmp_path / "Pulumi.downstream.yaml").write_text(yaml.safe_dump({"config": template}))
    assumed: list[str] = []
    err = io.StringIO()
    code = fleet.main(
        ["up"],
        env=NOWHERE,
        can_assume=lambda role, region: assumed.append(role),
        project_dir=tmp_path,
        err=err,
    )
    assert code == 2 and "Pulumi CLI" in err.getvalue() and assumed == []
    assert machine.read_text() == ""


def test_make_plan_needs_no_cli(machine: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert plan.main(["--project-dir", str(PROJECT_DIR)], out=out, err=err, env={}) == 0
    assert machine.read_text() == ""


def test_the_cli_of_the_given_environment_is_the_one_run(
    machine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other way round: the stand-in only on the given environment's PATH is found and run,
    whatever this process's PATH holds."""
    env = {"PATH": str(machine.parent / "bin"), "PULUMI_BACKEND_URL": "https://api.pulumi.com"}
    assert verify.main(["--stack", "downstream"], env=env) == verify.COULD_NOT_CHECK
    assert "could not read output 'rules'" in capsys.readouterr().err
    assert machine.read_text() == "pulumi stack output rules --json --stack downstream\n"
