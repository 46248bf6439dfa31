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


def test_events_are_matched_to_sandboxes_by_object_name() -> None:
    from openshell_driver_kubernetes.events import sandbox_of

    sid = str(uuid.uuid4())

    def is_id(s: str) -> bool:
        return object_name(s) is not None

    assert sandbox_of({"involvedObject": {"kind": "Pod", "name": f"openshell-{sid}"}}, is_id) == sid
    assert sandbox_of({"involvedObject": {"kind": "Sandbox", "name": f"openshell-{sid}"}}, is_id) == sid
    assert sandbox_of({"involvedObject": {"kind": "Node", "name": f"openshell-{sid}"}}, is_id) is None
    assert sandbox_of({"involvedObject": {"kind": "Pod", "name": "other-pod"}}, is_id) is None
    assert sandbox_of({"involvedObject": {"kind": "Pod", "name": "openshell-../x"}}, is_id) is None
    assert sandbox_of({}, is_id) is None
