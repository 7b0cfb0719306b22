"""The components as a library: the wheel's import package is `ecr_ptc`, it installs into a
fresh environment beside a program's own `components/` package, and its dependencies are ranges
that admit what a consumer may already pin (pulumi-aws one minor version older)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def uv() -> str:
    """The uv that `make` uses (pinned; bootstrapped into .tools/ when missing)."""
    found = subprocess.run(
        ["make", "-s", "uv-dir"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    path = Path(found) / "uv"
    if not path.is_file():
        pytest.skip("uv is not installed (make test installs it)")
    return str(path)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [uv(), "build", "--wheel", "--out-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    [built] = out.glob("*.whl")
    return built


def test_the_wheel_holds_the_package_ecr_ptc_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"ecr_ptc"}
    assert "ecr_ptc/declare/downstream.py" in names and "ecr_ptc/rules/quotas.py" in names
    version = PYPROJECT["project"]["version"]
    assert wheel.name == f"ecr_ptc-{version}-py3-none-any.whl"


def test_the_packages_own_imports_are_relative() -> None:
    """So that the folder is the same code as `components` (the program) and `ecr_ptc` (the
    wheel): an absolute `components.` import would reach a consumer's own package."""
    paths = sorted((ROOT / "components").rglob("*.py"))
    assert {p.parent.name for p in paths} >= {"inputs", "rules", "plan", "declare"}
    for path in paths:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.strip()
            assert not code.startswith(("from components", "import components")), (
                f"{path.relative_to(ROOT)}:{number}: {code}"
            )


def test_dependencies_are_ranges_that_admit_the_locked_and_one_minor_older() -> None:
    requirements = {
        Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]
    }
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    for name, requirement in requirements.items():
        assert not any(s.operator == "==" for s in requirement.specifier), requirement
        assert requirement.specifier.contains(locked[name]), (name, locked[name])
        assert any(s.operator == "<" for s in requirement.specifier), f"{name}: an upper bound"
    major, minor, _ = locked["pulumi-aws"].split(".")
    assert requirements["pulumi-aws"].specifier.contains(f"{major}.{int(minor) - 1}.0")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX venv layout")
def test_the_installed_wheel_works_beside_a_programs_own_components(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    # Its dependencies at the versions this repository locks (from uv's cache, which `make`
    # filled, else PyPI): a consumer's own environment, not this one.
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    pins = tmp_path / "constraints.txt"
    pins.write_text(
        "".join(f"{p['name']}=={p['version']}\n" for p in lock["package"] if p["name"] != "ecr-ptc")
    )
    command = [uv(), "pip", "install", "--quiet", "--python", str(python), "-c", str(pins)]
    install = subprocess.run(
        [*command, str(wheel)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    program = tmp_path / "program"
    (program / "components").mkdir(parents=True)
    (program / "components" / "__init__.py").write_text('WHOSE = "the program\'s own"\n')
    check = (
        "import components, ecr_ptc\n"
        "from ecr_ptc.declare import PullThroughCache, PullThroughCacheArgs\n"
        "from ecr_ptc.declare import UpstreamRegistryAccess\n"
        "from ecr_ptc.inputs.stack_config import parse_downstream\n"
        'assert components.WHOSE == "the program\'s own", components.__file__\n'
        "print(ecr_ptc.__file__)\n"
    )
    ran = subprocess.run(
        [str(python), "-c", check], cwd=program, env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert str(venv) in ran.stdout, "ecr_ptc from the installed wheel"
    # A program that pins pulumi-aws one minor version older than this repository's lock.
    lock_aws = next(p["version"] for p in lock["package"] if p["name"] == "pulumi-aws")
    major, minor, _ = lock_aws.split(".")
    older = f"pulumi-aws=={major}.{int(minor) - 1}.0"
    resolved = subprocess.run(
        [uv(), "pip", "install", "--dry-run", "--python", str(python), str(wheel), older],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resolved.returncode == 0, resolved.stderr
    assert f"+ {older}" in resolved.stderr + resolved.stdout, resolved.stderr
    assert shutil.which("python", path=str(venv / "bin"))
