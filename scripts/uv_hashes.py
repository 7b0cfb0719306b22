"""`make uv-hashes`: the pip requirements file that `make` bootstraps uv from, with the sha256 of
each of the version's wheels for the platforms people run it on, so that pip installs uv with
`--require-hashes` (a wheel that differs from the one recorded here is refused).

Standard library only: it runs with the Python that bootstraps uv, before any environment exists.
    python -m scripts.uv_hashes 0.13.9 > requirements-uv.txt
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

# pip's platform tags, one per wheel make may install: Linux (glibc and musl) on x86_64 and
# aarch64, macOS on Intel and Apple silicon, Windows on x86_64. Elsewhere, put uv of the
# Makefile's version on PATH: make uses it as it is.
PLATFORMS = (
    "manylinux_2_17_x86_64",
    "manylinux_2_17_aarch64",
    "musllinux_1_1_x86_64",
    "musllinux_1_1_aarch64",
    "macosx_10_12_x86_64",
    "macosx_11_0_arm64",
    "win_amd64",
)

VERSION = re.compile(r"\d+\.\d+\.\d+")


def render(version: str, wheels: Iterable[tuple[str, str]]) -> str:
    """The requirements file: `(wheel file name, sha256)` pairs, each wheel once, sorted."""
    unique = sorted(set(wheels))
    comments = [
        "# uv for make's bootstrap, installed with pip --require-hashes. Written by",
        "# `make uv-hashes` for the Makefile's UV_VERSION; one sha256 per wheel:",
        *(f"#   {name}" for name, _ in unique),
    ]
    # One requirement: the version, then every hash on a continuation line.
    requirement = " \\\n".join([f"uv=={version}", *(f"    --hash=sha256:{d}" for _, d in unique)])
    return "\n".join([*comments, requirement]) + "\n"


def download(version: str, platforms: Sequence[str]) -> list[tuple[str, str]]:
    """pip downloads the version's wheel for each platform (several tags may share one wheel)."""
    found: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for platform in platforms:
            target = Path(tmp) / platform
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--platform",
                    platform,
                    "--dest",
                    str(target),
                    f"uv=={version}",
                ],
                check=True,
            )
            for wheel in sorted(target.glob("*.whl")):
                found.append((wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest()))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.uv_hashes", description=__doc__)
    parser.add_argument("version", help="uv's version (the Makefile's UV_VERSION)")
    args = parser.parse_args(argv)
    if not VERSION.fullmatch(args.version):
        parser.error(f"version {args.version!r}: expected X.Y.Z")
    sys.stdout.write(render(args.version, download(args.version, PLATFORMS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
