// Both sides of ecr-ptc in one program, through its component package: the upstream account
// grants the downstream account its golden/ repositories, which the downstream caches in two
// regions. `pulumi package add github.com/<owner>/ecr-ptc/provider@vX.Y.Z` generates the SDK
// (sdks/ecr-ptc) and prints the `go mod edit -replace` line that points its import path at it;
// use the import path it prints (the one below is the generated SDK's default).
package main

import (
	"github.com/pulumi/pulumi-aws/sdk/v7/go/aws"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/pulumi/pulumi-ecr-ptc/sdk/go/ecrptc"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		downstreamAccountID := config.Require(ctx, "downstreamAccountId")

		// One AWS provider per account (add AssumeRoles to reach the other account's role).
		upstreamAccount, err := aws.NewProvider(ctx, "upstream-account", &aws.ProviderArgs{
			Region: pulumi.String("us-east-1"),
		})
		if err != nil {
			return err
		}
		downstreamAccount, err := aws.NewProvider(ctx, "downstream-account", &aws.ProviderArgs{
			Region: pulumi.String("eu-west-1"),
		})
		if err != nil {
			return err
		}

		// The upstream account: a registry policy granting the downstream account golden/.
		access, err := ecrptc.NewUpstreamRegistryAccess(ctx, "upstream", &ecrptc.UpstreamRegistryAccessArgs{
			Region:               pulumi.String("us-east-1"),
			DownstreamAccountIds: pulumi.StringArray{pulumi.String(downstreamAccountID)},
			RepositoryPrefix:     pulumi.String("golden"),
		}, pulumi.Providers(upstreamAccount))
		if err != nil {
			return err
		}

		// The downstream account: the cache of golden/ in two regions. `access.Upstream` is what
		// the upstream grants, as it says it; the cache checks the pairing and waits for it.
		cache, err := ecrptc.NewPullThroughCache(ctx, "cache", &ecrptc.PullThroughCacheArgs{
			AccountId: pulumi.String(downstreamAccountID),
			Regions:   pulumi.StringArray{pulumi.String("eu-west-1"), pulumi.String("eu-central-1")},
			Rules: ecrptc.CacheRuleArray{
				ecrptc.CacheRuleArgs{
					EcrRepositoryPrefix:      pulumi.String("golden"),
					UpstreamRepositoryPrefix: pulumi.String("golden"),
				},
			},
			Upstream: access.Upstream,
			RepositoryTemplate: &ecrptc.RepositoryTemplateArgs{
				ExpireUntaggedAfterDays: pulumi.Int(14),
			},
			Tags: pulumi.StringMap{"team": pulumi.String("platform")},
		}, pulumi.Providers(downstreamAccount))
		if err != nil {
			return err
		}

		ctx.Export("upstreamRegistryUrl", access.RegistryUrl)
		ctx.Export("cacheRoleArn", cache.RoleArn)
		ctx.Export("cacheRoleName", cache.RoleName)
		ctx.Export("consumerPolicyArn", cache.ConsumerPolicyArn)
		ctx.Export("imageUriPrefixes", cache.Rules.ApplyT(func(rules []ecrptc.RegionalCacheRule) []string {
			prefixes := make([]string, 0, len(rules))
			for _, r := range rules {
				prefixes = append(prefixes, r.ImageUriPrefix)
			}
			return prefixes
		}))
		return nil
	})
}
