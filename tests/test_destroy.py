"""`make destroy` driven as an operator drives it, through the stand-in `pulumi` (tests/fake_pulumi:
a process per command, a self-managed backend's state, tags and locks): every downstream, fleet
members included, before the upstream; the upstream only with CONFIRM; nothing destroyed when a
check fails; only the fleet's own stacks; a failure or a signal stops before the upstream."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts import destroy, fleet
from scripts.stack_files import PROJECT_DIR, cli_yaml_text
from tests.fake_cli import FakeCli, install
from tests.test_fleet_driver import UPSTREAM_OUTPUTS

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and sessions of POSIX")

UPSTREAM_ACCOUNT, DOWNSTREAM_ACCOUNT = "111122223333", "444455556666"
PROFILES = {"up": UPSTREAM_ACCOUNT, "down": DOWNSTREAM_ACCOUNT}
TEMPLATE = "fleet"
MEMBERS = ["210000000000", "210000000001", "210000000002"]
OWNED = {fleet.TAG_TEMPLATE: TEMPLATE, fleet.TAG_PROJECT: "ecr-ptc"}
RULES = [
    {"region": "eu-west-1", "ecrRepositoryPrefix": "golden"},
    {"region": "eu-central-1", "ecrRepositoryPrefix": "ROOT"},
]
REPOSITORIES = ["golden/library/alpine", "golden/team/app", "mirror/other"]


def member(account: str) -> str:
    return f"{TEMPLATE}-{account}"


def whoami(profile: str | None) -> str:
    return PROFILES[str(profile)]


class Paginator:
    def __init__(self, names: list[str]) -> None:
        self.names = names

    def paginate(self) -> list[dict[str, Any]]:
        return [{"repositories": [{"repositoryName": n} for n in self.names]}]


class Ecr:
    def __init__(self, names: list[str]) -> None:
        self.names = names

    def get_paginator(self, name: str) -> Paginator:
        assert name == "describe_repositories"
        return Paginator(self.names)


def ecr_clients(profile: str | None) -> Any:
    assert profile == "down", "the cache repositories are listed with the downstream credentials"
    return lambda region: Ecr(REPOSITORIES)


class Site:
    """A project with an upstream, a downstream and a fleet template, all deployed, and the
    stand-in CLI."""

    def __init__(self, root: Path) -> None:
        self.cli: FakeCli = install(root / "cli")
        self.project = root / "project"
        self.project.mkdir(parents=True)
        (self.project / "Pulumi.yaml").write_text("name: ecr-ptc\nruntime: python\n")
        reads = {"ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream"}
        self.stack_file(
            "upstream",
            **{
                "aws:region": "eu-west-1",
                "aws:allowedAccountIds": [UPSTREAM_ACCOUNT],
                "ecr-ptc:downstreamAccountIds": [DOWNSTREAM_ACCOUNT],
                "ecr-ptc:extraRegistryPolicyStatements": [{"Sid": "Replication"}],
            },
        )
        self.stack_file(
            "downstream",
            **reads,
            **{
                "aws:region": "eu-west-1",
                "aws:allowedAccountIds": [DOWNSTREAM_ACCOUNT],
                "ecr-ptc:rules": [{"ecrRepositoryPrefix": "golden"}],
            },
        )
        # A template not named downstream or downstream-* says its side: the fleet plans each
        # member (`fleet-<account>`) with it, and `make destroy` checks it is a downstream.
        self.stack_file(
            TEMPLATE, **reads, **{"ecr-ptc:side": "downstream", "ecr-ptc:accounts": MEMBERS}
        )
        self.cli.create_stack("upstream", deployed=True, resources=2, outputs=UPSTREAM_OUTPUTS)
        self.cli.create_stack("downstream", deployed=True, outputs={"rules": RULES})
        for account in MEMBERS:
            self.cli.create_stack(member(account), tags=OWNED, deployed=True)

    def stack_file(self, stack: str, **config: Any) -> None:
        path = self.project / f"Pulumi.{stack}.yaml"
        path.write_text(cli_yaml_text({"config": config}))

    def env(self, **extra: str) -> dict[str, str]:
        defaults = {"UPSTREAM_AWS_PROFILE": "up", "DOWNSTREAM_AWS_PROFILE": "down"}
        return self.cli.env(**{**defaults, "FLEET_PARALLELISM": "4", **extra})

    def make(self, *args: str, ask: Any = None, **env: str) -> tuple[int, str]:
        """`make destroy TEMPLATE=fleet` in-process, the CLI a real process."""
        out = io.StringIO()
        code = destroy.main(
            ["--template", TEMPLATE, *args],
            env=self.env(**env),
            which=lambda name: str(self.cli.bin_dir / name),
            whoami=whoami,
            run=quiet_run,
            ecr_clients=ecr_clients,
            ask=ask,
            project_dir=self.project,
            out=out,
            err=out,
        )
        return code, out.getvalue()

    def destroyed(self) -> list[str]:
        """The stacks of each `pulumi destroy`, in order."""
        found = []
        for call in self.cli.calls():
            argv = [a for a in call["argv"] if a != "--non-interactive"]
            if argv[:1] == ["destroy"]:
                found.append(argv[argv.index("--stack") + 1])
        return found

    def deployed(self, stack: str) -> bool:
        return bool(self.cli.resources(stack))


def quiet_run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """The single stacks' `pulumi destroy`, its output kept out of the test's."""
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_every_downstream_goes_before_the_upstream_and_the_stacks_stay(site: Site) -> None:
    code, out = site.make(CONFIRM=UPSTREAM_ACCOUNT)
    assert code == destroy.DONE, out
    order = site.destroyed()
    assert order[0] == "downstream"
    assert sorted(order[1:-1]) == [member(a) for a in MEMBERS]
    assert order[-1] == "upstream"
    for stack in ["upstream", "downstream", *map(member, MEMBERS)]:
        assert stack in site.cli.stacks(), f"{stack} is kept"
        assert not site.deployed(stack), f"{stack} holds nothing"
        assert not site.cli.locked(stack)
    for account in MEMBERS:
        tags = site.cli.tags(member(account))
        assert tags[fleet.TAG_TEMPLATE] == TEMPLATE, "still the fleet's"
        assert tags[fleet.TAG_RUN].endswith(fleet.DONE)
    # What stays, said before anything went.
    assert "REGISTRY_POLICY_SCOPE of account 111122223333 in eu-west-1 stays V2" in out
    assert "deleted whole (DeleteRegistryPolicy), with the 1 statement(s) of others" in out
    assert "eu-west-1 golden/: 2 repositories: golden/library/alpine, golden/team/app" in out
    assert "eu-central-1 ROOT (every repository of the registry" in out
    assert "--preserve-config" in out
    assert out.index("stays V2") < out.index("==> destroy downstream stack")


def test_without_confirm_the_upstream_stays_and_the_line_says_how_to_confirm(site: Site) -> None:
    asked: list[str] = []

    def ask(question: str) -> bool:
        asked.append(question)
        return True

    code, out = site.make(ask=ask)
    assert code == destroy.DONE, out
    # The listing says the upstream is not part of this run, and how it would be.
    assert f"NOT in this run: it goes only with CONFIRM={UPSTREAM_ACCOUNT}" in out
    assert asked == [
        "Destroy 4 downstream stack(s): downstream, " + ", ".join(member(a) for a in MEMBERS) + "?"
    ]
    assert "upstream" not in site.destroyed()
    assert site.deployed("upstream")
    assert not site.deployed("downstream")
    assert (
        out.rstrip()
        .splitlines()[-1]
        .endswith(
            "To destroy it too: make destroy UPSTREAM_STACK=upstream DOWNSTREAM_STACK=downstream "
            f"TEMPLATE={TEMPLATE} CONFIRM={UPSTREAM_ACCOUNT}"
        )
    )

    before = len(site.destroyed())
    code, out = site.make(CONFIRM=UPSTREAM_ACCOUNT)
    assert code == destroy.DONE, out
    assert site.destroyed()[before:] == ["upstream"], "empty stacks are not destroyed again"
    assert "eu-west-1 golden/: 2 repositories" in out, "still there: by the stack file's rules"
    assert not site.deployed("upstream")


def test_a_wrong_confirm_destroys_nothing(site: Site) -> None:
    for wrong in ("upstream", "111122223334", f" {UPSTREAM_ACCOUNT}"):
        code, out = site.make(CONFIRM=wrong)
        assert code == destroy.REFUSED
        assert f"must be exactly {UPSTREAM_ACCOUNT}" in out and "Nothing was destroyed" in out
    assert site.destroyed() == []


def test_a_failed_preflight_destroys_nothing(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    # The upstream credentials are of another account than Pulumi.upstream.yaml pins.
    monkeypatch.setitem(PROFILES, "up", "999999999999")
    code, out = site.make(CONFIRM="999999999999")
    assert code == destroy.REFUSED and "is pinned to account 111122223333" in out
    monkeypatch.setitem(PROFILES, "up", UPSTREAM_ACCOUNT)
    # No passphrase for the self-managed backend.
    env = site.env(YES="1")
    del env["PULUMI_CONFIG_PASSPHRASE"]
    code = destroy.main(
        ["--template", TEMPLATE],
        env=env,
        which=lambda name: str(site.cli.bin_dir / name),
        whoami=whoami,
        project_dir=site.project,
        out=io.StringIO(),
        err=(err := io.StringIO()),
    )
    assert code == destroy.REFUSED and "PULUMI_CONFIG_PASSPHRASE" in err.getvalue()
    # Not interactive, neither YES=1 nor CONFIRM: what would go is listed, nothing goes.
    code, out = site.make()
    assert code == destroy.REFUSED
    assert "cannot ask (no terminal): set YES=1" in out
    assert f"or CONFIRM={UPSTREAM_ACCOUNT} for the upstream too" in out, "the account, known"
    assert "1. downstream stack 'downstream'" in out
    # Asked, and not confirmed.
    code, out = site.make(ask=lambda question: False)
    assert code == destroy.REFUSED and "not confirmed" in out
    assert site.destroyed() == []


def test_no_cli_destroys_nothing(site: Site) -> None:
    out = io.StringIO()
    code = destroy.main(
        [], env=site.env(YES="1"), which=lambda name: None, whoami=whoami, out=out, err=out
    )
    assert code == destroy.REFUSED and "`make destroy` again" in out.getvalue()
    assert site.cli.calls() == []


def test_a_member_that_fails_stops_the_run_before_the_upstream(site: Site) -> None:
    site.cli.set_scenario(member(MEMBERS[1]), fail=["destroy"], message="AccessDenied: ecr")
    code, out = site.make(CONFIRM=UPSTREAM_ACCOUNT)
    assert code == destroy.FAILED, out
    assert "upstream" not in site.destroyed()
    assert site.deployed("upstream") and site.deployed(member(MEMBERS[1]))
    assert not site.deployed(member(MEMBERS[0])) and not site.deployed(member(MEMBERS[2]))
    assert f"{fleet.DESTROY_FAILED:<15} {member(MEMBERS[1])}" in out
    assert "AccessDenied: ecr" in out and "stopping before the upstream" in out
    assert not site.cli.locked(member(MEMBERS[1]))

    site.cli.clear_scenario()
    assert site.make(CONFIRM=UPSTREAM_ACCOUNT)[0] == destroy.DONE
    assert site.destroyed()[-2:] == [member(MEMBERS[1]), "upstream"]


def test_the_downstream_stack_failing_stops_before_the_members(site: Site) -> None:
    site.cli.set_scenario("downstream", fail=["destroy"])
    code, out = site.make(CONFIRM=UPSTREAM_ACCOUNT)
    assert code == destroy.FAILED
    assert site.destroyed() == ["downstream"]
    assert "was not destroyed: stopping before the fleet and the upstream" in out


def test_only_the_fleets_own_stacks_are_destroyed(site: Site) -> None:
    untagged, foreign = member("777777777777"), member("888888888888")
    site.cli.create_stack(untagged, deployed=True)
    site.cli.create_stack(foreign, tags={fleet.TAG_TEMPLATE: "other"}, deployed=True)
    site.cli.create_stack("fleet-eu-210000000000", tags={fleet.TAG_TEMPLATE: "fleet-eu"})
    # They read the upstream: CONFIRM cannot be honoured, so nothing at all is destroyed.
    code, out = site.make(CONFIRM=UPSTREAM_ACCOUNT)
    assert code == destroy.REFUSED, out
    assert f"{untagged} (named like a member of fleet 'fleet', not tagged as its own)" in out
    assert site.destroyed() == []

    code, out = site.make(YES="1")
    assert code == destroy.DONE, out
    assert sorted(site.destroyed()) == sorted(["downstream", *map(member, MEMBERS)])
    assert site.deployed(untagged) and site.deployed(foreign)
    assert f"not destroyed: {untagged} (7 resources): named like a member" in out
    assert "The upstream stack 'upstream' (account 111122223333) was not destroyed" in out


def test_other_downstream_stacks_of_the_upstream_keep_it(site: Site) -> None:
    site.stack_file(
        "downstream-eu",
        **{"ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream", "aws:region": "eu-west-1"},
    )
    site.cli.create_stack("downstream-eu", deployed=True)
    code, out = site.make(CONFIRM=UPSTREAM_ACCOUNT)
    assert code == destroy.REFUSED
    assert "downstream-eu (Pulumi.downstream-eu.yaml reads upstream 'upstream')" in out
    assert site.destroyed() == []


def test_a_downstream_reading_the_upstream_by_account_keeps_it(site: Site) -> None:
    site.stack_file(
        "downstream-us",
        **{
            "ecr-ptc:upstreamAccountId": UPSTREAM_ACCOUNT,
            "ecr-ptc:upstreamRegion": "us-east-1",
            "aws:region": "us-east-2",
        },
    )
    site.cli.create_stack("downstream-us", deployed=True)
    code, out = site.make(CONFIRM=UPSTREAM_ACCOUNT)
    assert code == destroy.REFUSED
    assert "downstream-us (Pulumi.downstream-us.yaml reads upstream 'upstream')" in out
    assert site.destroyed() == []


def test_nothing_to_destroy_is_done(site: Site) -> None:
    assert site.make(CONFIRM=UPSTREAM_ACCOUNT)[0] == destroy.DONE
    calls = len(site.cli.calls())
    code, out = site.make(CONFIRM=UPSTREAM_ACCOUNT)
    assert code == destroy.DONE and "holds nothing to destroy" in out
    assert not any("destroy" in c["argv"] for c in site.cli.calls()[calls:])


def test_a_lock_left_by_a_killed_teardown_is_cleared_by_the_next(site: Site) -> None:
    site.cli.set_scenario(member(MEMBERS[0]), exit_after_lock=True)
    code, out = site.make(YES="1")
    assert code == destroy.FAILED
    assert "killed by SIGKILL" in out and "lock it left was cleared" in out
    assert not site.cli.locked(member(MEMBERS[0]))
    site.cli.clear_scenario()
    assert site.make(CONFIRM=UPSTREAM_ACCOUNT)[0] == destroy.DONE


DRIVER = (
    "import sys\n"
    "from scripts import destroy\n"
    "from tests.test_destroy import ecr_clients, whoami\n"
    "sys.exit(destroy.main(sys.argv[2:], whoami=whoami, ecr_clients=ecr_clients,"
    " project_dir=__import__('pathlib').Path(sys.argv[1])))\n"
)


def test_sigterm_among_the_members_leaves_no_lock_and_keeps_the_upstream(
    site: Site, tmp_path: Path
) -> None:
    site.cli.set_scenario(sleep={"destroy": 60})
    site.cli.set_scenario("downstream", sleep=0)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(site.project), "--template", TEMPLATE],
        cwd=PROJECT_DIR,
        env=site.env(
            CONFIRM=UPSTREAM_ACCOUNT,
            FLEET_PARALLELISM="2",
            FLEET_GRACE_SECONDS="0.2",
            TMPDIR=str(tmp),
            PYTHONPATH=str(PROJECT_DIR),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    site.cli.wait_for(lambda: sum(site.cli.locked(member(a)) for a in MEMBERS) == 2, timeout=30)
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=30)
    assert driver.returncode == 128 + signal.SIGTERM, out + err
    assert not any(site.cli.locked(member(a)) for a in MEMBERS), "cancelled and unlocked"
    assert "upstream" not in site.destroyed() and site.deployed("upstream")
    assert f"{fleet.NOT_STARTED:<15}" in out and "SIGTERM" in out
    assert list(tmp.iterdir()) == [], "no temporary workspace left"


def test_cache_repositories_are_listed_not_guessed() -> None:
    names = [f"golden/r{i:02d}" for i in range(25)] + ["goldenish/x", "golden"]

    def client_for(region: str) -> Any:
        if region == "us-east-1":
            raise RuntimeError("AccessDeniedException: ecr:DescribeRepositories")
        return Ecr(names)

    rules = [
        {"region": "eu-west-1", "ecrRepositoryPrefix": "golden"},
        {"region": "us-east-1", "ecrRepositoryPrefix": "golden"},
    ]
    eu, us = destroy.cache_repositories(rules, client_for)
    assert eu.startswith("eu-west-1 golden/: 25 repositories: golden/r00, ")
    assert eu.endswith("golden/r19 and 5 more"), "only names under `golden/`, at most 20"
    assert us == (
        "us-east-1: could not list the repositories: AccessDeniedException: "
        "ecr:DescribeRepositories"
    )


def test_a_bad_fleet_setting_is_refused_before_the_downstream_goes(site: Site) -> None:
    code, out = site.make(YES="1", FLEET_GRACE_SECONDS="soon")
    assert code == destroy.REFUSED and "FLEET_GRACE_SECONDS" in out
    assert site.destroyed() == []


# ---- the upstream never goes as a downstream: refused at pre-flight, nothing destroyed ----------

READS_UPSTREAM = {"ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream"}


def refused(site: Site, code: int, out: str, starts: str) -> None:
    """Refused before anything was destroyed: exit status 2, one line, and no `destroy` in the
    stand-in CLI's log of every command it was run with."""
    assert code == destroy.REFUSED, out
    assert out.endswith("Nothing was destroyed.\n") and out.count("\n") == 1, out
    assert out.startswith(f"make destroy: {starts}"), out
    assert [c["argv"] for c in site.cli.calls() if "destroy" in c["argv"]] == []
    assert site.deployed("upstream") and site.deployed("downstream")


@pytest.mark.parametrize("name", ["upstream", "organization/ecr-ptc/upstream", "Upstream"])
def test_the_upstream_as_downstream_stack_is_refused(
    site: Site, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # The finding: upstream-account credentials on both sides, YES=1 and no CONFIRM destroyed
    # `upstream` although another downstream still reads it.
    monkeypatch.setitem(PROFILES, "down", UPSTREAM_ACCOUNT)
    code, out = site.make("--downstream-stack", name, YES="1")
    refused(site, code, out, f"DOWNSTREAM_STACK {name!r} is the upstream stack")
    assert "(UPSTREAM_STACK 'upstream'): valid is a downstream stack that reads it" in out
    # Named in full on the other side too.
    code, out = site.make(
        "--upstream-stack", "organization/ecr-ptc/upstream", "--downstream-stack", "upstream"
    )
    refused(site, code, out, "DOWNSTREAM_STACK 'upstream' is the upstream stack")


def test_a_downstream_stack_on_the_upstream_side_is_refused(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PROFILES, "down", UPSTREAM_ACCOUNT)
    # Another upstream, by its name; and one by ecr-ptc:side, whatever its name.
    site.stack_file("upstream-eu", **{"aws:region": "eu-central-1"})
    site.stack_file("registry", **{"ecr-ptc:side": "upstream", "aws:region": "eu-west-1"})
    for stack in ("upstream-eu", "registry"):
        site.cli.create_stack(stack, deployed=True)
    code, out = site.make("--downstream-stack", "upstream-eu", YES="1")
    refused(site, code, out, "DOWNSTREAM_STACK 'upstream-eu' is an upstream stack (by its name")
    assert "valid is a downstream stack (ecr-ptc:side: downstream in its stack file" in out
    code, out = site.make("--downstream-stack", "registry", YES="1")
    refused(
        site,
        code,
        out,
        "DOWNSTREAM_STACK 'registry' is an upstream stack (ecr-ptc:side: upstream in "
        "Pulumi.registry.yaml)",
    )
    # A side the program cannot decide is no downstream either.
    site.stack_file("prod", **READS_UPSTREAM)
    site.cli.create_stack("prod", deployed=True)
    code, out = site.make("--downstream-stack", "prod", YES="1")
    refused(site, code, out, "DOWNSTREAM_STACK 'prod' is not known to be a downstream stack")
    assert "config ecr-ptc:side is not set" in out
    # Nor a stack without a stack file: what it reads cannot be checked.
    site.cli.create_stack("downstream-gone", deployed=True)
    code, out = site.make("--downstream-stack", "downstream-gone", YES="1")
    refused(site, code, out, "DOWNSTREAM_STACK 'downstream-gone' has no stack file here")
    assert site.deployed("upstream-eu") and site.deployed("registry") and site.deployed("prod")


def test_a_downstream_stack_of_another_upstream_is_refused(site: Site) -> None:
    site.stack_file(
        "downstream-eu", **{"ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream-eu"}
    )
    site.cli.create_stack("downstream-eu", deployed=True)
    code, out = site.make("--downstream-stack", "downstream-eu", YES="1")
    refused(
        site,
        code,
        out,
        "DOWNSTREAM_STACK 'downstream-eu' reads upstream 'organization/ecr-ptc/upstream-eu' "
        "(ecr-ptc:upstreamStack in Pulumi.downstream-eu.yaml), not UPSTREAM_STACK 'upstream'",
    )
    assert "or set UPSTREAM_STACK=organization/ecr-ptc/upstream-eu" in out
    # A registry managed elsewhere, in another account than the upstream stack's.
    direct = {"ecr-ptc:upstreamAccountId": "999999999999", "ecr-ptc:upstreamRegion": "eu-west-1"}
    site.stack_file("downstream-eu", **direct)
    code, out = site.make("--downstream-stack", "downstream-eu", YES="1")
    refused(site, code, out, "DOWNSTREAM_STACK 'downstream-eu' reads the registry of account")
    assert f"ecr-ptc:upstreamAccountId {UPSTREAM_ACCOUNT}, its account" in out
    # No upstream at all.
    site.stack_file("downstream-eu", **{"aws:region": "eu-west-1"})
    code, out = site.make("--downstream-stack", "downstream-eu", YES="1")
    refused(site, code, out, "DOWNSTREAM_STACK 'downstream-eu' reads no upstream")
    # The upstream stack's account named directly is the upstream's: that one goes.
    site.stack_file("downstream-eu", **{**direct, "ecr-ptc:upstreamAccountId": UPSTREAM_ACCOUNT})
    code, out = site.make("--downstream-stack", "downstream-eu", "--template", "downstream-eu")
    assert code == destroy.REFUSED and "cannot ask (no terminal)" in out, "checks passed"
    code, out = site.make(
        "--downstream-stack", "downstream-eu", "--template", "downstream-eu", YES="1"
    )
    assert code == destroy.DONE, out
    assert site.destroyed() == ["downstream-eu"]


def test_an_upstream_stack_that_is_no_upstream_is_refused(site: Site) -> None:
    site.stack_file("downstream-eu", **READS_UPSTREAM)
    site.cli.create_stack("downstream-eu", deployed=True)
    code, out = site.make("--upstream-stack", "downstream-eu", CONFIRM=UPSTREAM_ACCOUNT)
    refused(site, code, out, "UPSTREAM_STACK 'downstream-eu' is a downstream stack (by its name")
    assert "valid is an upstream stack (ecr-ptc:side: upstream in its stack file" in out
    code, out = site.make("--upstream-stack", "images", YES="1")
    refused(site, code, out, "UPSTREAM_STACK 'images' is not known to be an upstream stack")
    assert site.deployed("downstream-eu")


def test_a_template_named_as_the_upstream_or_of_another_upstream_is_refused(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stacks named and tagged like members of a fleet `upstream`: YES=1 would destroy them.
    for account in MEMBERS:
        tags = {fleet.TAG_TEMPLATE: "upstream", fleet.TAG_PROJECT: "ecr-ptc"}
        site.cli.create_stack(f"upstream-{account}", tags=tags, deployed=True)
    for template in ("upstream", "organization/ecr-ptc/upstream"):
        code, out = site.make("--template", template, YES="1")
        refused(site, code, out, f"TEMPLATE {template!r} is the upstream stack")
    site.stack_file(
        "fleet-eu",
        **{
            "ecr-ptc:side": "downstream",
            "ecr-ptc:upstreamStack": "organization/ecr-ptc/upstream-eu",
            "ecr-ptc:accounts": MEMBERS,
        },
    )
    code, out = site.make("--template", "fleet-eu", YES="1")
    refused(
        site, code, out, "TEMPLATE 'fleet-eu' reads upstream 'organization/ecr-ptc/upstream-eu'"
    )
    # A template without its stack file: what its members read cannot be checked.
    code, out = site.make("--template", "gone", YES="1")
    refused(site, code, out, "TEMPLATE 'gone' has no stack file here (Pulumi.gone.yaml)")
    # A template on the upstream side.
    site.stack_file("upstream-eu", **{"aws:region": "eu-central-1"})
    code, out = site.make("--template", "upstream-eu", YES="1")
    refused(site, code, out, "TEMPLATE 'upstream-eu' is an upstream stack (by its name")
    assert all(site.deployed(f"upstream-{account}") for account in MEMBERS)


def test_the_upstream_named_and_tagged_as_a_member_is_refused(site: Site) -> None:
    # The upstream stack named like a member of the fleet and tagged as its own: the fleet step
    # would destroy it with YES=1.
    upstream = member(UPSTREAM_ACCOUNT)
    site.stack_file(
        upstream, **{"ecr-ptc:side": "upstream", "aws:allowedAccountIds": [UPSTREAM_ACCOUNT]}
    )
    site.cli.create_stack(upstream, tags=OWNED, deployed=True)
    reads = {"ecr-ptc:upstreamStack": f"organization/ecr-ptc/{upstream}"}
    site.stack_file("downstream", **reads, **{"aws:allowedAccountIds": [DOWNSTREAM_ACCOUNT]})
    site.stack_file(
        TEMPLATE, **reads, **{"ecr-ptc:side": "downstream", "ecr-ptc:accounts": MEMBERS}
    )
    code, out = site.make("--upstream-stack", upstream, YES="1")
    refused(site, code, out, f"member stack of TEMPLATE 'fleet' {upstream!r} is the upstream")
    assert site.deployed(upstream)


def test_another_upstream_named_and_tagged_as_a_member_is_refused(site: Site) -> None:
    other = member("999988887777")
    site.stack_file(other, **{"ecr-ptc:side": "upstream", "aws:region": "eu-west-1"})
    site.cli.create_stack(other, tags=OWNED, deployed=True)
    # Another stack file reads it as its upstream.
    site.stack_file("downstream-eu", **{"ecr-ptc:upstreamStack": f"organization/ecr-ptc/{other}"})
    code, out = site.make(YES="1")
    refused(
        site,
        code,
        out,
        f"member stack of TEMPLATE 'fleet' {other!r} is an upstream: Pulumi.downstream-eu.yaml "
        "reads it (ecr-ptc:upstreamStack)",
    )
    # None does, but its own stack file puts it on the upstream side.
    (site.project / "Pulumi.downstream-eu.yaml").unlink()
    code, out = site.make(YES="1")
    refused(
        site,
        code,
        out,
        f"member stack of TEMPLATE 'fleet' {other!r} is an upstream stack (ecr-ptc:side: "
        f"upstream in Pulumi.{other}.yaml)",
    )
    assert site.deployed(other) and all(site.deployed(member(a)) for a in MEMBERS)


def test_stacks_named_in_full_are_pinned_and_go(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = ["--upstream-stack", "organization/ecr-ptc/upstream"]
    full += ["--downstream-stack", "organization/ecr-ptc/downstream"]
    # A full name reads the same stack file, so its pin (aws:allowedAccountIds) is checked.
    monkeypatch.setitem(PROFILES, "up", "999999999999")
    code, out = site.make(*full, CONFIRM="999999999999")
    assert code == destroy.REFUSED and "is pinned to account 111122223333" in out, out
    assert site.destroyed() == []
    monkeypatch.setitem(PROFILES, "up", UPSTREAM_ACCOUNT)
    code, out = site.make(*full, CONFIRM=UPSTREAM_ACCOUNT)
    assert code == destroy.DONE, out
    order = site.destroyed()
    assert order[0] == "organization/ecr-ptc/downstream"
    assert order[-1] == "organization/ecr-ptc/upstream"
    assert not site.deployed("upstream") and not site.deployed("downstream")
