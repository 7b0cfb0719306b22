"""Regions from the pinned botocore's data files alone: no session, no AWS config, profile or
credential, and a suggestion when a region name is close to a real one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from components.rules import aws_names
from components.rules.aws_names import UnknownRegionError, known_regions, region


def clear_caches() -> None:
    for cached in (aws_names._botocore_data, aws_names._endpoint_resolver, known_regions):
        cached.cache_clear()


@pytest.fixture
def fresh() -> Iterator[None]:
    """Region data read anew inside the test, and again for the tests after it."""
    clear_caches()
    yield
    clear_caches()


def test_the_same_regions_a_botocore_session_lists_for_ecr() -> None:
    session = botocore.session.Session()
    expected = {
        name: partition
        for partition in session.get_available_partitions()
        for name in session.get_available_regions("ecr", partition_name=partition)
    }
    assert known_regions() == expected
    assert region("cn-north-1").dns_suffix == "amazonaws.com.cn"
    assert region("us-gov-west-1").partition == "aws-us-gov"


def test_no_session_no_profile_no_outside_data(
    fresh: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a botocore session was made")

    monkeypatch.setattr(botocore.session, "Session", refuse)
    monkeypatch.setattr(botocore.session, "get_session", refuse)
    monkeypatch.setenv("AWS_PROFILE", "does-not-exist")
    # Endpoint data of one's own (AWS_DATA_PATH) changes nothing: the pinned botocore's counts.
    (tmp_path / "endpoints.json").write_text('{"version": 3, "partitions": []}')
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    assert region("eu-central-1").partition == "aws"
    assert "us-east-1" in known_regions()


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("eu-centrl-1", ["'eu-centrl-1' is not a region of any AWS partition",
                         "(did you mean eu-central-1?)", "upgrade the pinned botocore"]),
        ("us-est-1", ["(did you mean us-east-1 or us-west-1?)"]),
        ("EU-WEST-1", ["is not an AWS region name (did you mean eu-west-1?)"]),
        ("eucentral1", ["is not an AWS region name (did you mean eu-central-1?)"]),
        ("us-iso-east-1", ["supported partitions: aws, aws-cn, aws-us-gov"]),
    ],
)  # fmt: skip
def test_an_unknown_region_names_the_closest_valid_ones(name: str, fragments: list[str]) -> None:
    with pytest.raises(UnknownRegionError) as caught:
        region(name)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_no_suggestion_when_nothing_is_close() -> None:
    with pytest.raises(UnknownRegionError) as caught:
        region("xx-nowhere-9")
    assert "did you mean" not in str(caught.value)
