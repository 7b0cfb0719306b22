"""The delivery pipeline tried as an attacker with push access to a branch would try it: one row
per attack, each refused by what the repository's files say (the workflows parsed as GitHub
reads them, the Makefile, the pins, CODEOWNERS, Dependabot).

Every row also lists edits that would let its attack through, and the test checks that each one
is caught: a row cannot pass by looking at nothing. (AWS's side of each refusal, the roles' trust
policies, is tested with `make ci-roles` in tests/test_ci_roles.py.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import uv_hashes
from scripts.fleet_report import COMMENT_MARKER as FLEET_MARKER
from tests.workflow_files import (
    COMMENT_MARKERS,
    DEPLOY_ENVIRONMENT,
    DEPLOY_ROLES,
    EITHER_ENVIRONMENT,
    FORK_PULL_REQUEST,
    NAMES,
    ORGANIZATIONS_ROLE,
    PREVIEW_ENVIRONMENT,
    PREVIEW_ROLES,
    dispatch,
    may_run,
    pack_imports,
    parse,
    role_variable,
    run_step,
    steps_using,
    triggered_by_pull_requests,
)

PROJECT_DIR = Path(__file__).resolve().parents[1]
WORKFLOW_PATHS = tuple(f".github/workflows/{n}" for n in NAMES)
FILES = (
    *WORKFLOW_PATHS,
    ".pulumi-version",
    ".github/CODEOWNERS",
    ".github/dependabot.yml",
    "Makefile",
    "pyproject.toml",
    "policy/pyproject.toml",
    "requirements-uv.txt",
    "uv.lock",
)
Repo = Mapping[str, str]
Findings = list[str]


def real_repo() -> dict[str, str]:
    return {path: (PROJECT_DIR / path).read_text() for path in FILES}


def jobs(repo: Repo) -> list[tuple[str, dict[str, Any], str, dict[str, Any]]]:
    """(workflow file, workflow, job name, job) for every job of every workflow."""
    found = []
    for path in WORKFLOW_PATHS:
        workflow = parse(repo[path])
        for name, job in workflow["jobs"].items():
            found.append((path, workflow, name, job))
    return found


def text(value: Any) -> str:
    return yaml.safe_dump(value, width=10_000)


def assumed_roles(job: Mapping[str, Any]) -> list[tuple[int, dict[str, Any], str]]:
    """(index, step, repository variable) of every role the job assumes: one variable, or the
    expression itself when it is not one (which no check accepts)."""
    return [
        (job["steps"].index(step), step, role_variable(role) or role)
        for step in steps_using(job, "aws-actions/configure-aws-credentials")
        for role in [str(step.get("with", {}).get("role-to-assume", ""))]
    ]


# --- The checks: each returns what its attack would get through (nothing: refused) ----------


def deploy_role_from_a_pull_request(repo: Repo) -> Findings:
    """No job a pull request can start names a deploy role, or assumes anything but a preview
    role or the Organizations reader."""
    found = []
    names = re.compile(r"\b(" + "|".join([*DEPLOY_ROLES, "OrganizationAccountAccessRole"]) + r")\b")
    for path, workflow, name, job in jobs(repo):
        if not triggered_by_pull_requests(workflow, name):
            continue
        if match := names.search(text(job)):
            found.append(f"{path} {name}: a pull request's job names {match.group(1)}")
        for _, _, variable in assumed_roles(job):
            if variable not in (*PREVIEW_ROLES, ORGANIZATIONS_ROLE):
                found.append(f"{path} {name}: a pull request's job assumes {variable}")
    return found


def unset_role_variable_falls_through(repo: Repo) -> Findings:
    """Every role a job assumes is checked first: unset, the job stops with an error before any
    credential step. Only the Organizations reader is optional (a list of accounts needs none)."""
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        for path, _, name, job in jobs(repo):
            for index, step, variable in assumed_roles(job):
                where = f"{path} {name} ({variable})"
                if "if" in step:
                    if (variable, step["if"]) != (ORGANIZATIONS_ROLE, f"vars.{variable} != ''"):
                        found.append(f"{where}: the credential step may be skipped")
                    continue
                guards = [
                    s
                    for s in job["steps"][:index]
                    if s.get("env", {}).get("ROLE_ARN") == f"${{{{ vars.{variable} }}}}"
                    and s.get("env", {}).get("ROLE_VARIABLE") == variable
                    and "if" not in s
                ]
                if not guards:
                    found.append(f"{where}: nothing stops the job when the variable is unset")
                    continue
                unset = run_step(guards[0], Path(tmp), {"ROLE_ARN": ""})
                if (
                    unset.returncode == 0
                    or f"::error title={variable} is not set::" not in unset.stdout
                ):
                    found.append(f"{where}: an unset variable does not stop the job")
                role = "arn:aws:iam::111122223333:role/x"
                if run_step(guards[0], Path(tmp), {"ROLE_ARN": role}).returncode != 0:
                    found.append(f"{where}: the check stops the job with the variable set")
    return found


ANOTHER_REF = dispatch("refs/heads/feature", refresh=True)


def deploy_role_outside_the_deploy_environment(repo: Repo) -> Findings:
    """A deploy role is assumed only in the deploy environment (whose OIDC subject the deploy
    roles trust exactly), from a workflow only a push to main, the schedule or a dispatch
    starts, and a dispatch from another ref than main runs no such job."""
    found = []
    for path, workflow, name, job in jobs(repo):
        if (
            triggered_by_pull_requests(workflow, name)
            and job.get("environment") == DEPLOY_ENVIRONMENT
        ):
            found.append(f"{path} {name}: a pull request's job runs in the deploy environment")
        deploys = any(v in DEPLOY_ROLES for _, _, v in assumed_roles(job))
        if not deploys and job.get("environment") != DEPLOY_ENVIRONMENT:
            continue
        if name in may_run(workflow, ANOTHER_REF):
            found.append(f"{path} {name}: a dispatch from {ANOTHER_REF.ref} runs it")
        if not deploys:
            continue
        if job.get("environment") != DEPLOY_ENVIRONMENT:
            found.append(f"{path} {name}: deploys outside {DEPLOY_ENVIRONMENT}")
        events = set(workflow["on"]) - {"pull_request"}
        if events - {"push", "schedule", "workflow_dispatch"} or workflow["on"].get("push") != {
            "branches": ["main"]
        }:
            found.append(f"{path} {name}: a deploy started by {sorted(workflow['on'])}")
    return found


def fork_reaches_a_credential(repo: Repo) -> Findings:
    """A fork's pull request (run with no repository variable, and, should GitHub ever pass
    them, with every one set) starts no job that asks for an OIDC token, an environment (its
    secrets, its reviewers' approval), a secret, an AWS role or any write permission."""
    found = []
    for path in WORKFLOW_PATHS:
        workflow = parse(repo[path])
        for name in sorted(may_run(workflow, FORK_PULL_REQUEST)):
            job = workflow["jobs"][name]
            where = f"{path} {name}: a fork's pull request runs a job"
            permissions = job.get("permissions", {})
            if permissions != {"contents": "read"}:
                found.append(f"{where} with permissions {permissions}")
            if "environment" in job:
                found.append(f"{where} in the environment {job['environment']}")
            if "secrets." in text(job):
                found.append(f"{where} given a secret")
            if assumed_roles(job):
                found.append(f"{where} that assumes {[v for _, _, v in assumed_roles(job)]}")
    return found


def oidc_outside_an_environment(repo: Repo) -> Findings:
    """Previews assume their roles in the preview environment, the Organizations reader in the
    environment of the event; no other job gets an OIDC token."""
    found = []
    for path, _, name, job in jobs(repo):
        roles = {v for _, _, v in assumed_roles(job)}
        environment = job.get("environment")
        if ("id-token" in job.get("permissions", {})) != bool(roles):
            found.append(f"{path} {name}: an OIDC token without a role to assume, or the reverse")
        if roles & set(PREVIEW_ROLES) and environment != PREVIEW_ENVIRONMENT:
            found.append(f"{path} {name}: previews outside {PREVIEW_ENVIRONMENT}")
        # The Organizations reader trusts both environments' subjects; a job that deploys
        # nothing (the doctor's) takes the preview one, never the deploy one.
        reader_environments = (
            {EITHER_ENVIRONMENT} if path.endswith("fleet.yml") else {PREVIEW_ENVIRONMENT}
        )
        if ORGANIZATIONS_ROLE in roles and environment not in reader_environments:
            found.append(f"{path} {name}: the Organizations reader in {environment}")
    return found


def secrets_reach_branch_code(repo: Repo) -> Findings:
    """Secrets only in the `env:` of single steps, in jobs bound to an environment: never at the
    workflow or job level, never in a job that runs the branch's code before review."""
    found = []
    for path in WORKFLOW_PATHS:
        workflow = parse(repo[path])
        if "secrets." in text({k: v for k, v in workflow.items() if k != "jobs"}):
            found.append(f"{path}: secrets at the workflow level")
    for path, _, name, job in jobs(repo):
        if "secrets." in text({k: v for k, v in job.items() if k != "steps"}):
            found.append(f"{path} {name}: secrets at the job level")
        for step in job["steps"]:
            if "secrets." in text({k: v for k, v in step.items() if k != "env"}):
                found.append(f"{path} {name}: secrets outside a step's env: {step}")
            if "secrets." in text(step.get("env", {})) and "environment" not in job:
                found.append(f"{path} {name}: secrets in a job bound to no environment")
    return found


RUNS_CODE = re.compile(r"(^|[\s;&|(])(make|python\d*|\.venv/|pulumi|uv|\./)")


def writer_runs_branch_code(repo: Repo) -> Findings:
    """A job that may write to the repository (a PR comment) checks out nothing and runs no
    code of it; a job that runs the branch's code may write nothing (an OIDC token aside)."""
    found = []
    for path, _, name, job in jobs(repo):
        writes = {k for k, v in job.get("permissions", {}).items() if v == "write"} - {"id-token"}
        if not writes:
            continue
        for step in job["steps"]:
            uses = str(step.get("uses", ""))
            if uses and not uses.startswith("actions/download-artifact@"):
                found.append(f"{path} {name}: {sorted(writes)} and runs {uses}")
            if RUNS_CODE.search(str(step.get("run", ""))):
                found.append(f"{path} {name}: {sorted(writes)} and runs the repository's code")
    return found


def comment_edits_another_users_comment(repo: Repo) -> Findings:
    """The comment job updates only a comment its bot wrote whose first line is the marker; a
    copy of the marker in someone else's comment (or quoted in the bot's) is left alone, and an
    API error never turns into a second comment."""
    found = []
    tried: set[str] = set()
    for path, marker in (
        (WORKFLOW_PATHS[0], COMMENT_MARKERS[0]),
        (WORKFLOW_PATHS[2], FLEET_MARKER),
    ):
        workflow = parse(repo[path])
        [step] = [s for s in workflow["jobs"]["comment"]["steps"] if "gh api" in str(s.get("run"))]
        # The two workflows post alike: each script is tried once.
        if step["run"] in tried:
            continue
        tried.add(step["run"])
        bot, mallory = {"login": "github-actions[bot]"}, {"login": "mallory"}
        pages = [
            [{"id": 1, "user": mallory, "body": f"{marker}\nforged"}],
            [{"id": 3, "user": bot, "body": f"quoted {marker}"}],
            [{"id": 2, "user": bot, "body": f"{marker}\r\nlast push's preview"}],
        ]
        body = "comments/pr-comment-x/comment.md"
        update = f"api --method PATCH repos/o/r/issues/comments/2 -F body=@{body}"
        create = f"api --method POST repos/o/r/issues/7/comments -F body=@{body}"
        cases = [
            ("the bot's own comment", pages, marker, 0, update),
            ("only someone else's copy", pages[:2], marker, 0, create),
            ("a forged marker line", pages, f"{marker} $(id)", 1, None),
            ("the API failing", None, marker, 1, None),
        ]
        for case, comments, first_line, status, call in cases:
            result, calls = post_comment(step, comments, first_line)
            writes = [c for c in calls if "--method" in c]
            if (result.returncode != 0) != bool(status) or writes != ([call] if call else []):
                found.append(f"{path}, {case}: exit {result.returncode}, {writes}")
    return found


FAKE_GH = """#!/bin/sh
echo "$*" >> "$GH_LOG"
case "$1 $2" in
  "api --paginate")
    [ -f "$GH_COMMENTS" ] || exit 1
    cat "$GH_COMMENTS" ;;
esac
"""


def post_comment(
    step: Mapping[str, Any], pages: list[list[dict[str, Any]]] | None, first_line: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The comment job's step against a stand-in `gh` whose listing returns `pages` (None: the
    call fails), with one comment body starting with `first_line`."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bin").mkdir()
        (work / "bin" / "gh").write_text(FAKE_GH)
        (work / "bin" / "gh").chmod(0o755)
        body = work / "comments" / "pr-comment-x" / "comment.md"
        body.parent.mkdir(parents=True)
        body.write_text(f"{first_line}\nthe new preview\n")
        comments = work / "listing.json"
        if pages is not None:
            # gh --paginate prints each page's array, one after the other.
            comments.write_text("".join(json.dumps(p) for p in pages))
        env = {
            "GH_LOG": str(work / "calls"),
            "GH_COMMENTS": str(comments),
            "GITHUB_REPOSITORY": "o/r",
            "PR": "7",
        }
        result = run_step(step, work, env, path=(work / "bin",))
        calls = (work / "calls").read_text().splitlines() if (work / "calls").exists() else []
        return result, calls


USES = re.compile(r"^\s*(- )?uses: (?P<action>[\w.-]+/[\w./-]+)@(?P<ref>\S+)(?P<comment>.*)$")


def unpinned_action(repo: Repo) -> Findings:
    """Every action at a full commit SHA, its tag in a comment; one SHA per action."""
    found = []
    pins: dict[str, set[str]] = {}
    for path in WORKFLOW_PATHS:
        for line in repo[path].splitlines():
            if "uses:" not in line:
                continue
            match = USES.match(line)
            if not match:
                found.append(f"{path}: not an action at a ref: {line.strip()}")
                continue
            if not re.fullmatch(r"[0-9a-f]{40}", match["ref"]):
                found.append(f"{path}: {match['action']} at {match['ref']}, not a commit SHA")
            if not re.match(r" # v\d+\.\d+\.\d+\b", match["comment"]):
                found.append(f"{path}: {match['action']} without its tag: {line.strip()}")
            tag = re.match(r" # (v\S+)", match["comment"])
            pins.setdefault(match["action"], set()).add(f"{match['ref']} {tag and tag[1]}")
        for _, _, name, job in jobs({p: repo[p] for p in WORKFLOW_PATHS}):
            for step in job["steps"]:
                if "uses" in step and not re.fullmatch(
                    r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", step["uses"]
                ):
                    found.append(f"{path} {name}: {step['uses']}")
    found += [f"{a} pinned {len(p)} ways: {sorted(p)}" for a, p in pins.items() if len(p) > 1]
    return sorted(set(found))


def checkout_keeps_the_token(repo: Repo) -> Findings:
    """No checkout leaves the job's token in .git/config for the code that runs after it."""
    return [
        f"{path} {name}: a checkout without persist-credentials: false"
        for path, _, name, job in jobs(repo)
        for step in steps_using(job, "actions/checkout")
        if step.get("with", {}).get("persist-credentials") is not False
    ]


def cli_version_drifts(repo: Repo) -> Findings:
    """The Pulumi CLI of every job is the one exact version .pulumi-version names, the version of
    the SDK the program and the pack pin."""
    # The program runs the SDK uv.lock pins (pyproject.toml gives the library's range); the
    # policy pack pins its SDK exactly.
    pins = {
        "uv.lock": next(
            p["version"] for p in tomllib.loads(repo["uv.lock"])["package"] if p["name"] == "pulumi"
        ),
        "policy/pyproject.toml": next(
            d.split("==")[1]
            for d in tomllib.loads(repo["policy/pyproject.toml"])["project"]["dependencies"]
            if d.startswith("pulumi==")
        ),
    }
    found = [f"SDK pins differ: {pins}"] if len(set(pins.values())) != 1 else []
    pinned = repo[".pulumi-version"]
    if not re.fullmatch(r"\d+\.\d+\.\d+\n?", pinned) or pinned.strip() != pins["uv.lock"]:
        found.append(f".pulumi-version holds {pinned!r}, SDK {pins['uv.lock']}")
    for path, _, name, job in jobs(repo):
        for step in steps_using(job, "pulumi/actions"):
            given = step.get("with", {})
            if given.get("pulumi-version-file") != ".pulumi-version" or "pulumi-version" in given:
                found.append(f"{path} {name}: the Pulumi CLI is not .pulumi-version's: {given}")
    return found


def expression_in_a_script(repo: Repo) -> Findings:
    """No `${{ }}` inside a `run:` script (a branch name or PR title would become shell code):
    values reach scripts through `env:`."""
    return [
        f"{path} {name}: {step['run'][:60]!r}"
        for path, _, name, job in jobs(repo)
        for step in job["steps"]
        if "${{" in str(step.get("run", ""))
    ]


def pull_request_loads_its_own_pack(repo: Repo) -> Findings:
    """A preview applies the base branch's policy pack and the modules it imports, never the
    pull request's own (possibly weakened) policy/."""
    found = []
    needed = {"/policy/", *(f"/{p}" for p in pack_imports())}
    for path, _, name, job in jobs(repo):
        runs = "\n".join(str(s.get("run", "")) for s in job["steps"])
        previews = "pulumi preview " in runs or "make fleet-preview " in runs
        if not previews:
            continue
        trusted = [
            s
            for s in steps_using(job, "actions/checkout")
            if s.get("with", {}).get("path") == "trusted"
        ]
        if len(trusted) != 1:
            found.append(f"{path} {name}: no checkout of the base branch's pack")
            continue
        ref = trusted[0]["with"].get("ref", "")
        if not ref.startswith("${{ github.event.pull_request.base.sha"):
            found.append(f"{path} {name}: the pack is checked out at {ref!r}")
        missing = needed - set(str(trusted[0]["with"].get("sparse-checkout", "")).split())
        if missing:
            found.append(f"{path} {name}: the pack's checkout lacks {sorted(missing)}")
        if "pulumi preview " in runs and "--policy-pack trusted/policy " not in runs:
            found.append(f"{path} {name}: pulumi preview without the base branch's pack")
        if (
            "make fleet-preview " in runs
            and "rm -rf policy\nln -s trusted/policy policy\n" not in runs
        ):
            found.append(f"{path} {name}: the fleet driver would load the branch's policy/")
        if re.search(r"--policy-pack (?!trusted/policy )", runs):
            found.append(f"{path} {name}: a preview loads another pack")
    return found


def guardrail_change_without_security_review(repo: Repo) -> Findings:
    """CODEOWNERS names an owner for the workflows, the pack and everything it loads, and the
    CI roles' code (the last matching line wins, as on GitHub)."""
    rules = []
    for line in repo[".github/CODEOWNERS"].splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            pattern, *names = line.split()
            rules.append((pattern, names))
    guarded = [
        ".github/workflows/deploy.yml",
        ".github/dependabot.yml",
        "policy/guardrails.py",
        "scripts/ci_roles.py",
        "scripts/fleet_roles.py",
        "components/plan/policies.py",
    ]
    found = []
    for file in [*guarded, *sorted(pack_imports())]:
        owners: list[str] = []
        for pattern, who in rules:
            rooted = pattern.lstrip("/")
            if file == rooted or (rooted.endswith("/") and file.startswith(rooted)):
                owners = who
        if not owners:
            found.append(f"{file}: no code owner must approve a change")
    return found


def unhashed_or_unaudited_tools(repo: Repo) -> Findings:
    """uv is bootstrapped only from wheels whose sha256 the repository holds, for the Makefile's
    one UV_VERSION; `make lint` runs actionlint with shellcheck and zizmor, offline, failing on
    any finding of medium severity or higher."""
    found = []
    makefile = repo["Makefile"]
    [version] = re.findall(r"^UV_VERSION := (\S+)$", makefile, re.M)
    [hashes_file] = re.findall(r"^UV_HASHES := (\S+)$", makefile, re.M)
    install = [line for line in makefile.splitlines() if "-m pip install" in line]
    if len(install) != 1 or not all(
        flag in install[0]
        for flag in ("--require-hashes", "--only-binary=:all:", "-r $(UV_HASHES)")
    ):
        found.append(f"uv installed without its hashes: {install}")
    requirements = repo[hashes_file].replace("\\\n", " ")
    lines = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    if len(lines) != 1 or lines[0].split()[0] != f"uv=={version}":
        found.append(f"{hashes_file} is not uv=={version} alone: {lines}")
    digests = re.findall(r"--hash=sha256:([0-9a-f]{64})\b", requirements)
    if len(set(digests)) < 6 or len(digests) != requirements.count("--hash="):
        found.append(f"{hashes_file}: {len(set(digests))} sha256 digests, one per wheel expected")
    lint = makefile.split("\nlint:")[1].split("\n\n")[0]
    if "$(BIN)/actionlint -shellcheck=$(BIN)/shellcheck" not in lint:
        found.append("actionlint runs without shellcheck")
    if "$(BIN)/zizmor --offline --min-severity=medium" not in lint:
        found.append("zizmor does not gate the workflows in make lint")
    return found


def unwatched_dependencies(repo: Repo) -> Findings:
    """Dependabot proposes updates of the actions' SHAs and of every uv lock of the project."""
    updates = yaml.safe_load(repo[".github/dependabot.yml"])["updates"]
    watched = {
        (u["package-ecosystem"], d)
        for u in updates
        for d in u.get("directories", [u.get("directory")])
    }
    locks = {
        "/" + str(p.parent.relative_to(PROJECT_DIR)).replace(".", "").strip("/")
        for p in PROJECT_DIR.glob("**/uv.lock")
        if not any(part.startswith((".", "venv")) for part in p.relative_to(PROJECT_DIR).parts[:-1])
    }
    needed = {("github-actions", "/"), *(("uv", d.rstrip("/") or "/") for d in locks)}
    return [f"Dependabot does not watch {e} in {d}" for e, d in sorted(needed - watched)]


@dataclass(frozen=True)
class Attack:
    name: str
    check: Callable[[Repo], Findings]
    # Edits (file, text, replacement) that would let the attack through.
    tries: tuple[tuple[str, str, str], ...]


PREVIEW, DEPLOY, FLEET, RELEASE, DOCTOR = WORKFLOW_PATHS
FAIL_CLOSED_UPSTREAM = "ROLE_ARN: ${{ vars.UPSTREAM_AWS_PREVIEW_ROLE_ARN }}"
ATTACKS = (
    Attack(
        "a branch's preview assumes a deploy or admin role",
        deploy_role_from_a_pull_request,
        (
            (
                FLEET,
                "role-to-assume: ${{ vars.FLEET_AWS_PREVIEW_ROLE_ARN }}",
                "role-to-assume: ${{ github.event_name == 'pull_request' && vars.FLEET_AWS_PREVIEW_ROLE_ARN || vars.FLEET_AWS_ROLE_ARN }}",
            ),
            (
                PREVIEW,
                "role-to-assume: ${{ vars.UPSTREAM_AWS_PREVIEW_ROLE_ARN }}",
                "role-to-assume: ${{ vars.UPSTREAM_AWS_ROLE_ARN }}",
            ),
            (
                FLEET,
                "if: ${{ !cancelled() && github.event_name != 'pull_request' && needs.members"
                ".result == 'success' && needs.members.outputs.count != '0' && github.ref == "
                "'refs/heads/main' }}",
                "if: ${{ !cancelled() && needs.members.result == 'success' }}",
            ),
        ),
    ),
    Attack(
        "an unset preview (or deploy) role variable lets the job go on",
        unset_role_variable_falls_through,
        (
            (PREVIEW, FAIL_CLOSED_UPSTREAM, "ROLE_ARN: ${{ vars.UPSTREAM_AWS_ROLE_ARN }}"),
            (
                PREVIEW,
                '"::error title=$ROLE_VARIABLE is not set::',
                '"::warning title=$ROLE_VARIABLE is not set::',
            ),
            (
                FLEET,
                'Nothing falls back to another role."\n            exit 1\n',
                'Nothing falls back to another role."\n            exit 0\n',
            ),
            (
                FLEET,
                "        with:\n          role-to-assume: ${{ vars.FLEET_AWS_PREVIEW_ROLE_ARN }}",
                "        if: vars.FLEET_AWS_PREVIEW_ROLE_ARN != ''\n        with:\n          role-to-assume: ${{ vars.FLEET_AWS_PREVIEW_ROLE_ARN }}",
            ),
            (
                DOCTOR,
                'Nothing falls back to another role."\n            exit 1\n',
                'Nothing falls back to another role."\n            exit 0\n',
            ),
            (
                DOCTOR,
                "        id: upstream\n        with:\n",
                "        id: upstream\n        if: vars.UPSTREAM_AWS_PREVIEW_ROLE_ARN != ''\n        with:\n",
            ),
        ),
    ),
    Attack(
        "a deploy role assumed from a branch, a dispatch or outside the deploy environment",
        deploy_role_outside_the_deploy_environment,
        (
            (DEPLOY, "    branches: [main]\n", "    branches: [main]\n  workflow_dispatch:\n"),
            (
                FLEET,
                "if: github.event_name != 'pull_request' && github.ref == 'refs/heads/main'",
                "if: github.event_name != 'pull_request'",
            ),
            (FLEET, "  workflow_dispatch:\n", "  workflow_run:\n    workflows: [Deploy]\n"),
            (DEPLOY, "  push:\n    branches: [main]\n", "  push:\n"),
            (DEPLOY, "    environment: ${{ vars.DEPLOY_ENVIRONMENT || 'production' }}\n", ""),
            (
                PREVIEW,
                "    environment: ${{ vars.PREVIEW_ENVIRONMENT || 'preview' }}",
                "    environment: ${{ vars.DEPLOY_ENVIRONMENT || 'production' }}",
            ),
            (
                DOCTOR,
                "role-to-assume: ${{ vars.DOWNSTREAM_AWS_PREVIEW_ROLE_ARN }}",
                "role-to-assume: ${{ vars.DOWNSTREAM_AWS_ROLE_ARN }}",
            ),
        ),
    ),
    Attack(
        "a preview, or any job, gets an OIDC token outside its environment",
        oidc_outside_an_environment,
        (
            (FLEET, "    environment: ${{ vars.PREVIEW_ENVIRONMENT || 'preview' }}\n", ""),
            (
                FLEET,
                "(vars.PREVIEW_ENVIRONMENT || 'preview') || ",
                "(vars.DEPLOY_ENVIRONMENT || 'production') || ",
            ),
            (
                PREVIEW,
                "  plan:\n    runs-on: ubuntu-latest\n    permissions:\n      contents: read\n",
                "  plan:\n    runs-on: ubuntu-latest\n    permissions:\n      contents: read\n      id-token: write\n",
            ),
            (
                DOCTOR,
                "    timeout-minutes: 30\n    environment: ${{ vars.PREVIEW_ENVIRONMENT || 'preview' }}\n",
                "    timeout-minutes: 30\n",
            ),
            # The doctor's member lookup on a schedule, in the environment deploy roles trust.
            (
                DOCTOR,
                "    runs-on: ubuntu-latest\n    environment: ${{ vars.PREVIEW_ENVIRONMENT || 'preview' }}\n    permissions:\n      contents: read\n      id-token: write # Organizations",
                "    runs-on: ubuntu-latest\n    environment: ${{ vars.DEPLOY_ENVIRONMENT || 'production' }}\n    permissions:\n      contents: read\n      id-token: write # Organizations",
            ),
        ),
    ),
    Attack(
        "a fork's pull request reaches a credential, an environment or a write permission",
        fork_reaches_a_credential,
        (
            (
                FLEET,
                " && (github.event_name != 'pull_request' || "
                "github.event.pull_request.head.repo.full_name == github.repository)",
                "",
            ),
            (
                PREVIEW,
                "    if: github.event.pull_request.head.repo.full_name == github.repository\n",
                "",
            ),
            (
                FLEET,
                "  plan:\n    # What the fleet's",
                "  plan:\n    environment: ${{ vars.PREVIEW_ENVIRONMENT || 'preview' }}\n    # What",
            ),
            (
                FLEET,
                "      - run: make install\n      - name: make plan\n",
                "      - run: make install\n        env:\n          TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}\n      - name: make plan\n",
            ),
        ),
    ),
    Attack(
        "a secret visible to a job that runs the branch's code",
        secrets_reach_branch_code,
        (
            (
                PREVIEW,
                "\njobs:\n",
                "\nenv:\n  PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}\n\njobs:\n",
            ),
            (
                PREVIEW,
                "      - run: make test\n",
                "      - run: make test\n        env:\n          PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}\n",
            ),
            (
                FLEET,
                "      FLEET_PARALLELISM: ${{ vars.FLEET_PARALLELISM }}\n",
                "      FLEET_PARALLELISM: ${{ vars.FLEET_PARALLELISM }}\n      TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}\n",
            ),
            (
                DEPLOY,
                "          PULUMI_CONFIG_PASSPHRASE: ${{ secrets.PULUMI_CONFIG_PASSPHRASE }}\n        with:\n",
                "          PULUMI_CONFIG_PASSPHRASE: ${{ secrets.PULUMI_CONFIG_PASSPHRASE }}\n        with:\n          github-token: ${{ secrets.ADMIN_TOKEN }}\n",
            ),
            (
                DOCTOR,
                "\nenv:\n  TEMPLATE:",
                "\nenv:\n  TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}\n  TEMPLATE:",
            ),
        ),
    ),
    Attack(
        "a job that can write to the pull request runs its code",
        writer_runs_branch_code,
        (
            (
                FLEET,
                "      pull-requests: write # the fleet preview comment\n    steps:\n",
                "      pull-requests: write # the fleet preview comment\n    steps:\n      - uses: actions/checkout@fbc6f3992d24b796d5a048ff273f7fcc4a7b6c09 # v5.1.0\n        with:\n          persist-credentials: false\n      - run: make -s fleet-comment SUMMARIES=x > comment.md\n",
            ),
            (
                PREVIEW,
                "      id-token: write # OIDC token for AWS\n",
                "      id-token: write # OIDC token for AWS\n      pull-requests: write\n",
            ),
            (
                RELEASE,
                "      - uses: actions/download-artifact@",
                "      - run: make test\n      - uses: actions/download-artifact@",
            ),
            (
                DOCTOR,
                "      id-token: write # OIDC tokens for the upstream's and the downstream's read-only roles\n",
                "      id-token: write\n      issues: write\n",
            ),
        ),
    ),
    Attack(
        "another user's comment carrying the marker is edited, or an error posts twice",
        comment_edits_another_users_comment,
        (
            (PREVIEW, "select(.user.login == $author\n                  and ", "select("),
            (
                FLEET,
                '(((.body // "") | split("\\n")[0] | rtrimstr("\\r")) == $marker)',
                '((.body // "") | contains($marker))',
            ),
            (PREVIEW, 'if ! [[ "$marker" =~ $pattern ]]; then', "if false; then"),
            (FLEET, '            id="$(gh api', '            id="$(set +o pipefail; gh api'),
        ),
    ),
    Attack(
        "an action moves under its tag",
        unpinned_action,
        (
            (
                DEPLOY,
                "actions/checkout@fbc6f3992d24b796d5a048ff273f7fcc4a7b6c09 # v5.1.0",
                "actions/checkout@v5",
            ),
            (
                FLEET,
                "pulumi/actions@8e5e406f4007fca908480587cb9893c07090f58d # v7.0.0\n",
                "pulumi/actions@8e5e406f4007fca908480587cb9893c07090f58d\n",
            ),
            (
                PREVIEW,
                "aws-actions/configure-aws-credentials@e6de054238d6b7531b4efff3b6587d9aade6a06c",
                "aws-actions/configure-aws-credentials@e6de054238d6b7531b4efff3b6587d9aade6a06d",
            ),
            (
                DOCTOR,
                "actions/upload-artifact@b7c566a772e6b6bfb58ed0dc250532a479d7789f # v6.0.0",
                "actions/upload-artifact@v6",
            ),
        ),
    ),
    Attack(
        "a checkout leaves the token on disk",
        checkout_keeps_the_token,
        (
            (PREVIEW, "persist-credentials: false", "persist-credentials: true"),
            (
                FLEET,
                "        with:\n          persist-credentials: false\n      - uses: actions/setup-python",
                "\n      - uses: actions/setup-python",
            ),
            (DOCTOR, "persist-credentials: false", "persist-credentials: true"),
        ),
    ),
    Attack(
        "the Pulumi CLI in CI is not the SDK's version",
        cli_version_drifts,
        (
            (FLEET, "pulumi-version-file: .pulumi-version", 'pulumi-version: "3.271.0"'),
            (DEPLOY, "          pulumi-version-file: .pulumi-version\n", ""),
            (
                PREVIEW,
                "          pulumi-version-file: .pulumi-version\n",
                "          pulumi-version-file: .pulumi-version\n          pulumi-version: 3.272.0\n",
            ),
            (".pulumi-version", "3.272.0\n", "3.273.0\n"),
            (".pulumi-version", "3.272.0\n", "^3.272.0\n"),
            (
                "uv.lock",
                'name = "pulumi"\nversion = "3.272.0"',
                'name = "pulumi"\nversion = "3.273.0"',
            ),
        ),
    ),
    Attack(
        "a branch name or PR title becomes shell code",
        expression_in_a_script,
        (
            (
                PREVIEW,
                "      - run: make test\n",
                '      - run: echo "${{ github.event.pull_request.title }}"\n',
            ),
            (
                FLEET,
                'make fleet-preview TEMPLATE="$TEMPLATE"',
                "make fleet-preview TEMPLATE=${{ vars.FLEET_TEMPLATE }}",
            ),
            (
                RELEASE,
                'gh release create "$GITHUB_REF_NAME"',
                'gh release create "${{ github.ref_name }}"',
            ),
            (
                DOCTOR,
                'run: make doctor DOWNSTREAM_STACK="$DOWNSTREAM_STACK"',
                'run: make doctor DOWNSTREAM_STACK="$DOWNSTREAM_STACK" IMAGE="${{ inputs.image }}"',
            ),
        ),
    ),
    Attack(
        "a pull request weakens the policy pack its own preview applies",
        pull_request_loads_its_own_pack,
        (
            (PREVIEW, "--policy-pack trusted/policy ", "--policy-pack policy "),
            (
                PREVIEW,
                "ref: ${{ github.event.pull_request.base.sha }}",
                "ref: ${{ github.event.pull_request.head.sha }}",
            ),
            (FLEET, "            /components/rules/policy_rules.py\n", ""),
            (
                FLEET,
                "          ln -s trusted/policy policy\n",
                "          ln -s trusted/policy policy-base\n",
            ),
        ),
    ),
    Attack(
        "a change of the guardrails, the workflows or the CI roles merged without security review",
        guardrail_change_without_security_review,
        (
            (".github/CODEOWNERS", "/policy/ @OWNER/platform-security\n", ""),
            (
                ".github/CODEOWNERS",
                "/components/rules/quotas.py @OWNER/platform-security\n",
                "/components/rules/quotas.py @OWNER/platform-security\n/components/\n",
            ),
            (".github/CODEOWNERS", "/.github/ @", "/.github/workflows/preview.yml @"),
        ),
    ),
    Attack(
        "a tampered uv wheel, or workflows no longer audited",
        unhashed_or_unaudited_tools,
        (
            ("Makefile", "UV_VERSION := 0.13.9", "UV_VERSION := 0.13.10"),
            ("Makefile", "--only-binary=:all: --require-hashes", "--only-binary=:all:"),
            ("requirements-uv.txt", "    --hash=sha256:", "    --hash=sha512:"),
            ("Makefile", "$(BIN)/actionlint -shellcheck=$(BIN)/shellcheck", "$(BIN)/actionlint"),
            ("Makefile", "--min-severity=medium", "--min-severity=high"),
        ),
    ),
    Attack(
        "an outdated action or dependency stays unnoticed",
        unwatched_dependencies,
        (
            (".github/dependabot.yml", '"/policy", ', ""),
            (
                ".github/dependabot.yml",
                "package-ecosystem: github-actions",
                "package-ecosystem: docker",
            ),
        ),
    ),
)
REPO = real_repo()


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_refused(attack: Attack) -> None:
    if attack.check is comment_edits_another_users_comment and not shutil.which("jq"):
        pytest.skip("jq (which the comment job runs) is not installed here")
    assert attack.check(REPO) == []


@pytest.mark.parametrize(
    ("attack", "edit"),
    [(a, e) for a in ATTACKS for e in a.tries],
    ids=[f"{a.name} [{i}]" for a in ATTACKS for i in range(len(a.tries))],
)
def test_each_way_in_is_caught(attack: Attack, edit: tuple[str, str, str]) -> None:
    if attack.check is comment_edits_another_users_comment and not shutil.which("jq"):
        pytest.skip("jq (which the comment job runs) is not installed here")
    path, old, new = edit
    assert old in REPO[path], f"the edit no longer applies to {path}: {old!r}"
    edited = {**REPO, path: REPO[path].replace(old, new, 1)}
    assert attack.check(edited) != []


def test_the_workflows_audit_refuses_a_template_injection(tmp_path: Path) -> None:
    """zizmor, as `make lint` runs it (which must find nothing in the repository), refuses a
    pull request's title in a script."""
    lint = REPO["Makefile"].split("\nlint:")[1].split("\n\n")[0]
    [command] = [line.strip() for line in lint.splitlines() if "zizmor" in line]
    argv = command.replace("$(BIN)", str(PROJECT_DIR / ".venv" / "bin")).split()
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    text = REPO[PREVIEW].replace(
        "      - run: make test\n",
        '      - run: echo "${{ github.event.pull_request.title }}"\n',
        1,
    )
    (workflows / "preview.yml").write_text(text)
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "template-injection" in result.stdout, result.stdout
    (workflows / "preview.yml").write_text(REPO[PREVIEW])
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_the_uv_hashes_file_is_what_make_uv_hashes_writes() -> None:
    """requirements-uv.txt is exactly what `make uv-hashes` renders for the wheels it names, so
    a digest cannot be slipped in (or one wheel's swapped for another's) without it showing."""
    text = REPO["requirements-uv.txt"]
    wheels = re.findall(r"^#   (uv-\S+\.whl)$", text, re.M)
    digests = re.findall(r"--hash=sha256:([0-9a-f]{64})", text)
    [version] = re.findall(r"^UV_VERSION := (\S+)$", REPO["Makefile"], re.M)
    assert len(wheels) == len(digests) >= 6
    assert all(w.startswith(f"uv-{version}-") for w in wheels)
    assert uv_hashes.render(version, zip(wheels, digests, strict=True)) == text
    # One wheel per platform make supports (two musl/glibc aarch64 tags share one wheel).
    for tag in (
        "manylinux_2_17_x86_64",
        "musllinux_1_1_x86_64",
        "aarch64",
        "macosx_10_12_x86_64",
        "macosx_11_0_arm64",
        "win_amd64",
    ):
        assert any(tag in w for w in wheels), tag
