"""`make up` / `make preview`: pre-flight checks, then the upstream stack, then the downstream.

The downstream reads the upstream's outputs, so the upstream goes first and a failure there stops
the run. Each side may use its own AWS credentials: UPSTREAM_AWS_PROFILE and DOWNSTREAM_AWS_PROFILE
name a profile (unset: the ambient credentials).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
INSTALL_URL = "https://www.pulumi.com/docs/iac/download-install/"
POLICY_PACK = "policy"
PASSPHRASE_VARIABLES = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")


class PreflightError(Exception):
    """Something `pulumi up` needs is missing; the message says what and how to fix it."""


@dataclass(frozen=True)
class Side:
    name: str  # upstream | downstream
    stack: str
    profile: str | None


Whoami = Callable[[str | None], str]
Runner = Callable[..., subprocess.CompletedProcess[bytes]]


def sts_account(profile: str | None) -> str:
    """The account of the credentials `profile` (None: the default chain) resolves to."""
    import boto3  # imported here so `make test` of the rest does not depend on it

    return str(boto3.Session(profile_name=profile).client("sts").get_caller_identity()["Account"])


def check_cli(which: Callable[[str], str | None]) -> str:
    pulumi = which("pulumi")
    if pulumi is None:
        raise PreflightError(
            f"the Pulumi CLI (`pulumi`) is not on PATH. Install it ({INSTALL_URL}), open a new "
            "shell so PATH includes it, and run `make up` again."
        )
    return pulumi


def check_backend(env: Mapping[str, str]) -> None:
    backend = env.get("PULUMI_BACKEND_URL", "")
    self_managed = not backend.startswith(("https://", "http://"))
    if self_managed and not any(v in env for v in PASSPHRASE_VARIABLES):
        raise PreflightError(
            f"the state backend {backend or '(default)'} keeps secrets with a passphrase, and "
            "neither PULUMI_CONFIG_PASSPHRASE nor PULUMI_CONFIG_PASSPHRASE_FILE is set. Export "
            "one (this project stores no secrets; an empty PULUMI_CONFIG_PASSPHRASE= is accepted)."
        )
    if backend.startswith("file://"):
        Path(backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)


def check_credentials(sides: Sequence[Side], whoami: Whoami) -> dict[str, str]:
    accounts: dict[str, str] = {}
    for side in sides:
        variable = f"{side.name.upper()}_AWS_PROFILE"
        try:
            accounts[side.name] = whoami(side.profile)
        except Exception as err:  # any credential failure gets the same advice
            source = f"profile {side.profile!r} ({variable})" if side.profile else "the environment"
            raise PreflightError(
                f"no usable AWS credentials for the {side.name} stack from {source}: {err}. "
                f"Log in (e.g. `aws sso login`), or set {variable} to a profile of the "
                f"{side.name} account."
            ) from None
    return accounts


def deploy(
    command: str,
    sides: Sequence[Side],
    env: Mapping[str, str],
    which: Callable[[str], str | None] = shutil.which,
    whoami: Whoami = sts_account,
    run: Runner = subprocess.run,
    yes: bool = False,
) -> int:
    pulumi = check_cli(which)
    check_backend(env)
    accounts = check_credentials(sides, whoami)
    for side in sides:
        print(f"==> {command} {side.name} stack {side.stack!r} in account {accounts[side.name]}")
        side_env = dict(env)
        if side.profile:
            side_env["AWS_PROFILE"] = side.profile
        steps = [
            [pulumi, "stack", "select", "--create", side.stack],
            # `--yes` (YES=1) skips up's confirmation prompt; preview has none to skip.
            [
                pulumi,
                command,
                "--stack",
                side.stack,
                # The guardrails CI applies, applied here too (make install sets up policy/venv).
                "--policy-pack",
                POLICY_PACK,
                *(["--yes"] if yes and command == "up" else []),
            ],
        ]
        for step in steps:
            result = run(step, cwd=PROJECT_DIR, env=side_env, check=False)
            if result.returncode != 0:
                print(f"`{' '.join(step[1:])}` failed; stopping before the next stack.")
                return result.returncode
    return 0


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=("up", "preview"))
    parser.add_argument("--upstream-stack", default="upstream")
    parser.add_argument("--downstream-stack", default="downstream")
    args = parser.parse_args(argv)
    env = dict(os.environ if env is None else env)
    sides = [
        Side("upstream", args.upstream_stack, env.get("UPSTREAM_AWS_PROFILE") or None),
        Side("downstream", args.downstream_stack, env.get("DOWNSTREAM_AWS_PROFILE") or None),
    ]
    try:
        return deploy(args.command, sides, env, yes=env.get("YES") == "1")
    except PreflightError as err:
        print(f"make {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
