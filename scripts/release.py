"""Releases: the check a tag must pass before anything is published, and the release's text.

    python -m scripts.release check --tag vX.Y.Z [--merged-into origin/main]
    python -m scripts.release notes --version X.Y.Z

`check` exits 1 with one line saying what is wrong when the tag is not `v` followed by
pyproject.toml's `[project].version` (X.Y.Z), CHANGELOG.md has no `## [X.Y.Z]` section or an
empty one, uv.lock records another version of the project (`make lock` after a bump), or, with
`--merged-into`, the checked-out commit is not in that branch's history. `notes` prints the
CHANGELOG section of a version, without its heading: the body of the GitHub release.
.github/workflows/release.yml runs both when a tag `v*` is pushed.

Standard library only: it runs with any Python 3.11+, before any environment is installed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "ecr-ptc"
VERSION = re.compile(r"\d+\.\d+\.\d+")
# A Keep a Changelog heading: `## [X.Y.Z]`, then optionally ` - YYYY-MM-DD` (or anything else).
HEADING = re.compile(r"## \[(?P<version>[^\]]*)\](?:\s.*)?")
# Link reference definitions (`[X.Y.Z]: https://...`) after the last section are not its text.
LINK_DEFINITION = re.compile(r"\[[^\]]+\]:\s+\S+.*")


class ReleaseError(Exception):
    """What stops a release: one line."""


def project_version(root: Path = ROOT) -> str:
    """pyproject.toml's `[project].version`: the one place the version is written."""
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def changelog_section(text: str, version: str) -> str | None:
    """The text of CHANGELOG.md's `## [version]` section, without its heading and the blank
    lines around it (None when there is no such section). It ends at the next `## ` heading."""
    lines = text.splitlines()
    starts = [
        i
        for i, line in enumerate(lines)
        if (match := HEADING.fullmatch(line.rstrip())) and match["version"] == version
    ]
    if not starts:
        return None
    if len(starts) > 1:
        raise ReleaseError(f"CHANGELOG.md has {len(starts)} sections ## [{version}]")
    body: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith("## ") or line.startswith("# "):
            break
        body.append(line)
    while body and (not body[-1].strip() or LINK_DEFINITION.fullmatch(body[-1])):
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
    return "\n".join(body) + "\n" if body else ""


def notes(version: str, root: Path = ROOT) -> str:
    """The release's text: CHANGELOG.md's section of the version."""
    section = changelog_section((root / "CHANGELOG.md").read_text(), version)
    if section is None:
        raise ReleaseError(f"CHANGELOG.md has no section ## [{version}]")
    if not section.strip():
        raise ReleaseError(f"CHANGELOG.md's section ## [{version}] is empty")
    return section


def locked_version(root: Path = ROOT) -> str | None:
    """The project's version as uv.lock records it (uv writes it there on `make lock`)."""
    lock = tomllib.loads((root / "uv.lock").read_text())
    for package in lock.get("package", []):
        if package.get("name") == NAME and "version" in package:
            return str(package["version"])
    return None


def merged_into(branch: str, root: Path = ROOT) -> None:
    """The checked-out commit is in the history of `branch` (a ref git knows, origin/main)."""
    found = subprocess.run(
        ["git", "merge-base", "--is-ancestor", "HEAD", branch],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode == 1:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        raise ReleaseError(
            f"commit {head or 'HEAD'} is not in the history of {branch}: "
            "tag a commit of main, after its review"
        )
    if found.returncode != 0:
        reason = (found.stderr.strip().splitlines() or ["no reason given"])[0]
        raise ReleaseError(f"git could not compare HEAD with {branch}: {reason}")


def check(tag: str, root: Path = ROOT, branch: str | None = None) -> str:
    """Everything a release of `tag` needs from the repository; what was checked, as one line."""
    version = project_version(root)
    if not VERSION.fullmatch(version):
        raise ReleaseError(f"pyproject.toml's version {version!r} is not X.Y.Z")
    if tag != f"v{version}":
        raise ReleaseError(f"tag {tag!r} is not pyproject.toml's version: expected v{version}")
    section = notes(version, root)
    locked = locked_version(root)
    if locked != version:
        raise ReleaseError(
            f"uv.lock records {NAME} {locked}, pyproject.toml {version}: run make lock"
        )
    if branch is not None:
        merged_into(branch, root)
    where = f", in the history of {branch}" if branch else ""
    lines = len(section.splitlines())
    return f"{tag}: pyproject.toml, uv.lock and CHANGELOG.md ({lines} lines) agree{where}"


def main(argv: Sequence[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.release", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check", help="may this tag be released? (exit 1 if not)")
    checking.add_argument("--tag", required=True, help="the pushed tag, vX.Y.Z")
    checking.add_argument(
        "--merged-into",
        metavar="BRANCH",
        help="also require the checked-out commit in this branch's history (origin/main)",
    )
    printing = commands.add_parser("notes", help="print a version's CHANGELOG section")
    printing.add_argument("--version", required=True, help="X.Y.Z")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            print(check(args.tag, root, args.merged_into))
        else:
            sys.stdout.write(notes(args.version, root))
    except ReleaseError as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    except (OSError, tomllib.TOMLDecodeError, KeyError) as error:
        print(f"release: the repository's files could not be read: {error!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
