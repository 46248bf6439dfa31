"""The netns layer passes the isolation-layer plugin contract."""

from __future__ import annotations

from openshell.plugin.testing import IsolationLayerContract
from openshell_plugin_netns import NetnsLayer


class TestNetnsLayerContract(IsolationLayerContract):
    plugin_class = NetnsLayer


def test_names_and_addresses() -> None:
    import pytest
    from openshell.plugin import IsolationError
    from openshell_plugin_netns import addresses, namespace_names

    assert namespace_names("1a2b3c4d5e6f") == ("osb-1a2b3c4d", "osb-1a2b3c4d-p")
    assert addresses(7) == ("10.200.7.2", "10.200.7.1")
    assert addresses(254) == ("10.200.254.2", "10.200.254.1")
    # Past 254 the addresses repeat (each sandbox has its own namespaces) and stay .2/.1.
    assert addresses(255) == ("10.200.1.2", "10.200.1.1")
    assert addresses(16383) == addresses((16383 - 1) % 254 + 1)
    for bad in (0, 16384, -1, True, "3", None):
        with pytest.raises(IsolationError):
            addresses(bad)
