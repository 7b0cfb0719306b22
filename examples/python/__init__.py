"""An example Pulumi program (a package only so that mypy names it examples.python)."""
