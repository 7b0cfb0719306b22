"""Declares the resources of a plan: a thin, generic mapping from plain data to pulumi-aws.

Nothing here decides anything. The plan (components/plan/stack_plan.py) has already named
every resource, computed every input and checked every quota; this module turns each planned
resource into the pulumi-aws resource of its type, resolving references to other planned
resources' outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from ..plan import stack_plan as p

RESOURCE_CLASSES: Mapping[str, type[pulumi.CustomResource]] = {
    p.ROLE: aws.iam.Role,
    p.ROLE_POLICY: aws.iam.RolePolicy,
    p.MANAGED_POLICY: aws.iam.Policy,
    p.ROLE_POLICY_ATTACHMENT: aws.iam.RolePolicyAttachment,
    p.PULL_THROUGH_CACHE_RULE: aws.ecr.PullThroughCacheRule,
    p.CREATION_TEMPLATE: aws.ecr.RepositoryCreationTemplate,
    p.REGISTRY_POLICY: aws.ecr.RegistryPolicy,
    p.REPOSITORY_POLICY: aws.ecr.RepositoryPolicy,
    p.ACCOUNT_SETTING: aws.ecr.AccountSetting,
    p.EVENT_RULE: aws.cloudwatch.EventRule,
    p.EVENT_TARGET: aws.cloudwatch.EventTarget,
    p.TOPIC: aws.sns.Topic,
    p.TOPIC_POLICY: aws.sns.TopicPolicy,
    p.TOPIC_SUBSCRIPTION: aws.sns.TopicSubscription,
}


def _resolve(value: Any, declared: Mapping[str, pulumi.Resource]) -> Any:
    if isinstance(value, p.Ref):
        return getattr(declared[value.resource], value.attribute)
    if isinstance(value, p.RefText):
        # The text once every resource it names exists: it depends on them, as a Ref does.
        refs = value.refs
        return pulumi.Output.all(*(_resolve(ref, declared) for ref in refs)).apply(
            lambda values: value.with_values(dict(zip(refs, map(str, values), strict=True)))
        )
    if isinstance(value, Mapping):
        return {k: _resolve(v, declared) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_resolve(v, declared) for v in value]
    return value


def declare(
    resources: tuple[p.PlannedResource, ...],
    parents: Mapping[str, pulumi.Resource],
    after: Sequence[pulumi.Resource] = (),
) -> dict[str, pulumi.CustomResource]:
    """Declare `resources` in plan order (a resource comes after those it refers to), each under
    the parent of its group and after the resources of `after`. Returns them by logical name."""
    declared: dict[str, pulumi.CustomResource] = {}
    for planned in resources:
        cls = RESOURCE_CLASSES[planned.type]
        declared[planned.name] = cls(
            planned.name,
            **_resolve(dict(planned.properties), declared),
            opts=pulumi.ResourceOptions(
                parent=parents[planned.group],
                depends_on=[*after, *(declared[name] for name in planned.depends_on)],
                delete_before_replace=planned.delete_before_replace or None,
            ),
        )
    return declared


def outputs(values: Mapping[str, Any], declared: Mapping[str, pulumi.Resource]) -> dict[str, Any]:
    """A plan's outputs with references turned into the declared resources' outputs."""
    return {name: _resolve(value, declared) for name, value in values.items()}
