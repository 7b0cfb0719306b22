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


def test_the_components_carry_the_package_types() -> None:
    stack, account, config = CONFIGS["downstream-full"]
    run = run_program(config, stack, RecordingMocks(account, {UPSTREAM_STACK: UPSTREAM_OUTPUTS}))
    assert run.monitor.registrations["ecr-ptc"].typ == "ecr-ptc:index:PullThroughCache"
