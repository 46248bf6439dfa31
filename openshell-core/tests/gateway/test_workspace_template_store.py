"""Workspaces and sandbox templates in the gateway's SQLite store, and the migration that adds templates."""

from __future__ import annotations

import sqlite3

import pytest
from openshell.gateway import store as st
from openshell.gateway.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gateway.db")
    yield s
    s.close()


def _template(store: Store, name: str, workspace: str = "default", **spec) -> st.TemplateRecord:
    return store.create_template(name=name, workspace=workspace, labels={}, annotations={}, spec=spec)


def test_a_database_of_the_previous_schema_opens_and_gains_templates(tmp_path, monkeypatch):
    path = tmp_path / "gateway.db"
    # A gateway state dir as main left it: schema version 2, with a sandbox and a provider.
    monkeypatch.setattr(st, "MIGRATIONS", st.MIGRATIONS[:2])
    with Store(path) as old:
        assert old.schema_version() == 2
        sandbox, _ = old.create_sandbox(name="kept", spec={"command": ["sleep", "1"]}, policy_yaml="version: 1\n")
        old.create_provider(name="p", workspace="default", type="generic", labels={}, config={}, credential_keys=["K"], credentials_enc="x")
    monkeypatch.undo()
    with Store(path) as new:
        assert new.schema_version() == len(st.MIGRATIONS) >= 3
        assert new.get_sandbox_by_name("kept") == sandbox
        assert new.get_provider("p") is not None
        assert _template(new, "py", image="python:3.12").resource_version >= 1
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"sandboxes", "providers", "sandbox_templates"} <= tables


def test_create_workspace_with_labels_and_refuse_a_taken_name(store):
    ws = store.create_workspace("team-a", {"tier": "dev"})
    assert ws.name == "team-a" and ws.labels == {"tier": "dev"} and ws.id
    assert [w.name for w in store.list_workspaces()] == ["default", "team-a"]
    with pytest.raises(st.WorkspaceNameTaken):
        store.create_workspace("team-a")


def test_delete_workspace_refuses_while_it_holds_anything(store):
    store.create_workspace("w")
    store.create_sandbox(name="s1", workspace="w")
    store.create_provider(name="p1", workspace="w", type="generic", labels={}, config={}, credential_keys=[], credentials_enc="x")
    _template(store, "t1", "w")
    with pytest.raises(st.WorkspaceNotEmpty) as info:
        store.delete_workspace("w")
    assert info.value.contents == {"sandboxes": ["s1"], "providers": ["p1"], "templates": ["t1"]}
    store.delete_sandbox(store.get_sandbox_by_name("s1", "w").id)
    store.delete_provider("p1", "w")
    store.delete_template("t1", "w")
    store.set_inference_route("w", backend="openai", model="m", base_url="", provider="")
    assert store.delete_workspace("w") is True
    assert store.get_workspace("w") is None and store.get_inference_route("w") is None
    assert store.delete_workspace("w") is False


def test_templates_are_per_workspace_and_their_version_is_never_reused(store):
    store.create_workspace("other")
    first = _template(store, "py", image="python:3.12", environment={"A": "1"})
    same_name = _template(store, "py", "other")
    assert first.workspace == "default" and same_name.workspace == "other"
    assert store.get_template("py").spec == {"image": "python:3.12", "environment": {"A": "1"}}
    with pytest.raises(st.TemplateNameTaken):
        _template(store, "py")
    with pytest.raises(st.UnknownWorkspace):
        _template(store, "py", "nowhere")
    assert [(t.workspace, t.name) for t in store.list_templates(None)] == [("default", "py"), ("other", "py")]
    assert [t.workspace for t in store.list_templates("other")] == ["other"]
    assert store.delete_template("py") is True and store.delete_template("py") is False
    again = _template(store, "py")
    assert again.resource_version > same_name.resource_version > first.resource_version
