"""`make up` / `make preview`: pre-flight checks, then the upstream stack, then the downstream.

The downstream reads the upstream's outputs, so the upstream goes first and a failure there stops
the run. Each side may use its own AWS credentials: UPSTREAM_AWS_PROFILE and DOWNSTREAM_AWS_PROFILE
name a profile (unset: the ambient credentials).

Every check runs before anything is created or changed, the local state folder included.

`python -m scripts.deploy upstream-deployed --downstream-stack <stack>` (used by CI) exits 0 when
the upstream stack the downstream reads has its outputs, 1 when it has not been deployed yet, 2
when it could not tell.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.inputs.errors import ConfigError
from scripts.stack_files import PROJECT_FILE, load_yaml, short_name, stack_file, stack_file_config

PROJECT_DIR = Path(__file__).resolve().parent.parent
INSTALL_URL = "https://www.pulumi.com/docs/iac/download-install/"
POLICY_PACK = "policy"
PASSPHRASE_VARIABLES = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
BACKEND_VARIABLE = "PULUMI_BACKEND_URL"
FILE_PREFIX = "file://"
ALLOWED_ACCOUNTS_KEY = "aws:allowedAccountIds"
UPSTREAM_STACK_KEY = "ecr-ptc:upstreamStack"
# The one organization of a self-managed (DIY) backend: the CLI refuses any other name in
# `<organization>/<project>/<stack>`.
SELF_MANAGED_ORGANIZATION = "organization"
# An output every deployed upstream stack has (components/plan/contract.py).
UPSTREAM_DEPLOYED_OUTPUT = "upstreamAccountId"


class PreflightError(Exception):
    """Something `pulumi up` needs is missing; the message says what and how to fix it."""


@dataclass(frozen=True)
class Side:
    name: str  # upstream | downstream
    stack: str
    profile: str | None

    @property
    def profile_variable(self) -> str:
        return f"{self.name.upper()}_AWS_PROFILE"

    @property
    def credential_source(self) -> str:
        if self.profile:
            return f"profile {self.profile!r} ({self.profile_variable})"
        return f"the environment ({self.profile_variable} unset)"


Whoami = Callable[[str | None], str]
Runner = Callable[..., subprocess.CompletedProcess[Any]]
Which = Callable[[str], str | None]


def on_path(env: Mapping[str, str]) -> Which:
    """Finds a command on the PATH of `env`, the environment the command will run with (and so
    nothing when `env` has no PATH), not on the PATH of whoever called."""
    path = env.get("PATH", "")
    return lambda name: shutil.which(name, path=path) if path else None


def sts_account(profile: str | None) -> str:
    """The account of the credentials `profile` (None: the default chain) resolves to."""
    import boto3  # imported here so `make test` of the rest does not depend on it

    return str(boto3.Session(profile_name=profile).client("sts").get_caller_identity()["Account"])


# ---- the state backend -------------------------------------------------------------------------


def _resolve_file_url(url: str, project_dir: Path) -> str:
    """A file:// URL with an absolute path. The Pulumi CLI resolves a relative path against the
    directory it runs in; every pulumi command of this project runs in the project directory."""
    if not url.startswith(FILE_PREFIX):
        return url
    path, _, query = url.removeprefix(FILE_PREFIX).partition("?")
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        resolved = (project_dir / resolved).resolve()
    return f"{FILE_PREFIX}{resolved}" + (f"?{query}" if query else "")


def state_backend(env: Mapping[str, str], project_dir: Path = PROJECT_DIR) -> str | None:
    """The backend every `pulumi` command of this project uses, resolved the way the CLI does:
    PULUMI_BACKEND_URL if set and not empty, else Pulumi.yaml's `backend.url`, else None (the
    backend of `pulumi login`)."""
    url = env.get(BACKEND_VARIABLE, "")
    if not url:
        backend = load_yaml(project_dir / PROJECT_FILE).get("backend") or {}
        url = backend.get("url", "") if isinstance(backend, dict) else ""
    return _resolve_file_url(str(url), project_dir) if url else None


def is_self_managed(backend: str | None) -> bool:
    """A backend of files (file://, s3://, gs://, azblob://), not Pulumi Cloud. None, the backend
    of `pulumi login`, is unknown here: not self-managed as far as any check goes."""
    return backend is not None and not backend.startswith(("https://", "http://"))


def check_upstream_organization(upstream_stack: str, backend: str | None) -> None:
    """A self-managed backend has one organization, `organization`: a fully qualified upstream
    stack name with any other cannot exist there (the CLI refuses it)."""
    parts = upstream_stack.split("/")
    if len(parts) != 3 or not is_self_managed(backend) or parts[0] == SELF_MANAGED_ORGANIZATION:
        return
    raise ConfigError(
        UPSTREAM_STACK_KEY,
        upstream_stack,
        f"'{SELF_MANAGED_ORGANIZATION}/{parts[1]}/{parts[2]}': the state backend {backend} is "
        f"self-managed, and a self-managed backend has one organization, "
        f"{SELF_MANAGED_ORGANIZATION!r}; to read {parts[0]!r}'s stacks on Pulumi Cloud, set "
        f"{BACKEND_VARIABLE} to it (https://api.pulumi.com)",
    )


def local_state_dir(backend: str | None) -> Path | None:
    if backend is None or not backend.startswith(FILE_PREFIX):
        return None
    return Path(backend.removeprefix(FILE_PREFIX).partition("?")[0])


def check_backend(env: Mapping[str, str], project_dir: Path = PROJECT_DIR) -> str | None:
    """The state backend, after checking that a self-managed one can be opened. Creates nothing."""
    backend = state_backend(env, project_dir)
    if is_self_managed(backend) and not any(v in env for v in PASSPHRASE_VARIABLES):
        raise PreflightError(
            f"the state backend {backend} keeps secrets with a passphrase, and neither "
            "PULUMI_CONFIG_PASSPHRASE nor PULUMI_CONFIG_PASSPHRASE_FILE is set. Export one "
            "(this project stores no secrets; an empty PULUMI_CONFIG_PASSPHRASE= is accepted)."
        )
    return backend


def prepare_backend(backend: str | None) -> None:
    """Create the local state folder; called only once every check has passed."""
    folder = local_state_dir(backend)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)


# ---- the CLI and the credentials ---------------------------------------------------------------


def check_cli(which: Which, command: str) -> str:
    pulumi = which("pulumi")
    if pulumi is None:
        raise PreflightError(
            f"the Pulumi CLI (`pulumi`) is not on PATH. Install it ({INSTALL_URL}), open a new "
            f"shell so PATH includes it, and run `make {command}` again."
        )
    return pulumi


def _error_code(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


# What STS answers when the credentials themselves are the problem.
_CREDENTIAL_ERROR_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "AccessDenied",
        "InvalidToken",
    }
)


def credential_problem(err: Exception) -> str:
    """`network`, `credentials` or `other`: what a failed STS call says about the setup."""
    from botocore import exceptions as boto

    if isinstance(err, boto.ConnectionError | boto.HTTPClientError):
        # EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError, SSLError, timeouts.
        return "network"
    credential_errors = (
        boto.NoCredentialsError,
        boto.PartialCredentialsError,
        boto.ProfileNotFound,
        boto.TokenRetrievalError,
        boto.SSOError,
        boto.CredentialRetrievalError,
    )
    if isinstance(err, credential_errors) or _error_code(err) in _CREDENTIAL_ERROR_CODES:
        return "credentials"
    return "other"


def check_credentials(sides: Sequence[Side], whoami: Whoami, command: str) -> dict[str, str]:
    accounts: dict[str, str] = {}
    for side in sides:
        try:
            accounts[side.name] = whoami(side.profile)
        except Exception as err:
            problem = credential_problem(err)
            if problem == "network":
                raise PreflightError(
                    f"could not reach AWS STS to check the {side.name} stack's credentials from "
                    f"{side.credential_source}: {err}. This is a network problem, not a "
                    "credentials one: check your connection, VPN or proxy (HTTPS_PROXY, "
                    f"NO_PROXY), then run `make {command}` again."
                ) from None
            if problem == "credentials":
                raise PreflightError(
                    f"no usable AWS credentials for the {side.name} stack from "
                    f"{side.credential_source}: {err}. Log in (e.g. `aws sso login`), or set "
                    f"{side.profile_variable} to a profile of the {side.name} account, then run "
                    f"`make {command}` again."
                ) from None
            raise PreflightError(
                f"checking the {side.name} stack's AWS credentials from {side.credential_source} "
                f"failed: {err}. Fix that, then run `make {command}` again."
            ) from None
    return accounts


# ---- each stack pinned to its account ----------------------------------------------------------


def stack_config(stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any] | None:
    """The config of Pulumi.<stack>.yaml, keys fully qualified, or None without a stack file."""
    if not stack_file(project_dir, stack).is_file():
        return None
    return stack_file_config(project_dir, stack)


def allowed_accounts(stack: str, project_dir: Path = PROJECT_DIR) -> list[str] | None:
    """`aws:allowedAccountIds` of the stack file, or None when the stack pins no account."""
    config = stack_config(stack, project_dir)
    if config is None or config.get(ALLOWED_ACCOUNTS_KEY) is None:
        return None
    value = config[ALLOWED_ACCOUNTS_KEY]
    return [str(a) for a in value] if isinstance(value, list) else [str(value)]


def check_accounts(
    sides: Sequence[Side], accounts: Mapping[str, str], command: str, project_dir: Path
) -> None:
    for side in sides:
        allowed = allowed_accounts(side.stack, project_dir)
        actual = accounts[side.name]
        if allowed is not None and actual not in allowed:
            expected = " or ".join(allowed)
            raise PreflightError(
                f"stack {side.stack!r} is pinned to account {expected} ({ALLOWED_ACCOUNTS_KEY} in "
                f"Pulumi.{side.stack}.yaml), but the {side.name} credentials from "
                f"{side.credential_source} belong to account {actual}. Use credentials of "
                f"account {expected} (or correct {ALLOWED_ACCOUNTS_KEY}), then run "
                f"`make {command}` again. Nothing has been changed."
            )


# ---- the run -----------------------------------------------------------------------------------


def deploy(
    command: str,
    sides: Sequence[Side],
    env: Mapping[str, str],
    which: Which | None = None,
    whoami: Whoami = sts_account,
    run: Runner = subprocess.run,
    yes: bool = False,
    project_dir: Path = PROJECT_DIR,
) -> int:
    which = which or on_path(env)
    pulumi = check_cli(which, command)
    backend = check_backend(env, project_dir)
    accounts = check_credentials(sides, whoami, command)
    check_accounts(sides, accounts, command, project_dir)
    check_plans(sides, accounts, command, project_dir, backend)
    check_external_upstream(sides, env, which, run, command, project_dir)
    # Every check passed: only now may anything be created.
    prepare_backend(backend)
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
            result = run(step, cwd=project_dir, env=side_env, check=False)
            if result.returncode != 0:
                print(f"`{' '.join(step[1:])}` failed; stopping before the next stack.")
                return result.returncode
    return 0


def check_plans(
    sides: Sequence[Side],
    accounts: Mapping[str, str],
    command: str,
    project_dir: Path,
    backend: str | None = None,
) -> None:
    """Plan both stacks as `make plan` does, with the accounts STS named and the state backend,
    before the first `pulumi up`: a bad downstream config must not be found after the upstream
    was changed."""
    from components.inputs.stack_config import is_fleet_template
    from scripts.plan import UpstreamNotHereError, plan_repository
    from scripts.stack_files import cli_config

    present = [s for s in sides if stack_file(project_dir, s.stack).is_file()]
    for side in present:
        values = stack_file_config(project_dir, side.stack)
        if side.name == "downstream" and is_fleet_template(cli_config(values, project_dir)):
            raise PreflightError(
                f"stack {side.stack!r} is a fleet template (Pulumi.{side.stack}.yaml sets "
                "ecr-ptc:accounts or ecr-ptc:organizationalUnitIds): it is never deployed "
                f"itself. Run `make fleet-preview` / `make fleet-up TEMPLATE={side.stack}` for "
                f"its members; nothing was changed by `make {command}`."
            )
    results = plan_repository(
        project_dir,
        [s.stack for s in present],
        accounts={s.stack: accounts[s.name] for s in present},
        backend=backend,
    )
    for result in results:
        # An upstream managed outside this repository is checked by `pulumi up` itself.
        if result.error is not None and not isinstance(result.error, UpstreamNotHereError):
            raise PreflightError(
                f"stack {result.stack!r}: {result.error}. Nothing was changed; `make plan` "
                f"shows the same, fix Pulumi.{result.source}.yaml and run `make {command}` again."
            )


def check_external_upstream(
    sides: Sequence[Side],
    env: Mapping[str, str],
    which: Which,
    run: Runner,
    command: str,
    project_dir: Path,
) -> None:
    """A downstream reading an upstream stack that this run does not deploy: that stack must
    exist with its outputs, or the engine fails the downstream's stack reference mid-run."""
    upstream_stacks = {s.stack for s in sides if s.name == "upstream"}
    for side in sides:
        if side.name != "downstream":
            continue
        named = str((stack_config(side.stack, project_dir) or {}).get(UPSTREAM_STACK_KEY) or "")
        if not named or short_name(named) in upstream_stacks:
            continue
        status, message = upstream_deployed(side.stack, env, which, run, project_dir)
        if status != DEPLOYED:
            raise PreflightError(
                f"config {UPSTREAM_STACK_KEY} of stack {side.stack!r} names {named!r}, which this "
                f"run does not deploy: {message}. Deploy that stack first or fix the name; "
                f"nothing was changed by `make {command}`."
            )


# ---- has the upstream been deployed? (CI's downstream preview) ---------------------------------

DEPLOYED, NOT_DEPLOYED, UNKNOWN = 0, 1, 2


def stack_outputs(
    pulumi: str,
    stack: str,
    env: Mapping[str, str],
    run: Runner = subprocess.run,
    output: str | None = None,
    project_dir: Path = PROJECT_DIR,
) -> subprocess.CompletedProcess[str]:
    """`pulumi stack output --json` of `stack` (one `output`, or all), from the project's state."""
    return run(
        [pulumi, "stack", "output", *([output] if output else []), "--json", "--stack", stack],
        cwd=project_dir,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )


def upstream_deployed(
    downstream_stack: str,
    env: Mapping[str, str],
    which: Which | None = None,
    run: Runner = subprocess.run,
    project_dir: Path = PROJECT_DIR,
) -> tuple[int, str]:
    """Whether the upstream stack that `downstream_stack` reads exists with its outputs. A stack
    created but never deployed (a preview with `upsert` creates it) has no outputs yet."""
    try:
        config = stack_config(downstream_stack, project_dir) or {}
    except ConfigError as err:
        return UNKNOWN, str(err)
    upstream = config.get(UPSTREAM_STACK_KEY)
    if not upstream:
        return DEPLOYED, f"stack {downstream_stack!r} reads no upstream stack; nothing to wait for"
    pulumi = (which or on_path(env))("pulumi")
    if pulumi is None:
        return UNKNOWN, f"the Pulumi CLI is not on PATH ({INSTALL_URL})"
    result = stack_outputs(pulumi, str(upstream), env, run, project_dir=project_dir)
    if result.returncode != 0:
        message = (result.stderr or result.stdout or "").strip()
        if "no stack named" in message:
            return NOT_DEPLOYED, f"upstream stack {upstream!r} does not exist yet"
        return UNKNOWN, f"could not read upstream stack {upstream!r}: {message}"
    try:
        outputs = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        return UNKNOWN, f"upstream stack {upstream!r} gave unreadable outputs"
    if isinstance(outputs, dict) and UPSTREAM_DEPLOYED_OUTPUT in outputs:
        return DEPLOYED, f"upstream stack {upstream!r} is deployed"
    return NOT_DEPLOYED, f"upstream stack {upstream!r} exists but has never been deployed"


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    which: Which | None = None,
    whoami: Whoami = sts_account,
    project_dir: Path = PROJECT_DIR,
) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=("up", "preview", "upstream-deployed"))
    parser.add_argument("--upstream-stack", default="upstream")
    parser.add_argument("--downstream-stack", default="downstream")
    args = parser.parse_args(argv)
    env = dict(os.environ if env is None else env)
    if args.command == "upstream-deployed":
        status, message = upstream_deployed(
            args.downstream_stack, env, which, project_dir=project_dir
        )
        print(message, file=sys.stdout if status == DEPLOYED else sys.stderr)
        return status
    sides = [
        Side("upstream", args.upstream_stack, env.get("UPSTREAM_AWS_PROFILE") or None),
        Side("downstream", args.downstream_stack, env.get("DOWNSTREAM_AWS_PROFILE") or None),
    ]
    try:
        yes = env.get("YES") == "1"
        return deploy(args.command, sides, env, which, whoami, yes=yes, project_dir=project_dir)
    except (PreflightError, ConfigError) as err:
        print(f"make {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
