"""Live updates keep static sections (POLICY.md §1)."""

from __future__ import annotations

import pytest
from openshell.policy import PolicyError, check_static_unchanged, parse_policy

OLD = parse_policy(
    {
        "version": 1,
        "filesystem_policy": {"include_workdir": True, "read_only": ["/opt"]},
        "landlock": {"compatibility": "hard_requirement"},
        "process": {"run_as_user": 1000},
    }
)


def test_omitted_static_sections_keep_the_current_ones():
    new = check_static_unchanged(
        OLD, "version: 1\nnetwork_policies:\n  r: {endpoints: [{host: a.example.com, port: 443}], binaries: [{path: /usr/bin/curl}]}\n"
    )
    assert new.filesystem == OLD.filesystem and new.landlock == OLD.landlock and new.process == OLD.process
    assert [r.key for r in new.network] == ["r"]


def test_identical_static_sections_are_accepted():
    doc = {"version": 1, "landlock": {"compatibility": "hard_requirement"}, "process": {"run_as_user": "1000"}}
    assert check_static_unchanged(OLD, doc).process == OLD.process


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"version": 1, "landlock": {"compatibility": "best_effort"}}, "landlock.compatibility"),
        ({"version": 1, "process": {"run_as_user": 1001}}, "process.run_as_user"),
        ({"version": 1, "filesystem_policy": {"include_workdir": True, "read_only": ["/srv"]}}, "filesystem_policy.read_only"),
    ],
)
def test_changed_static_field_is_rejected_naming_it_and_saying_recreate(doc, field):
    with pytest.raises(PolicyError) as info:
        check_static_unchanged(OLD, doc)
    assert info.value.field == field
    assert "recreate the sandbox" in info.value.message


def test_invalid_update_is_rejected_as_usual():
    with pytest.raises(PolicyError) as info:
        check_static_unchanged(OLD, {"version": 2})
    assert info.value.field == "version"


def test_the_same_paths_in_another_order_are_not_a_change():
    """Landlock rules have no order: a copy of the running policy with its read_write
    list reordered (or its workdir spelt out at another place) is accepted."""
    doc = {"version": 1, "filesystem_policy": {"include_workdir": True, "read_only": ["/opt"]}}
    reordered = dict(doc, filesystem_policy={"include_workdir": True, "read_only": ["/opt"], "read_write": list(reversed(OLD.filesystem.read_write))})
    assert check_static_unchanged(OLD, reordered).filesystem == OLD.filesystem
    workdir_last = dict(
        doc, filesystem_policy={"include_workdir": True, "read_only": ["/opt"], "read_write": [p for p in OLD.filesystem.read_write if p != "/sandbox"]}
    )
    assert check_static_unchanged(OLD, workdir_last).filesystem == OLD.filesystem
    with pytest.raises(PolicyError) as info:  # another set of paths still is a change
        check_static_unchanged(OLD, dict(doc, filesystem_policy={"include_workdir": True, "read_only": ["/opt"], "read_write": ["/srv"]}))
    assert info.value.field == "filesystem_policy.read_write"
