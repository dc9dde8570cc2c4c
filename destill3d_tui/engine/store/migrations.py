"""Schema versions and in-place upgrades.

Version 1 is the spec's schema (section 8.1) as written. Every later version is a list of
additive statements. A new database is created as version 1 and migrated forward, so a fresh
file and an upgraded old file have the same schema by construction.

The ``schema_version`` table holds one row per applied version. A file without it but with a
``snapshots`` table is a version-1 file from before versioning. A file newer than this code is
refused (``schema_too_new``) rather than guessed at.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import DatabaseError


class MigratableStore(Protocol):
    """What the migrations use of a store. :class:`.db.Store` is one; it is named by shape, not
    imported, because ``db`` runs the migrations when it opens a database (no import cycle)."""

    database: Any
    schema: str | None
    is_postgres: bool

    @property
    def display_url(self) -> str: ...

    def atomic(self, immediate: bool = False) -> Any: ...

    def execute(self, sql: str, params: tuple | list = ()) -> Any: ...


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

# v4: running totals kept by triggers (see _totals_statements): `db stats`, the TUI's F3/F4
# totals read a few dozen rows instead of scanning a million snapshots and queue rows.
TOTALS_TABLE = "totals"
# dimension -> key expression over a snapshots row (``X.`` stands for NEW/OLD); NULL keys are
# not counted (unlabelled snapshots have no label row). The first dimension has a constant key:
# every trigger statement locks that row first (see _totals_statements).
SNAPSHOT_DIMENSIONS = (
    ("snapshots", "''"),
    ("platform", "X.platform"),
    ("format", "COALESCE(X.original_format, '')"),
    ("license", "COALESCE(X.license_spdx, X.license, '')"),
    ("label", "X.label"),
)
SNAPSHOT_MEASURES = ("1", "COALESCE(X.snapshot_bytes, 0)", "COALESCE(X.original_file_size, 0)")
SNAPSHOT_WATCHED = ("platform", "original_format", "license_spdx", "license", "label", "snapshot_bytes",
                    "original_file_size")  # fmt: skip
QUEUE_DIMENSIONS = (
    ("snapshots", "''"),  # adds 0: only takes the per-slot lock first, as the snapshot triggers do
    ("queue", "''"),
    ("stage", "X.stage"),
    ("reason", "X.reason"),
)
QUEUE_MEASURES = ("1", "COALESCE(X.bytes_in, 0)", "0")
QUEUE_WATCHED = ("stage", "reason", "bytes_in")

LOCK_DIMENSION = "snapshots"
_MEASURE_COLUMNS = ("n", "bytes", "source_bytes")

LATEST = 6


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


def _columns(store: MigratableStore, table: str) -> set[str]:
    return {c.name for c in store.database.get_columns(table, schema=store.schema)}


def _upgrade_to_2(store: MigratableStore) -> None:
    for table, columns in _V2_COLUMNS.items():
        have = _columns(store, table)
        for name, kind in columns:
            if name not in have:
                store.execute(f"ALTER TABLE {table} ADD COLUMN {name} {_dialect(kind, store.is_postgres)}")
    for statement in _statements(_V2_INDEXES):
        store.execute(statement)


def _upgrade_to_3(store: MigratableStore) -> None:
    for statement in _statements(_V3_INDEXES):  # IF NOT EXISTS: the first-use code may have made them
        store.execute(statement)


def _totals_delta(dimensions: tuple[tuple[str, str], ...], measures: tuple[str, str, str], row: str, sign: int,
                  slot: str) -> str:
    """One upsert adding ``sign`` x this row's measures to each of its dimension keys.

    The rows are upserted in ``dimensions`` order, whose first is always ``('snapshots', '')``:
    on PostgreSQL that row is a per-slot lock every totals statement takes first (the queue's
    adds 0 to it), so two transactions never hold totals rows in opposite orders (no deadlock).
    """
    n, size, source = (m.replace("X.", row + ".") for m in measures)
    selects = []
    for dimension, key in dimensions:
        weights = (n, size, source)
        if dimension == LOCK_DIMENSION and dimensions is not SNAPSHOT_DIMENSIONS:
            weights = ("0", "0", "0")
        selects.append(f"SELECT '{dimension}' AS dimension, {key.replace('X.', row + '.')} AS key, "
                       + ", ".join(f"{sign} * {w} AS {c}" for w, c in zip(weights, _MEASURE_COLUMNS, strict=True)))
    columns = ", ".join(_MEASURE_COLUMNS)
    return (f"INSERT INTO {TOTALS_TABLE} (dimension, key, slot, {columns}) "
            f"SELECT dimension, key, {slot}, {columns} FROM ({' UNION ALL '.join(selects)}) AS d "
            "WHERE key IS NOT NULL ON CONFLICT (dimension, key, slot) DO UPDATE SET "
            + ", ".join(f"{c} = {TOTALS_TABLE}.{c} + excluded.{c}" for c in _MEASURE_COLUMNS))


_TOTALS_TABLE_SQL = f"""
CREATE TABLE IF NOT EXISTS {TOTALS_TABLE} (
    dimension TEXT NOT NULL,
    key TEXT NOT NULL,
    slot INTEGER NOT NULL DEFAULT 0,
    n BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    source_bytes BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (dimension, key, slot)
)"""
_TRIGGERED = (
    ("snapshots", SNAPSHOT_DIMENSIONS, SNAPSHOT_MEASURES, SNAPSHOT_WATCHED),
    ("processing_queue", QUEUE_DIMENSIONS, QUEUE_MEASURES, QUEUE_WATCHED),
)


def _changed(columns: tuple[str, ...], postgres: bool) -> str:
    op = "IS DISTINCT FROM" if postgres else "IS NOT"
    return " OR ".join(f"OLD.{c} {op} NEW.{c}" for c in columns)


def totals_trigger_statements(postgres: bool) -> list[str]:
    """The triggers keeping ``totals`` equal to a recount, in the transaction of each change.

    Triggers rather than code in the insert path: every way a row changes (the writer's insert,
    a reclassification's new label, a queue row's stage, a hand-written DELETE) keeps the totals
    true. SQLite has one writer, so one slot; on PostgreSQL each connection adds to its own slot
    (backend pid mod 64), so concurrent writers on several machines rarely wait on one hot row.
    """
    out: list[str] = []
    for table, dims, measures, watched in _TRIGGERED:
        if postgres:
            slot = "mod(pg_backend_pid(), 64)"
            body = (f"IF TG_OP <> 'INSERT' THEN {_totals_delta(dims, measures, 'OLD', -1, slot)}; END IF; "
                    f"IF TG_OP <> 'DELETE' THEN {_totals_delta(dims, measures, 'NEW', 1, slot)}; END IF; "
                    "RETURN NULL;")
            out.append(f"CREATE OR REPLACE FUNCTION d3d_totals_{table}() RETURNS trigger LANGUAGE plpgsql AS "
                       f"$body$ BEGIN {body} END $body$")
            out.append(f"DROP TRIGGER IF EXISTS trg_totals_{table} ON {table}")
            out.append(f"DROP TRIGGER IF EXISTS trg_totals_{table}_update ON {table}")
            out.append(f"CREATE TRIGGER trg_totals_{table} AFTER INSERT OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION d3d_totals_{table}()")
            out.append(f"CREATE TRIGGER trg_totals_{table}_update AFTER UPDATE ON {table} FOR EACH ROW "
                       f"WHEN ({_changed(watched, True)}) EXECUTE FUNCTION d3d_totals_{table}()")
            continue
        plus, minus = (_totals_delta(dims, measures, r, s, "0") for r, s in (("NEW", 1), ("OLD", -1)))
        out += [f"DROP TRIGGER IF EXISTS trg_totals_{table}_{op}" for op in ("insert", "delete", "update")]
        out.append(f"CREATE TRIGGER trg_totals_{table}_insert AFTER INSERT ON {table} BEGIN {plus}; END")
        out.append(f"CREATE TRIGGER trg_totals_{table}_delete AFTER DELETE ON {table} BEGIN {minus}; END")
        out.append(f"CREATE TRIGGER trg_totals_{table}_update AFTER UPDATE ON {table} "
                   f"WHEN {_changed(watched, False)} BEGIN {minus}; {plus}; END")
    return out


def recount_selects() -> list[str]:
    """Per dimension, the GROUP BY over the base tables that the triggers' totals must equal."""
    out = []
    for table, dims, measures, _ in _TRIGGERED:
        _, size, source = (m.replace("X.", "") for m in measures)
        for dimension, key in dims:
            if table == "processing_queue" and dimension == LOCK_DIMENSION:
                continue
            key = key.replace("X.", "")
            out.append(f"SELECT '{dimension}', {key}, 0, COUNT(*), COALESCE(SUM({size}), 0), "
                       f"COALESCE(SUM({source}), 0) FROM {table} WHERE {key} IS NOT NULL GROUP BY {key}"
                       if key != "''" else
                       f"SELECT '{dimension}', '', 0, COUNT(*), COALESCE(SUM({size}), 0), "
                       f"COALESCE(SUM({source}), 0) FROM {table}")
    return out


def recount_totals(store: MigratableStore) -> None:
    """Rebuild ``totals`` from the base tables (``db stats --recount``; the v4 migration's backfill).

    On PostgreSQL the table is locked first: a writer's trigger waits for the recount to commit,
    then adds its own row on top, so no concurrent insert is counted twice or lost.
    """
    with store.atomic(immediate=True):
        if store.is_postgres:
            store.execute(f"LOCK TABLE {TOTALS_TABLE} IN EXCLUSIVE MODE")
        store.execute(f"DELETE FROM {TOTALS_TABLE}")
        for select in recount_selects():
            store.execute(f"INSERT INTO {TOTALS_TABLE} (dimension, key, slot, n, bytes, source_bytes) {select}")


# v4 also: the indexes behind a first page of query()/page() (ORDER BY processed_at DESC,
# snapshot_id) alone and under each equality filter and pair of them (SQLite uses one index per
# table: a rare pair would otherwise walk every row of the first), so a LIMIT reads its rows off
# one index range instead of sorting every match; the label filter compares LOWER(label) (where_sql).
_V4_INDEXES = """
CREATE INDEX IF NOT EXISTS idx_snapshots_recent ON snapshots(processed_at DESC, snapshot_id);
CREATE INDEX IF NOT EXISTS idx_snapshots_label_recent ON snapshots(LOWER(label), processed_at DESC, snapshot_id);
CREATE INDEX IF NOT EXISTS idx_snapshots_platform_recent ON snapshots(platform, processed_at DESC, snapshot_id);
CREATE INDEX IF NOT EXISTS idx_snapshots_format_recent ON snapshots(original_format, processed_at DESC, snapshot_id);
CREATE INDEX IF NOT EXISTS idx_snapshots_platform_label ON snapshots(platform, LOWER(label), processed_at DESC,
    snapshot_id);
CREATE INDEX IF NOT EXISTS idx_snapshots_format_label ON snapshots(original_format, LOWER(label), processed_at DESC,
    snapshot_id);
CREATE INDEX IF NOT EXISTS idx_snapshots_platform_format ON snapshots(platform, original_format, processed_at DESC,
    snapshot_id);
"""


def _upgrade_to_4(store: MigratableStore) -> None:
    for statement in _statements(_V4_INDEXES):
        store.execute(statement)
    store.execute(_TOTALS_TABLE_SQL)
    for statement in totals_trigger_statements(store.is_postgres):
        store.execute(statement)
    recount_totals(store)  # nested: a savepoint inside the migration's transaction


# v5: curation (engine/store/review.py). The decision and a person's label live on the snapshot
# row, so every filter, count and export reads them without a join; ``label`` stays the label
# the snapshot goes by (a person's when set: ``label_source`` says whose), so the v4 label
# indexes and totals keep answering; the model's own answers stay in ``classifications``.
# Every change is one ``review_history`` row under one ``review_actions`` row (who, when), which
# undo reads back.
_V5_COLUMNS = [
    ("review", "TEXT"),  # NULL (unreviewed) | accepted | rejected
    ("review_reason", "TEXT"),  # why it was rejected
    ("human_label", "TEXT"),  # the label a person set (or confirmed from a few-shot class)
    ("label_source", "TEXT"),  # NULL (the model's) | human | few_shot
    ("reviewed_by", "TEXT"),
    ("reviewed_at", "TIMESTAMP"),
]
_V5_TABLES = """
CREATE TABLE IF NOT EXISTS review_actions (
    action_id {AUTO},
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TIMESTAMP NOT NULL,
    detail TEXT,
    snapshots INTEGER NOT NULL DEFAULT 0,
    undo_of INTEGER,
    undone_by INTEGER
);
CREATE TABLE IF NOT EXISTS review_history (
    history_id {AUTO},
    action_id INTEGER NOT NULL REFERENCES review_actions(action_id) ON DELETE CASCADE,
    snapshot_id TEXT NOT NULL REFERENCES snapshots(snapshot_id) ON DELETE CASCADE,
    field TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT,
    actor TEXT NOT NULL,
    at TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_review_history_snapshot ON review_history(snapshot_id, history_id);
CREATE INDEX IF NOT EXISTS idx_review_history_action ON review_history(action_id);
CREATE INDEX IF NOT EXISTS idx_snapshots_review_recent ON snapshots(review, processed_at DESC, snapshot_id);
CREATE INDEX IF NOT EXISTS idx_snapshots_label_source ON snapshots(label_source) WHERE label_source IS NOT NULL;
"""


def _upgrade_to_5(store: MigratableStore) -> None:
    have = _columns(store, "snapshots")
    for name, kind in _V5_COLUMNS:
        if name not in have:
            store.execute(f"ALTER TABLE snapshots ADD COLUMN {name} {kind}")
    for statement in _statements(_V5_TABLES):
        store.execute(_dialect(statement, store.is_postgres))


# v6: the export plan's count (export/selection.tally: what the export dialog shows) groups by
# these columns. All but platform and license lie after the snapshot blob in a row, so reading
# them from the table walks each blob's overflow pages: 761 ms at 100,000 snapshots, 13 ms grouped
# in this covering index's order (review first: the review filters narrow it).
_V6_INDEXES = """
CREATE INDEX IF NOT EXISTS idx_snapshots_export_plan ON snapshots(review, platform, license_spdx, license,
    point_count, license_flags);
"""


def _upgrade_to_6(store: MigratableStore) -> None:
    for statement in _statements(_V6_INDEXES):
        store.execute(_dialect(statement, store.is_postgres))


UPGRADES = {2: _upgrade_to_2, 3: _upgrade_to_3, 4: _upgrade_to_4, 5: _upgrade_to_5, 6: _upgrade_to_6}


def current_version(store: MigratableStore) -> int:
    """0: empty database; 1: the spec's tables without a version table; else the stored version."""
    tables = set(store.database.get_tables(schema=store.schema))
    if "schema_version" in tables:
        row = store.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)
    return 1 if "snapshots" in tables else 0


def _lock(store: MigratableStore) -> None:
    """Serialise migrations between processes sharing one PostgreSQL database."""
    if store.is_postgres:
        store.execute("SELECT pg_advisory_xact_lock(727368)")


def ensure_schema(store: MigratableStore) -> int:
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
