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
        old.create_provider(name="p", workspace="default", type="generic", labels={}, config={}, credential_keys=["K"], credentials_enc="x")
    # The sandbox row as the schema-2 code wrote it (today's insert names later columns).
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO sandboxes (id, workspace, name, spec, phase, secret, netns_index, created_at, updated_at)"
            " VALUES ('id-1', 'default', 'kept', '{\"command\": [\"sleep\", \"1\"]}', 'READY', 'ab', 7, 1.0, 1.0)"
        )
    monkeypatch.undo()
    with Store(path) as new:
        assert new.schema_version() == len(st.MIGRATIONS) >= 4
        kept = new.get_sandbox_by_name("kept")
        assert kept is not None and (kept.id, kept.spec, kept.phase, kept.netns_index) == ("id-1", {"command": ["sleep", "1"]}, "READY", 7)
        assert kept.driver == ""  # made before the gateway recorded drivers: unknown, not guessed
        assert new.create_sandbox(name="new", driver="local")[0].driver == "local"
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
