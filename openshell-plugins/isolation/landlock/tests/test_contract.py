"""The landlock layer passes the isolation-layer plugin contract."""

from __future__ import annotations

from openshell.plugin.testing import IsolationLayerContract
from openshell_plugin_landlock import LandlockLayer


class TestLandlockLayerContract(IsolationLayerContract):
    plugin_class = LandlockLayer
