"""The opa engine passes the policy-engine plugin contract (hostile input denies, never raises)."""

from __future__ import annotations

from openshell.plugin.testing import PolicyEngineContract
from openshell_plugin_opa import OpaEngine


class TestOpaEngineContract(PolicyEngineContract):
    plugin_class = OpaEngine
