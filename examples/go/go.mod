// An example program of its own (not part of the repository's ecr-ptc project). After
// `pulumi package add github.com/<owner>/ecr-ptc/provider@vX.Y.Z`, run the `go mod edit -replace`
// line it prints, then `go mod tidy`.
module ecr-ptc-example-go

go 1.23

require (
	github.com/pulumi/pulumi-aws/sdk/v7 v7.0.0
	github.com/pulumi/pulumi/sdk/v3 v3.200.0
)
