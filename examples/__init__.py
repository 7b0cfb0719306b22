"""Example programs using ecr-ptc; see README.md "Use it from your own program"."""
