"""Regions, partitions, ARNs and registry host names: pure functions, no AWS calls.

Regions, their partition and DNS suffix come from the pinned botocore's endpoint data rather
than a hand-kept table: a region is valid when botocore lists ECR in it. A region AWS launched
after that botocore release is refused until the pin is upgraded.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from typing import Any

import botocore
import botocore.loaders
import botocore.regions

# The partitions where ECR-to-ECR pull through cache is documented and this program is tested.
SUPPORTED_PARTITIONS = ("aws", "aws-cn", "aws-us-gov")

ROOT_PREFIX = "ROOT"

# Every account ID has 12 digits, so a policy rendered with this one has the real policy's size:
# quotas are checked before anything is declared, while the real account ID is still unknown.
SIZING_ACCOUNT_ID = "000000000000"

_REGION_SHAPE = re.compile(r"[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}", re.ASCII)


@dataclass(frozen=True)
class Region:
    name: str
    partition: str
    dns_suffix: str


class UnknownRegionError(ValueError):
    """The value is not an AWS region of a supported partition."""


@functools.cache
def _botocore_data() -> Any:
    """The pinned botocore's own data files, and only them: no session, so no AWS config file,
    profile or credential is looked at (`make plan` works with AWS_PROFILE naming a profile
    that does not exist), and no ~/.aws/models or AWS_DATA_PATH can change the answer."""
    return botocore.loaders.Loader(
        extra_search_paths=[botocore.loaders.Loader.BUILTIN_DATA_PATH],
        include_default_search_paths=False,
    )


@functools.cache
def _endpoint_resolver() -> Any:
    return botocore.regions.EndpointResolver(_botocore_data().load_data("endpoints"))


@functools.cache
def known_regions() -> dict[str, str]:
    """Region name -> partition, for every region where the pinned botocore lists ECR."""
    # ECR's endpoints are listed under its endpoint prefix (api.ecr), as a session looks them up.
    model = _botocore_data().load_service_model("ecr", "service-2")
    prefix = model["metadata"].get("endpointPrefix", "ecr")
    resolver = _endpoint_resolver()
    return {
        name: partition
        for partition in resolver.get_available_partitions()
        for name in resolver.get_available_endpoints(prefix, partition)
    }


def _closest(name: str) -> str:
    """` (did you mean eu-central-1?)`: the regions of the supported partitions closest to
    `name`, all of them when several are as close (at most three), or ""."""
    scores: dict[float, list[str]] = {}
    for known, partition in sorted(known_regions().items()):
        if partition in SUPPORTED_PARTITIONS:
            score = difflib.SequenceMatcher(None, name.lower(), known).ratio()
            scores.setdefault(score, []).append(known)
    best = max(scores, default=0.0)
    if best < 0.75 or len(scores[best]) > 3:
        return ""
    return f" (did you mean {' or '.join(scores[best])}?)"


def region(name: str) -> Region:
    """The region `name` with its partition; raises UnknownRegionError for anything else."""
    if not isinstance(name, str) or not _REGION_SHAPE.fullmatch(name):
        hint = _closest(name) if isinstance(name, str) else ""
        raise UnknownRegionError(f"{name!r} is not an AWS region name{hint}, e.g. us-east-1")
    partition = known_regions().get(name)
    if partition is None:
        raise UnknownRegionError(
            f"{name!r} is not a region of any AWS partition known to botocore "
            f"{botocore.__version__}{_closest(name)}; if AWS launched it recently, upgrade "
            "the pinned botocore"
        )
    if partition not in SUPPORTED_PARTITIONS:
        raise UnknownRegionError(
            f"{name!r} is in partition {partition!r}; supported partitions: "
            + ", ".join(SUPPORTED_PARTITIONS)
        )
    return Region(name, partition, _endpoint_resolver().get_partition_dns_suffix(partition))


def registry_host(account_id: str, where: Region) -> str:
    """`<account>.dkr.ecr.<region>.<suffix>`: what a rule points at and users pull from."""
    return f"{account_id}.dkr.ecr.{where.name}.{where.dns_suffix}"


def repositories_under(prefix: str | None) -> str:
    """The repository-name pattern for a namespace: `team-a` -> `team-a/*`; None or ROOT -> `*`."""
    if prefix is None or prefix == ROOT_PREFIX:
        return "*"
    return f"{prefix.rstrip('/')}/*"


def repository_arn(where: Region, account_id: str, name_pattern: str) -> str:
    return repository_arn_in(where.partition, where.name, account_id, name_pattern)


def repository_arn_in(partition: str, region_name: str, account_id: str, name_pattern: str) -> str:
    """A repository ARN; `region_name` may be `*` where a condition names the regions."""
    return f"arn:{partition}:ecr:{region_name}:{account_id}:repository/{name_pattern}"


def account_root_arn(partition: str, account_id: str) -> str:
    return f"arn:{partition}:iam::{account_id}:root"


def image_uri_prefix(account_id: str, where: Region, ecr_repository_prefix: str) -> str:
    """What a user pulls from: the registry host, then the rule's prefix unless it is ROOT."""
    host = registry_host(account_id, where)
    if ecr_repository_prefix == ROOT_PREFIX:
        return host
    return f"{host}/{ecr_repository_prefix.rstrip('/')}"
