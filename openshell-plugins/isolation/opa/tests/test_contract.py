"""The opa engine passes the policy-engine plugin contract."""

from __future__ import annotations

from openshell.plugin.testing import PolicyEngineContract
from openshell_plugin_opa import OpaEngine


class TestOpaEngineContract(PolicyEngineContract):
    plugin_class = OpaEngine
