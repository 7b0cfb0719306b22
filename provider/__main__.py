"""The ecr-ptc component package's entry point: Pulumi runs `python provider/ <engine args>` and
this serves UpstreamRegistryAccess and PullThroughCache to the calling program (any language).

The components are imported from the repository this directory is part of: `pulumi package add`
clones the whole repository and runs this directory, so components/ is one level up, the same
code the repository's own stacks run. provider/pyproject.toml installs their dependencies.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi.provider.experimental import component_provider_host

from provider.package import COMPONENTS, NAME, version

if __name__ == "__main__":
    component_provider_host(COMPONENTS, NAME, version=version())
