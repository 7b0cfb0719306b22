"""UpstreamRegistryAccess: the upstream account's grant to the downstream accounts."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import quotas
from components.aws_names import SIZING_ACCOUNT_ID
from components.config import DOWNSTREAM_ACCOUNT_IDS, ORGANIZATION_ID, UpstreamConfig
from components.contract import shared_repository_arn_pattern
from components.policies import (
    canonical_json,
    policy_document,
    require_within,
    upstream_read_statements,
)

_TOO_MANY_ACCOUNTS = (
    f"grant the organization with {ORGANIZATION_ID.full} instead of listing every account"
)


def _grantees(config: UpstreamConfig) -> tuple[str, str]:
    return DOWNSTREAM_ACCOUNT_IDS.full, f"{len(config.downstream_account_ids)} accounts"


def registry_policy_text(config: UpstreamConfig, account_id: str) -> str:
    """The whole registry policy: ours and the statements others own, which must survive."""
    pattern = shared_repository_arn_pattern(config.region, account_id, config.repository_prefix)
    ours = upstream_read_statements(
        config.region.partition, config.downstream_account_ids, config.organization_id, pattern
    )
    document = policy_document([*ours, *map(dict, config.extra_registry_policy_statements)])
    return require_within(
        canonical_json(document),
        quotas.REGISTRY_POLICY_MAX_CHARS,
        f"registry policy of {config.region.name}",
        *_grantees(config),
        _TOO_MANY_ACCOUNTS,
    )


def repository_policy_text(config: UpstreamConfig) -> str:
    ours = upstream_read_statements(
        config.region.partition, config.downstream_account_ids, config.organization_id, None
    )
    return require_within(
        canonical_json(policy_document(ours)),
        quotas.REPOSITORY_POLICY_MAX_CHARS,
        "repository policy",
        *_grantees(config),
        _TOO_MANY_ACCOUNTS,
    )


@dataclass
class UpstreamRegistryAccessArgs:
    config: UpstreamConfig
    # The upstream account; every ARN in the grant is built from it.
    account_id: pulumi.Input[str]


class UpstreamRegistryAccess(pulumi.ComponentResource):
    """Lets the downstream accounts (or the organization) read this registry's images, through
    one registry policy or one repository policy per repository."""

    def __init__(
        self,
        name: str,
        args: UpstreamRegistryAccessArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ecr-ptc:upstream:UpstreamRegistryAccess", name, None, opts)
        config = args.config
        child = pulumi.ResourceOptions(parent=self)
        self.registry_policy: aws.ecr.RegistryPolicy | None = None
        self.repository_policies: list[aws.ecr.RepositoryPolicy] = []
        if config.grant_via == "repository":
            repository_policy = repository_policy_text(config)
            for repository in config.repositories:
                self.repository_policies.append(
                    aws.ecr.RepositoryPolicy(
                        f"{name}-{repository}",
                        repository=repository,
                        policy=repository_policy,
                        region=config.region.name,
                        opts=child,
                    )
                )
        else:
            # Sized now, so an oversized grant fails before anything is declared rather than
            # halfway through an update.
            registry_policy_text(config, SIZING_ACCOUNT_ID)
            registry_policy = pulumi.Output.from_input(args.account_id).apply(
                lambda account: registry_policy_text(config, account)
            )
            depends_on: list[pulumi.Resource] = []
            if config.manage_registry_policy_scope:
                # Under V1 a registry policy may hold only replication and pull-through-cache
                # import actions: ours would be rejected ("Invalid registry policy provided").
                # Deleting this resource leaves the setting at V2; AWS has no "unset".
                self.registry_policy_scope = aws.ecr.AccountSetting(
                    f"{name}-registry-policy-scope",
                    name="REGISTRY_POLICY_SCOPE",
                    value="V2",
                    region=config.region.name,
                    opts=child,
                )
                depends_on.append(self.registry_policy_scope)
            self.registry_policy = aws.ecr.RegistryPolicy(
                f"{name}-registry-policy",
                policy=registry_policy,
                region=config.region.name,
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
            )
        self.register_outputs({})
