"""Reads and writes of stored snapshots: query, get, stats, vacuum, and the one insert path.

Everything that turns a :class:`Snapshot` into rows lives in :func:`insert_snapshot`, so the
pipeline's writer, imports and tests store snapshots the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import peewee as pw

from ..errors import NotFoundError
from .db import STAGES, Store, dumps, utcnow
from .filters import SnapshotFilter
from .snapshot import Snapshot


@dataclass
class SnapshotRow:
    snapshot_id: str
    model_id: str
    platform: str
    title: str
    author: str
    license: str
    license_spdx: str
    original_format: str
    original_file_size: int
    snapshot_bytes: int
    point_count: int
    label: str | None
    confidence: float | None
    processed_at: dt.datetime | None
    source_url: str

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in self.__dict__.items()}


_ROW_FIELDS = tuple(SnapshotRow.__dataclass_fields__)


def _parse_time(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


# ---------------------------------------------------------------- writing


def snapshot_columns(snapshot: Snapshot, blob: bytes, *, group_id: str | None = None) -> dict[str, Any]:
    """The ``snapshots`` row for one snapshot (denormalised columns included)."""
    p, f = snapshot.provenance, snapshot.features
    top = snapshot.top_prediction()
    now = utcnow()
    flags = p.license_flags or {}
    return {
        "snapshot_id": snapshot.snapshot_id,
        "model_id": snapshot.model_id or f"{p.platform}:{p.source_id or snapshot.snapshot_id}",
        "platform": p.platform or "local",
        "source_url": p.source_url,
        "source_id": p.source_id,
        "title": p.title,
        "author": p.author,
        "license": p.license,
        "original_format": (p.original_format or "").upper(),
        "original_file_size": int(p.original_file_size or 0),
        "original_file_hash": p.original_file_hash or None,
        "snapshot_data": blob,
        "snapshot_version": snapshot.version,
        "point_count": snapshot.geometry.point_count,
        "is_watertight": bool(f.is_watertight),
        "surface_area": float(f.surface_area),
        "volume": float(f.volume),
        "source_created_at": _parse_time(p.source_created),
        "acquired_at": _parse_time(p.acquired_at) or now,
        "processed_at": now,
        "created_at": now,
        "updated_at": now,
        "license_spdx": p.license_spdx or None,
        "license_flags": dumps(flags),
        "license_commercial": flags.get("commercial"),
        "license_derivatives": flags.get("derivatives"),
        "quality_flags": dumps(f.quality.__dict__),
        "source_status": "live" if p.platform != "local" else "unknown",
        "label": top.label if top else None,
        "confidence": float(top.confidence) if top else None,
        "label_model": top.model_name if top else None,
        "snapshot_bytes": len(blob),
        "face_count": int(f.face_count),
        "vertex_count": int(f.vertex_count),
        "original_filename": p.original_filename,
        "group_id": group_id,
    }


def db_value(store: Store, value: Any) -> Any:
    """A Python value as the raw driver wants it (SQLite keeps timestamps as ISO text)."""
    if isinstance(value, dt.datetime) and not store.is_postgres:
        return value.isoformat(" ")
    return value


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _executemany(store: Store, sql: str, rows: list[tuple]) -> None:
    if rows:
        cursor = store.database.cursor()
        cursor.executemany(sql.replace("?", "%s") if store.is_postgres else sql, rows)


def _tag_ids(store: Store, names: list[str]) -> dict[str, int]:
    """Tag ids by name, creating missing tags. Ids of committed tags are cached on the store."""
    cache: dict[str, int] = store.__dict__.setdefault("_tag_cache", {})
    pending: dict[str, int] = store.__dict__.setdefault("_tag_pending", {})
    out = {n: cache[n] for n in names if n in cache}
    missing = [n for n in names if n not in cache]
    if missing:
        conflict = "ON CONFLICT (tag_name) DO NOTHING"
        _executemany(store, f"INSERT INTO tags (tag_name) VALUES (?) {conflict}", [(n,) for n in missing])
        marks = ", ".join("?" * len(missing))
        found = dict(store.execute(f"SELECT tag_name, tag_id FROM tags WHERE tag_name IN ({marks})", missing))
        pending.update(found)  # cached only once the writer's transaction commits (a rollback drops them)
        out.update(found)
    return out


def tags_committed(store: Store) -> None:
    """The writer committed: tags it created in that transaction are now safe to cache."""
    store.__dict__.setdefault("_tag_cache", {}).update(store.__dict__.get("_tag_pending", {}))
    store.__dict__.get("_tag_pending", {}).clear()


def tags_rolled_back(store: Store) -> None:
    store.__dict__.get("_tag_pending", {}).clear()


_CLASSIFICATION_COLUMNS = ("snapshot_id", "model_id", "taxonomy", "label", "confidence", "rank", "uncertainty",
                           "classified_at", "source")  # fmt: skip


def insert_snapshot(store: Store, snapshot: Snapshot, blob: bytes, *, group_id: str | None = None) -> None:
    """Insert one new snapshot with its tags, classifications and embedding (caller holds the transaction).

    Raw SQL on purpose: this is the writer's hot path (peewee's query building costs more than
    the inserts themselves); the column names are the schema's own.
    """
    sid = snapshot.snapshot_id
    row = snapshot_columns(snapshot, blob, group_id=group_id)
    store.execute(_insert_sql("snapshots", list(row)), [db_value(store, v) for v in row.values()])
    platform_tags = sorted({t.strip().lower() for t in snapshot.provenance.tags if t and t.strip()})
    predicted = {p.label.strip().lower(): p.confidence for p in snapshot.predictions if p.rank == 1 and p.label}
    ids = _tag_ids(store, sorted(set(platform_tags) | set(predicted)))
    rows = [(sid, ids[t], "platform", None) for t in platform_tags]
    rows += [(sid, ids[t], "predicted", float(c)) for t, c in predicted.items()]
    _executemany(store, _insert_sql("snapshot_tags", ("snapshot_id", "tag_id", "source", "confidence")), rows)
    _insert_predictions(store, snapshot)
    if snapshot.embedding is not None:
        vector = np.ascontiguousarray(snapshot.embedding, dtype="<f4").reshape(-1)
        store.execute(
            _insert_sql("embeddings", ("snapshot_id", "model_id", "embedding", "embedding_dim", "created_at")),
            (sid, snapshot.embedding_model or "unknown", vector.tobytes(), int(vector.shape[0]),
             db_value(store, utcnow())),
        )  # fmt: skip


def _insert_predictions(store: Store, snapshot: Snapshot) -> None:
    now = db_value(store, utcnow())
    rows = [
        (snapshot.snapshot_id, p.model_name or "unknown", p.taxonomy, p.label, float(p.confidence), int(p.rank),
         None if p.uncertainty is None else float(p.uncertainty), now, p.source)
        for p in snapshot.predictions
    ]  # fmt: skip
    _executemany(store, _insert_sql("classifications", _CLASSIFICATION_COLUMNS), rows)


def write_predictions(store: Store, snapshot: Snapshot) -> None:
    """(Re)write a stored snapshot's classifications rows and its denormalised label/confidence."""
    C = store.Classifications
    models = {p.model_name or "unknown" for p in snapshot.predictions}
    if models:
        C.delete().where(C.snapshot_id == snapshot.snapshot_id, C.model_id.in_(sorted(models))).execute()
    _insert_predictions(store, snapshot)
    _write_predicted_tags(store, snapshot)
    top = snapshot.top_prediction()
    S = store.Snapshots
    S.update(
        label=top.label if top else None,
        confidence=float(top.confidence) if top else None,
        label_model=top.model_name if top else None,
        updated_at=utcnow(),
    ).where(S.snapshot_id == snapshot.snapshot_id).execute()


def _write_predicted_tags(store: Store, snapshot: Snapshot) -> None:
    """Replace the snapshot's ``predicted`` tags by the rank-1 labels it now carries (platform tags stay)."""
    sid = snapshot.snapshot_id
    store.execute("DELETE FROM snapshot_tags WHERE snapshot_id = ? AND source = 'predicted'", (sid,))
    predicted: dict[str, float] = {}
    for p in snapshot.predictions:
        name = p.label.strip().lower() if p.rank == 1 and p.label else ""
        if name:
            predicted[name] = max(predicted.get(name, 0.0), float(p.confidence))
    ids = _tag_ids(store, sorted(predicted))
    rows = [(sid, ids[t], "predicted", c) for t, c in predicted.items()]
    _executemany(store, _insert_sql("snapshot_tags", ("snapshot_id", "tag_id", "source", "confidence")), rows)


def write_embedding(store: Store, snapshot_id: str, embedding: np.ndarray, model_id: str) -> None:
    vector = np.ascontiguousarray(embedding, dtype="<f4").reshape(-1)
    E = store.Embeddings
    E.delete().where(E.snapshot_id == snapshot_id).execute()
    E.insert(
        snapshot_id=snapshot_id,
        model_id=model_id or "unknown",
        embedding=vector.tobytes(),
        embedding_dim=int(vector.shape[0]),
        created_at=utcnow(),
    ).execute()


def update_classification(store: Store, snapshot: Snapshot) -> None:
    """Re-store a classified snapshot: blob, classifications rows and embedding in one transaction.

    Used when a stored snapshot is classified again (``classify snapshot ID`` / ``classify all``).
    """
    blob = snapshot.to_bytes()
    S = store.Snapshots
    try:
        with store.atomic(immediate=True):
            S.update(snapshot_data=blob, snapshot_bytes=len(blob)).where(
                S.snapshot_id == snapshot.snapshot_id
            ).execute()
            write_predictions(store, snapshot)
            if snapshot.embedding is not None:
                write_embedding(store, snapshot.snapshot_id, snapshot.embedding, snapshot.embedding_model)
    except BaseException:
        tags_rolled_back(store)  # tag ids created in the rolled-back transaction are gone
        raise
    tags_committed(store)


def snapshot_id_for_hash(store: Store, sha256: str) -> str | None:
    """The stored snapshot made from a source file with this sha256, if any."""
    if not sha256:
        return None
    row = store.execute("SELECT snapshot_id FROM snapshots WHERE original_file_hash = ? LIMIT 1", (sha256,)).fetchone()
    return row[0] if row else None


def snapshot_id_for_model(store: Store, model_id: str) -> str | None:
    row = store.execute("SELECT snapshot_id FROM snapshots WHERE model_id = ? LIMIT 1", (model_id,)).fetchone()
    return row[0] if row else None


# ---------------------------------------------------------------- reading


_ORDERS = {
    "processed_at": "processed_at DESC",
    "title": "title",
    "confidence": "confidence DESC",
    "size": "original_file_size DESC",
    "label": "label",
}
"""``query(order=...)`` -> ORDER BY (snapshot_id breaks ties, so pages never overlap)."""


def _like(text: str) -> str:
    """A case-folded LIKE pattern matching ``text`` anywhere, its wildcards taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_TEXT_COLUMNS = ("title", "label", "author", "platform", "model_id")
_TAGGED = ("snapshot_id IN (SELECT st.snapshot_id FROM snapshot_tags st JOIN tags tg ON tg.tag_id = st.tag_id "
           "WHERE tg.tag_name = ?)")  # fmt: skip


def where_sql(store: Store, flt: SnapshotFilter) -> tuple[str, list[Any]]:
    """The SQL WHERE (``?`` placeholders) and its parameters selecting the snapshots ``flt`` means.

    The only translation of a filter into SQL: queries, counts, export plans and exports all
    use it, so their numbers cannot disagree. Column names are unqualified (one table).
    """
    parts: list[str] = []
    params: list[Any] = []

    def add(sql: str, *values: Any) -> None:
        parts.append(sql)
        params.extend(values)

    # platforms are the adapters' lower-case names and formats are stored upper-case
    # (snapshot_columns): plain equality keeps their indexes usable
    if flt.platform:
        add("platform = ?", flt.platform.lower())
    if flt.source_format:
        add("original_format = ?", flt.source_format.upper().lstrip("."))
    if flt.label:
        add("LOWER(label) = ?", flt.label.lower())
    if flt.min_confidence is not None:
        add("confidence >= ?", float(flt.min_confidence))
    if flt.license:
        add("(LOWER(license_spdx) = ? OR LOWER(license) = ?)", flt.license.lower(), flt.license.lower())
    for column, wanted in (("license_commercial", flt.commercial), ("license_derivatives", flt.derivatives)):
        if wanted is not None:
            add(f"{column} = ?", bool(wanted))
    for tag in flt.tags:
        add(_TAGGED, tag.lower())
    if flt.text:
        pattern = _like(flt.text)
        add("(" + " OR ".join(f"LOWER({c}) LIKE ? ESCAPE '\\'" for c in _TEXT_COLUMNS) + ")",
            *[pattern] * len(_TEXT_COLUMNS))
    if flt.since is not None:
        add("processed_at >= ?", db_value(store, flt.since))
    if flt.until is not None:
        add("processed_at < ?", db_value(store, flt.until))
    return (" AND ".join(parts) or "1 = 1"), params


def _snapshot_row(values: Sequence[Any]) -> SnapshotRow:
    row = dict(zip(_ROW_FIELDS, values, strict=True))
    when = row["processed_at"]
    row["processed_at"] = _parse_time(when) if isinstance(when, str) else when  # SQLite keeps ISO text
    return SnapshotRow(**row)



class StoreService:
    """Read side of the database (``d3d.db``). Safe from any thread (thread-local connections)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def query(
        self, limit: int = 100, offset: int = 0, order: str = "processed_at",
        filter: SnapshotFilter | None = None, **filters: Any,
    ) -> list[SnapshotRow]:
        """One page of the snapshots ``filter`` (or the keyword filters) selects."""
        where, params = where_sql(self.store, SnapshotFilter.coerce(filter, **filters))
        sql = (f"SELECT {', '.join(_ROW_FIELDS)} FROM snapshots WHERE {where} "
               f"ORDER BY {_ORDERS.get(order, _ORDERS['processed_at'])}, snapshot_id LIMIT ? OFFSET ?")
        rows = self.store.execute(sql, [*params, int(limit), int(offset)]).fetchall()
        return [_snapshot_row(row) for row in rows]

    def page(self, after_key: tuple[Any, str] | None = None, limit: int = 100,
             filter: SnapshotFilter | None = None) -> list[SnapshotRow]:
        """The ``limit`` snapshots after ``after_key`` in :meth:`query`'s newest-first order.

        ``after_key`` is ``(processed_at, snapshot_id)`` of the last row already shown (None: the
        first page). Keyset pagination: page 500 reads what page 1 does, where OFFSET skips rows.
        """
        where, params = where_sql(self.store, SnapshotFilter.coerce(filter))
        if after_key is not None:
            when, sid = db_value(self.store, after_key[0]), after_key[1]
            where += " AND (processed_at < ? OR (processed_at = ? AND snapshot_id > ?))"
            params = [*params, when, when, sid]
        sql = (f"SELECT {', '.join(_ROW_FIELDS)} FROM snapshots WHERE {where} "
               f"ORDER BY {_ORDERS['processed_at']}, snapshot_id LIMIT ?")
        return [_snapshot_row(row) for row in self.store.execute(sql, [*params, int(limit)]).fetchall()]

    def count(self, filter: SnapshotFilter | None = None, **filters: Any) -> int:
        """How many snapshots the filter selects (the same WHERE as :meth:`query` and exports)."""
        where, params = where_sql(self.store, SnapshotFilter.coerce(filter, **filters))
        return int(self.store.execute(f"SELECT COUNT(*) FROM snapshots WHERE {where}", params).fetchone()[0])

    def resolve_id(self, snapshot_id: str) -> str:
        """A full id from a full id or a unique prefix."""
        S = self.store.Snapshots
        if S.select().where(S.snapshot_id == snapshot_id).exists():
            return snapshot_id
        matches = [r.snapshot_id for r in S.select(S.snapshot_id).where(S.snapshot_id.startswith(snapshot_id)).limit(2)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise NotFoundError(f"snapshot id prefix {snapshot_id!r} is ambiguous; give more characters")
        raise NotFoundError(f"no snapshot {snapshot_id!r}")

    def get_blob(self, snapshot_id: str) -> bytes:
        S = self.store.Snapshots
        sid = self.resolve_id(snapshot_id)
        return bytes(S.select(S.snapshot_data).where(S.snapshot_id == sid).scalar())

    def get(self, snapshot_id: str) -> Snapshot:
        return Snapshot.from_bytes(self.get_blob(snapshot_id))

    def row(self, snapshot_id: str) -> dict[str, Any]:
        """Every column but the blob, for `db show`."""
        S = self.store.Snapshots
        sid = self.resolve_id(snapshot_id)
        fields = [f for name, f in S._meta.fields.items() if name != "snapshot_data"]
        return S.select(*fields).where(S.snapshot_id == sid).dicts().get()

    def stats(self) -> dict[str, Any]:
        S, Q = self.store.Snapshots, self.store.ProcessingQueue
        total = S.select().count()
        classified = S.select().where(S.label.is_null(False)).count()
        sums = S.select(
            pw.fn.COALESCE(pw.fn.SUM(S.snapshot_bytes), 0), pw.fn.COALESCE(pw.fn.SUM(S.original_file_size), 0)
        ).tuples()[0]
        kept, source_bytes = int(sums[0]), int(sums[1])
        downloaded = int(Q.select(pw.fn.COALESCE(pw.fn.SUM(Q.bytes_in), 0)).scalar() or 0)
        by_stage = dict.fromkeys(STAGES, 0)
        by_stage.update(self._group(Q, Q.stage))
        return {
            "totals": {"snapshots": total, "queue": sum(by_stage.values()), "classified": classified},
            "total_count": total,
            "by_platform": self._group(S, S.platform),
            "by_format": self._group(S, S.original_format),
            "by_stage": by_stage,
            "by_label": self._group(S, S.label, skip_null=True),
            "classification_coverage": (classified / total) if total else 0.0,
            "storage_bytes": kept,
            "source_bytes": source_bytes,
            "bytes_downloaded": downloaded,
            "bytes_kept": kept,
            "compression_ratio": (source_bytes / kept) if kept else 0.0,
            "duplicates": Q.select().where(Q.reason == "duplicate").count(),
            "database_file_bytes": self._file_bytes(),
        }

    @staticmethod
    def _group(model: Any, column: Any, skip_null: bool = False) -> dict[str, int]:
        query = model.select(column.alias("key"), pw.fn.COUNT(pw.SQL("*")).alias("n")).group_by(column)
        if skip_null:
            query = query.where(column.is_null(False))
        rows = sorted(((r.key or "", int(r.n)) for r in query), key=lambda kv: (-kv[1], kv[0]))
        return dict(rows)

    def _file_bytes(self) -> int:
        path = self.store.sqlite_path
        if path is None:
            return int(self.store.execute("SELECT pg_database_size(current_database())").fetchone()[0])
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())

    def vacuum(self) -> None:
        """Reclaim space and refresh planner statistics."""
        if self.store.is_postgres:
            self.store.execute("VACUUM ANALYZE")
        else:
            self.store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.store.execute("VACUUM")
            self.store.execute("ANALYZE")
