"""The database: peewee models over the spec's tables (section 8.1) plus curation columns.

One :class:`Store` per database URL. ``sqlite:///path`` (the default, a file in the user data
dir) or ``postgresql://user[:password]@host[:port]/name``. peewee 4's ``PostgresqlDatabase``
drives psycopg 3 natively (it picks psycopg 3 when psycopg2 is absent), so no adapter is needed.

The schema itself is plain SQL in :mod:`migrations` (so that people who query the database
directly read the same names as the spec). The models here describe it for queries; each
Store binds its own subclasses so that two stores in one process (tests, import/export between
databases) never share a connection.

Connections are thread-local (peewee): every thread that touches a Store gets its own
connection. SQLite connections run in WAL mode with ``synchronous=NORMAL``, foreign keys on and
a busy timeout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

import peewee as pw

from ..errors import DatabaseError

# ---------------------------------------------------------------- stages

QUEUED, ACQUIRED, EXTRACTED, CLASSIFIED, STORED, FAILED = (
    "queued",
    "acquired",
    "extracted",
    "classified",
    "stored",
    "failed",
)
STAGES = (QUEUED, ACQUIRED, EXTRACTED, CLASSIFIED, STORED, FAILED)
ACTIVE_STAGES = (QUEUED, ACQUIRED, EXTRACTED, CLASSIFIED)  # not finished: a worker may claim them
FINAL_STAGES = (STORED, FAILED)


def utcnow() -> dt.datetime:
    """Naive UTC, the form every timestamp column holds (SQLite text, PostgreSQL ``timestamp``)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def loads(text: str | None, default: Any = None) -> Any:
    if not text:
        return {} if default is None else default
    try:
        return json.loads(text)
    except ValueError:
        return {} if default is None else default


# ---------------------------------------------------------------- models (unbound)


class _Base(pw.Model):
    class Meta:
        legacy_table_names = False


class Snapshots(_Base):
    snapshot_id = pw.TextField(primary_key=True)
    model_id = pw.TextField(unique=True)
    platform = pw.TextField()
    source_url = pw.TextField(null=True)
    source_id = pw.TextField(null=True)
    title = pw.TextField(null=True)
    author = pw.TextField(null=True)
    license = pw.TextField(null=True)
    original_format = pw.TextField(null=True)
    original_file_size = pw.IntegerField(null=True)
    original_file_hash = pw.TextField(null=True)
    snapshot_data = pw.BlobField()
    snapshot_version = pw.IntegerField()
    point_count = pw.IntegerField(null=True)
    is_watertight = pw.BooleanField(null=True)
    surface_area = pw.FloatField(null=True)
    volume = pw.FloatField(null=True)
    source_created_at = pw.DateTimeField(null=True)
    acquired_at = pw.DateTimeField()
    processed_at = pw.DateTimeField()
    created_at = pw.DateTimeField(null=True)
    updated_at = pw.DateTimeField(null=True)
    # v2: curation
    license_spdx = pw.TextField(null=True)
    license_flags = pw.TextField(null=True)  # JSON {"commercial": bool, "derivatives": ..., ...}
    license_commercial = pw.BooleanField(null=True)
    license_derivatives = pw.BooleanField(null=True)
    quality_flags = pw.TextField(null=True)  # JSON of features.quality
    source_status = pw.TextField(null=True)  # unknown | live | gone
    source_checked_at = pw.DateTimeField(null=True)
    label = pw.TextField(null=True)  # top prediction, denormalised for fast queries
    confidence = pw.FloatField(null=True)
    label_model = pw.TextField(null=True)
    snapshot_bytes = pw.IntegerField(null=True)
    face_count = pw.IntegerField(null=True)
    vertex_count = pw.IntegerField(null=True)
    original_filename = pw.TextField(null=True)
    group_id = pw.TextField(null=True)
    # v5: review (store/review.py)
    review = pw.TextField(null=True)  # NULL (unreviewed) | accepted | rejected
    review_reason = pw.TextField(null=True)
    human_label = pw.TextField(null=True)
    label_source = pw.TextField(null=True)  # NULL (the model's) | human | few_shot
    reviewed_by = pw.TextField(null=True)
    reviewed_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "snapshots"


class Tags(_Base):
    tag_id = pw.AutoField()
    tag_name = pw.TextField(unique=True)

    class Meta:
        table_name = "tags"


class SnapshotTags(_Base):
    snapshot_id = pw.TextField()
    tag_id = pw.IntegerField()
    source = pw.TextField()  # platform | predicted
    confidence = pw.FloatField(null=True)

    class Meta:
        table_name = "snapshot_tags"
        primary_key = pw.CompositeKey("snapshot_id", "tag_id", "source")


class Classifications(_Base):
    classification_id = pw.AutoField()
    snapshot_id = pw.TextField()
    model_id = pw.TextField()
    taxonomy = pw.TextField()
    label = pw.TextField()
    confidence = pw.FloatField()
    rank = pw.IntegerField()
    uncertainty = pw.FloatField(null=True)
    classified_at = pw.DateTimeField()
    source = pw.TextField(null=True)  # v2: classifier | synonym | few_shot | encoder

    class Meta:
        table_name = "classifications"


class Embeddings(_Base):
    snapshot_id = pw.TextField(primary_key=True)
    model_id = pw.TextField()
    embedding = pw.BlobField()  # float32 little-endian
    embedding_dim = pw.IntegerField()
    created_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "embeddings"


class ProcessingQueue(_Base):
    queue_id = pw.AutoField()
    model_id = pw.TextField(unique=True)
    platform = pw.TextField()
    source_url = pw.TextField()
    stage = pw.TextField()
    priority = pw.IntegerField(default=0)
    retry_count = pw.IntegerField(default=0)  # attempts so far: counted when an item is claimed
    max_retries = pw.IntegerField(default=3)
    last_error = pw.TextField(null=True)
    temp_path = pw.TextField(null=True)
    created_at = pw.DateTimeField(null=True)
    updated_at = pw.DateTimeField(null=True)
    scheduled_at = pw.DateTimeField(null=True)
    # v2
    source_id = pw.TextField(null=True)
    file_id = pw.TextField(null=True)
    group_id = pw.TextField(null=True)
    reason = pw.TextField(null=True)
    error_stage = pw.TextField(null=True)
    lease_owner = pw.TextField(null=True)
    lease_expires_at = pw.DateTimeField(null=True)
    heartbeat_at = pw.DateTimeField(null=True)
    metadata = pw.TextField(null=True)  # JSON: title, author, license {raw, spdx, flags}, tags, ...
    snapshot_id = pw.TextField(null=True)
    duplicate_of = pw.TextField(null=True)
    bytes_in = pw.IntegerField(null=True)
    file_hash = pw.TextField(null=True)
    primary_path = pw.TextField(null=True)
    finished_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "processing_queue"


MODELS: tuple[type[_Base], ...] = (Snapshots, Tags, SnapshotTags, Classifications, Embeddings, ProcessingQueue)


# ---------------------------------------------------------------- opening


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """``sqlite:///abs/path`` or a plain path -> ("sqlite", {...}); ``postgresql://`` -> ("postgresql", {...})."""
    if "://" not in url:
        return "sqlite", {"path": Path(url).expanduser()}
    parts = urlparse(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if path.startswith("//"):  # sqlite:////abs/path (an absolute path after sqlite:///)
            path = "/" + path.lstrip("/")
        return "sqlite", {"path": Path(path).expanduser()}
    if parts.scheme in ("postgresql", "postgres"):
        params: dict[str, Any] = {
            "database": unquote(parts.path.lstrip("/")) or "postgres",
            "user": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
        }
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        params["schema"] = query.get("schema")
        return "postgresql", params
    raise DatabaseError(f"unsupported database URL {url!r}: use a SQLite path or postgresql://user@host:port/name")


def display_url(url: str) -> str:
    """A SQLite file's path, or a PostgreSQL URL without its password: what messages name."""
    kind, p = parse_url(url)
    if kind == "sqlite":
        return str(p["path"])
    user = f"{p['user']}@" if p["user"] else ""
    return f"postgresql://{user}{p['host']}:{p['port']}/{p['database']}"


def sqlite_writable(path: Path) -> bool:
    """False when this process cannot write the file or create its ``-wal``/``-shm`` beside it.

    ``os.access`` also answers False for an immutable file (``chattr +i``), even for root.
    """
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _sqlite_target(path: Path, create_dirs: bool) -> tuple[str, bool]:
    """The file name or URI to connect to, and whether it is read-only.

    An explicit path is never invented: a missing folder is an error naming it (only the
    default database in the user data dir creates its folder). A file we cannot write opens
    read-only; a WAL file in a folder we cannot write has no ``-shm`` to share, so it opens
    ``immutable`` (nothing can be writing it: nobody can create its ``-wal`` either).
    """
    if not path.parent.is_dir():
        if not create_dirs:
            raise DatabaseError(f"{path}: the folder {path.parent} does not exist (check the --db path)",
                                reason="database_not_found", kind="permanent")  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or sqlite_writable(path):
        return str(path), False
    uri = f"file:{quote(str(path))}"
    try:
        sqlite3.connect(f"{uri}?mode=ro", uri=True).execute("SELECT 1 FROM sqlite_master LIMIT 1").close()
        return f"{uri}?mode=ro", True
    except sqlite3.Error:
        return f"{uri}?immutable=1", True


def open_database(url: str, busy_timeout_ms: int = 10_000, *, create_dirs: bool = False) -> pw.Database:
    kind, p = parse_url(url)
    if kind == "sqlite":
        target, read_only = _sqlite_target(p["path"], create_dirs)
        pragmas: dict[str, Any] = {"foreign_keys": 1, "busy_timeout": busy_timeout_ms}
        if not read_only:  # WAL is a property of the file: a read-only connection cannot switch it
            pragmas.update(journal_mode="wal", synchronous="normal")
        return pw.SqliteDatabase(target, timeout=busy_timeout_ms / 1000.0, pragmas=pragmas, uri=read_only)
    # Timestamps are naive UTC everywhere; the session time zone makes CURRENT_TIMESTAMP agree.
    options = "-c timezone=UTC"
    if p["schema"]:
        options += f" -c search_path={p['schema']}"
    kwargs = {k: p[k] for k in ("user", "password", "host", "port") if p[k] is not None}
    return pw.PostgresqlDatabase(p["database"], options=options, **kwargs)


# What SQLite / PostgreSQL say -> (reason, kind, what it means for the user). First match wins.
_FAULTS = (
    (("database or disk is full", "no space left", "disk full"), "database_full", "permanent",
     "the database or its disk is full"),
    (("locked", "busy", "could not obtain lock"), "database_locked", "transient", "the database is locked"),
    (("readonly", "read-only"), "database_readonly", "permanent", "the database is read-only"),
    (("malformed", "not a database", "corrupt"), "database_corrupt", "permanent",
     "the database is damaged or not a SQLite database"),
    (("disk i/o error",), "database_io", "permanent", "the disk failed to read or write the database"),
    (("unable to open",), "database_unavailable", "permanent", "the database file cannot be opened"),
    (("connection", "could not connect", "server closed", "terminating"), "database_unavailable", "transient",
     "the database server cannot be reached"),
)  # fmt: skip


def is_fault(exc: BaseException) -> bool:
    """A fault of the database itself (space, locks, damage, connection), not of one item's data."""
    if isinstance(exc, (pw.IntegrityError, pw.DataError, sqlite3.IntegrityError)):
        return False
    return isinstance(exc, (pw.DatabaseError, pw.InterfaceError, sqlite3.Error))


def database_fault(exc: BaseException, where: str) -> DatabaseError:
    """One clear error naming the cause and the database for a driver exception.

    The cause may sit further down the chain: after SQLITE_FULL, SQLite has rolled the
    transaction back itself, so the savepoint's own rollback fails with "no transaction is
    active" while handling the real error.
    """
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for cause in chain:
        text = str(cause).strip() or type(cause).__name__
        for needles, reason, kind, what in _FAULTS:
            if any(n in text.lower() for n in needles):
                return DatabaseError(f"{what}: {where} ({text})", reason=reason, kind=kind)  # type: ignore[arg-type]
    text = str(exc).strip() or type(exc).__name__
    return DatabaseError(f"database error at {where}: {text}", reason="database_error", kind="transient")


class Store:
    """A database with the Destill3D schema, ready for queries from any thread.

    Attributes ``Snapshots``, ``Tags``, ``SnapshotTags``, ``Classifications``, ``Embeddings`` and
    ``ProcessingQueue`` are model classes bound to this store's database.
    """

    def __init__(self, url: str, *, busy_timeout_ms: int = 10_000, migrate: bool = True) -> None:
        self.url = url
        kind, p = parse_url(url)
        from .. import locations

        # Only the default database may create its folder; an explicit path is never invented.
        create_dirs = kind == "sqlite" and p["path"] == locations.default_database_path()
        self.database = open_database(url, busy_timeout_ms, create_dirs=create_dirs)
        self.is_postgres = isinstance(self.database, pw.PostgresqlDatabase)
        self.read_only = bool(getattr(self.database, "connect_params", {}).get("uri"))
        self.schema: str | None = p.get("schema")
        for base in MODELS:
            meta = type("Meta", (), {"database": self.database, "table_name": base._meta.table_name})
            setattr(self, base.__name__, type(base.__name__, (base,), {"Meta": meta, "__module__": __name__}))
        self.Snapshots: type[Snapshots]
        self.Tags: type[Tags]
        self.SnapshotTags: type[SnapshotTags]
        self.Classifications: type[Classifications]
        self.Embeddings: type[Embeddings]
        self.ProcessingQueue: type[ProcessingQueue]
        if migrate:
            from . import migrations

            try:
                migrations.ensure_schema(self)
            except (pw.DatabaseError, pw.InterfaceError, sqlite3.Error) as exc:
                self.close()
                raise database_fault(exc, self.display_url) from None

    @property
    def display_url(self) -> str:
        """The URL without a password."""
        return display_url(self.url)

    @property
    def sqlite_path(self) -> Path | None:
        kind, p = parse_url(self.url)
        return p["path"] if kind == "sqlite" else None

    def atomic(self, immediate: bool = False) -> Any:
        """A transaction; ``immediate`` takes SQLite's write lock at BEGIN (claims, writers)."""
        if immediate and not self.is_postgres and self.database.transaction_depth() == 0:
            return self.database.atomic("IMMEDIATE")
        return self.database.atomic()

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        """Raw SQL with ``?`` placeholders on both backends."""
        if self.is_postgres:
            sql = sql.replace("?", "%s")
        return self.database.execute_sql(sql, params)

    def fault(self, exc: BaseException) -> DatabaseError:
        """:func:`database_fault` for this store (the message names its path or server)."""
        return database_fault(exc, self.display_url)

    def close(self) -> None:
        """Closes this thread's connection (other threads' connections close with them)."""
        if not self.database.is_closed():
            with contextlib.suppress(pw.DatabaseError, sqlite3.Error):  # a broken file: nothing left to close
                self.database.close()
