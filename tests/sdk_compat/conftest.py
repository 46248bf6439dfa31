"""Fixtures of the SDK compatibility suite (see harness.py): ``sdk_python``, ``sdk``."""

from sdk_compat.harness import sdk, sdk_python  # noqa: F401 - fixtures
