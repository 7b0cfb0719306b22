"""AWS quotas this program designs around: the one place each number lives.

Sources: shared/docs/ptc-facts.md ("Quotas"), from the Amazon ECR and IAM quota pages.
"""

# Pull-through-cache rules per registry (one account, one region). Not adjustable.
MAX_RULES_PER_REGISTRY = 50

# Characters of policy text (IAM and ECR count without whitespace; our text is compact anyway).
REGISTRY_POLICY_MAX_CHARS = 10_240
REPOSITORY_POLICY_MAX_CHARS = 10_240
ROLE_INLINE_POLICIES_MAX_CHARS = 10_240
MANAGED_POLICY_MAX_CHARS = 6_144
ROLE_TRUST_POLICY_MAX_CHARS = 2_048

# Pull-through-cache rule prefixes (ecrRepositoryPrefix, upstreamRepositoryPrefix).
PREFIX_MIN_CHARS = 2
PREFIX_MAX_CHARS = 30

# ECR repository names (CreateRepository).
REPOSITORY_NAME_MAX_CHARS = 256

# IAM role names.
ROLE_NAME_MAX_CHARS = 64

# Tags on an AWS resource, and repository creation templates.
MAX_TAGS_PER_RESOURCE = 50
TAG_KEY_MAX_CHARS = 128
TAG_VALUE_MAX_CHARS = 256
TEMPLATE_DESCRIPTION_MAX_CHARS = 256
