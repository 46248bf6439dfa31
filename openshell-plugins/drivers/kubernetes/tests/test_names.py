"""Sandbox ids become Kubernetes object names; anything else is refused, not passed on."""

from __future__ import annotations

import uuid

from openshell_driver_kubernetes.driver import label_value, object_name


def test_uuid_ids_name_objects() -> None:
    sid = str(uuid.uuid4())
    assert object_name(sid) == f"openshell-{sid}"
    assert len(object_name(sid) or "") <= 63


def test_ids_that_cannot_name_objects_are_refused() -> None:
    for bad in ("", "../x", "A" * 10, "x" * 80, "a/b", "-a"):
        assert object_name(bad) is None


def test_label_values_are_sanitised() -> None:
    assert label_value("My Sandbox!") == "My-Sandbox"
    assert len(label_value("x" * 200)) == 63
