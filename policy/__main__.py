"""The ecr-ptc CrossGuard policy pack: `pulumi preview --policy-pack policy`."""

import sys
from pathlib import Path

# The pack runs from policy/; its modules and the quotas it shares with the program
# (components/rules/quotas.py, no dependencies of its own) are imported from the project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.guardrails import POLICIES

PolicyPack(
    name="ecr-ptc-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
