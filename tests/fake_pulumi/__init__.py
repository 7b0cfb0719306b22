"""A stand-in `pulumi` executable for the tests (see fake_pulumi.py)."""
