"""Upgrading from the first version replaces nothing: every resource a 0.1.0 stack holds keeps
its URN, directly or through an alias, though the components' types moved to ecr-ptc:index:*
(the package's tokens) and the consumer policy's group moved under PullThroughCache."""

from __future__ import annotations

from typing import Any

import pytest

from tests.pulumi_run import (
    DOWNSTREAM_ACCOUNT,
    UPSTREAM_ACCOUNT,
    ProgramRun,
    RecordingMocks,
    Registration,
    run_program,
)
from tests.test_downstream_stack import BASE, UPSTREAM_OUTPUTS, UPSTREAM_STACK

# What version 0.1.0 registered for these configs (qualified type and name of each URN),
# recorded from that version under the same mocks. Deployed stacks hold exactly these.
V1_URNS: dict[str, list[str]] = {
    "upstream-registry": [
        "pulumi:pulumi:Stack$ecr-ptc:upstream:UpstreamRegistryAccess::ecr-ptc",
        "ecr-ptc:upstream:UpstreamRegistryAccess$aws:ecr/accountSetting:AccountSetting::ecr-ptc-registry-policy-scope",
        "ecr-ptc:upstream:UpstreamRegistryAccess$aws:ecr/registryPolicy:RegistryPolicy::ecr-ptc-registry-policy",
    ],
    "upstream-repository": [
        "pulumi:pulumi:Stack$ecr-ptc:upstream:UpstreamRegistryAccess::ecr-ptc",
        "ecr-ptc:upstream:UpstreamRegistryAccess$aws:ecr/repositoryPolicy:RepositoryPolicy::ecr-ptc-golden/python",
        "ecr-ptc:upstream:UpstreamRegistryAccess$aws:ecr/repositoryPolicy:RepositoryPolicy::ecr-ptc-golden/base",
    ],
    "downstream-full": [
        "pulumi:pulumi:Stack$ecr-ptc:downstream:PullThroughCache::ecr-ptc",
        "pulumi:pulumi:Stack$ecr-ptc:downstream:CacheConsumerAccess::ecr-ptc-consumer",
        "ecr-ptc:downstream:PullThroughCache$ecr-ptc:downstream:CacheRepositoryTemplates::ecr-ptc-template",
        "ecr-ptc:downstream:PullThroughCache$aws:iam/role:Role::ecr-ptc-role",
        "ecr-ptc:downstream:CacheRepositoryTemplates$aws:iam/role:Role::ecr-ptc-template-role",
        "ecr-ptc:downstream:CacheConsumerAccess$aws:iam/policy:Policy::ecr-ptc-consumer-policy",
        "ecr-ptc:downstream:PullThroughCache$aws:iam/rolePolicy:RolePolicy::ecr-ptc-role-policy",
        "ecr-ptc:downstream:CacheRepositoryTemplates$aws:iam/rolePolicy:RolePolicy::ecr-ptc-template-role-policy",
        "ecr-ptc:downstream:CacheConsumerAccess$aws:iam/rolePolicyAttachment:RolePolicyAttachment::ecr-ptc-consumer-eks-node",
        "ecr-ptc:downstream:CacheRepositoryTemplates$aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate::ecr-ptc-template-eu-west-1-central",
        "ecr-ptc:downstream:CacheRepositoryTemplates$aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate::ecr-ptc-template-eu-west-1-golden",
        "ecr-ptc:downstream:CacheRepositoryTemplates$aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate::ecr-ptc-template-eu-central-1-central",
        "ecr-ptc:downstream:CacheRepositoryTemplates$aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate::ecr-ptc-template-eu-central-1-golden",
        "ecr-ptc:downstream:PullThroughCache$aws:ecr/pullThroughCacheRule:PullThroughCacheRule::ecr-ptc-eu-west-1-central",
        "ecr-ptc:downstream:PullThroughCache$aws:ecr/pullThroughCacheRule:PullThroughCacheRule::ecr-ptc-eu-west-1-golden",
        "ecr-ptc:downstream:PullThroughCache$aws:ecr/pullThroughCacheRule:PullThroughCacheRule::ecr-ptc-eu-central-1-central",
        "ecr-ptc:downstream:PullThroughCache$aws:ecr/pullThroughCacheRule:PullThroughCacheRule::ecr-ptc-eu-central-1-golden",
    ],
}  # fmt: skip

UPSTREAM = {"aws:region": "us-east-1", "ecr-ptc:downstreamAccountIds": [DOWNSTREAM_ACCOUNT]}
CONFIGS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "upstream-registry": ("upstream", UPSTREAM_ACCOUNT, {**UPSTREAM, "ecr-ptc:repositoryPrefix": "golden"}),
    "upstream-repository": ("upstream", UPSTREAM_ACCOUNT, {
        **UPSTREAM,
        "ecr-ptc:grantVia": "repository",
        "ecr-ptc:repositories": ["golden/base", "golden/python"],
        "ecr-ptc:repositoryPrefix": "golden",
    }),
    "downstream-full": ("downstream", DOWNSTREAM_ACCOUNT, {
        **BASE,
        "ecr-ptc:consumerRoleNames": ["eks-node"],
        "ecr-ptc:repositoryTemplate": {"keepLastImages": 10, "resourceTags": {"team": "platform"}},
    }),
}  # fmt: skip


def _qualified(urn: str) -> str:
    return urn.split("::", 2)[2]


def _urn(head: str, parent: str | None, typ: str, name: str) -> str:
    """A URN as the mock monitor (which recorded V1_URNS) makes it: the parent's own type, `$`,
    the type, then the name."""
    if not parent:
        return f"{head}::{typ}::{name}"
    parent_type = parent.split("::")[2].split("$")[-1]
    return f"{head}::{parent_type}${typ}::{name}"


def _answers_to(run: ProgramRun) -> set[str]:
    """Every URN a resource of this run answers to: its own, its alias specs, and (as the engine
    derives them) the same child under each URN its parent answers to."""
    by_urn: dict[str, Registration] = {r.urn: r for r in run.monitor.registrations.values()}
    # An alias with no parent means "a child of the stack": the engine writes such URNs without
    # the stack's type, the mock monitor with it; the V1 URNs were recorded by the mock.
    [root] = [urn for urn, r in by_urn.items() if r.typ == "pulumi:pulumi:Stack"]
    memo: dict[str, set[str]] = {}

    def names(reg: Registration) -> set[str]:
        if reg.urn in memo:
            return memo[reg.urn]
        head = reg.urn.split("::", 2)[0] + "::" + reg.urn.split("::", 2)[1]
        found = {reg.urn}
        parents = names(by_urn[reg.parent]) if reg.parent in by_urn else {reg.parent}
        for parent in parents:
            found.add(_urn(head, parent, reg.typ, _name(reg)))
        for name, typ, parent_urn, no_parent in reg.aliases:
            alias_parents = {root} if no_parent else ({parent_urn} if parent_urn else parents)
            for parent in alias_parents:
                found.add(_urn(head, parent, typ or reg.typ, name or _name(reg)))
        memo[reg.urn] = found
        return found

    return {_qualified(u) for reg in by_urn.values() for u in names(reg)}


def _name(reg: Registration) -> str:
    return reg.urn.rsplit("::", 1)[-1]


@pytest.mark.parametrize("case", sorted(V1_URNS))
def test_every_first_version_resource_keeps_its_urn(case: str) -> None:
    stack, account, config = CONFIGS[case]
    mocks = RecordingMocks(account, {UPSTREAM_STACK: UPSTREAM_OUTPUTS})
    run = run_program(config, stack, mocks)
    missing = sorted(set(V1_URNS[case]) - _answers_to(run))
    assert missing == [], f"would be replaced on upgrade: {missing}"


STACK_TYPE = "pulumi:pulumi:Stack"


def _engine_form(mock_urns: list[str]) -> set[str]:
    """The recorded URNs as the Pulumi engine writes them: the full chain of parent types, and
    nothing for the root stack (the mock monitor keeps only the parent's own type). In 0.1.0
    each component type had one resource, so the chain follows from the parent's type."""
    by_type = {q.split("::")[0].split("$")[-1]: q for q in mock_urns}

    def chain(qualified: str) -> str:
        parent_type, _, typ = qualified.split("::")[0].rpartition("$")
        if parent_type in ("", STACK_TYPE):
            return typ
        return f"{chain(by_type[parent_type])}${typ}"

    return {f"{chain(q)}::{q.rsplit('::', 1)[-1]}" for q in mock_urns}


def _engine_answers(run: ProgramRun) -> set[str]:
    """Every URN (engine form: type chain and name) a resource answers to, with the engine's
    rules: its own, its alias specs, and each URN its parent answers to with its type appended."""
    regs = {r.urn: r for r in run.monitor.registrations.values()}
    [root] = [urn for urn, r in regs.items() if r.typ == STACK_TYPE]
    memo: dict[str, set[str]] = {}

    def under(parent_chain: str | None, typ: str) -> str:
        return typ if not parent_chain else f"{parent_chain}${typ}"

    def chains(urn: str) -> set[str | None]:
        """The type chains (None: the root stack) the resource `urn` answers to."""
        if urn == root or urn not in regs:
            return {None}
        if urn in memo:
            return set(memo[urn])
        reg = regs[urn]
        found: set[str] = set()
        parents = chains(reg.parent)
        found |= {under(p, reg.typ) for p in parents}
        for _, typ, parent_urn, no_parent in reg.aliases:
            alias_parents = {None} if no_parent else (chains(parent_urn) if parent_urn else parents)
            found |= {under(p, typ or reg.typ) for p in alias_parents}
        memo[urn] = found
        return set(found)

    return {f"{c}::{_name(r)}" for urn, r in regs.items() if urn != root for c in chains(urn)}


@pytest.mark.parametrize("case", sorted(V1_URNS))
def test_every_first_version_urn_is_kept_by_the_engines_rules(case: str) -> None:
    stack, account, config = CONFIGS[case]
    run = run_program(config, stack, RecordingMocks(account, {UPSTREAM_STACK: UPSTREAM_OUTPUTS}))
    missing = sorted(_engine_form(V1_URNS[case]) - _engine_answers(run))
    assert missing == [], f"would be replaced on upgrade: {missing}"


def test_the_components_carry_the_package_types() -> None:
    stack, account, config = CONFIGS["downstream-full"]
    run = run_program(config, stack, RecordingMocks(account, {UPSTREAM_STACK: UPSTREAM_OUTPUTS}))
    assert run.monitor.registrations["ecr-ptc"].typ == "ecr-ptc:index:PullThroughCache"
