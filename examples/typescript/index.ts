// Both sides of ecr-ptc in one program, through its component package: the upstream account
// grants the downstream account its golden/ repositories, which the downstream caches in two
// regions. `pulumi package add github.com/<owner>/ecr-ptc/provider@vX.Y.Z` generates the SDK
// (sdks/ecr-ptc) and adds it to package.json as @ecrptc/ecr-ptc.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as ecrPtc from "@ecrptc/ecr-ptc";

const config = new pulumi.Config();
const downstreamAccountId = config.require("downstreamAccountId");

// One AWS provider per account (add assumeRoles to reach the other account's role).
const upstreamAccount = new aws.Provider("upstream-account", { region: "us-east-1" });
const downstreamAccount = new aws.Provider("downstream-account", { region: "eu-west-1" });

const upstream = new ecrPtc.UpstreamRegistryAccess(
    "upstream",
    {
        region: "us-east-1",
        downstreamAccountIds: [downstreamAccountId],
        repositoryPrefix: "golden",
    },
    { providers: [upstreamAccount] },
);

const cache = new ecrPtc.PullThroughCache(
    "cache",
    {
        accountId: downstreamAccountId,
        regions: ["eu-west-1", "eu-central-1"],
        rules: [{ ecrRepositoryPrefix: "golden", upstreamRepositoryPrefix: "golden" }],
        // What the upstream grants, as it says it; the cache checks the pairing, waits for it.
        upstream: upstream.upstream,
        repositoryTemplate: { expireUntaggedAfterDays: 14 },
        tags: { team: "platform" },
    },
    { providers: [downstreamAccount] },
);

export const upstreamRegistryUrl = upstream.registryUrl;
export const cacheRoleArn = cache.roleArn;
export const cacheRoleName = cache.roleName;
export const consumerPolicyArn = cache.consumerPolicyArn;
export const imageUriPrefixes = cache.rules.apply((rules) => rules.map((r) => r.imageUriPrefix));
