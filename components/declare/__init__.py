"""The Pulumi layer: the public components (`PullThroughCache`, `UpstreamRegistryAccess`), the
program that maps stack config to them, and the thin mapping of a plan to pulumi-aws resources.

A library user imports the components from here: `from ecr_ptc.declare import PullThroughCache`.
"""

from .downstream import (
    Alerts,
    AlertSubscription,
    AlertTopic,
    CacheRule,
    ImageTagMutability,
    PullThroughCache,
    PullThroughCacheArgs,
    RegionalCacheRule,
    RepositoryTemplate,
    SubscriptionProtocol,
    UpstreamRegistry,
)
from .upstream import GrantVia, UpstreamRegistryAccess, UpstreamRegistryAccessArgs

__all__ = [
    "AlertSubscription",
    "AlertTopic",
    "Alerts",
    "CacheRule",
    "GrantVia",
    "ImageTagMutability",
    "PullThroughCache",
    "PullThroughCacheArgs",
    "RegionalCacheRule",
    "RepositoryTemplate",
    "SubscriptionProtocol",
    "UpstreamRegistry",
    "UpstreamRegistryAccess",
    "UpstreamRegistryAccessArgs",
]
