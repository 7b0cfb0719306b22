"""Both sides of ecr-ptc in one program, through its public Python API: the upstream account
grants the downstream account read access to its `golden/` repositories, and the downstream
account caches them in two regions. Each side runs with its own AWS provider (its own account).

Requires ecr-ptc's library, whose import package is `ecr_ptc`:
pip install git+https://github.com/<owner>/ecr-ptc@vX.Y.Z
"""

import pulumi
import pulumi_aws as aws
from ecr_ptc.declare import PullThroughCache, UpstreamRegistryAccess

config = pulumi.Config()
downstream_account_id = config.require("downstreamAccountId")
UPSTREAM_REGION = "us-east-1"
SHARED_PREFIX = "golden"


def aws_provider(name: str, region: str, role_arn: str) -> aws.Provider:
    """A provider for one account: the role's when given, else the ambient credentials'."""
    return aws.Provider(
        name, region=region, assume_roles=[{"role_arn": role_arn}] if role_arn else None
    )


upstream_provider = aws_provider("upstream", UPSTREAM_REGION, config.get("upstreamRoleArn") or "")
downstream_provider = aws_provider("downstream", "eu-west-1", config.get("downstreamRoleArn") or "")

# The upstream account: one registry policy granting the downstream account, under golden/.
# Its account is that of the upstream provider's credentials.
access = UpstreamRegistryAccess(
    "upstream",
    {
        "region": UPSTREAM_REGION,
        "downstream_account_ids": [downstream_account_id],
        "repository_prefix": SHARED_PREFIX,
    },
    pulumi.ResourceOptions(providers=[upstream_provider]),
)

# The downstream account: a cache of the upstream's golden/ repositories in two regions.
cache = PullThroughCache(
    "cache",
    {
        "account_id": downstream_account_id,
        "regions": ["eu-west-1", "eu-central-1"],
        "rules": [{"ecr_repository_prefix": "golden", "upstream_repository_prefix": "golden"}],
        # The upstream as UpstreamRegistryAccess describes it: the cache checks that the
        # upstream grants this account and that every rule stays inside the shared namespace,
        # and its resources wait for the grant.
        "upstream": access.upstream,
        "repository_template": {"expire_untagged_after_days": 14},
        "tags": {"team": "platform"},
    },
    pulumi.ResourceOptions(providers=[downstream_provider]),
)

pulumi.export("upstreamRegistryUrl", access.registry_url)
pulumi.export("cacheRoleArn", cache.role_arn)
pulumi.export("cacheRoleName", cache.role_name)
pulumi.export("consumerPolicyArn", cache.consumer_policy_arn)
pulumi.export(
    "imageUriPrefixes", cache.rules.apply(lambda rules: [r["imageUriPrefix"] for r in rules])
)
