"""The single-stack workflows (preview.yml, deploy.yml): what runs when, in which environment,
with which role, and what a pull request's preview posts. actionlint (with shellcheck) and zizmor
check the files in `make lint`; tests/test_pipeline_attacks.py tries them as an attacker would."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from scripts.stack_files import PROJECT_DIR
from tests.workflow_files import (
    COMMENT_MARKERS,
    DEPLOY_ENVIRONMENT,
    FORK_PULL_REQUEST,
    NAMES,
    PREVIEW_ENVIRONMENT,
    PULL_REQUEST,
    WORKFLOWS,
    Event,
    Variables,
    actionlint,
    evaluate,
    job_condition,
    load,
    may_run,
    named,
    pack_imports,
    run_step,
    steps_using,
)


def pulumi_jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: j for n, j in workflow["jobs"].items() if steps_using(j, "pulumi/actions")}


def pulumi_command_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The pulumi/actions steps that run a command (without one, the action only installs)."""
    return [s for s in steps_using(job, "pulumi/actions") if "command" in s.get("with", {})]


def test_pull_requests_test_then_preview_upstream_then_downstream() -> None:
    workflow = load("preview.yml")
    assert set(workflow["on"]) == {"pull_request"}
    jobs = workflow["jobs"]
    assert jobs["test"]["steps"][-1]["run"] == "make test"
    assert jobs["preview-upstream"]["needs"] == "test"
    assert jobs["preview-downstream"]["needs"] == "preview-upstream"
    for name in ("preview-upstream", "preview-downstream"):
        job = jobs[name]
        preview = named(job, "pulumi preview")
        commands = [line.split(" 2>&1")[0] for line in preview["run"].splitlines()]
        # The first pull request comes before any deploy: the preview creates a missing stack.
        assert commands == [
            "set -o pipefail",
            'pulumi stack select --create "$STACK" --non-interactive',
            'pulumi preview --stack "$STACK" --policy-pack trusted/policy --color never '
            "--non-interactive",
        ], name
        # Its output, pass or fail, is what the comment shows.
        assert preview["run"].endswith("2>&1 | tee preview.txt\n"), name
        assert preview["env"]["STACK"] == jobs[name]["steps"][-2]["env"]["STACK"], name
        # The comment goes out through the comment job, not from the job running the branch.
        assert pulumi_command_steps(job) == [], name
        assert "pull-requests" not in job["permissions"], name
        assert job["environment"] == PREVIEW_ENVIRONMENT, name
    assert jobs["comment"]["needs"] == ["preview-upstream", "preview-downstream"]


def test_merges_deploy_upstream_then_downstream_one_at_a_time_in_the_deploy_environment() -> None:
    workflow = load("deploy.yml")
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    jobs = workflow["jobs"]
    assert jobs["up-upstream"]["needs"] == "test"
    assert jobs["up-downstream"]["needs"] == "up-upstream"
    groups = set()
    for name, job in pulumi_jobs(workflow).items():
        [step] = pulumi_command_steps(job)
        assert step["with"]["command"] == "up", name
        # main's own pack: the deploy runs the reviewed commit.
        assert step["with"]["policyPacks"] == "policy", name
        assert job["environment"] == DEPLOY_ENVIRONMENT, name
        assert job["concurrency"]["cancel-in-progress"] is False, name
        groups.add(job["concurrency"]["group"])
    assert len(groups) == 2, "one concurrency group per stack"


def test_aws_credentials_come_from_oidc_per_stack_with_least_permissions() -> None:
    for name in ("preview.yml", "deploy.yml"):
        workflow = load(name)
        assert workflow["permissions"] == {}, f"{name}: no default permissions"
        assert "env" not in workflow, f"{name}: nothing shared by every job"
        for job_name, job in workflow["jobs"].items():
            creds = steps_using(job, "aws-actions/configure-aws-credentials")
            if job_name in ("test", "plan", "comment"):
                assert creds == [] and "id-token" not in job["permissions"], job_name
                continue
            assert job["permissions"] == {"contents": "read", "id-token": "write"}, job_name
            [step] = creds
            side = "UPSTREAM" if "upstream" in job_name else "DOWNSTREAM"
            # Pull requests get a role that can only preview; merges get the deploy role.
            kind = "_PREVIEW" if name == "preview.yml" else ""
            assert step["with"]["role-to-assume"] == f"${{{{ vars.{side}_AWS{kind}_ROLE_ARN }}}}"
            assert not {"aws-access-key-id", "aws-secret-access-key"} & set(step["with"])


def test_actionlint_with_shellcheck_catches_a_broken_workflow(tmp_path: Path) -> None:
    text = (WORKFLOWS / "deploy.yml").read_text()
    broken = actionlint(
        tmp_path, "deploy.yml", text.replace("needs: up-upstream", "needs: up-upstreem")
    )
    assert broken.returncode == 1 and "up-upstreem" in broken.stdout
    unquoted = actionlint(
        tmp_path, "deploy.yml", text.replace('>> "$GITHUB_PATH"', ">> $GITHUB_PATH", 1)
    )
    assert unquoted.returncode == 1 and "SC2086" in unquoted.stdout, unquoted.stdout
    assert actionlint(tmp_path, "deploy.yml", text).returncode == 0


def run_upstream_check(tmp_path: Path, script_status: int) -> tuple[int, str, str]:
    """Runs the downstream preview job's check step with a stand-in for scripts.deploy that
    exits `script_status`; returns the step's status, its outputs and the job summary."""
    job = load("preview.yml")["jobs"]["preview-downstream"]
    [check] = [s for s in job["steps"] if "upstream-deployed" in s.get("run", "")]
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\nexit {script_status}\n")
    python.chmod(0o755)
    outputs, summary = tmp_path / "outputs", tmp_path / "summary"
    outputs.touch()
    summary.touch()
    env = {
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(summary),
        "DOWNSTREAM_STACK": "downstream",
    }
    result = run_step(check, tmp_path, env)
    return result.returncode, outputs.read_text(), summary.read_text()


def test_downstream_preview_waits_for_the_first_upstream_deploy(tmp_path: Path) -> None:
    job = load("preview.yml")["jobs"]["preview-downstream"]
    steps = job["steps"]
    [check] = [s for s in steps if "upstream-deployed" in s.get("run", "")]
    preview = named(job, "pulumi preview")
    # The CLI the check needs is installed before it; the preview runs only when it passed.
    install = next(i for i, s in enumerate(steps) if s.get("uses", "").startswith("pulumi/"))
    assert install < steps.index(check) < steps.index(preview)
    assert preview["if"] == f"steps.{check['id']}.outputs.deployed == 'true'"

    assert run_upstream_check(tmp_path / "deployed", 0) == (0, "deployed=true\n", "")

    status, outputs, summary = run_upstream_check(tmp_path / "first", 1)
    assert (status, outputs) == (0, "deployed=false\n")
    assert (
        "can be previewed after the first deploy of the upstream" in summary
        and "`make plan`" in summary
    )

    # A backend or credentials error is not "not deployed yet": the job fails.
    status, outputs, summary = run_upstream_check(tmp_path / "broken", 2)
    assert status == 2 and outputs == "" and summary == ""


def test_every_pull_request_gets_the_offline_plan_and_forks_skip_the_previews() -> None:
    workflow = load("preview.yml")
    plan = workflow["jobs"]["plan"]
    assert plan["permissions"] == {"contents": "read"}, "the plan needs no AWS and no secrets"
    assert "needs" not in plan and "if" not in plan and "environment" not in plan
    runs = " ".join(step.get("run", "") for step in plan["steps"])
    assert "scripts.plan" in runs and "GITHUB_STEP_SUMMARY" in runs
    assert "pipefail" in runs, "a refused stack must fail the job, not only tee's exit status"
    for name in ("preview-upstream", "comment"):
        condition = workflow["jobs"][name]["if"]
        assert "head.repo.full_name == github.repository" in condition, name
    # A fork's run (no variables, or should GitHub pass them, every one set): test and plan.
    no_variables = Event(FORK_PULL_REQUEST.name, FORK_PULL_REQUEST.ref, fork=True, variables={})
    for fork in (no_variables, FORK_PULL_REQUEST):
        assert may_run(workflow, fork) == {"test", "plan"}
    assert may_run(workflow, PULL_REQUEST) == set(workflow["jobs"])


CONTEXT = {
    "github": {"event_name": "pull_request", "ref": "refs/heads/main"},
    "vars": Variables({"SET": "yes"}),
    "inputs": {"refresh": True},
    "needs": {"a-b": {"result": "success", "outputs": {"count": "0"}}},
}


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        # Strings compare case-insensitively; other types compare as numbers.
        ("github.event_name == 'Pull_Request'", True),
        ("needs.a-b.outputs.count == 0", True),
        ("needs.a-b.outputs.count != '0'", False),
        ("'' == 0 && null == 0 && true == 1", True),
        ("'abc' == 0", False),
        # A variable that is not set is ''; another missing property is null.
        ("vars.UNSET", ""),
        ("vars.set", "yes"),
        ("github.event.pull_request.head.repo.full_name", None),
        # && and || give an operand, not a boolean.
        ("inputs.refresh && '1' || ''", "1"),
        ("inputs.missing && '1' || ''", ""),
        ("vars.UNSET || 'preview'", "preview"),
        ("!vars.UNSET && !(1 > 2) && 2 >= 2", True),
        # && binds tighter than ||.
        ("true || false && false", True),
        ("format('pr-{0}-{{1}}', 7)", "pr-7-{1}"),
        ("contains(fromJSON('[\"a\", \"b\"]'), 'B') && startsWith('refs/heads/x', 'refs/')", True),
        ("${{ github.ref == 'refs/heads/main' }}", True),
        ("main-${{ github.ref }}", "main-refs/heads/main"),
    ],
)
def test_job_conditions_are_evaluated_as_github_evaluates_them(
    expression: str, value: object
) -> None:
    assert evaluate(expression, CONTEXT) == value


def test_a_condition_without_a_status_function_runs_after_success_only() -> None:
    assert job_condition({}) == "success()"
    assert job_condition({"if": "github.ref == 'x'"}) == "success() && (github.ref == 'x')"
    kept = "${{ !cancelled() && needs.a.result == 'success' }}"
    assert job_condition({"if": kept}) == "!cancelled() && needs.a.result == 'success'"


def test_every_pulumi_cli_is_the_version_in_pulumi_version() -> None:
    """One source for the CLI version: .pulumi-version, one exact version, the SDK's pin; every
    pulumi/actions step of every workflow reads it."""
    text = (PROJECT_DIR / ".pulumi-version").read_text()
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", text), f"one exact version: {text!r}"
    # The program runs the SDK uv.lock pins; the policy pack pins its SDK exactly.
    lock = tomllib.loads((PROJECT_DIR / "uv.lock").read_text())
    assert {p["version"] for p in lock["package"] if p["name"] == "pulumi"} == {text.strip()}
    dependencies = tomllib.loads((PROJECT_DIR / "policy/pyproject.toml").read_text())["project"]
    assert f"pulumi=={text.strip()}" in dependencies["dependencies"]
    found = 0
    for name in NAMES:
        for job_name, job in load(name)["jobs"].items():
            for step in steps_using(job, "pulumi/actions"):
                found += 1
                assert step["with"]["pulumi-version-file"] == ".pulumi-version", job_name
                assert "pulumi-version" not in step["with"], job_name
    assert found == 8


def write_comment(
    tmp_path: Path, job_name: str, outcome: str, output: str | None
) -> tuple[int, str, list[str]]:
    """Runs a preview job's comment step as GitHub would after the preview (`outcome`, and the
    output it left in preview.txt, if any); returns its status, the comment and the files it
    left behind."""
    job = load("preview.yml")["jobs"][job_name]
    step = named(job, "The preview as a PR comment (posted by the comment job)")
    tmp_path.mkdir()
    if output is not None:
        (tmp_path / "preview.txt").write_text(output)
    env = {
        "STACK": "upstream",
        "OUTCOME": outcome,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_RUN_ID": "42",
    }
    result = run_step(step, tmp_path, env)
    comment = tmp_path / "comment.md"
    made = {".step.sh", "comment.md", "preview.txt"}
    left = sorted(p.name for p in tmp_path.iterdir() if p.name not in made)
    return result.returncode, comment.read_text() if comment.exists() else "", left


def test_the_preview_comment_is_the_previews_text_and_nothing_in_it_runs(tmp_path: Path) -> None:
    hostile = "+ aws:iam/role:Role cache\n$(touch pwned) `touch pwned2` ${HOME}\n```\n<b>x</b>"
    for job_name, marker in zip(
        ("preview-upstream", "preview-downstream"), COMMENT_MARKERS, strict=True
    ):
        status, comment, left = write_comment(tmp_path / job_name, job_name, "success", hostile)
        assert status == 0 and left == [], (job_name, left)
        lines = comment.splitlines()
        assert lines[0] == marker
        assert lines[1].startswith("#### `pulumi preview` of the ") and "failed" not in lines[1]
        assert "https://github.com/o/r/actions/runs/42" in comment
        # The output verbatim, but a fence in it cannot close the code block.
        assert "$(touch pwned) `touch pwned2` ${HOME}\n'''\n<b>x</b>" in comment
        assert comment.count("```") == 2
    # Both jobs write their comment alike.
    steps = [
        named(
            load("preview.yml")["jobs"][j],
            "The preview as a PR comment (posted by the comment job)",
        )
        for j in ("preview-upstream", "preview-downstream")
    ]
    assert steps[0]["run"] == steps[1]["run"]


def test_a_failed_preview_is_posted_with_its_output_and_a_long_one_is_cut(tmp_path: Path) -> None:
    violation = "Policy Violations:\n    [mandatory]  ecr-ptc-guardrails v0.0.1  cache-role-trust\n"
    status, comment, _ = write_comment(
        tmp_path / "failed", "preview-upstream", "failure", violation
    )
    assert status == 0
    assert comment.splitlines()[1].endswith("failed") and violation in comment
    assert comment.endswith("cache-role-trust\n```\n</details>\n")

    # No output at all (the CLI could not start): the heading and the run's address only.
    status, comment, _ = write_comment(tmp_path / "none", "preview-upstream", "failure", None)
    assert status == 0 and "<details>" not in comment and "actions/runs/42" in comment

    long = "x" * 200_000 + "THE END"
    status, comment, _ = write_comment(tmp_path / "long", "preview-upstream", "success", long)
    assert status == 0
    # GitHub refuses a comment over 65,536 characters; the end of the output is what matters.
    assert len(comment) < 65_536 and "(first part cut)" in comment
    assert comment.endswith("THE END\n```\n</details>\n")


def test_previews_apply_the_policy_pack_of_the_base_branch() -> None:
    jobs = load("preview.yml")["jobs"]
    for name in ("preview-upstream", "preview-downstream"):
        job = jobs[name]
        preview = named(job, "pulumi preview")
        assert "--policy-pack trusted/policy " in preview["run"], name
        trusted = named(job, "The policy pack of the base branch")
        assert trusted["with"]["ref"] == "${{ github.event.pull_request.base.sha }}", name
        assert trusted["with"]["path"] == "trusted", name
        assert trusted["with"]["sparse-checkout-cone-mode"] is False, name
        paths = set(trusted["with"]["sparse-checkout"].split())
        # The pack and every module it imports, and nothing of the pull request's.
        assert "/policy/" in paths, name
        assert {f"/{p}" for p in pack_imports()} <= paths, name
        sync = named(job, "The base branch's pack environment")
        assert "--locked" in sync["run"] and "--directory trusted/policy" in sync["run"], name
        steps = job["steps"]
        # The branch's `make install` runs before the base branch's files are there.
        install = next(i for i, s in enumerate(steps) if s.get("run") == "make install")
        assert install < steps.index(trusted) < steps.index(sync) < steps.index(preview), name


# --- doctor.yml: `make doctor` on a schedule ------------------------------------------------------

DOCTOR = "doctor.yml"
# The roles each doctor job assumes: read-only ones only (and the Organizations reader).
DOCTOR_ROLES = {
    "doctor": ["UPSTREAM_AWS_PREVIEW_ROLE_ARN", "DOWNSTREAM_AWS_PREVIEW_ROLE_ARN"],
    "members": ["FLEET_ORGANIZATIONS_ROLE_ARN"],
    "fleet": ["UPSTREAM_AWS_PREVIEW_ROLE_ARN", "FLEET_AWS_PREVIEW_ROLE_ARN"],
}


def test_the_doctor_runs_on_a_schedule_and_by_hand_on_main_only() -> None:
    workflow = load(DOCTOR)
    triggers = workflow["on"]
    assert set(triggers) == {"schedule", "workflow_dispatch"} and len(triggers["schedule"]) == 1
    assert not (triggers["workflow_dispatch"] or {}).get("inputs"), "no canary input"
    schedule = Event("schedule", variables={})
    assert may_run(workflow, schedule) == {"doctor"}, "a single downstream stack"
    fleet_only = Event("schedule", variables={"FLEET_TEMPLATE": "downstream"})
    assert may_run(workflow, fleet_only) == {"members", "fleet"}, "its members, not the template"
    both = Event("schedule", variables={"FLEET_TEMPLATE": "fleet"})
    assert may_run(workflow, both) == {"doctor", "members", "fleet"}
    assert may_run(workflow, Event("workflow_dispatch")) == {
        "doctor",
        "members",
        "fleet",
    }
    for ref in ("refs/heads/feature", "refs/tags/v1"):
        assert may_run(workflow, Event("workflow_dispatch", ref)) == set(), ref
    assert (
        may_run(workflow, PULL_REQUEST) == set() and may_run(workflow, FORK_PULL_REQUEST) == set()
    )


def test_the_doctor_reads_with_read_only_roles_and_no_secret() -> None:
    workflow = load(DOCTOR)
    assert workflow["permissions"] == {}
    assert "secrets." not in (WORKFLOWS / DOCTOR).read_text()
    for name, job in workflow["jobs"].items():
        assert job["permissions"] == {"contents": "read", "id-token": "write"}, name
        creds = steps_using(job, "aws-actions/configure-aws-credentials")
        roles = [str(s["with"]["role-to-assume"]) for s in creds]
        assert roles == [f"${{{{ vars.{r} }}}}" for r in DOCTOR_ROLES[name]], name
        assert not steps_using(job, "pulumi/actions"), "the doctor plans offline: no Pulumi CLI"
        for step in steps_using(job, "actions/checkout"):
            assert step["with"]["persist-credentials"] is False, name
    # Every job, the members' one included: a schedule never gets the deploy environment's
    # subject, which every deploy role trusts.
    for name in ("doctor", "members", "fleet"):
        assert workflow["jobs"][name]["environment"] == PREVIEW_ENVIRONMENT, name


def test_the_upstreams_credentials_become_a_profile_and_the_jobs_stay_the_downstreams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, command in (("doctor", "make doctor "), ("fleet", "make fleet-doctor ")):
        job = load(DOCTOR)["jobs"][name]
        upstream, member = steps_using(job, "aws-actions/configure-aws-credentials")
        # The upstream's credentials go to step outputs only, not to the job's environment.
        assert upstream["with"]["output-credentials"] is True
        assert upstream["with"]["output-env-credentials"] is False
        assert "output-credentials" not in member["with"]
        profile = named(job, "The upstream's credentials as the profile `upstream`")
        steps = job["steps"]
        assert steps.index(upstream) < steps.index(profile) < steps.index(member)
        [doctor] = [s for s in steps if str(s.get("run", "")).startswith(command)]
        assert doctor["env"]["UPSTREAM_AWS_PROFILE"] == "upstream", name
        assert steps.index(member) < steps.index(doctor), name
        # No canary pull on a schedule: it creates repositories, and preview roles only read.
        assert "IMAGE" not in doctor["run"] and "${{" not in doctor["run"], name
        assert "IMAGE" not in {**load(DOCTOR).get("env", {}), **job.get("env", {}), **doctor["env"]}
        forget = named(job, "Forget the upstream's credentials")
        assert forget["if"] == "always()" and steps.index(forget) > steps.index(doctor)

        work = tmp_path / name
        work.mkdir()
        github_env = work / "github-env"
        github_env.touch()
        keys = {"KEY_ID": "ASIAUPSTREAM", "SECRET_KEY": "s3cr/et+key", "SESSION_TOKEN": "tok%en"}
        result = run_step(
            profile, work, {**keys, "RUNNER_TEMP": str(work), "GITHUB_ENV": str(github_env)}
        )
        assert result.returncode == 0, result.stderr
        credentials = work / "doctor-credentials"
        assert credentials.stat().st_mode & 0o077 == 0, "readable by the runner's user only"
        assert github_env.read_text() == f"AWS_SHARED_CREDENTIALS_FILE={credentials}\n"
        # With the job's (downstream) credentials in the environment, the profile is still the
        # upstream's: botocore leaves the environment out when a profile is named.
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(work / "no-config"))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIADOWNSTREAM")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "downstream")
        import boto3

        found = boto3.Session(profile_name="upstream").get_credentials()
        assert found is not None
        assert (found.access_key, found.secret_key, found.token) == tuple(keys.values())
        job_credentials = boto3.Session().get_credentials()
        assert job_credentials is not None and job_credentials.access_key == "ASIADOWNSTREAM"
