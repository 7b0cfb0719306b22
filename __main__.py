"""ecr-ptc: cross-account ECR-to-ECR pull through cache. One project, an upstream and a
downstream kind of stack; `ecr-ptc:side` (or the stack's name) says which this is."""

import pulumi

from components.declare.program import program
from components.inputs.stack_config import from_pulumi


async def main() -> dict[str, object]:
    # Everything is validated and planned, including the pairing with the upstream stack,
    # before any resource is declared; a refusal is a pulumi.RunError: one clean message.
    return await program(from_pulumi(), pulumi.get_stack())


pulumi.run(main)
