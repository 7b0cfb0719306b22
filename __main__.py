"""ecr-ptc: cross-account ECR-to-ECR pull through cache. One project, an upstream and a
downstream kind of stack; `ecr-ptc:side` (or the stack's name) says which this is."""

import pulumi

from components.config import from_pulumi, parse
from components.program import program

# Parsing validates everything config alone can tell, before any resource is declared.
for name, value in program(parse(from_pulumi(), pulumi.get_stack())).items():
    pulumi.export(name, value)
