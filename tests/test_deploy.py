"""`make up` / `make preview`: pre-flight checks that say what is missing, name the command the
user ran, leave nothing behind when they fail, then upstream before downstream."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
    ProxyConnectionError,
)

from components.inputs.stack_config import is_fleet_template
from scripts.deploy import (
    DEPLOYED,
    NOT_DEPLOYED,
    UNKNOWN,
    PreflightError,
    Side,
    allowed_accounts,
    deploy,
    main,
    state_backend,
    upstream_deployed,
)
from scripts.stack_files import cli_config, stack_file_config, stack_names
from tests.pulumi_run import PROJECT_DIR

SIDES = [Side("upstream", "upstream", "up-profile"), Side("downstream", "downstream", None)]
ENV = {"PULUMI_BACKEND_URL": "https://api.pulumi.com"}
LOCAL = {"PULUMI_CONFIG_PASSPHRASE": ""}


class Recorder:
    def __init__(self, fail_on: str | None = None, outputs: str = "{}") -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail_on = fail_on
        self.outputs = outputs  # what `pulumi stack output --json` prints

    def __call__(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        self.calls.append((args[1:], kwargs["env"].get("AWS_PROFILE")))
        failed = self.fail_on is not None and self.fail_on in args
        stdout = self.outputs if args[1:3] == ["stack", "output"] else ""
        return subprocess.CompletedProcess(args, 1 if failed else 0, stdout, "")


def accounts(profile: str | None) -> str:
    return {"up-profile": "111122223333", None: "444455556666"}[profile]


def project(
    tmp_path: Path,
    backend: str | None = "file://./.pulumi-state",
    pins: dict[str, str] | None = None,
) -> Path:
    """A project directory with a Pulumi.yaml (and stack files pinning `pins` accounts)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    text = "name: ecr-ptc\nruntime: python\n"
    if backend is not None:
        text += f"backend:\n  url: {backend}\n"
    (tmp_path / "Pulumi.yaml").write_text(text)
    for stack, account in (pins or {}).items():
        config = {**STACK_CONFIGS[stack], "aws:allowedAccountIds": [account]}
        (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))
    return tmp_path


# Stack files that plan cleanly, so the pre-flight's plan passes unless a test breaks them.
STACK_CONFIGS: dict[str, dict[str, Any]] = {
    "upstream": {"aws:region": "us-east-1", "ecr-ptc:downstreamAccountIds": ["444455556666"]},
    "downstream": {
        "aws:region": "eu-west-1",
        "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream",
        "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden"}],
    },
}


PINNED = {"upstream": "111122223333", "downstream": "444455556666"}


def run_deploy(
    project_dir: Path,
    env: dict[str, str],
    whoami: Any = accounts,
    command: str = "up",
    run: Recorder | None = None,
) -> Recorder:
    recorder = run or Recorder()
    deploy(
        command,
        SIDES,
        env,
        which=lambda _: "/bin/pulumi",
        whoami=whoami,
        run=recorder,
        project_dir=project_dir,
    )
    return recorder


# ---- the state backend: one for every pulumi command -------------------------------------------


def test_pulumi_yaml_declares_the_project_folder_as_the_state_backend() -> None:
    assert state_backend({}) == f"file://{PROJECT_DIR / '.pulumi-state'}"


def test_a_relative_backend_path_is_the_project_directory_not_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_dir = project(tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    assert state_backend({}, project_dir) == f"file://{project_dir / '.pulumi-state'}"


def test_pulumi_backend_url_overrides_pulumi_yaml_unless_empty(tmp_path: Path) -> None:
    project_dir = project(tmp_path)
    assert state_backend({"PULUMI_BACKEND_URL": "s3://bucket/ecr-ptc"}, project_dir) == (
        "s3://bucket/ecr-ptc"
    )
    # CI sets the variable to "" when no repository variable exists; the CLI then reads Pulumi.yaml.
    assert state_backend({"PULUMI_BACKEND_URL": ""}, project_dir) == (
        f"file://{project_dir / '.pulumi-state'}"
    )
    assert state_backend({}, project(tmp_path / "bare", backend=None)) is None


def test_the_makefile_exports_no_backend_of_its_own() -> None:
    """Plain `pulumi stack output ...` and `make up` must use the same state: Pulumi.yaml's."""
    env = {k: v for k, v in os.environ.items() if k != "PULUMI_BACKEND_URL"}
    database = subprocess.run(
        ["make", "-pnq", "clean"], cwd=PROJECT_DIR, env=env, capture_output=True, text=True
    ).stdout
    assert "PULUMI_BACKEND_URL" not in database


def test_make_clean_never_deletes_state() -> None:
    commands = subprocess.run(
        ["make", "--no-print-directory", "-n", "clean"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    state = (PROJECT_DIR / ".pulumi-state").resolve()
    lines = [shlex.split(line) for line in commands.splitlines() if line.strip()]
    assert all(words[0] == "rm" for words in lines), "make clean only removes files"
    removed = [
        (PROJECT_DIR / word).resolve()
        for words in lines
        for word in words[1:]
        if not word.startswith("-")
    ]
    assert removed, "make clean removes something"
    for path in removed:
        assert path != state and path not in state.parents, path


# ---- pre-flight ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["up", "preview"])
def test_missing_cli_names_the_command_the_user_ran(command: str) -> None:
    with pytest.raises(PreflightError) as caught:
        deploy(command, SIDES, ENV, which=lambda _: None, whoami=accounts, run=Recorder())
    message = str(caught.value)
    assert "Pulumi CLI" in message and "not on PATH" in message and "pulumi.com" in message
    assert f"run `make {command}` again" in message
    other = "preview" if command == "up" else "up"
    assert f"make {other}" not in message


def test_main_prefixes_errors_with_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    # The CLI is looked up on the PATH of the environment given, whatever this machine has.
    code = main(["preview"], env={"PATH": "/nonexistent"})
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("make preview: the Pulumi CLI (`pulumi`) is not on PATH")
    assert "make up" not in err and err.count("\n") == 1


def test_a_malformed_stack_file_is_one_line_before_any_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project_dir = project(tmp_path, pins=PINNED)
    (project_dir / "Pulumi.downstream.yaml").write_text("config:\n  aws:region: [eu-west-1\n")
    env = {**LOCAL, "UPSTREAM_AWS_PROFILE": "up-profile"}
    code = main(
        ["up"], env=env, which=lambda _: "/bin/pulumi", whoami=accounts, project_dir=project_dir
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("make up: Pulumi.downstream.yaml line 3: ") and err.count("\n") == 1
    assert not (project_dir / ".pulumi-state").exists()


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        (LOCAL, True),
        ({**LOCAL, "PULUMI_BACKEND_URL": "s3://state/ecr-ptc"}, True),
        (ENV, False),
    ],
    ids=["pulumi-yaml-folder", "s3", "pulumi-cloud"],
)
def test_an_upstream_organization_the_backend_cannot_hold_stops_the_preflight(
    tmp_path: Path, env: dict[str, str], refused: bool
) -> None:
    project_dir = project(tmp_path, pins=PINNED)
    path = project_dir / "Pulumi.downstream.yaml"
    path.write_text(path.read_text().replace("organization/ecr-ptc", "acme/ecr-ptc"))
    recorder = Recorder()
    if not refused:
        run_deploy(project_dir, env, run=recorder)
        assert ["up", "--stack", "downstream"] in [args[:3] for args, _ in recorder.calls]
        return
    with pytest.raises(PreflightError) as caught:
        run_deploy(project_dir, env, run=recorder)
    message = str(caught.value)
    assert "config ecr-ptc:upstreamStack: 'acme/ecr-ptc/upstream' is not valid: " in message
    assert "'organization/ecr-ptc/upstream'" in message and "Nothing was changed" in message
    assert recorder.calls == [], "no pulumi command ran"


def test_self_managed_backend_needs_a_passphrase_variable(tmp_path: Path) -> None:
    project_dir = project(tmp_path)
    with pytest.raises(PreflightError, match="PULUMI_CONFIG_PASSPHRASE"):
        run_deploy(project_dir, {})
    assert not (project_dir / ".pulumi-state").exists()
    recorder = run_deploy(project_dir, LOCAL)
    assert (project_dir / ".pulumi-state").is_dir()
    assert recorder.calls


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://sts.amazonaws.com/"),
        ConnectTimeoutError(endpoint_url="https://sts.amazonaws.com/"),
        ProxyConnectionError(proxy_url="http://proxy.internal:3128", error="refused"),
    ],
    ids=["endpoint", "timeout", "proxy"],
)
def test_unreachable_sts_is_a_network_failure_not_missing_credentials(
    tmp_path: Path, error: Exception
) -> None:
    def offline(profile: str | None) -> str:
        raise error

    with pytest.raises(PreflightError) as caught:
        run_deploy(project(tmp_path), LOCAL, whoami=offline, command="preview")
    message = str(caught.value)
    assert "network problem" in message and "not a credentials one" in message
    assert "no usable AWS credentials" not in message and "aws sso login" not in message
    assert "upstream" in message and "run `make preview` again" in message


@pytest.mark.parametrize(
    "error",
    [
        NoCredentialsError(),
        ProfileNotFound(profile="workload-admin"),
        ClientError(
            {"Error": {"Code": "ExpiredToken", "Message": "The security token has expired"}},
            "GetCallerIdentity",
        ),
    ],
    ids=["none", "profile", "expired"],
)
def test_credential_failures_name_the_side_and_the_variable(
    tmp_path: Path, error: Exception
) -> None:
    def downstream_fails(profile: str | None) -> str:
        if profile is None:
            raise error
        return "111122223333"

    recorder = Recorder()
    with pytest.raises(PreflightError) as caught:
        run_deploy(project(tmp_path), LOCAL, whoami=downstream_fails, run=recorder)
    message = str(caught.value)
    assert "no usable AWS credentials for the downstream stack" in message
    assert "DOWNSTREAM_AWS_PROFILE" in message and str(error) in message
    assert "network" not in message and "run `make up` again" in message
    assert recorder.calls == [], "nothing runs before every check has passed"


def test_a_failed_preflight_leaves_no_state_folder(tmp_path: Path) -> None:
    project_dir = project(tmp_path, pins=PINNED)

    def no_credentials(profile: str | None) -> str:
        raise NoCredentialsError()

    with pytest.raises(PreflightError):
        run_deploy(project_dir, LOCAL, whoami=no_credentials)
    with pytest.raises(PreflightError):
        run_deploy(project_dir, LOCAL, whoami=lambda _: "999999999999")
    assert sorted(p.name for p in project_dir.iterdir()) == [
        "Pulumi.downstream.yaml",
        "Pulumi.upstream.yaml",
        "Pulumi.yaml",
    ]


# ---- each stack pinned to its account ----------------------------------------------------------


def test_shipped_stacks_are_pinned_to_their_accounts() -> None:
    # Whatever accounts a user puts there: each stack file pins exactly one, except a fleet
    # template, whose members the fleet pins one by one.
    for stack in stack_names(PROJECT_DIR):
        pinned = allowed_accounts(stack)
        if is_fleet_template(cli_config(stack_file_config(PROJECT_DIR, stack))):
            assert pinned is None, stack
            continue
        assert pinned is not None and len(pinned) == 1, stack
        assert re.fullmatch("[0-9]{12}", pinned[0]), stack


def test_credentials_of_another_account_are_refused_before_any_change(tmp_path: Path) -> None:
    project_dir = project(tmp_path, pins=PINNED)

    def swapped(profile: str | None) -> str:  # downstream credentials used for the upstream
        return "444455556666"

    recorder = Recorder()
    with pytest.raises(PreflightError) as caught:
        run_deploy(project_dir, LOCAL, whoami=swapped, run=recorder)
    message = str(caught.value)
    assert "'upstream'" in message and "aws:allowedAccountIds" in message
    assert "Pulumi.upstream.yaml" in message
    assert "111122223333" in message and "444455556666" in message
    assert "UPSTREAM_AWS_PROFILE" in message and "run `make up` again" in message
    assert recorder.calls == []
    assert not (project_dir / ".pulumi-state").exists()


def test_a_stack_without_a_pin_or_a_file_is_not_checked(tmp_path: Path) -> None:
    recorder = run_deploy(project(tmp_path), LOCAL, whoami=lambda _: "999999999999")
    assert len(recorder.calls) == 4


# ---- the run ------------------------------------------------------------------------------------


def test_upstream_goes_first_each_with_its_own_credentials(tmp_path: Path) -> None:
    recorder = run_deploy(project(tmp_path, pins=PINNED), ENV)
    assert recorder.calls == [
        (["stack", "select", "--create", "upstream"], "up-profile"),
        (["up", "--stack", "upstream", "--policy-pack", "policy"], "up-profile"),
        (["stack", "select", "--create", "downstream"], None),
        (["up", "--stack", "downstream", "--policy-pack", "policy"], None),
    ]


def test_a_failed_upstream_stops_the_downstream(tmp_path: Path) -> None:
    recorder = Recorder(fail_on="up")
    code = deploy(
        "up",
        SIDES,
        ENV,
        which=lambda _: "/bin/pulumi",
        whoami=accounts,
        run=recorder,
        project_dir=project(tmp_path, pins=PINNED),
    )
    assert code == 1
    assert [args for args, _ in recorder.calls][-1] == [
        "up",
        "--stack",
        "upstream",
        "--policy-pack",
        "policy",
    ]
    assert all("downstream" not in args for args, _ in recorder.calls)


def test_yes_skips_the_confirmation_of_up_only(tmp_path: Path) -> None:
    project_dir = project(tmp_path)
    for command, expected_tail in (("up", ["--yes"]), ("preview", [])):
        recorder = Recorder()
        deploy(
            command,
            SIDES,
            ENV,
            which=lambda _: "/bin/pulumi",
            whoami=accounts,
            run=recorder,
            yes=True,
            project_dir=project_dir,
        )
        expected = [command, "--stack", "upstream", "--policy-pack", "policy", *expected_tail]
        assert (expected, "up-profile") in recorder.calls


# ---- has the upstream been deployed? (CI's downstream preview) ---------------------------------


def downstream_reading(tmp_path: Path, upstream: str | None) -> Path:
    project_dir = project(tmp_path)
    line = f"  ecr-ptc:upstreamStack: {upstream}\n" if upstream else ""
    (project_dir / "Pulumi.downstream.yaml").write_text(f"config:\n  aws:region: eu-west-1\n{line}")
    return project_dir


def answering(code: int, stdout: str = "", stderr: str = "") -> Any:
    calls: list[list[str]] = []

    def run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(args[1:])
        return subprocess.CompletedProcess(args, code, stdout=stdout, stderr=stderr)

    run.calls = calls  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize(
    ("code", "stdout", "stderr", "expected"),
    [
        (0, '{"upstreamAccountId": "111122223333"}', "", DEPLOYED),
        (255, "", "error: no stack named 'organization/ecr-ptc/upstream' found", NOT_DEPLOYED),
        # Created by a preview's upsert, never deployed: no outputs yet.
        (0, "{}", "", NOT_DEPLOYED),
        (255, "", "error: failed to load checkpoint: AccessDenied", UNKNOWN),
    ],
    ids=["deployed", "missing", "never-deployed", "backend-error"],
)
def test_upstream_deployed_tells_missing_from_broken(
    tmp_path: Path, code: int, stdout: str, stderr: str, expected: int
) -> None:
    run = answering(code, stdout, stderr)
    project_dir = downstream_reading(tmp_path, "organization/ecr-ptc/upstream")
    status, _ = upstream_deployed(
        "downstream", {}, which=lambda _: "/bin/pulumi", run=run, project_dir=project_dir
    )
    assert status == expected
    assert run.calls == [["stack", "output", "--json", "--stack", "organization/ecr-ptc/upstream"]]


def test_a_downstream_without_an_upstream_stack_waits_for_nothing(tmp_path: Path) -> None:
    run = answering(255)
    status, _ = upstream_deployed(
        "downstream",
        {},
        which=lambda _: "/bin/pulumi",
        run=run,
        project_dir=downstream_reading(tmp_path, None),
    )
    assert status == DEPLOYED and run.calls == []


def test_a_bad_downstream_is_refused_before_the_upstream_changes(tmp_path: Path) -> None:
    project_dir = project(tmp_path, pins=PINNED)
    path = project_dir / "Pulumi.downstream.yaml"
    path.write_text(path.read_text().replace("golden", "Golden"))
    recorder = Recorder()
    with pytest.raises(PreflightError) as caught:
        run_deploy(project_dir, LOCAL, run=recorder)
    assert "stack 'downstream': config ecr-ptc:rules[0].ecrRepositoryPrefix: 'Golden'" in str(
        caught.value
    )
    assert "Nothing was changed" in str(caught.value)
    assert recorder.calls == [], "no pulumi command ran"
    assert not (project_dir / ".pulumi-state").exists()


def test_a_fleet_template_is_not_deployed_by_make_up(tmp_path: Path) -> None:
    project_dir = project(tmp_path, pins=PINNED)
    path = project_dir / "Pulumi.downstream.yaml"
    config = yaml.safe_load(path.read_text())["config"]
    config["ecr-ptc:accounts"] = ["444455556666"]
    path.write_text(yaml.safe_dump({"config": config}))
    with pytest.raises(PreflightError, match="fleet template"):
        run_deploy(project_dir, LOCAL)


def test_a_downstream_of_an_upstream_deployed_elsewhere_goes_ahead(tmp_path: Path) -> None:
    project_dir = project(tmp_path, pins=PINNED)
    path = project_dir / "Pulumi.downstream.yaml"
    path.write_text(path.read_text().replace("ecr-ptc/upstream", "ecr-ptc/images-prod"))
    recorder = run_deploy(project_dir, LOCAL, run=Recorder(outputs='{"upstreamAccountId": "1"}'))
    assert ["up", "--stack", "downstream"] in [args[:3] for args, _ in recorder.calls]


def test_a_downstream_of_an_upstream_never_deployed_stops_before_any_change(
    tmp_path: Path,
) -> None:
    project_dir = project(tmp_path, pins=PINNED)
    path = project_dir / "Pulumi.downstream.yaml"
    path.write_text(path.read_text().replace("ecr-ptc/upstream", "ecr-ptc/images-prod"))
    recorder = Recorder(outputs="{}")
    with pytest.raises(PreflightError) as caught:
        run_deploy(project_dir, LOCAL, run=recorder)
    message = str(caught.value)
    assert "config ecr-ptc:upstreamStack of stack 'downstream'" in message
    assert "organization/ecr-ptc/images-prod" in message and "nothing was changed" in message
    assert [args[:2] for args, _ in recorder.calls] == [["stack", "output"]]
