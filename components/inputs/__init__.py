"""Inputs: stack config and component arguments in, validated and frozen; every message names the
key (or argument), the value and what is valid."""
