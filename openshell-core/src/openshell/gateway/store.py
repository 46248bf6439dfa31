"""The gateway's SQLite store: workspaces, sandboxes, policy revisions, providers, templates.

One file (``gateway.db`` in the state directory) in WAL mode, so readers never
block the writer and a crash loses at most the transaction in flight. The
schema is versioned: ``schema_version`` holds the number of migrations applied
and :data:`MIGRATIONS` is append-only.

Thread safety: one connection shared by every thread, serialised by a lock.
The gateway calls these methods from asyncio through ``asyncio.to_thread``;
each call is short (a few rows), so a single connection is simpler than a pool
and avoids SQLITE_BUSY between our own threads.

Records are frozen dataclasses. ``SandboxRecord.secret`` is for the gateway,
the driver and the supervisor only; it is kept out of ``repr`` and the
client-facing mapping in ``service.py`` never copies it.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

DEFAULT_WORKSPACE = "default"
NETNS_INDEX_MIN = 1
#: live sandboxes per gateway (each holds a unique index; the netns layer maps it to
#: its link addresses, which repeat above 254: every sandbox has its own namespaces)
NETNS_INDEX_MAX = 16383

# Phases as the compute drivers and the wire API name them.
PROVISIONING = "PROVISIONING"
READY = "READY"
ERROR = "ERROR"
STOPPING = "STOPPING"
STOPPED = "STOPPED"
DELETING = "DELETING"
PHASES = (PROVISIONING, READY, ERROR, STOPPING, STOPPED, DELETING)

# Policy revision statuses.
PENDING = "pending"
LOADED = "loaded"
FAILED = "failed"

MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE workspaces (
        name        TEXT PRIMARY KEY,
        id          TEXT NOT NULL UNIQUE,
        labels      TEXT NOT NULL DEFAULT '{}',
        created_at  REAL NOT NULL
    );
    CREATE TABLE sandboxes (
        id               TEXT PRIMARY KEY,
        workspace        TEXT NOT NULL REFERENCES workspaces(name),
        name             TEXT NOT NULL,
        labels           TEXT NOT NULL DEFAULT '{}',
        annotations      TEXT NOT NULL DEFAULT '{}',
        spec             TEXT NOT NULL DEFAULT '{}',
        phase            TEXT NOT NULL,
        reason           TEXT NOT NULL DEFAULT '',
        secret           TEXT NOT NULL,
        netns_index      INTEGER NOT NULL UNIQUE
                         CHECK (netns_index BETWEEN 1 AND 254),
        supervisor_pid   INTEGER NOT NULL DEFAULT 0,
        resource_version INTEGER NOT NULL DEFAULT 1,
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        UNIQUE (workspace, name)
    );
    CREATE TABLE policy_revisions (
        sandbox_id  TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
        revision    INTEGER NOT NULL,
        yaml        TEXT NOT NULL,
        status      TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'loaded', 'failed')),
        error       TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        PRIMARY KEY (sandbox_id, revision)
    );
    """,
    # 2: providers (credentials encrypted by the gateway) and inference routes
    """
    CREATE TABLE providers (
        id               TEXT PRIMARY KEY,
        workspace        TEXT NOT NULL REFERENCES workspaces(name),
        name             TEXT NOT NULL,
        type             TEXT NOT NULL,
        labels           TEXT NOT NULL DEFAULT '{}',
        config           TEXT NOT NULL DEFAULT '{}',
        credential_keys  TEXT NOT NULL DEFAULT '[]',
        credentials_enc  TEXT NOT NULL,
        resource_version INTEGER NOT NULL DEFAULT 1,
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        UNIQUE (workspace, name)
    );
    CREATE TABLE inference_routes (
        workspace   TEXT PRIMARY KEY REFERENCES workspaces(name),
        backend     TEXT NOT NULL,
        model       TEXT NOT NULL,
        base_url    TEXT NOT NULL DEFAULT '',
        provider    TEXT NOT NULL DEFAULT '',
        revision    INTEGER NOT NULL DEFAULT 1,
        updated_at  REAL NOT NULL
    );
    """,
    # 3: sandbox templates; seq is never reused (AUTOINCREMENT), so it serves as
    # the template's resource_version and a re-created template is a new version
    """
    CREATE TABLE sandbox_templates (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        id          TEXT NOT NULL UNIQUE,
        workspace   TEXT NOT NULL REFERENCES workspaces(name),
        name        TEXT NOT NULL,
        labels      TEXT NOT NULL DEFAULT '{}',
        annotations TEXT NOT NULL DEFAULT '{}',
        spec        TEXT NOT NULL DEFAULT '{}',
        created_at  REAL NOT NULL,
        UNIQUE (workspace, name)
    );
    """,
    # 4: the compute driver that made each sandbox ('' for sandboxes stored before)
    """
    ALTER TABLE sandboxes ADD COLUMN driver TEXT NOT NULL DEFAULT ''
    """,
    # 5: netns_index up to 16383 (more than 254 sandboxes per gateway; the netns
    # layer maps an index to its addresses). SQLite cannot alter a CHECK, so the table is rebuilt
    # (its documented procedure; migrations run with foreign keys off, so dropping the
    # old table leaves policy_revisions alone).
    """
    CREATE TABLE sandboxes_new (
        id               TEXT PRIMARY KEY,
        workspace        TEXT NOT NULL REFERENCES workspaces(name),
        name             TEXT NOT NULL,
        labels           TEXT NOT NULL DEFAULT '{}',
        annotations      TEXT NOT NULL DEFAULT '{}',
        spec             TEXT NOT NULL DEFAULT '{}',
        phase            TEXT NOT NULL,
        reason           TEXT NOT NULL DEFAULT '',
        secret           TEXT NOT NULL,
        netns_index      INTEGER NOT NULL UNIQUE
                         CHECK (netns_index BETWEEN 1 AND 16383),
        supervisor_pid   INTEGER NOT NULL DEFAULT 0,
        resource_version INTEGER NOT NULL DEFAULT 1,
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        driver           TEXT NOT NULL DEFAULT '',
        UNIQUE (workspace, name)
    );
    INSERT INTO sandboxes_new (id, workspace, name, labels, annotations, spec, phase, reason, secret,
                               netns_index, supervisor_pid, resource_version, created_at, updated_at, driver)
        SELECT id, workspace, name, labels, annotations, spec, phase, reason, secret,
               netns_index, supervisor_pid, resource_version, created_at, updated_at, driver FROM sandboxes;
    DROP TABLE sandboxes;
    ALTER TABLE sandboxes_new RENAME TO sandboxes
    """,
]


#: characters of a sandbox id that name its host-wide resources (network namespaces
#: ``osb-<8>``; see the netns layer): unique among a gateway's live sandboxes
ID_PREFIX_LEN = 8


def _fresh_sandbox_id(db: sqlite3.Connection) -> str:
    """A new sandbox id whose first :data:`ID_PREFIX_LEN` characters no live sandbox's id
    starts with: two sandboxes sharing them would share network namespace names, and
    one's start would tear down the other's (a 1-in-2³² chance per pair, no longer
    negligible with thousands of sandboxes)."""
    while True:
        candidate = str(uuid.uuid4())
        if not db.execute("SELECT 1 FROM sandboxes WHERE substr(id, 1, ?) = ?", (ID_PREFIX_LEN, candidate[:ID_PREFIX_LEN])).fetchone():
            return candidate


def _lowest_free_index(db: sqlite3.Connection) -> int | None:
    """The lowest netns index no sandbox holds, or None when all are held.

    One indexed query (the column is UNIQUE): 1 if free, else the lowest held
    index whose successor is free, instead of reading every row per create.
    """
    row = db.execute(
        "SELECT MIN(n) FROM ("
        " SELECT ? AS n WHERE NOT EXISTS (SELECT 1 FROM sandboxes WHERE netns_index = ?)"
        " UNION ALL"
        " SELECT s.netns_index + 1 FROM sandboxes s"
        " WHERE s.netns_index < ? AND NOT EXISTS (SELECT 1 FROM sandboxes t WHERE t.netns_index = s.netns_index + 1))",
        (NETNS_INDEX_MIN, NETNS_INDEX_MIN, NETNS_INDEX_MAX),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


class StoreError(Exception):
    """Base of the store's errors."""


class NameTaken(StoreError):
    """A sandbox with that name already exists in the workspace."""

    def __init__(self, workspace: str, name: str) -> None:
        super().__init__(f"sandbox {name!r} already exists in workspace {workspace!r}")
        self.workspace = workspace
        self.name = name


class ProviderNameTaken(StoreError):
    """A provider with that name already exists in the workspace."""


class NoNetnsIndex(StoreError):
    """All :data:`NETNS_INDEX_MAX` network-namespace indexes are held by live sandboxes."""


class ResourceVersionMismatch(StoreError):
    """A compare-and-set found another ``resource_version`` (``.current``)."""

    def __init__(self, current: int) -> None:
        super().__init__(f"resource_version is {current}")
        self.current = current


class UnknownWorkspace(StoreError, LookupError):
    """The workspace does not exist."""


class WorkspaceNameTaken(StoreError):
    """A workspace with that name already exists."""


class WorkspaceNotEmpty(StoreError):
    """The workspace still holds sandboxes, providers or templates.

    :ivar contents: kind ("sandboxes", "providers", "templates") -> names, only the non-empty kinds.
    """

    def __init__(self, workspace: str, contents: dict[str, list[str]]) -> None:
        super().__init__(f"workspace {workspace!r} is not empty")
        self.workspace = workspace
        self.contents = contents


class TemplateNameTaken(StoreError):
    """A template with that name already exists in the workspace."""


@dataclass(frozen=True)
class WorkspaceRecord:
    """One workspace. ``default`` always exists."""

    name: str
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass(frozen=True)
class SandboxRecord:
    """One stored sandbox.

    :ivar id: uuid4 string.
    :ivar name: unique within ``workspace``.
    :ivar spec: the sandbox spec as plain data: ``command`` (list), ``environment``
        (dict), ``extra_hosts`` (list of ``name:ip``), ``log_level``.
    :ivar phase: one of :data:`PHASES`; ``reason`` says why for ERROR/STOPPED.
    :ivar secret: per-sandbox secret (hex) for NSSH1 and supervisor auth; its
        bytes form is ``secret.encode()``. Never sent to clients, not in repr.
    :ivar netns_index: 1..16383, unique among live sandboxes (the netns layer's link addresses: 10.200.x.0/24, x from it).
    :ivar supervisor_pid: host pid reported by the driver/supervisor (0: unknown).
    :ivar resource_version: bumped on every change.
    :ivar created_at, updated_at: unix seconds.
    :ivar driver: name of the compute driver that made it (``local``, ``docker``);
        "" for a sandbox stored before the gateway recorded it.
    """

    id: str
    name: str
    workspace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]
    phase: str
    reason: str
    secret: str = field(repr=False)
    netns_index: int
    supervisor_pid: int
    resource_version: int
    created_at: float
    updated_at: float
    driver: str = ""

    def driver_view(self, policy_yaml: str) -> dict[str, Any]:
        """Return what ``ComputeDriver.create`` receives: the record plus the policy.

        Keys: id, name, workspace, labels, spec, secret, netns_index, policy_yaml.
        """
        return {
            "id": self.id,
            "name": self.name,
            "workspace": self.workspace,
            "labels": dict(self.labels),
            "spec": json.loads(json.dumps(self.spec)),
            "secret": self.secret,
            "netns_index": self.netns_index,
            "policy_yaml": policy_yaml,
        }


@dataclass(frozen=True)
class PolicyRevision:
    """One stored policy revision of a sandbox.

    :ivar revision: 1, 2, … per sandbox.
    :ivar yaml: the policy document as submitted.
    :ivar status: ``pending`` (not yet reported), ``loaded`` or ``failed``.
    :ivar error: why it failed to load.
    """

    sandbox_id: str
    revision: int
    yaml: str
    status: str
    error: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ProviderRecord:
    """One stored provider.

    :ivar credential_keys: names of its credential variables (sorted); the values
        are only in ``credentials_enc``, encrypted by the gateway (``secretbox``).
    :ivar credentials_enc: opaque ciphertext; not in repr, never sent to clients.
    """

    id: str
    name: str
    workspace: str
    type: str
    labels: dict[str, str]
    config: dict[str, str]
    credential_keys: tuple[str, ...]
    credentials_enc: str = field(repr=False)
    resource_version: int = 1
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class InferenceRouteRecord:
    """The inference route of one workspace (what ``inference.local`` serves).

    :ivar base_url: empty means the backend's default.
    :ivar provider: provider name (same workspace) or empty.
    :ivar revision: 1, 2, … bumped on every set.
    """

    workspace: str
    backend: str
    model: str
    base_url: str
    provider: str
    revision: int
    updated_at: float


@dataclass(frozen=True)
class TemplateRecord:
    """One stored sandbox template.

    :ivar spec: ``image`` (str), ``environment`` (dict), ``resources``
        (``{"limits": {...}}`` or ``{}``), ``policy_yaml`` (str; empty: the default policy).
    :ivar resource_version: never reused in this store, even after a delete.
    """

    id: str
    name: str
    workspace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]
    resource_version: int
    created_at: float


def _template(row: sqlite3.Row) -> TemplateRecord:
    return TemplateRecord(
        id=row["id"],
        name=row["name"],
        workspace=row["workspace"],
        labels=json.loads(row["labels"]),
        annotations=json.loads(row["annotations"]),
        spec=json.loads(row["spec"]),
        resource_version=row["seq"],
        created_at=row["created_at"],
    )


def _provider(row: sqlite3.Row) -> ProviderRecord:
    return ProviderRecord(
        id=row["id"],
        name=row["name"],
        workspace=row["workspace"],
        type=row["type"],
        labels=json.loads(row["labels"]),
        config=json.loads(row["config"]),
        credential_keys=tuple(json.loads(row["credential_keys"])),
        credentials_enc=row["credentials_enc"],
        resource_version=row["resource_version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _sandbox(row: sqlite3.Row) -> SandboxRecord:
    return SandboxRecord(
        id=row["id"],
        name=row["name"],
        workspace=row["workspace"],
        labels=json.loads(row["labels"]),
        annotations=json.loads(row["annotations"]),
        spec=json.loads(row["spec"]),
        phase=row["phase"],
        reason=row["reason"],
        secret=row["secret"],
        netns_index=row["netns_index"],
        supervisor_pid=row["supervisor_pid"],
        resource_version=row["resource_version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        driver=row["driver"],
    )


def _revision(row: sqlite3.Row) -> PolicyRevision:
    return PolicyRevision(
        sandbox_id=row["sandbox_id"],
        revision=row["revision"],
        yaml=row["yaml"],
        status=row["status"],
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class Store:
    """The gateway's persistent state. Open with ``Store(path)``; ``close()`` when done.

    Opening creates the file if needed, switches it to WAL mode, applies pending
    migrations and makes sure workspace ``default`` exists.
    """

    def __init__(self, path: str | Path, *, clock=time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            # WAL + NORMAL is durable across process crashes; only an OS crash
            # can drop the last transactions, which the reconcile step tolerates.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # Migrations run before foreign keys are on: a table rebuild (migration 5)
            # drops the old table, which with them on would cascade into its children.
            # Off explicitly: an SQLite built with them on by default would do just that.
            self._conn.execute("PRAGMA foreign_keys=OFF")
            self._migrate()
            self._conn.execute("PRAGMA foreign_keys=ON")
            self.ensure_workspace(DEFAULT_WORKSPACE)

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    class _Tx:
        def __init__(self, store: Store) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            try:
                self.store._conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.store._lock.release()
                raise
            return self.store._conn

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                self.store._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.store._lock.release()

    def _tx(self) -> Store._Tx:
        return Store._Tx(self)

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _migrate(self) -> None:
        self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        rows = self._conn.execute("SELECT version FROM schema_version").fetchall()
        if not rows:
            self._conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            current = 0
        else:
            current = rows[0][0]
        if current > len(MIGRATIONS):
            raise StoreError(f"{self.path} has schema version {current}, newer than this gateway understands ({len(MIGRATIONS)}); upgrade openshell")
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            # executescript() commits first, so run each statement ourselves to
            # keep a migration and its version bump in one transaction.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute("UPDATE schema_version SET version = ?", (number,))
                # Foreign keys are off while migrating (see __init__): check by hand
                # that the migration left every reference intact.
                broken = self._conn.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise StoreError(f"{self.path}: migration {number} would break {len(broken)} reference(s) (first: table {broken[0][0]})")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        """Return the number of migrations applied."""
        return self._query("SELECT version FROM schema_version")[0][0]

    def journal_mode(self) -> str:
        """Return SQLite's journal mode for this file (``"wal"``)."""
        return str(self._query("PRAGMA journal_mode")[0][0]).lower()

    # ------------------------------------------------------------------ workspaces

    def ensure_workspace(self, name: str, labels: Mapping[str, str] | None = None) -> WorkspaceRecord:
        """Create workspace ``name`` unless it exists; return it."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO workspaces (name, id, labels, created_at) VALUES (?, ?, ?, ?)",
                (name, str(uuid.uuid4()), json.dumps(dict(labels or {})), self._clock()),
            )
        found = self.get_workspace(name)
        assert found is not None
        return found

    def get_workspace(self, name: str) -> WorkspaceRecord | None:
        """Return workspace ``name`` or None."""
        rows = self._query("SELECT * FROM workspaces WHERE name = ?", (name,))
        if not rows:
            return None
        r = rows[0]
        return WorkspaceRecord(r["name"], r["id"], json.loads(r["labels"]), r["created_at"])

    def list_workspaces(self) -> list[WorkspaceRecord]:
        """Return every workspace ordered by name."""
        return [WorkspaceRecord(r["name"], r["id"], json.loads(r["labels"]), r["created_at"]) for r in self._query("SELECT * FROM workspaces ORDER BY name")]

    def create_workspace(self, name: str, labels: Mapping[str, str] | None = None) -> WorkspaceRecord:
        """Create workspace ``name``.

        :raises WorkspaceNameTaken: it exists.
        """
        with self._tx() as db:
            if db.execute("SELECT 1 FROM workspaces WHERE name = ?", (name,)).fetchone():
                raise WorkspaceNameTaken(f"workspace {name!r} already exists")
            db.execute(
                "INSERT INTO workspaces (name, id, labels, created_at) VALUES (?, ?, ?, ?)",
                (name, str(uuid.uuid4()), json.dumps(dict(labels or {}), sort_keys=True), self._clock()),
            )
        found = self.get_workspace(name)
        assert found is not None
        return found

    def delete_workspace(self, name: str) -> bool:
        """Remove the empty workspace ``name`` (and its inference route); True when it existed.

        Checked and deleted in one transaction, so nothing can be created in it meanwhile.

        :raises WorkspaceNotEmpty: it holds sandboxes, providers or templates.
        """
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM workspaces WHERE name = ?", (name,)).fetchone():
                return False
            contents = {}
            for kind, table in (("sandboxes", "sandboxes"), ("providers", "providers"), ("templates", "sandbox_templates")):
                names = [r[0] for r in db.execute(f"SELECT name FROM {table} WHERE workspace = ? ORDER BY name", (name,))]
                if names:
                    contents[kind] = names
            if contents:
                raise WorkspaceNotEmpty(name, contents)
            db.execute("DELETE FROM inference_routes WHERE workspace = ?", (name,))
            db.execute("DELETE FROM workspaces WHERE name = ?", (name,))
        return True

    # ------------------------------------------------------------------ sandboxes

    def create_sandbox(
        self,
        *,
        name: str,
        workspace: str = DEFAULT_WORKSPACE,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        spec: Mapping[str, Any] | None = None,
        policy_yaml: str = "",
        phase: str = PROVISIONING,
        driver: str = "",
    ) -> tuple[SandboxRecord, PolicyRevision]:
        """Store a new sandbox with a fresh id, secret and netns index, and policy revision 1.

        Both rows are written in one transaction. ``driver`` names the compute
        driver that will run it (kept as is; reported by the API).

        :returns: the new record and its revision 1 (status ``pending``).
        :raises NameTaken: ``name`` exists in ``workspace``.
        :raises UnknownWorkspace: ``workspace`` does not exist.
        :raises NoNetnsIndex: :data:`NETNS_INDEX_MAX` live sandboxes hold every index.
        """
        now = self._clock()
        with self._tx() as db:
            sandbox_id = _fresh_sandbox_id(db)
            if not db.execute("SELECT 1 FROM workspaces WHERE name = ?", (workspace,)).fetchone():
                raise UnknownWorkspace(f"workspace {workspace!r} not found")
            if db.execute("SELECT 1 FROM sandboxes WHERE workspace = ? AND name = ?", (workspace, name)).fetchone():
                raise NameTaken(workspace, name)
            free = _lowest_free_index(db)
            if free is None:
                raise NoNetnsIndex(f"no free network index: {NETNS_INDEX_MAX} sandboxes exist; delete one first")
            db.execute(
                "INSERT INTO sandboxes (id, workspace, name, labels, annotations, spec, phase,"
                " reason, secret, netns_index, supervisor_pid, resource_version, created_at, updated_at, driver)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, '', ?, ?, 0, 1, ?, ?, ?)",
                (
                    sandbox_id,
                    workspace,
                    name,
                    json.dumps(dict(labels or {}), sort_keys=True),
                    json.dumps(dict(annotations or {}), sort_keys=True),
                    json.dumps(dict(spec or {}), sort_keys=True),
                    phase,
                    secrets.token_hex(32),
                    free,
                    now,
                    now,
                    driver,
                ),
            )
            db.execute(
                "INSERT INTO policy_revisions (sandbox_id, revision, yaml, status, error, created_at, updated_at) VALUES (?, 1, ?, 'pending', '', ?, ?)",
                (sandbox_id, policy_yaml, now, now),
            )
        record = self.get_sandbox(sandbox_id)
        revision = self.get_policy_revision(sandbox_id, 1)
        assert record is not None and revision is not None
        return record, revision

    def get_sandbox(self, sandbox_id: str) -> SandboxRecord | None:
        """Return the sandbox with id ``sandbox_id`` or None."""
        rows = self._query("SELECT * FROM sandboxes WHERE id = ?", (sandbox_id,))
        return _sandbox(rows[0]) if rows else None

    def get_sandbox_by_name(self, name: str, workspace: str = DEFAULT_WORKSPACE) -> SandboxRecord | None:
        """Return the sandbox called ``name`` in ``workspace`` or None."""
        rows = self._query("SELECT * FROM sandboxes WHERE workspace = ? AND name = ?", (workspace, name))
        return _sandbox(rows[0]) if rows else None

    def list_sandboxes(self, workspace: str | None = None) -> list[SandboxRecord]:
        """Return sandboxes of ``workspace`` (every workspace when None), ordered by (workspace, name)."""
        if workspace is None:
            rows = self._query("SELECT * FROM sandboxes ORDER BY workspace, name")
        else:
            rows = self._query("SELECT * FROM sandboxes WHERE workspace = ? ORDER BY name", (workspace,))
        return [_sandbox(r) for r in rows]

    def sandbox_names(self) -> set[str]:
        """Return every sandbox name in every workspace (for name generation)."""
        return {r[0] for r in self._query("SELECT name FROM sandboxes")}

    def update_sandbox(
        self,
        sandbox_id: str,
        *,
        phase: str | None = None,
        reason: str | None = None,
        supervisor_pid: int | None = None,
    ) -> SandboxRecord | None:
        """Change the given fields; return the new record, or None when it does not exist.

        :raises ValueError: ``phase`` is not one of :data:`PHASES`.
        """
        if phase is not None and phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
        sets, args = [], []
        for column, value in (("phase", phase), ("reason", reason), ("supervisor_pid", supervisor_pid)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE sandboxes SET {', '.join(sets + ['resource_version = resource_version + 1', 'updated_at = ?'])} WHERE id = ?",
                (*args, self._clock(), sandbox_id),
            )
            if cur.rowcount == 0:
                return None
        return self.get_sandbox(sandbox_id)

    def set_sandbox_providers(self, sandbox_id: str, providers: Sequence[str], *, expected_resource_version: int = 0) -> SandboxRecord | None:
        """Replace ``spec.providers`` (names only) in one transaction; bumps ``resource_version``.

        :returns: the new record, or None when the sandbox does not exist.
        :raises ResourceVersionMismatch: ``expected_resource_version`` is non-zero and differs.
        """
        with self._tx() as db:
            row = db.execute("SELECT spec, resource_version FROM sandboxes WHERE id = ?", (sandbox_id,)).fetchone()
            if row is None:
                return None
            if expected_resource_version and row[1] != expected_resource_version:
                raise ResourceVersionMismatch(row[1])
            spec = json.loads(row[0])
            spec["providers"] = list(providers)
            db.execute(
                "UPDATE sandboxes SET spec = ?, resource_version = resource_version + 1, updated_at = ? WHERE id = ?",
                (json.dumps(spec, sort_keys=True), self._clock(), sandbox_id),
            )
        return self.get_sandbox(sandbox_id)

    def delete_sandbox(self, sandbox_id: str) -> bool:
        """Remove the sandbox and its policy revisions; True when it existed."""
        with self._tx() as db:
            return db.execute("DELETE FROM sandboxes WHERE id = ?", (sandbox_id,)).rowcount > 0

    # ------------------------------------------------------------------ policy revisions

    def add_policy_revision(self, sandbox_id: str, yaml: str) -> PolicyRevision:
        """Store ``yaml`` as the sandbox's next revision (status ``pending``).

        :raises LookupError: the sandbox does not exist.
        """
        now = self._clock()
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM sandboxes WHERE id = ?", (sandbox_id,)).fetchone():
                raise LookupError(f"sandbox {sandbox_id} not found")
            (latest,) = db.execute("SELECT COALESCE(MAX(revision), 0) FROM policy_revisions WHERE sandbox_id = ?", (sandbox_id,)).fetchone()
            db.execute(
                "INSERT INTO policy_revisions (sandbox_id, revision, yaml, status, error, created_at, updated_at) VALUES (?, ?, ?, 'pending', '', ?, ?)",
                (sandbox_id, latest + 1, yaml, now, now),
            )
        revision = self.get_policy_revision(sandbox_id, latest + 1)
        assert revision is not None
        return revision

    def get_policy_revision(self, sandbox_id: str, revision: int | None = None) -> PolicyRevision | None:
        """Return revision ``revision`` (the newest when None) or None."""
        if revision is None:
            rows = self._query("SELECT * FROM policy_revisions WHERE sandbox_id = ? ORDER BY revision DESC LIMIT 1", (sandbox_id,))
        else:
            rows = self._query("SELECT * FROM policy_revisions WHERE sandbox_id = ? AND revision = ?", (sandbox_id, revision))
        return _revision(rows[0]) if rows else None

    def list_policy_revisions(self, sandbox_id: str) -> list[PolicyRevision]:
        """Return every revision of the sandbox, oldest first."""
        rows = self._query("SELECT * FROM policy_revisions WHERE sandbox_id = ? ORDER BY revision", (sandbox_id,))
        return [_revision(r) for r in rows]

    def loaded_policy_revision(self, sandbox_id: str) -> int:
        """Return the newest revision with status ``loaded`` (0 when none)."""
        (value,) = self._query(
            "SELECT COALESCE(MAX(revision), 0) FROM policy_revisions WHERE sandbox_id = ? AND status = 'loaded'",
            (sandbox_id,),
        )[0]
        return int(value)

    def set_policy_status(self, sandbox_id: str, revision: int, status: str, error: str = "") -> PolicyRevision | None:
        """Record a supervisor's load result; return the updated revision or None if unknown.

        :raises ValueError: ``status`` is not pending/loaded/failed.
        """
        if status not in (PENDING, LOADED, FAILED):
            raise ValueError(f"unknown policy status {status!r}")
        with self._tx() as db:
            cur = db.execute(
                "UPDATE policy_revisions SET status = ?, error = ?, updated_at = ? WHERE sandbox_id = ? AND revision = ?",
                (status, error, self._clock(), sandbox_id, revision),
            )
            if cur.rowcount == 0:
                return None
        return self.get_policy_revision(sandbox_id, revision)

    # ------------------------------------------------------------------ providers

    def create_provider(
        self,
        *,
        name: str,
        workspace: str,
        type: str,
        labels: Mapping[str, str],
        config: Mapping[str, str],
        credential_keys: list[str],
        credentials_enc: str,
    ) -> ProviderRecord:
        """Store a new provider.

        :raises ProviderNameTaken: ``name`` exists in ``workspace``.
        :raises UnknownWorkspace: ``workspace`` does not exist.
        """
        now = self._clock()
        provider_id = str(uuid.uuid4())
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM workspaces WHERE name = ?", (workspace,)).fetchone():
                raise UnknownWorkspace(f"workspace {workspace!r} not found")
            if db.execute("SELECT 1 FROM providers WHERE workspace = ? AND name = ?", (workspace, name)).fetchone():
                raise ProviderNameTaken(f"provider {name!r} already exists in workspace {workspace!r}")
            db.execute(
                "INSERT INTO providers (id, workspace, name, type, labels, config, credential_keys, credentials_enc,"
                " resource_version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                (
                    provider_id,
                    workspace,
                    name,
                    type,
                    json.dumps(dict(labels), sort_keys=True),
                    json.dumps(dict(config), sort_keys=True),
                    json.dumps(sorted(credential_keys)),
                    credentials_enc,
                    now,
                    now,
                ),
            )
        found = self.get_provider(name, workspace)
        assert found is not None
        return found

    def get_provider(self, name: str, workspace: str = DEFAULT_WORKSPACE) -> ProviderRecord | None:
        """Return provider ``name`` of ``workspace`` or None."""
        rows = self._query("SELECT * FROM providers WHERE workspace = ? AND name = ?", (workspace, name))
        return _provider(rows[0]) if rows else None

    def list_providers(self, workspace: str | None = DEFAULT_WORKSPACE) -> list[ProviderRecord]:
        """Return providers of ``workspace`` (all when None), ordered by (workspace, name)."""
        if workspace is None:
            rows = self._query("SELECT * FROM providers ORDER BY workspace, name")
        else:
            rows = self._query("SELECT * FROM providers WHERE workspace = ? ORDER BY name", (workspace,))
        return [_provider(r) for r in rows]

    def update_provider(
        self,
        name: str,
        workspace: str,
        *,
        config: Mapping[str, str],
        credential_keys: list[str],
        credentials_enc: str,
        labels: Mapping[str, str] | None = None,
    ) -> ProviderRecord | None:
        """Replace the provider's config and credentials; None when it does not exist."""
        with self._tx() as db:
            sets = "config = ?, credential_keys = ?, credentials_enc = ?, resource_version = resource_version + 1, updated_at = ?"
            args: list[Any] = [json.dumps(dict(config), sort_keys=True), json.dumps(sorted(credential_keys)), credentials_enc, self._clock()]
            if labels is not None:
                sets += ", labels = ?"
                args.append(json.dumps(dict(labels), sort_keys=True))
            cur = db.execute(f"UPDATE providers SET {sets} WHERE workspace = ? AND name = ?", (*args, workspace, name))
            if cur.rowcount == 0:
                return None
        return self.get_provider(name, workspace)

    def delete_provider(self, name: str, workspace: str = DEFAULT_WORKSPACE) -> bool:
        """Remove the provider; True when it existed."""
        with self._tx() as db:
            return db.execute("DELETE FROM providers WHERE workspace = ? AND name = ?", (workspace, name)).rowcount > 0

    # ------------------------------------------------------------------ inference routes

    def set_inference_route(self, workspace: str, *, backend: str, model: str, base_url: str, provider: str) -> InferenceRouteRecord:
        """Store the workspace's route (revision + 1)."""
        now = self._clock()
        with self._tx() as db:
            db.execute(
                "INSERT INTO inference_routes (workspace, backend, model, base_url, provider, revision, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT(workspace) DO UPDATE SET backend = excluded.backend,"
                " model = excluded.model, base_url = excluded.base_url, provider = excluded.provider,"
                " revision = inference_routes.revision + 1, updated_at = excluded.updated_at",
                (workspace, backend, model, base_url, provider, now),
            )
        found = self.get_inference_route(workspace)
        assert found is not None
        return found

    def get_inference_route(self, workspace: str = DEFAULT_WORKSPACE) -> InferenceRouteRecord | None:
        """Return the workspace's route or None when never set."""
        rows = self._query("SELECT * FROM inference_routes WHERE workspace = ?", (workspace,))
        if not rows:
            return None
        r = rows[0]
        return InferenceRouteRecord(r["workspace"], r["backend"], r["model"], r["base_url"], r["provider"], r["revision"], r["updated_at"])

    # ------------------------------------------------------------------ sandbox templates

    def create_template(
        self,
        *,
        name: str,
        workspace: str,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        spec: Mapping[str, Any],
    ) -> TemplateRecord:
        """Store a new template.

        :raises TemplateNameTaken: ``name`` exists in ``workspace``.
        :raises UnknownWorkspace: ``workspace`` does not exist.
        """
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM workspaces WHERE name = ?", (workspace,)).fetchone():
                raise UnknownWorkspace(f"workspace {workspace!r} not found")
            if db.execute("SELECT 1 FROM sandbox_templates WHERE workspace = ? AND name = ?", (workspace, name)).fetchone():
                raise TemplateNameTaken(f"template {name!r} already exists in workspace {workspace!r}")
            db.execute(
                "INSERT INTO sandbox_templates (id, workspace, name, labels, annotations, spec, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    str(uuid.uuid4()),
                    workspace,
                    name,
                    json.dumps(dict(labels), sort_keys=True),
                    json.dumps(dict(annotations), sort_keys=True),
                    json.dumps(dict(spec), sort_keys=True),
                    self._clock(),
                ),
            )
        found = self.get_template(name, workspace)
        assert found is not None
        return found

    def get_template(self, name: str, workspace: str = DEFAULT_WORKSPACE) -> TemplateRecord | None:
        """Return template ``name`` of ``workspace`` or None."""
        rows = self._query("SELECT * FROM sandbox_templates WHERE workspace = ? AND name = ?", (workspace, name))
        return _template(rows[0]) if rows else None

    def list_templates(self, workspace: str | None = DEFAULT_WORKSPACE) -> list[TemplateRecord]:
        """Return templates of ``workspace`` (all when None), ordered by (workspace, name)."""
        if workspace is None:
            rows = self._query("SELECT * FROM sandbox_templates ORDER BY workspace, name")
        else:
            rows = self._query("SELECT * FROM sandbox_templates WHERE workspace = ? ORDER BY name", (workspace,))
        return [_template(r) for r in rows]

    def delete_template(self, name: str, workspace: str = DEFAULT_WORKSPACE) -> bool:
        """Remove the template; True when it existed (sandboxes made from it keep running)."""
        with self._tx() as db:
            return db.execute("DELETE FROM sandbox_templates WHERE workspace = ? AND name = ?", (workspace, name)).rowcount > 0


__all__ = [
    "DEFAULT_WORKSPACE",
    "ERROR",
    "FAILED",
    "LOADED",
    "MIGRATIONS",
    "PENDING",
    "PHASES",
    "PROVISIONING",
    "READY",
    "STOPPED",
    "STOPPING",
    "NameTaken",
    "NoNetnsIndex",
    "InferenceRouteRecord",
    "PolicyRevision",
    "ProviderNameTaken",
    "ProviderRecord",
    "SandboxRecord",
    "Store",
    "StoreError",
    "TemplateNameTaken",
    "TemplateRecord",
    "UnknownWorkspace",
    "WorkspaceNameTaken",
    "WorkspaceNotEmpty",
    "WorkspaceRecord",
]
