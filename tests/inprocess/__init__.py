"""The in-process test tier: the service apps run in the test process (see conftest.py)."""
