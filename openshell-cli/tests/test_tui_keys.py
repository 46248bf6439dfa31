"""Both views take their steering keys from one definition, in one order."""

from __future__ import annotations

from openshell_cli.tui.app import SandboxesScreen
from openshell_cli.tui.keys import STEER_BINDINGS
from openshell_cli.tui.sandbox_view import SandboxScreen


def _steer_keys(bindings) -> list[tuple[str, str]]:
    return [(b.key, b.action) for b in bindings if b.action.startswith("steer(") and b.action != "steer('explain')"]


def test_both_views_steer_with_the_same_keys_in_the_same_order():
    shared = [(b.key, b.action) for b in STEER_BINDINGS]
    assert _steer_keys(SandboxesScreen.BINDINGS) == shared
    assert _steer_keys(SandboxScreen.BINDINGS) == shared
