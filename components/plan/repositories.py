"""The cache repositories a downstream stack's rules fill: their ARNs, in one place."""

from __future__ import annotations

from ..inputs.stack_config import DownstreamConfig
from ..rules.aws_names import repositories_under, repository_arn_in


def cache_repository_arns_any_region(config: DownstreamConfig, account_id: str) -> list[str]:
    """The same namespaces with `*` for the region, for policies that name the regions in an
    aws:RequestedRegion condition instead."""
    return sorted(
        {
            repository_arn_in(
                config.region.partition,
                "*",
                account_id,
                repositories_under(rule.ecr_repository_prefix),
            )
            for rule in config.rules
        }
    )
