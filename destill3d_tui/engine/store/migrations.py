"""Schema versions and in-place upgrades.

Version 1 is the spec's schema (section 8.1) as written. Every later version is a list of
additive statements. A new database is created as version 1 and migrated forward, so a fresh
file and an upgraded old file have the same schema by construction.

The ``schema_version`` table holds one row per applied version. A file without it but with a
``snapshots`` table is a version-1 file from before versioning. A file newer than this code is
refused (``schema_too_new``) rather than guessed at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import DatabaseError

if TYPE_CHECKING:
    from .db import Store

_V1 = """
CREATE TABLE IF NOT EXISTS snapshots (
    snapshot_id TEXT PRIMARY KEY,
    model_id TEXT NOT NULL UNIQUE,
    platform TEXT NOT NULL,
    source_url TEXT,
    source_id TEXT,
    title TEXT,
    author TEXT,
    license TEXT,
    original_format TEXT,
    original_file_size INTEGER,
    original_file_hash TEXT,
    snapshot_data {BLOB} NOT NULL,
    snapshot_version INTEGER NOT NULL,
    point_count INTEGER,
    is_watertight BOOLEAN,
    surface_area {REAL},
    volume {REAL},
    source_created_at TIMESTAMP,
    acquired_at TIMESTAMP NOT NULL,
    processed_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS tags (
    tag_id {AUTO},
    tag_name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS snapshot_tags (
    snapshot_id TEXT REFERENCES snapshots(snapshot_id) ON DELETE CASCADE,
    tag_id INTEGER REFERENCES tags(tag_id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    confidence {REAL},
    PRIMARY KEY (snapshot_id, tag_id, source)
);
CREATE TABLE IF NOT EXISTS classifications (
    classification_id {AUTO},
    snapshot_id TEXT REFERENCES snapshots(snapshot_id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    taxonomy TEXT NOT NULL,
    label TEXT NOT NULL,
    confidence {REAL} NOT NULL,
    rank INTEGER NOT NULL,
    uncertainty {REAL},
    classified_at TIMESTAMP NOT NULL,
    UNIQUE (snapshot_id, model_id, rank)
);
CREATE TABLE IF NOT EXISTS embeddings (
    snapshot_id TEXT PRIMARY KEY REFERENCES snapshots(snapshot_id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    embedding {BLOB} NOT NULL,
    embedding_dim INTEGER NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS processing_queue (
    queue_id {AUTO},
    model_id TEXT NOT NULL UNIQUE,
    platform TEXT NOT NULL,
    source_url TEXT NOT NULL,
    stage TEXT NOT NULL,
    priority INTEGER DEFAULT 0,
    retry_count INTEGER DEFAULT 0,
    max_retries INTEGER DEFAULT 3,
    last_error TEXT,
    temp_path TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    scheduled_at TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_snapshots_platform ON snapshots(platform);
CREATE INDEX IF NOT EXISTS idx_snapshots_acquired ON snapshots(acquired_at);
CREATE INDEX IF NOT EXISTS idx_classifications_label ON classifications(label);
CREATE INDEX IF NOT EXISTS idx_classifications_snapshot ON classifications(snapshot_id);
CREATE INDEX IF NOT EXISTS idx_queue_stage ON processing_queue(stage, priority DESC);
CREATE INDEX IF NOT EXISTS idx_queue_scheduled ON processing_queue(scheduled_at) WHERE scheduled_at IS NOT NULL;
"""

# Curation columns, denormalised label/confidence, leases and queue bookkeeping.
_V2_COLUMNS = {
    "snapshots": [
        ("license_spdx", "TEXT"),
        ("license_flags", "TEXT"),
        ("license_commercial", "BOOLEAN"),
        ("license_derivatives", "BOOLEAN"),
        ("quality_flags", "TEXT"),
        ("source_status", "TEXT DEFAULT 'unknown'"),
        ("source_checked_at", "TIMESTAMP"),
        ("label", "TEXT"),
        ("confidence", "{REAL}"),
        ("label_model", "TEXT"),
        ("snapshot_bytes", "INTEGER"),
        ("face_count", "INTEGER"),
        ("vertex_count", "INTEGER"),
        ("original_filename", "TEXT"),
        ("group_id", "TEXT"),
    ],
    "classifications": [("source", "TEXT DEFAULT 'classifier'")],
    "processing_queue": [
        ("source_id", "TEXT"),
        ("file_id", "TEXT"),
        ("group_id", "TEXT"),
        ("reason", "TEXT"),
        ("error_stage", "TEXT"),
        ("lease_owner", "TEXT"),
        ("lease_expires_at", "TIMESTAMP"),
        ("heartbeat_at", "TIMESTAMP"),
        ("metadata", "TEXT"),
        ("snapshot_id", "TEXT"),
        ("duplicate_of", "TEXT"),
        ("bytes_in", "INTEGER DEFAULT 0"),
        ("file_hash", "TEXT"),
        ("primary_path", "TEXT"),
        ("finished_at", "TIMESTAMP"),
    ],
}

_V2_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS idx_snapshots_file_hash ON snapshots(original_file_hash)
    WHERE original_file_hash IS NOT NULL AND original_file_hash <> '';
CREATE INDEX IF NOT EXISTS idx_snapshots_label ON snapshots(label);
CREATE INDEX IF NOT EXISTS idx_snapshots_processed ON snapshots(processed_at);
CREATE INDEX IF NOT EXISTS idx_snapshots_format ON snapshots(original_format);
CREATE INDEX IF NOT EXISTS idx_queue_lease ON processing_queue(lease_expires_at) WHERE lease_owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_queue_group ON processing_queue(group_id) WHERE group_id IS NOT NULL;
"""

# v3: covering indexes for the similarity/dataset reads (engine/store/index.py, duplicates.py): the
# index fingerprints' MAX and versions() read them without touching the blobs.
_V3_INDEXES = """
CREATE INDEX IF NOT EXISTS idx_embeddings_model_created_id ON embeddings(model_id, created_at, snapshot_id);
CREATE INDEX IF NOT EXISTS idx_snapshots_id_processed ON snapshots(snapshot_id, processed_at);
"""

LATEST = 3


def _dialect(sql: str, postgres: bool) -> str:
    kinds = (
        {"AUTO": "SERIAL PRIMARY KEY", "BLOB": "BYTEA", "REAL": "DOUBLE PRECISION"}
        if postgres
        else {"AUTO": "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB": "BLOB", "REAL": "REAL"}
    )
    for key, value in kinds.items():
        sql = sql.replace("{" + key + "}", value)
    return sql


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def v1_statements(postgres: bool = False) -> list[str]:
    """The spec's schema as SQL statements (tests build an old file with these)."""
    return [_dialect(s, postgres) for s in _statements(_V1)]


def _columns(store: Store, table: str) -> set[str]:
    return {c.name for c in store.database.get_columns(table, schema=store.schema)}


def _upgrade_to_2(store: Store) -> None:
    for table, columns in _V2_COLUMNS.items():
        have = _columns(store, table)
        for name, kind in columns:
            if name not in have:
                store.execute(f"ALTER TABLE {table} ADD COLUMN {name} {_dialect(kind, store.is_postgres)}")
    for statement in _statements(_V2_INDEXES):
        store.execute(statement)


def _upgrade_to_3(store: Store) -> None:
    for statement in _statements(_V3_INDEXES):  # IF NOT EXISTS: the first-use code may have made them
        store.execute(statement)


UPGRADES = {2: _upgrade_to_2, 3: _upgrade_to_3}


def current_version(store: Store) -> int:
    """0: empty database; 1: the spec's tables without a version table; else the stored version."""
    tables = set(store.database.get_tables(schema=store.schema))
    if "schema_version" in tables:
        row = store.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)
    return 1 if "snapshots" in tables else 0


def _lock(store: Store) -> None:
    """Serialise migrations between processes sharing one PostgreSQL database."""
    if store.is_postgres:
        store.execute("SELECT pg_advisory_xact_lock(727368)")


def ensure_schema(store: Store) -> int:
    """Create or upgrade the schema to :data:`LATEST`; returns the version found before.

    A read-only database is only read: it must already be at :data:`LATEST`.
    """
    if getattr(store, "read_only", False):
        found = current_version(store)
        if found != LATEST:
            raise DatabaseError(
                f"{store.display_url} is read-only and at schema version {found}, not {LATEST}: "
                "open it once where it can be written to upgrade it",
                reason="database_readonly",
                kind="permanent",
            )
        return found
    with store.atomic(immediate=True):
        _lock(store)
        found = current_version(store)
        if found > LATEST:
            raise DatabaseError(
                f"database schema version {found} is newer than this Destill3D understands ({LATEST}); "
                "upgrade destill3d-tui to open it",
                reason="schema_too_new",
                kind="permanent",
            )
        if found == LATEST:
            return found
        if found == 0:
            for statement in v1_statements(store.is_postgres):
                store.execute(statement)
        store.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)")
        if store.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
            store.execute("INSERT INTO schema_version (version, applied_at) VALUES (1, CURRENT_TIMESTAMP)")
        for version in range(max(found, 1) + 1, LATEST + 1):
            UPGRADES[version](store)
            store.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, CURRENT_TIMESTAMP)", (version,))
    return found
