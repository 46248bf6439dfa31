"""The gateway's SQLite store (openshell.gateway.store)."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from openshell.gateway import store as st
from openshell.gateway.store import NameTaken, Store


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "gateway.db"


@pytest.fixture
def wire_store(db_path):
    s = Store(db_path)
    yield s
    s.close()


def test_store_uses_wal_and_current_schema_version(wire_store, db_path):
    assert wire_store.journal_mode() == "wal"
    assert wire_store.schema_version() == len(st.MIGRATIONS)
    # The mode is persistent in the file, seen by any other connection.
    other = sqlite3.connect(db_path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()


def test_default_workspace_always_exists(wire_store):
    assert wire_store.get_workspace("default") is not None
    assert [w.name for w in wire_store.list_workspaces()] == ["default"]


def test_create_sandbox_stores_revision_one_secret_and_netns_index(wire_store):
    rec, rev = wire_store.create_sandbox(name="demo", labels={"team": "a"}, spec={"command": ["sleep", "1"]}, policy_yaml="version: 1\n")
    assert rec.phase == st.PROVISIONING
    assert rec.netns_index == 1
    assert len(rec.secret) == 64
    assert "secret" not in repr(rec) and rec.secret not in repr(rec)
    assert rev.revision == 1 and rev.status == st.PENDING and rev.yaml == "version: 1\n"
    assert wire_store.get_sandbox_by_name("demo") == rec
    view = rec.driver_view(rev.yaml)
    assert view["secret"] == rec.secret and view["netns_index"] == 1 and view["policy_yaml"] == rev.yaml


def test_names_are_unique_per_workspace(wire_store):
    wire_store.create_sandbox(name="demo")
    with pytest.raises(NameTaken, match="'demo' already exists"):
        wire_store.create_sandbox(name="demo")
    wire_store.ensure_workspace("other")
    other, _ = wire_store.create_sandbox(name="demo", workspace="other")
    assert other.workspace == "other"


def test_unknown_workspace_is_refused(wire_store):
    with pytest.raises(st.UnknownWorkspace):
        wire_store.create_sandbox(name="demo", workspace="nope")


def test_netns_index_is_reused_after_delete_and_unique_among_live(wire_store):
    a, _ = wire_store.create_sandbox(name="a")
    b, _ = wire_store.create_sandbox(name="b")
    c, _ = wire_store.create_sandbox(name="c")
    assert (a.netns_index, b.netns_index, c.netns_index) == (1, 2, 3)
    assert wire_store.delete_sandbox(b.id)
    d, _ = wire_store.create_sandbox(name="d")
    assert d.netns_index == 2
    live = [s.netns_index for s in wire_store.list_sandboxes()]
    assert len(live) == len(set(live))


def test_netns_index_exhaustion_is_an_error(wire_store):
    for i in range(st.NETNS_INDEX_MAX):
        wire_store.create_sandbox(name=f"s{i}")
    with pytest.raises(st.NoNetnsIndex):
        wire_store.create_sandbox(name="one-too-many")


def test_restart_keeps_every_record(db_path):
    s = Store(db_path)
    rec, _ = s.create_sandbox(name="keep", labels={"x": "1"}, policy_yaml="a: 1")
    s.update_sandbox(rec.id, phase=st.READY, supervisor_pid=4242)
    s.add_policy_revision(rec.id, "a: 2")
    s.set_policy_status(rec.id, 2, st.LOADED)
    s.close()

    s2 = Store(db_path)
    try:
        again = s2.get_sandbox(rec.id)
        assert again is not None
        assert (again.name, again.phase, again.supervisor_pid, again.labels) == ("keep", "READY", 4242, {"x": "1"})
        assert again.secret == rec.secret and again.netns_index == rec.netns_index
        assert [r.revision for r in s2.list_policy_revisions(rec.id)] == [1, 2]
        assert s2.loaded_policy_revision(rec.id) == 2
        assert s2.schema_version() == len(st.MIGRATIONS)
    finally:
        s2.close()


def test_update_bumps_resource_version_and_validates_phase(wire_store):
    rec, _ = wire_store.create_sandbox(name="demo")
    new = wire_store.update_sandbox(rec.id, phase=st.ERROR, reason="supervisor exited")
    assert new.resource_version == rec.resource_version + 1
    assert (new.phase, new.reason) == ("ERROR", "supervisor exited")
    with pytest.raises(ValueError, match="unknown phase"):
        wire_store.update_sandbox(rec.id, phase="BOGUS")
    assert wire_store.update_sandbox("no-such-id", phase=st.READY) is None


def test_policy_revisions_count_up_and_are_removed_with_the_sandbox(wire_store):
    rec, _ = wire_store.create_sandbox(name="demo", policy_yaml="r1")
    assert wire_store.add_policy_revision(rec.id, "r2").revision == 2
    failed = wire_store.set_policy_status(rec.id, 2, st.FAILED, "bad field")
    assert (failed.status, failed.error) == ("failed", "bad field")
    assert wire_store.get_policy_revision(rec.id).revision == 2
    assert wire_store.loaded_policy_revision(rec.id) == 0
    wire_store.delete_sandbox(rec.id)
    assert wire_store.list_policy_revisions(rec.id) == []
    with pytest.raises(LookupError):
        wire_store.add_policy_revision(rec.id, "r3")


def test_newer_schema_than_known_is_refused(db_path):
    Store(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE schema_version SET version = 999")
    raw.commit()
    raw.close()
    with pytest.raises(st.StoreError, match="newer than this gateway"):
        Store(db_path)


def test_concurrent_creates_from_threads_get_distinct_indexes(wire_store):
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                wire_store.create_sandbox(name=f"t{n}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    indexes = [s.netns_index for s in wire_store.list_sandboxes()]
    assert len(indexes) == 80 and len(set(indexes)) == 80
