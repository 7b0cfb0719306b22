"""AWS quotas and API bounds this program designs around: the one place each number lives.

Sources: the Amazon ECR and IAM quota pages, and the pinned botocore's ECR service model (its
`min`/`max` of each shape; tests/test_api_bounds.py checks every number that botocore states
against it). This module imports nothing: the policy pack uses it too.
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

# ECR repository names (CreateRepository; botocore's RepositoryName).
REPOSITORY_NAME_MIN_CHARS = 2
REPOSITORY_NAME_MAX_CHARS = 256

# IAM role names, and IAM paths (CreateRole's Path).
ROLE_NAME_MAX_CHARS = 64
IAM_PATH_MAX_CHARS = 512

# Tags on an AWS resource, and repository creation templates.
MAX_TAGS_PER_RESOURCE = 50
TAG_KEY_MAX_CHARS = 128
TAG_VALUE_MAX_CHARS = 256
TEMPLATE_DESCRIPTION_MAX_CHARS = 256

# A creation template's image tag mutability exclusion filters (botocore's
# ImageTagMutabilityExclusionFilters and ImageTagMutabilityExclusionFilterValue).
EXCLUSION_FILTERS_MIN = 1
EXCLUSION_FILTERS_MAX = 5
EXCLUSION_FILTER_MAX_CHARS = 128
EXCLUSION_FILTER_MAX_WILDCARDS = 2

# countNumber of a lifecycle policy rule (expireUntaggedAfterDays, keepLastImages): a positive
# integer, which ECR reads as a signed 32-bit one; AWS documents no smaller bound.
LIFECYCLE_COUNT_MAX = 2_147_483_647

# Alerts (ecr-ptc:alerts). EventBridge's PutRule and PutTargets (the pinned botocore's events
# model: EventPattern, RuleDescription, TargetArn/RoleArn, EventBusName): an event pattern of at
# most 4,096 characters, a rule description of at most 512, a target or role ARN of at most
# 1,600, an event bus name of 1 to 256.
EVENT_PATTERN_MAX_CHARS = 4_096
EVENT_RULE_DESCRIPTION_MAX_CHARS = 512
EVENT_TARGET_ARN_MAX_CHARS = 1_600
EVENT_BUS_NAME_MAX_CHARS = 256
# SNS's Subscribe takes protocol and endpoint as plain strings (botocore states no bound): the
# bounds are the endpoints' own, an email address's 254 characters (RFC 5321's path, less the
# brackets) and a URL's 2,048 (what SNS's console and most HTTP stacks take); a subscription is
# one resource in each region, so a topic takes at most 25 of this program's (SNS takes far
# more, added outside the stack).
EMAIL_ADDRESS_MAX_CHARS = 254
SUBSCRIPTION_URL_MAX_CHARS = 2_048
MAX_ALERT_SUBSCRIPTIONS = 25
# An SNS topic's access policy (SetTopicAttributes Policy): 30 KiB.
TOPIC_POLICY_MAX_CHARS = 30_720
