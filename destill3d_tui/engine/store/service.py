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
from .filters import SnapshotFilter, review_conditions
from .migrations import TOTALS_TABLE, recount_selects, recount_totals
from .provenance import BEST_GUESS_SQL
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
    best_guess: str | None = None  # beside an ``unknown`` label: the model's top real label

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in self.__dict__.items()}


_ROW_FIELDS = tuple(SnapshotRow.__dataclass_fields__)
_ROW_SELECT = ", ".join(BEST_GUESS_SQL if name == "best_guess" else name for name in _ROW_FIELDS)


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
        with pw.__exception_wrapper__:  # driver errors as peewee's (the writer catches pw.IntegrityError)
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
    """Insert one new snapshot with its tags, classifications and embedding (caller holds the transaction)."""
    insert_snapshots(store, [(snapshot, blob)], group_id=group_id)


def insert_snapshots(store: Store, items: Sequence[tuple[Snapshot, bytes]], *, group_id: str | None = None) -> None:
    """Insert new snapshots with their tags, classifications and embeddings (caller holds the transaction).

    One multi-row statement per table, whatever ``len(items)``: the writer's single snapshot and
    a bulk load of a million (bench/scale.py) take the same path. The ``totals`` triggers count
    each row. Raw SQL on purpose: this is the writer's hot path (peewee's query building costs
    more than the inserts themselves); the column names are the schema's own.
    """
    if not items:
        return
    rows = [snapshot_columns(snapshot, blob, group_id=group_id) for snapshot, blob in items]
    _executemany(store, _insert_sql("snapshots", list(rows[0])),
                 [tuple(db_value(store, v) for v in row.values()) for row in rows])  # fmt: skip
    tagged: list[tuple[str, list[str], dict[str, float]]] = []
    for snapshot, _ in items:
        platform_tags = sorted({t.strip().lower() for t in snapshot.provenance.tags if t and t.strip()})
        predicted = {p.label.strip().lower(): p.confidence for p in snapshot.predictions if p.rank == 1 and p.label}
        tagged.append((snapshot.snapshot_id, platform_tags, predicted))
    ids = _tag_ids(store, sorted({t for _, platform, predicted in tagged for t in (*platform, *predicted)}))
    tag_rows = [(sid, ids[t], "platform", None) for sid, platform, _ in tagged for t in platform]
    tag_rows += [(sid, ids[t], "predicted", float(c)) for sid, _, predicted in tagged for t, c in predicted.items()]
    _executemany(store, _insert_sql("snapshot_tags", ("snapshot_id", "tag_id", "source", "confidence")), tag_rows)
    now = db_value(store, utcnow())
    _executemany(store, _insert_sql("classifications", _CLASSIFICATION_COLUMNS),
                 [row for snapshot, _ in items for row in _prediction_rows(snapshot, now)])  # fmt: skip
    vectors = []
    for snapshot, _ in items:
        if snapshot.embedding is not None:
            vector = np.ascontiguousarray(snapshot.embedding, dtype="<f4").reshape(-1)
            vectors.append((snapshot.snapshot_id, snapshot.embedding_model or "unknown", vector.tobytes(),
                            int(vector.shape[0]), now))  # fmt: skip
    _executemany(store, _insert_sql("embeddings", ("snapshot_id", "model_id", "embedding", "embedding_dim",
                                                   "created_at")), vectors)  # fmt: skip


def _prediction_rows(snapshot: Snapshot, now: Any) -> list[tuple]:
    return [
        (snapshot.snapshot_id, p.model_name or "unknown", p.taxonomy, p.label, float(p.confidence), int(p.rank),
         None if p.uncertainty is None else float(p.uncertainty), now, p.source)
        for p in snapshot.predictions
    ]  # fmt: skip


def _insert_predictions(store: Store, snapshot: Snapshot) -> None:
    rows = _prediction_rows(snapshot, db_value(store, utcnow()))
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
    S.update(  # a person's label (review.py) is never replaced by a model's: it stays the label
        label=pw.fn.COALESCE(pw.SQL("human_label"), top.label if top else None),
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


HASH_MATCH = "original_file_hash = ? AND original_file_hash <> ''"
"""The WHERE of a lookup by source SHA-256. The unique index on the hash is partial (``<> ''``): a
planner uses it only when the query states that condition itself, which ``= ?`` with a bound value
does not (SQLite scanned every snapshot instead: 127 ms a lookup at 100,000, once per acquired item)."""


def snapshot_id_for_hash(store: Store, sha256: str) -> str | None:
    """The stored snapshot made from a source file with this sha256, if any."""
    if not sha256:
        return None
    row = store.execute(f"SELECT snapshot_id FROM snapshots WHERE {HASH_MATCH} LIMIT 1", (sha256,)).fetchone()
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
    for sql, values in review_conditions(flt):  # the curator's decision and whose label (filters.py)
        add(sql, *values)
    return (" AND ".join(parts) or "1 = 1"), params


def _snapshot_row(values: Sequence[Any]) -> SnapshotRow:
    row = dict(zip(_ROW_FIELDS, values, strict=True))
    when = row["processed_at"]
    row["processed_at"] = _parse_time(when) if isinstance(when, str) else when  # SQLite keeps ISO text
    return SnapshotRow(**row)



def _totals_from_rows(rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """(dimension, key, n, bytes, source_bytes) rows, summed over slots -> the totals dict."""
    groups: dict[str, dict[str, tuple[int, int, int]]] = {}
    for dimension, key, n, size, source in rows:
        groups.setdefault(dimension, {})[key or ""] = (int(n or 0), int(size or 0), int(source or 0))

    def counts(dimension: str) -> dict[str, int]:
        """key -> count, largest first; keys whose rows were all deleted (count 0) left out."""
        found = [(k, v[0]) for k, v in groups.get(dimension, {}).items() if v[0]]
        return dict(sorted(found, key=lambda kv: (-kv[1], kv[0])))

    everything = groups.get("snapshots", {}).get("", (0, 0, 0))
    queue = groups.get("queue", {}).get("", (0, 0, 0))
    by_label = counts("label")
    return {
        "snapshots": everything[0], "bytes_kept": everything[1], "source_bytes": everything[2],
        "classified": sum(by_label.values()),
        "queue": queue[0], "bytes_downloaded": queue[1],
        "duplicates": counts("reason").get("duplicate", 0),
        "by_stage": counts("stage"), "by_platform": counts("platform"), "by_format": counts("format"),
        "by_license": counts("license"), "by_label": by_label,
    }  # fmt: skip


def _counted_by_totals(flt: SnapshotFilter) -> tuple[str, Any] | None:
    """(dimension, key matcher) when the running totals answer ``count(flt)``; None when only SQL can.

    The matchers are :func:`where_sql`'s own comparisons (platform lower-case, format upper-case
    without a dot, label case-folded), so both paths count the same rows.
    """
    dimensions = {
        "platform": (flt.platform, lambda key: key == (flt.platform or "").lower()),
        "format": (flt.source_format, lambda key: key == (flt.source_format or "").upper().lstrip(".")),
        # ASCII only: SQLite's LOWER folds ASCII letters alone, Python's str.lower folds them all
        "label": (flt.label, lambda key: key.isascii() and key.lower() == (flt.label or "").lower()),
    }
    narrowing = {name for name, (value, _) in dimensions.items() if value}
    rest = SnapshotFilter(platform=flt.platform, source_format=flt.source_format, label=flt.label)
    if flt != rest or len(narrowing) > 1 or not (flt.label or "").isascii():
        return None
    if not narrowing:
        return "snapshots", None
    name = narrowing.pop()
    return name, dimensions[name][1]


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
        sql = (f"SELECT {_ROW_SELECT} FROM snapshots WHERE {where} "
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
            # the leading ``processed_at <= ?`` is implied by the OR; it lets both planners seek
            # the (…, processed_at DESC, snapshot_id) index instead of walking it from the top
            where += " AND processed_at <= ? AND (processed_at < ? OR (processed_at = ? AND snapshot_id > ?))"
            params = [*params, when, when, when, sid]
        sql = (f"SELECT {_ROW_SELECT} FROM snapshots WHERE {where} "
               f"ORDER BY {_ORDERS['processed_at']}, snapshot_id LIMIT ?")
        return [_snapshot_row(row) for row in self.store.execute(sql, [*params, int(limit)]).fetchall()]

    def count(self, filter: SnapshotFilter | None = None, **filters: Any) -> int:
        """How many snapshots the filter selects (the same WHERE as :meth:`query` and exports).

        No filter, or only a platform, a source format or a label: read from the running totals
        (F4 counts on every filter change; ``COUNT(*)`` over a million rows is not free).
        """
        flt = SnapshotFilter.coerce(filter, **filters)
        counted = _counted_by_totals(flt)
        if counted is None:
            return self.count_rows(flt)
        dimension, matches = counted
        totals = self.totals()
        if dimension == "snapshots":
            return int(totals["snapshots"])
        return sum(n for key, n in totals[f"by_{dimension}"].items() if matches(key))

    def count_rows(self, filter: SnapshotFilter | None = None) -> int:
        """:meth:`count` by ``COUNT(*)`` over the rows the WHERE selects (any filter)."""
        where, params = where_sql(self.store, SnapshotFilter.coerce(filter))
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

    def totals(self) -> dict[str, Any]:
        """Running totals kept by the database's triggers (a few dozen rows, whatever the size).

        ``{"snapshots", "classified", "bytes_kept", "source_bytes", "queue", "bytes_downloaded",
        "duplicates", "by_stage", "by_platform", "by_format", "by_license", "by_label"}``: what
        `db stats` and the TUI's queue board and summary show, without scanning any table.
        """
        rows = self.store.execute(
            f"SELECT dimension, key, SUM(n), SUM(bytes), SUM(source_bytes) FROM {TOTALS_TABLE} "
            "GROUP BY dimension, key"
        ).fetchall()
        return _totals_from_rows(rows)

    def scan_totals(self) -> dict[str, Any]:
        """:meth:`totals` computed from the base tables (full scans): the recount, the check, the old path."""
        rows = []
        for select in recount_selects():
            rows += [(r[0], r[1], r[3], r[4], r[5]) for r in self.store.execute(select).fetchall()]
        return _totals_from_rows(rows)

    def recount(self) -> None:
        """Rebuild the running totals from the base tables (`db stats --recount`)."""
        recount_totals(self.store)

    def stats(self, *, scan: bool = False) -> dict[str, Any]:
        """`db stats`: from the running totals (``scan``: from full scans of the tables, the old path)."""
        t = self.scan_totals() if scan else self.totals()
        total, classified, kept, source_bytes = t["snapshots"], t["classified"], t["bytes_kept"], t["source_bytes"]
        by_stage = dict.fromkeys(STAGES, 0)
        by_stage.update(t["by_stage"])
        return {
            "totals": {"snapshots": total, "queue": sum(by_stage.values()), "classified": classified},
            "total_count": total,
            "by_platform": t["by_platform"],
            "by_format": t["by_format"],
            "by_stage": by_stage,
            "by_label": t["by_label"],
            "by_license": t["by_license"],
            "classification_coverage": (classified / total) if total else 0.0,
            "storage_bytes": kept,
            "source_bytes": source_bytes,
            "bytes_downloaded": t["bytes_downloaded"],
            "bytes_kept": kept,
            "compression_ratio": (source_bytes / kept) if kept else 0.0,
            "duplicates": t["duplicates"],
            "database_file_bytes": self._file_bytes(),
        }

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
