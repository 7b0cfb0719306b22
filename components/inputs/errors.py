"""The one error type for bad configuration, shared by config parsing and policy quotas."""

from __future__ import annotations

import pulumi


class ConfigError(pulumi.RunError, ValueError):
    """Bad configuration. RunError makes `pulumi up` print the message without a traceback."""

    def __init__(self, key: str, value: object, valid: str) -> None:
        self.key, self.value, self.valid = key, value, valid
        if value is None:
            super().__init__(f"config {key} is not set: {valid}")
        else:
            super().__init__(f"config {key}: {value!r} is not valid: {valid}")
