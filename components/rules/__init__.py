"""The facts every layer shares: AWS names and ARNs, quotas and API bounds, and what a registry
policy statement may say (the program and the policy pack call the same rules)."""
