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


def test_more_than_254_sandboxes_get_unique_indexes_and_freed_ones_are_reused(wire_store):
    made = [wire_store.create_sandbox(name=f"s{i}")[0] for i in range(300)]
    assert sorted(r.netns_index for r in made) == list(range(1, 301))
    assert wire_store.delete_sandbox(made[41].id) and wire_store.delete_sandbox(made[270].id)
    assert wire_store.create_sandbox(name="again")[0].netns_index == 42  # the lowest free one
    assert wire_store.create_sandbox(name="again2")[0].netns_index == 271
    assert wire_store.create_sandbox(name="next")[0].netns_index == 301


def test_a_new_sandbox_id_never_shares_the_prefix_that_names_its_namespaces(wire_store, monkeypatch):
    import uuid

    first, _ = wire_store.create_sandbox(name="first")
    # uuid4 first returns an id with the same 8-character prefix, then a distinct one.
    clash = uuid.UUID(first.id[:8] + "-0000-4000-8000-000000000000")
    fresh = uuid.UUID("abcdef01-0000-4000-8000-000000000000") if not first.id.startswith("abcdef01") else uuid.UUID("12345678-0000-4000-8000-000000000000")
    ids = iter([clash, fresh])
    monkeypatch.setattr(st.uuid, "uuid4", lambda: next(ids))
    second, _ = wire_store.create_sandbox(name="second")
    assert second.id == str(fresh) and second.id[:8] != first.id[:8]


def test_netns_index_exhaustion_is_an_error(wire_store, monkeypatch):
    monkeypatch.setattr(st, "NETNS_INDEX_MAX", 5)  # the real bound (16383) works the same, slower
    for i in range(5):
        wire_store.create_sandbox(name=f"s{i}")
    with pytest.raises(st.NoNetnsIndex, match="5 sandboxes exist"):
        wire_store.create_sandbox(name="one-too-many")


def test_the_schema_bounds_the_index_at_16383(wire_store, db_path):
    rec, _ = wire_store.create_sandbox(name="edge")
    db = sqlite3.connect(db_path)
    try:
        db.execute("UPDATE sandboxes SET netns_index = 16383 WHERE id = ?", (rec.id,))
        db.commit()
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("UPDATE sandboxes SET netns_index = 16384 WHERE id = ?", (rec.id,))
    finally:
        db.close()


def test_a_version_4_store_is_migrated_with_its_sandboxes_and_revisions(db_path):
    # A gateway of the previous release: schema 4 (netns_index at most 254).
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (4)")
    for script in st.MIGRATIONS[:4]:
        db.executescript(script)
    db.execute("INSERT INTO workspaces VALUES ('default', 'w1', '{}', 1.0)")
    db.execute(
        "INSERT INTO sandboxes (id, workspace, name, labels, phase, secret, netns_index, supervisor_pid,"
        " resource_version, created_at, updated_at, driver) VALUES ('id-1', 'default', 'old', '{\"a\": \"b\"}',"
        " 'ready', 'cafe', 254, 77, 3, 1.0, 2.0, 'docker')"
    )
    db.execute("INSERT INTO policy_revisions (sandbox_id, revision, yaml, status, created_at, updated_at) VALUES ('id-1', 1, 'a: 1', 'loaded', 1.0, 1.0)")
    db.execute("INSERT INTO policy_revisions (sandbox_id, revision, yaml, status, created_at, updated_at) VALUES ('id-1', 2, 'a: 2', 'pending', 1.0, 1.0)")
    db.commit()
    with pytest.raises(sqlite3.IntegrityError):  # the old bound
        db.execute("UPDATE sandboxes SET netns_index = 255")
    db.close()
    s = Store(db_path)
    try:
        assert s.schema_version() == len(st.MIGRATIONS)
        old = s.get_sandbox_by_name("old")
        assert (old.id, old.netns_index, old.supervisor_pid, old.labels, old.driver, old.secret) == ("id-1", 254, 77, {"a": "b"}, "docker", "cafe")
        assert [r.revision for r in s.list_policy_revisions("id-1")] == [1, 2]
        # The new bound holds, and deleting a sandbox still removes its revisions (foreign keys on).
        made = [s.create_sandbox(name=f"n{i}")[0] for i in range(254)]
        assert max(r.netns_index for r in made) == 255
        assert s.delete_sandbox("id-1")
        assert s.list_policy_revisions("id-1") == []
    finally:
        s.close()


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
