"""The stand-in `pulumi` (tests/fake_pulumi) behaves as Pulumi CLI v3.272.0 with a DIY backend
does for the commands the fleet driver runs: output shapes, exit codes, state, locks, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fake_cli import FAKE_DIR, FakeCli, events, install, summary
from tests.fake_pulumi import fake_pulumi as fp

ROLE = "urn:pulumi:dev::ecr-ptc::aws:iam/role:Role::cache-role"
POLICY = "urn:pulumi:dev::ecr-ptc::aws:iam/rolePolicy:RolePolicy::cache-role-policy"
ROOT = "urn:pulumi:dev::ecr-ptc::pulumi:pulumi:Stack::ecr-ptc-dev"


@pytest.fixture
def cli(tmp_path: Path) -> FakeCli:
    return install(tmp_path)


def digest(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def ops(document: dict[str, Any]) -> dict[str, str]:
    return {s["urn"]: s["op"] for s in document.get("steps", [])}


def test_version_and_the_log_of_calls(cli: FakeCli) -> None:
    work = cli.workspace()
    result = cli.run("version", cwd=work, AWS_PROFILE="member")
    assert (result.returncode, result.stdout) == (0, "v3.272.0\n")
    [call] = cli.calls()
    assert call["argv"] == ["--non-interactive", "version"]
    assert call["cwd"] == str(work)
    assert call["PULUMI_BACKEND_URL"] == cli.backend_url
    assert "AWS_PROFILE" in call["aws"]
    # The executable of the repository itself (its shebang: python3 from PATH).
    direct = subprocess.run(
        [sys.executable, str(FAKE_DIR / "pulumi"), "version"],
        env=cli.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (direct.returncode, direct.stdout) == (0, "v3.272.0\n")


def test_preview_or_up_of_a_missing_stack_fails_and_creates_nothing(cli: FakeCli) -> None:
    work = cli.workspace("dev")
    for args in (("preview", "--json"), ("up", "--yes", "--skip-preview", "--json")):
        result = cli.run(*args, "--stack", "dev", cwd=work)
        assert result.returncode == 6  # ExitStackNotFound
        assert result.stderr == "error: no stack named 'dev' found\n"
        assert result.stdout == ""
    assert cli.stacks() == []
    assert not (cli.backend_dir / ".pulumi").exists()


def test_init_tags_up_and_the_json_documents(cli: FakeCli) -> None:
    work = cli.workspace("dev", {"aws:region": "eu-west-1"})
    init = cli.run("stack", "init", "dev", cwd=work)
    assert (init.returncode, init.stdout) == (0, "Created stack 'dev'\n")
    assert "encryptionsalt: v1:" in (work / "Pulumi.dev.yaml").read_text()
    assert cli.run("stack", "init", "dev", cwd=work).stderr == (
        "error: stack 'organization/ecr-ptc/dev' already exists\n"
    )
    assert (
        cli.run(
            "stack", "tag", "set", "ecr-ptc:fleet", "downstream", "-s", "dev", cwd=work
        ).returncode
        == 0
    )

    cli.set_scenario("dev", outputs={"registry": "210000000001.dkr.ecr.eu-west-1.amazonaws.com"})
    up = cli.run("up", "--yes", "--skip-preview", "--json", "--refresh", "--stack", "dev", cwd=work)
    assert up.returncode == 0, up.stderr
    stream = events(up.stdout)
    assert [e["sequence"] for e in stream] == list(range(len(stream)))
    assert stream[0]["preludeEvent"] == {"config": {"aws:region": "eu-west-1"}}
    assert summary(up.stdout)["resourceChanges"] == {"create": 6}  # root stack + 5, no provider
    assert summary(up.stdout)["result"] == "succeeded"
    assert "cancelEvent" in stream[-1]
    assert len(cli.resources("dev")) == 7  # root stack, default provider, 5 resources
    assert sorted(cli.cloud("dev")) == sorted(cli.urns("dev"))
    assert cli.pending_operations("dev") == [] and not cli.locked("dev")

    output = cli.run("stack", "output", "--json", "--stack", "organization/ecr-ptc/dev", cwd=work)
    assert json.loads(output.stdout) == {"registry": "210000000001.dkr.ecr.eu-west-1.amazonaws.com"}

    preview = digest(
        cli.run("preview", "--json", "--stack", "dev", "--policy-pack", "policy", cwd=work)
    )
    assert list(preview) == ["config", "steps", "duration", "changeSummary"]
    assert preview["changeSummary"] == {"same": 6}
    assert ops(preview) == {ROOT: "same"}  # sames are left out, the root stack never

    [row] = json.loads(cli.run("stack", "ls", "--json", cwd=work).stdout)
    assert set(row) == {
        "name",
        "current",
        "lastUpdate",
        "resourceCount",
    }  # DIY: no updateInProgress
    assert (row["name"], row["current"], row["resourceCount"]) == ("dev", True, 7)
    assert row["lastUpdate"].endswith("Z") and len(row["lastUpdate"]) == 24

    tags = cli.run("stack", "tag", "ls", "--json", "--stack", "dev", cwd=work)
    assert json.loads(tags.stdout) == {"ecr-ptc:fleet": "downstream"}  # DIY adds no pulumi:project
    assert (
        cli.run("stack", "tag", "rm", "ecr-ptc:fleet", "--stack", "dev", cwd=work).returncode == 0
    )
    assert cli.tags("dev") == {}
    assert not cli.backend().tags_path("dev").exists()  # removed with its last tag


def test_a_preview_reports_what_would_change_and_writes_nothing(cli: FakeCli) -> None:
    work = cli.workspace("dev")
    cli.create_stack("dev", deployed=True)
    cli.set_scenario("dev", revision=2, resources=4)  # a changed program that drops a resource
    before = cli.backend().checkpoint_path("dev").read_bytes()
    preview = digest(cli.run("preview", "--json", "--stack", "dev", cwd=work))
    assert preview["changeSummary"] == {"delete": 1, "same": 1, "update": 4}
    step = next(s for s in preview["steps"] if s["urn"] == ROLE)
    assert (step["op"], step["diffReasons"]) == ("update", ["description"])
    assert step["detailedDiff"] == {"description": {"kind": "update", "inputDiff": False}}
    assert step["oldState"]["inputs"]["description"] != step["newState"]["inputs"]["description"]
    assert cli.backend().checkpoint_path("dev").read_bytes() == before


def test_drift_is_seen_by_refresh_and_repaired_only_by_up_refresh(cli: FakeCli) -> None:
    work = cli.workspace("dev")
    cli.create_stack("dev", deployed=True)
    cli.drift("dev", "cache-role", {"description": "edited in the console"})
    cli.drift("dev", "cache-role-policy", None)
    before = cli.backend().checkpoint_path("dev").read_bytes()

    found = digest(cli.run("refresh", "--preview-only", "--json", "--stack", "dev", cwd=work))
    assert found["changeSummary"] == {"delete": 1, "same": 3, "update": 1}
    assert {u: o for u, o in ops(found).items() if o != "refresh"} == {
        ROLE: "update",
        POLICY: "delete",
    }
    role = next(s for s in found["steps"] if s["urn"] == ROLE)
    assert role["diffReasons"] == ["description"]
    assert cli.backend().checkpoint_path("dev").read_bytes() == before  # preview-only

    plain = cli.run("up", "--yes", "--skip-preview", "--json", "--stack", "dev", cwd=work)
    assert summary(plain.stdout)["resourceChanges"] == {"same": 6}  # the state already matches
    assert POLICY not in cli.cloud("dev")

    repair = cli.run(
        "up", "--yes", "--skip-preview", "--json", "--refresh", "--stack", "dev", cwd=work
    )
    assert summary(repair.stdout)["resourceChanges"] == {"create": 1, "same": 4, "update": 1}
    refreshed = [
        e["resOutputsEvent"]["metadata"]["op"]
        for e in events(repair.stdout)
        if "resOutputsEvent" in e
    ]
    assert refreshed[:5] == ["update", "delete", "same", "same", "same"]  # the refresh, first
    assert cli.cloud("dev")[ROLE]["properties"]["description"].startswith("ecr-ptc cache-role")
    assert POLICY in cli.cloud("dev")

    clean = digest(cli.run("refresh", "--preview-only", "--json", "--stack", "dev", cwd=work))
    assert clean["changeSummary"] == {"same": 5}
    assert set(ops(clean).values()) == {"refresh"}


def test_parallel_ups_of_different_stacks_and_one_locked_stack(cli: FakeCli) -> None:
    stacks = [f"downstream-21000000000{i}" for i in range(6)]
    for stack in stacks:
        cli.create_stack(stack)
    cli.set_scenario("*", sleep=0.05)
    cli.set_scenario(stacks[0], sleep=0.3)  # started twice: the second run finds it locked
    runs = [
        cli.start("up", "--yes", "--skip-preview", "--json", "--stack", s, cwd=cli.workspace(s))
        for s in [*stacks, stacks[0]]
    ]
    results = [(p.wait(timeout=20), *p.communicate()) for p in runs]
    failed = [r for r in results if r[0] != 0]
    assert len(failed) == 1  # the two ups of one stack: one of them finds it locked
    assert failed[0][2].startswith("error: the stack is currently locked by 1 lock(s). Either wait")
    assert "delete the lock file with `pulumi cancel`." in failed[0][2]
    for stack in stacks:
        assert len(cli.resources(stack)) == 7 and not cli.locked(stack)
        assert len(cli.cloud(stack)) == 5


def test_a_killed_up_leaves_the_stack_locked_until_cancel(cli: FakeCli) -> None:
    work = cli.workspace("dev")
    cli.create_stack("dev")
    cli.set_scenario("dev", sleep=10)
    up = cli.start("up", "--yes", "--skip-preview", "--json", "--stack", "dev", cwd=work)
    cli.wait_for(lambda: cli.locked("dev") and bool(cli.pending_operations("dev")))
    up.kill()
    up.communicate()
    assert cli.locked("dev")
    [pending] = cli.pending_operations("dev")
    assert (pending["type"], pending["resource"]["urn"]) == ("creating", ROLE)

    cli.set_scenario("dev")
    again = cli.run("up", "--yes", "--skip-preview", "--json", "--stack", "dev", cwd=work)
    assert again.returncode == 1
    lock = cli.locks("dev")[0]
    assert again.stderr.splitlines() == [
        "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) "
        "to end or delete the lock file with `pulumi cancel`.",
        f"  file://{lock}: created by {json.loads(lock.read_text())['username']}@"
        f"{json.loads(lock.read_text())['hostname']} (pid {up.pid}) at "
        f"{json.loads(lock.read_text())['timestamp']}",
    ]
    assert lock.parent == cli.backend_dir / ".pulumi/locks/organization/ecr-ptc/dev"
    assert cli.run("preview", "--json", "--stack", "dev", cwd=work).returncode == 0  # takes no lock

    cancel = cli.run("cancel", "--yes", "--stack", "dev", cwd=work)
    assert cancel.stdout == "The currently running update for 'dev' has been canceled!\n"
    assert not cli.locked("dev") and cli.pending_operations("dev")  # cancel leaves the state

    after = cli.run("up", "--yes", "--skip-preview", "--json", "--stack", "dev", cwd=work)
    assert after.returncode == 0
    [warning] = [e["diagnosticEvent"] for e in events(after.stdout) if "diagnosticEvent" in e]
    assert warning["severity"] == "warning"
    assert "1 pending operations from previous deployment" in warning["message"]
    assert cli.pending_operations("dev") == [] and not cli.locked("dev")


def test_exit_after_lock_and_a_foreign_lock(cli: FakeCli) -> None:
    work = cli.workspace("dev")
    cli.create_stack("dev")
    cli.set_scenario("dev", exit_after_lock=True)
    crashed = cli.run("up", "--yes", "--skip-preview", "--json", "--stack", "dev", cwd=work)
    assert crashed.returncode == -signal.SIGKILL
    assert cli.locked("dev") and cli.pending_operations("dev")

    cli.create_stack("other")
    cli.lock("other")
    removed = cli.run("stack", "rm", "--yes", "--stack", "other", cwd=work)
    assert "created by runner@ci-runner (pid 4242)" in removed.stderr


@pytest.mark.parametrize(
    ("signum", "text"),
    [
        (signal.SIGINT, "^C received; cancelling."),
        (signal.SIGTERM, "SIGTERM received; cancelling."),
    ],
)
def test_an_interrupted_up_cancels_gracefully(cli: FakeCli, signum: int, text: str) -> None:
    work = cli.workspace("dev")
    cli.create_stack("dev")
    cli.set_scenario("dev", sleep=10)
    up = cli.start("up", "--yes", "--skip-preview", "--json", "--stack", "dev", cwd=work)
    cli.wait_for(lambda: bool(cli.pending_operations("dev")))
    up.send_signal(signum)
    stdout, stderr = up.communicate(timeout=10)
    assert up.returncode == 1 and stderr == ""  # a bail: the error is in the events
    stream = events(stdout)
    [message] = [e["stdoutEvent"]["message"] for e in stream if "stdoutEvent" in e]
    assert message.startswith(text) and "orphaned resources" in message
    diagnostics = [e["diagnosticEvent"] for e in stream if "diagnosticEvent" in e]
    assert [(d["prefix"], d["message"]) for d in diagnostics] == [("error: ", "update canceled\n")]
    assert summary(stdout)["result"] == "failed"
    assert not cli.locked("dev") and cli.pending_operations("dev") == []
    # The operation in flight completed; nothing after it started.
    assert [r["urn"] for r in cli.resources("dev") if r.get("custom")][-1] == ROLE
    assert list(cli.cloud("dev")) == [ROLE]


def test_stack_rm_refuses_a_stack_with_resources_and_destroy_empties_it(cli: FakeCli) -> None:
    work = cli.workspace("dev")
    cli.create_stack("dev", deployed=True, tags={"ecr-ptc:fleet": "downstream"})
    cli.create_stack("old", deployed=True)
    refused = cli.run("stack", "rm", "--yes", "--stack", "dev", cwd=work)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: 'dev' still has resources; removal rejected.")
    forced = cli.run("stack", "rm", "--yes", "--force", "--stack", "dev", cwd=work)
    assert forced.stdout == "Stack 'dev' has been removed!\n"
    assert cli.stacks() == ["old"] and len(cli.cloud("dev")) == 5  # left behind in the account
    assert not cli.backend().tags_path("dev").exists()

    destroy = cli.run("destroy", "--yes", "--skip-preview", "--json", "--stack", "old", cwd=work)
    assert summary(destroy.stdout)["resourceChanges"] == {"delete": 6}
    assert cli.resources("old") == [] and cli.cloud("old") == {}
    assert cli.run("stack", "rm", "--yes", "--stack", "old", cwd=work).returncode == 0
    assert cli.stacks() == []


def test_failures_as_the_cli_reports_them(cli: FakeCli) -> None:
    work = cli.workspace("dev")
    cli.create_stack("dev")
    cli.set_scenario("dev", fail=["preview", "up"], message="ConfigError: ecr-ptc:rules is empty")
    preview = cli.run("preview", "--json", "--stack", "dev", cwd=work)
    assert (preview.returncode, preview.stderr) == (1, "")
    assert [d["message"] for d in digest(preview)["diagnostics"]] == [
        "error: ConfigError: ecr-ptc:rules is empty\n",
        "error: preview failed\n",
    ]
    up = cli.run("up", "--yes", "--skip-preview", "--json", "--stack", "dev", cwd=work)
    assert up.returncode == 1 and summary(up.stdout)["result"] == "failed"
    assert not cli.locked("dev")
    no_yes = cli.run("up", "--json", "--stack", "dev", cwd=work)
    assert (no_yes.returncode, no_yes.stderr) == (2, f"error: {fp.NO_CONFIRMATION_TEXT}\n")
    unknown = cli.run("stack", "ls", "--json", "--tag-filter", "a=b", cwd=work)
    assert (unknown.returncode, unknown.stderr) == (1, "error: unknown flag: --tag-filter\n")
