"""Every test runs as on a machine with no AWS and no Pulumi settings: whatever profile,
credentials, region or backend the person running `make test` has exported (or keeps in ~/.aws)
changes no result, and nothing can reach an AWS endpoint, the instance metadata service
included. Tests that need a setting set it themselves."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def no_ambient_aws_or_pulumi_settings(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("AWS_", "PULUMI_")):
                patch.delenv(name)
        patch.setenv("AWS_CONFIG_FILE", str(empty))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield
