"""Releases: scripts/release.py's check and notes, the release workflow (.github/workflows/
release.yml) read as GitHub reads it with its scripts run as a runner runs them, and the version
written by hand in one place only, pyproject.toml."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from scripts import release
from tests.workflow_files import (
    FORK_PULL_REQUEST,
    NAMES,
    PULL_REQUEST,
    PUSH_TO_MAIN,
    SCHEDULE,
    WORKFLOWS,
    Event,
    condition_holds,
    dispatch,
    load,
    may_run,
    named,
    run_step,
    steps_using,
)

ROOT = Path(__file__).resolve().parent.parent
VERSION = str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])
WORKFLOW = "release.yml"

# A repository of version 1.4.2 (none of these numbers is the project's).
CHANGELOG = """\
# Changelog

What changed.

## [Unreleased]

### Added

- Something next.

## [1.4.2] - 2027-01-15

### Fixed

- A fix,
  over two lines.

### Added

- A thing.

## [1.4.1]

- Earlier.

[1.4.2]: https://example.com/compare/v1.4.1...v1.4.2
[1.4.1]: https://example.com/releases/tag/v1.4.1
"""
SECTION = """\
### Fixed

- A fix,
  over two lines.

### Added

- A thing.
"""
WHEEL = "ecr_ptc-1.4.2-py3-none-any.whl"


def repository(
    tmp_path: Path, version: str = "1.4.2", changelog: str = CHANGELOG, locked: str = "1.4.2"
) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "ecr-ptc"\nversion = "{version}"\n'
    )
    (tmp_path / "CHANGELOG.md").write_text(changelog)
    (tmp_path / "uv.lock").write_text(
        'version = 1\n\n[[package]]\nname = "boto3"\nversion = "1.4.2"\n\n'
        f'[[package]]\nname = "ecr-ptc"\nversion = "{locked}"\nsource = {{ virtual = "." }}\n'
    )
    return tmp_path


def run_main(
    capsys: pytest.CaptureFixture[str], root: Path, *argv: str
) -> tuple[int, str, list[str]]:
    """(exit status, stdout, stderr's lines) of `python -m scripts.release ARGV` on `root`."""
    status = release.main(list(argv), root)
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.release", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


# --- scripts/release.py -----------------------------------------------------------------------


def test_the_check_passes_for_the_current_version() -> None:
    result = cli("check", "--tag", f"v{VERSION}")
    assert (result.returncode, result.stderr) == (0, "")
    assert len(result.stdout.splitlines()) == 1 and result.stdout.startswith(f"v{VERSION}: ")


def test_the_check_refuses_another_tag_than_the_current_version() -> None:
    major, minor, patch = VERSION.split(".")
    result = cli("check", "--tag", f"v{major}.{minor}.{int(patch) + 1}")
    assert (result.returncode, result.stdout) == (1, "")
    [line] = result.stderr.splitlines()
    assert line.endswith(f"is not pyproject.toml's version: expected v{VERSION}")


@pytest.mark.parametrize(
    "tag",
    ["v1.4.3", "v1.4.1", "1.4.2", "v1.4", "v1.4.2-rc.1", "V1.4.2", "v1.4.2 ", "release-1.4.2"],
)
def test_the_check_refuses_a_tag_that_is_not_v_and_the_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tag: str
) -> None:
    status, out, [line] = run_main(capsys, repository(tmp_path), "check", "--tag", tag)
    assert (status, out) == (1, "")
    assert line == f"release: tag {tag!r} is not pyproject.toml's version: expected v1.4.2"


def test_the_check_passes_a_matching_tag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_main(capsys, repository(tmp_path), "check", "--tag", "v1.4.2")
    assert (status, err) == (0, [])
    assert out == "v1.4.2: pyproject.toml, uv.lock and CHANGELOG.md (8 lines) agree\n"


@pytest.mark.parametrize(
    ("changelog", "message"),
    [
        (
            "# Changelog\n\n## [Unreleased]\n\nTo be released as 1.4.2.\n\n- A fix.\n",
            "CHANGELOG.md has no section ## [1.4.2]",
        ),
        (CHANGELOG.replace("## [1.4.2] - 2027-01-15", "## 1.4.2"), "no section ## [1.4.2]"),
        (CHANGELOG.replace("## [1.4.2]", "### [1.4.2]"), "no section ## [1.4.2]"),
        (CHANGELOG.replace("## [1.4.2]", "## [v1.4.2]"), "no section ## [1.4.2]"),
        (
            "## [1.4.2]\n\n\n## [1.4.1]\n\n- Earlier.\n",
            "CHANGELOG.md's section ## [1.4.2] is empty",
        ),
        ("## [1.4.2]\n\n- A.\n\n## [1.4.2]\n\n- B.\n", "CHANGELOG.md has 2 sections ## [1.4.2]"),
    ],
)
def test_the_check_refuses_a_version_without_its_changelog_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changelog: str, message: str
) -> None:
    root = repository(tmp_path, changelog=changelog)
    status, out, [line] = run_main(capsys, root, "check", "--tag", "v1.4.2")
    assert (status, out) == (1, "")
    assert line.startswith("release: ") and line.endswith(message)


def test_the_check_refuses_a_lock_of_another_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = repository(tmp_path, locked="1.4.1")
    status, _, [line] = run_main(capsys, root, "check", "--tag", "v1.4.2")
    assert status == 1
    assert line == "release: uv.lock records ecr-ptc 1.4.1, pyproject.toml 1.4.2: run make lock"


def test_the_check_refuses_a_version_that_is_not_x_y_z(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = repository(tmp_path, version="1.4.2rc1", changelog="## [1.4.2rc1]\n\n- A.\n")
    status, _, [line] = run_main(capsys, root, "check", "--tag", "v1.4.2rc1")
    assert (status, line) == (1, "release: pyproject.toml's version '1.4.2rc1' is not X.Y.Z")


def test_the_check_refuses_a_repository_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = repository(tmp_path)
    (root / "uv.lock").unlink()
    status, _, [line] = run_main(capsys, root, "check", "--tag", "v1.4.2")
    assert status == 1 and line.startswith("release: the repository's files could not be read: ")


def test_the_check_refuses_a_commit_that_is_not_in_mains_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = repository(tmp_path)

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=root,
            check=True,
            capture_output=True,
        )

    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-q", "-m", "1.4.2")
    git("switch", "-q", "-c", "unreviewed")
    git("commit", "-q", "--allow-empty", "-m", "not on main")
    status, out, [line] = run_main(
        capsys, root, "check", "--tag", "v1.4.2", "--merged-into", "main"
    )
    assert (status, out) == (1, "")
    assert re.fullmatch(
        r"release: commit [0-9a-f]{7,} is not in the history of main: tag a commit of main, "
        r"after its review",
        line,
    )
    status, _, [line] = run_main(capsys, root, "check", "--tag", "v1.4.2", "--merged-into", "nope")
    assert status == 1 and line.startswith("release: git could not compare HEAD with nope: ")
    git("switch", "-q", "main")
    status, out, err = run_main(capsys, root, "check", "--tag", "v1.4.2", "--merged-into", "main")
    assert (status, err) == (0, [])
    assert out.rstrip().endswith("agree, in the history of main")


def test_notes_print_exactly_the_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = repository(tmp_path)
    assert run_main(capsys, root, "notes", "--version", "1.4.2") == (0, SECTION, [])
    # The last section ends before the link definitions at the bottom.
    assert run_main(capsys, root, "notes", "--version", "1.4.1") == (0, "- Earlier.\n", [])
    status, out, [line] = run_main(capsys, root, "notes", "--version", "1.4.3")
    assert (status, out, line) == (1, "", "release: CHANGELOG.md has no section ## [1.4.3]")


def test_notes_of_the_current_version_are_its_changelog_section() -> None:
    lines = (ROOT / "CHANGELOG.md").read_text().splitlines()
    [start] = [
        i for i, line in enumerate(lines) if re.fullmatch(rf"## \[{re.escape(VERSION)}\].*", line)
    ]
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    expected = "\n".join(lines[start + 1 : end]).strip("\n") + "\n"
    result = cli("notes", "--version", VERSION)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == expected and len(expected) > 100


# --- .github/workflows/release.yml ------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return load(WORKFLOW)


TAG_PUSH = Event("push", "refs/tags/v1.4.2")


def test_only_a_pushed_v_tag_starts_a_release(workflow: dict[str, Any]) -> None:
    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    assert may_run(workflow, TAG_PUSH) == {"check", "build", "publish"}
    for event in (
        PUSH_TO_MAIN,
        PULL_REQUEST,
        FORK_PULL_REQUEST,
        SCHEDULE,
        dispatch(),
        Event("push", "refs/tags/release-1.4.2"),
        Event("push", "refs/heads/v1.4.2"),  # a branch named like a tag
    ):
        assert may_run(workflow, event) == set(), event


def test_permissions_are_none_by_default_and_only_publish_writes(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {}
    assert "env" not in workflow
    assert {name: job["permissions"] for name, job in workflow["jobs"].items()} == {
        "check": {"contents": "read"},
        "build": {"contents": "read"},
        "publish": {"contents": "write"},
    }
    assert all("environment" not in job for job in workflow["jobs"].values())


def needs(workflow: dict[str, Any], name: str) -> set[str]:
    """Every job `name` waits for, directly or through another."""
    direct = workflow["jobs"][name].get("needs", [])
    found = {direct} if isinstance(direct, str) else set(direct)
    for need in list(found):
        found |= needs(workflow, need)
    return found


def test_nothing_is_built_or_published_unless_the_check_and_the_tests_pass(
    workflow: dict[str, Any],
) -> None:
    assert needs(workflow, "build") == {"check"}
    assert needs(workflow, "publish") == {"check", "build"}
    assert all("if" not in job for job in workflow["jobs"].values())
    assert not condition_holds(workflow, "build", TAG_PUSH, {"check": "failure"})
    for ended in (("success", "failure"), ("failure", "skipped"), ("success", "skipped")):
        assert not condition_holds(
            workflow, "publish", TAG_PUSH, dict(zip(("check", "build"), ended, strict=True))
        ), ended
    assert condition_holds(workflow, "publish", TAG_PUSH, {"check": "success", "build": "success"})
    checking = workflow["jobs"]["check"]
    [checkout] = steps_using(checking, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0, "main's history is needed for the check"
    step = named(
        checking, "The tag is the version of pyproject.toml, CHANGELOG.md and uv.lock, on main"
    )
    assert step["run"].strip() == (
        'python -m scripts.release check --tag "$GITHUB_REF_NAME" --merged-into origin/main'
    )
    runs = [str(s.get("run", "")).strip() for s in workflow["jobs"]["build"]["steps"]]
    tests = runs.index("make test")
    wheel = next(i for i, r in enumerate(runs) if "build --wheel" in r)
    files = next(i for i, r in enumerate(runs) if "scripts.release notes" in r)
    assert tests < wheel < files


def test_the_wheel_is_built_with_the_uv_make_installs(workflow: dict[str, Any]) -> None:
    step = named(
        workflow["jobs"]["build"], "The wheel, built by hatchling with the uv make installed"
    )
    assert step["run"] == (
        'uv_dir="$(make -s uv-dir)"\n"${uv_dir}uv" build --wheel --out-dir dist\n'
    )


def python_on_path(tmp_path: Path) -> Path:
    """A directory holding `python`: this interpreter (the runner's, after setup-python)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    return bin_dir


def checkout_with_a_built_wheel(tmp_path: Path, wheel: str) -> Path:
    """What the build job's last steps find: the repository (version 1.4.2) and dist/."""
    (tmp_path / "work").mkdir()
    work = repository(tmp_path / "work")
    (work / "scripts").mkdir()
    for name in ("__init__.py", "release.py"):
        (work / "scripts" / name).write_text((ROOT / "scripts" / name).read_text())
    (work / "provider").mkdir()
    (work / "provider" / "schema.json").write_text('{"name": "ecr-ptc"}\n')
    (work / "dist").mkdir()
    (work / "dist" / wheel).write_bytes(b"PK wheel")
    return work


def test_the_release_gets_the_wheel_schema_json_and_the_changelog_section(
    tmp_path: Path, workflow: dict[str, Any]
) -> None:
    work = checkout_with_a_built_wheel(tmp_path, WHEEL)
    bin_dir = python_on_path(tmp_path)
    files = named(workflow["jobs"]["build"], "The release's files")
    result = run_step(files, work, {"GITHUB_REF_NAME": "v1.4.2"}, (bin_dir,))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (work / "release").iterdir()) == sorted(
        [WHEEL, "notes.md", "schema.json"]
    )
    assert (work / "release" / "notes.md").read_text() == SECTION
    assert (work / "release" / "schema.json").read_text() == '{"name": "ecr-ptc"}\n'
    # What build uploads is what publish downloads, and publish uploads the wheel and schema.json.
    [upload] = steps_using(workflow["jobs"]["build"], "actions/upload-artifact")
    [download] = steps_using(workflow["jobs"]["publish"], "actions/download-artifact")
    assert upload["with"]["name"] == download["with"]["name"] == "release"
    assert upload["with"]["path"].rstrip("/") == download["with"]["path"] == "release"
    assert upload["with"]["if-no-files-found"] == "error"
    publish = tmp_path / "publish"
    publish.mkdir()
    (work / "release").rename(publish / "release")
    (bin_dir / "gh").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$GH_LOG"\n')
    (bin_dir / "gh").chmod(0o755)
    step = named(workflow["jobs"]["publish"], "The GitHub release of the tag")
    assert step["env"] == {"GH_TOKEN": "${{ github.token }}"}
    env = {
        "GITHUB_REF_NAME": "v1.4.2",
        "GITHUB_REPOSITORY": "o/r",
        "GH_LOG": str(tmp_path / "gh.log"),
    }
    result = run_step(step, publish, env, (bin_dir,))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "gh.log").read_text().splitlines() == [
        "release",
        "create",
        "v1.4.2",
        "--repo",
        "o/r",
        "--verify-tag",
        "--title",
        "ecr-ptc v1.4.2",
        "--notes-file",
        "release/notes.md",
        f"release/{WHEEL}",
        "release/schema.json",
    ]


def test_a_wheel_of_another_version_is_not_released(
    tmp_path: Path, workflow: dict[str, Any]
) -> None:
    work = checkout_with_a_built_wheel(tmp_path, "ecr_ptc-1.4.1-py3-none-any.whl")
    files = named(workflow["jobs"]["build"], "The release's files")
    result = run_step(files, work, {"GITHUB_REF_NAME": "v1.4.2"}, (python_on_path(tmp_path),))
    assert result.returncode != 0
    assert WHEEL in result.stderr


def test_the_publisher_checks_out_and_runs_nothing_of_the_repository(
    workflow: dict[str, Any],
) -> None:
    steps = workflow["jobs"]["publish"]["steps"]
    assert [s.get("uses", "").split("@")[0] for s in steps] == ["actions/download-artifact", ""]
    assert steps[1]["run"].startswith('gh release create "$GITHUB_REF_NAME" ')


USES = re.compile(r"^\s*(- )?uses: (?P<action>[\w.-]+/[\w./-]+)@(?P<ref>\S+)(?P<comment>.*)$")


def test_every_action_is_pinned_and_no_checkout_keeps_the_token(workflow: dict[str, Any]) -> None:
    lines = [line for line in (WORKFLOWS / WORKFLOW).read_text().splitlines() if "uses:" in line]
    assert len(lines) == 6
    for line in lines:
        match = USES.match(line)
        assert match, line
        assert re.fullmatch(r"[0-9a-f]{40}", match["ref"]), line
        assert re.match(r" # v\d+\.\d+\.\d+$", match["comment"]), line
    for job in workflow["jobs"].values():
        for checkout in steps_using(job, "actions/checkout"):
            assert checkout["with"]["persist-credentials"] is False
        for step in job["steps"]:
            assert "${{" not in str(step.get("run", "")), step


def test_every_workflow_is_one_the_pipeline_checks_read() -> None:
    """tests/test_pipeline_attacks.py's checks (pins, tokens, scripts, writers) read NAMES."""
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == sorted(NAMES)


# --- one version, written in pyproject.toml ---------------------------------------------------

# Files that may name the version besides pyproject.toml: the history, the README (whose pins
# the next test checks), and what make writes from pyproject.toml (make lock, make schema; tests
# and `make test`'s `uv sync --locked` check both).
NAMES_THE_VERSION = {"CHANGELOG.md", "README.md", "provider/schema.json"}


def project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the project's files are not known")
    return sorted(set(listed.stdout.splitlines()))


def test_the_version_is_written_by_hand_in_pyproject_toml_only() -> None:
    """Examples and tests read it (or use a placeholder, vX.Y.Z): a release edits
    pyproject.toml, CHANGELOG.md and the README's pins, then `make lock` and `make schema`."""
    written = re.compile(rf"(?<![\w.=])v?{re.escape(VERSION)}(?![\w.])")
    found: dict[str, list[str]] = {}
    for name in project_files():
        path = ROOT / name
        if name in NAMES_THE_VERSION or path.name == "uv.lock" or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        lines = [line.strip() for line in text.splitlines() if written.search(line)]
        if lines:
            found[name] = lines
    assert found == {"pyproject.toml": [f'version = "{VERSION}"']}


def test_the_readme_pins_the_current_version() -> None:
    pins = re.findall(r"@v(\d+\.\d+\.\d+)\b", (ROOT / "README.md").read_text())
    assert pins, "the README shows how to pin a release"
    assert set(pins) == {VERSION}, f"README pins {sorted(set(pins))}, pyproject.toml {VERSION}"


def test_the_examples_pin_a_placeholder_release() -> None:
    examples = [ROOT / name for name in project_files() if name.startswith("examples/")]
    pins = [
        pin
        for path in examples
        if path.is_file()
        for pin in re.findall(r"ecr-ptc(?:/provider)?@(\S+?)[\s\"`]", path.read_text())
    ]
    assert len(pins) >= 6 and set(pins) == {"vX.Y.Z"}, pins
