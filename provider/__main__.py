"""The ecr-ptc component package's entry point: Pulumi runs `python provider/ <engine args>` and
this serves UpstreamRegistryAccess and PullThroughCache to the calling program (any language).

The components are imported from the repository this directory is part of: `pulumi package add`
clones the whole repository and runs this directory, so components/ is one level up, the same
code the repository's own stacks run. provider/pyproject.toml installs their dependencies.
provider/host.py is Pulumi's component host with every argument resolved before it is mapped;
it serves provider/package.py's schema, the one provider/schema.json holds.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provider.host import host
from provider.package import COMPONENTS, NAME, schema, version

if __name__ == "__main__":
    host(COMPONENTS, NAME, version(), schema())
