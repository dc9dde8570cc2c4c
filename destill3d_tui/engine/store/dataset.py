"""The service behind ``d3d.db.find_similar / duplicates / export``.

Reads the database through a :class:`~.db.Store` (never writes it), keeps the derived FAISS
indexes (:mod:`.index`) reconciled, and drives the exporters (:mod:`.export`): select rows ->
licence policy -> labels -> stratified splits -> stream snapshot blobs into the writer ->
attribution manifest + dataset card, with progress events.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import locations
from ..config import Settings
from ..errors import NotFoundError
from ..events import EventBus, ExportFinished, ExportProgressed
from . import duplicates as dup
from .export import common
from .export.common import ExportError, ExportLayout, ExportRecord, ExportResult, flatten_arrays
from .filters import SnapshotFilter
from .index import EmbeddingIndex, EmbeddingTableSource, in_chunks
from .service import where_sql
from .snapshot import Snapshot

if TYPE_CHECKING:
    from .db import Store

PROGRESS_EVERY_S = 0.1
"""Export progress events at most ten times a second (the TUI bar redraws no faster)."""
BLOB_CHUNK = 128


class DatasetService:
    """Similarity, duplicates and export over one database."""

    def __init__(self, store: Store, settings: Settings | None = None, events: EventBus | None = None):
        self.store = store
        self.settings = settings or Settings()
        self.events = events or EventBus()
        self._indexes: dict[str, EmbeddingIndex] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Write back index patches not yet saved (optional: stale files are reconciled on open)."""
        with self._lock:
            for index in self._indexes.values():
                index.close()

    # ------------------------------------------------------------------ similarity

    def resolve_id(self, snapshot_id: str) -> str:
        """A full snapshot id from an id or a unique prefix (NotFoundError otherwise)."""
        if self.store.execute("SELECT 1 FROM snapshots WHERE snapshot_id = ?", (snapshot_id,)).fetchone():
            return snapshot_id  # the common case: a full id, one primary-key probe
        rows = self.store.execute(
            "SELECT snapshot_id FROM snapshots WHERE snapshot_id LIKE ? ESCAPE '\\' ORDER BY snapshot_id LIMIT 2",
            (snapshot_id.replace("\\", "").replace("%", "\\%").replace("_", "\\_") + "%",),
        ).fetchall()
        exact = [r[0] for r in rows if r[0] == snapshot_id]
        if exact or len(rows) == 1:
            return exact[0] if exact else rows[0][0]
        why = "is ambiguous" if rows else "matches no snapshot"
        raise NotFoundError(f"snapshot id {snapshot_id!r} {why}")

    def embedding_index(self, model_id: str) -> EmbeddingIndex:
        """The reconciled index of one embedding model (opened once per service)."""
        with self._lock:
            index = self._indexes.get(model_id)
            if index is None:
                source = EmbeddingTableSource(self.store, model_id, name_prefix=dup.database_key(self.store) + "-")
                index = EmbeddingIndex(locations.index_dir(), source, self.settings.index)
                index.open()
                self._indexes[model_id] = index
            return index

    def space_of(self, snapshot_id: str) -> str:
        """The embedding model of a snapshot, or ``geometric`` when it has no embedding."""
        row = self.store.execute("SELECT model_id FROM embeddings WHERE snapshot_id = ?", (snapshot_id,)).fetchone()
        return str(row[0]) if row else dup.GEOMETRIC_SPACE

    def index_for(self, space: str) -> EmbeddingIndex:
        if space == dup.GEOMETRIC_SPACE:
            return dup.geometric_index(self.store, self.settings.index)
        return self.embedding_index(space)

    def find_similar(
        self, snapshot_id: str | Snapshot, k: int = 10, min_similarity: float | None = None, space: str = "auto"
    ) -> list[tuple[str, float]]:
        """The ``k`` stored objects most similar to a snapshot (itself excluded), best first.

        ``snapshot_id``: a stored id or unique prefix, or a :class:`Snapshot` (stored or not: a
        freshly extracted file is compared with the collection). ``space``: ``auto`` (the
        snapshot's classifier embedding, else ``geometric``), ``geometric``, or an embedding model id.
        """
        if isinstance(snapshot_id, Snapshot):
            sid, query, index = self._query_of_snapshot(snapshot_id, space)
        else:
            sid = self.resolve_id(snapshot_id)
            space = self.space_of(sid) if space == "auto" else space
            index = self.index_for(space)
            index.reconcile()
            query = index.vector(sid)
            if query is None:
                raise NotFoundError(f"snapshot {sid} has no vector in the {space} space")
        hits = index.search(query, k=k + 1)[0]
        floor = -1.0 if min_similarity is None else float(min_similarity)
        return [(other, score) for other, score in hits if other != sid and score >= floor][:k]

    def _query_of_snapshot(self, snap: Snapshot, space: str) -> tuple[str, np.ndarray, EmbeddingIndex]:
        """(its id, query vector, index) for an in-memory snapshot."""
        has_embedding = snap.embedding is not None and snap.embedding_model
        if space == "auto":
            space = snap.embedding_model if has_embedding else dup.GEOMETRIC_SPACE
        if space == dup.GEOMETRIC_SPACE:
            return snap.snapshot_id, dup.shape_descriptor(snap.geometry.points), self.index_for(space)
        if space != snap.embedding_model or snap.embedding is None:
            raise NotFoundError(f"the snapshot has no embedding of model {space!r}")
        return snap.snapshot_id, np.asarray(snap.embedding, np.float32), self.index_for(space)

    def duplicates(self, threshold: float = 0.98) -> list[list[str]]:
        """Clusters of near-duplicates (exact hash or geometry + embedding), largest first."""
        return dup.find_clusters(self.store, threshold, self.settings, embedding_index=self.embedding_index)

    # ------------------------------------------------------------------ export: selection

    def _candidates(self, flt: SnapshotFilter, taxonomy: str | None) -> list[dict[str, Any]]:
        """The rows ``flt`` selects (the WHERE of ``db query`` / ``db count``), relabelled by ``taxonomy``."""
        cols = (
            "snapshot_id, model_id, platform, title, author, source_url, license, license_spdx, license_flags, "
            "original_file_hash, original_format, point_count, label, confidence, label_model"
        )
        where, params = where_sql(self.store, flt)
        names = [c.strip() for c in cols.split(",")]
        cursor = self.store.execute(f"SELECT {cols} FROM snapshots WHERE {where} ORDER BY snapshot_id", params)
        rows = [dict(zip(names, r, strict=True)) for r in cursor]
        if taxonomy:
            labels = self._taxonomy_labels(taxonomy)
            for row in rows:
                row["label"], row["confidence"] = labels.get(row["snapshot_id"], (None, None))
        return rows

    def _taxonomy_labels(self, taxonomy: str) -> dict[str, tuple[str, float]]:
        """snapshot_id -> (label, confidence) of its latest rank-1 classification in ``taxonomy``."""
        cursor = self.store.execute(
            "SELECT snapshot_id, label, confidence FROM classifications WHERE taxonomy = ? AND rank = 1 "
            "ORDER BY classified_at, classification_id",
            (taxonomy,),
        )
        return {sid: (label, conf) for sid, label, conf in cursor.fetchall()}

    @staticmethod
    def _select(
        rows: list[dict[str, Any]], *, policy: str, labelled_only: bool
    ) -> tuple[list[dict[str, Any]], Counter[str]]:
        """Rows the licence policy lets in (the filter already chose the rows; refusals are counted)."""
        kept: list[dict[str, Any]] = []
        skipped: Counter[str] = Counter()
        for row in rows:
            refusal = common.license_refusal(row, policy)
            if refusal:
                skipped[f"licence ({policy}): {refusal}"] += 1
            elif labelled_only and not row.get("label"):
                skipped["no label in the chosen taxonomy"] += 1
            else:
                row["label"] = row.get("label") or common.UNLABELLED
                kept.append(row)
        return kept, skipped

    def _selection(self, flt: SnapshotFilter, taxonomy: str | None, policy: str) -> _Selection:
        """Filter -> licence policy -> one point count: what an export writes, and why others are left out."""
        rows = self._candidates(flt, taxonomy)
        kept, skipped = self._select(rows, policy=policy, labelled_only=bool(taxonomy))
        kept, points = self._point_count(kept, skipped)
        return _Selection(matched=len(rows), rows=kept, skipped=skipped, points=points)

    def plan(
        self, filter: SnapshotFilter | None = None, *, taxonomy: str | None = None, license_policy: str = "research",
        **filters: Any,
    ) -> ExportPlan:
        """How many objects :meth:`export` with these arguments would write (reads no snapshot blobs)."""
        chosen = self._selection(SnapshotFilter.coerce(filter, **filters), taxonomy, license_policy)
        return ExportPlan(matched=chosen.matched, count=len(chosen.rows), skipped=dict(chosen.skipped))

    @staticmethod
    def _point_count(rows: list[dict[str, Any]], skipped: Counter[str]) -> tuple[list[dict[str, Any]], int]:
        """Keep the rows with the most common point count (an array needs one shape)."""
        counts = Counter(int(r.get("point_count") or 0) for r in rows)
        if not counts:
            return rows, 2048
        points = counts.most_common(1)[0][0]
        kept = [r for r in rows if int(r.get("point_count") or 0) == points]
        if len(kept) != len(rows):
            skipped[f"point count differs from {points}"] += len(rows) - len(kept)
        return kept, points

    # ------------------------------------------------------------------ export: writing

    def export(
        self,
        format: str,
        output: str | Path | None = None,
        taxonomy: str | None = None,
        split: Any = (0.8, 0.1, 0.1),
        filter: SnapshotFilter | None = None,
        license_policy: str = "research",
        views: bool = False,
        return_arrays: bool = False,
        cancel: threading.Event | None = None,
        group_duplicates: bool = False,
        **filters: Any,
    ) -> ExportResult:
        """Write the selected snapshots as a dataset (see :mod:`.export`); spec 8.3 / 10.1.

        ``filter`` (a :class:`SnapshotFilter`) and/or its fields as keywords (``platform=``,
        ``label=``, ``source_format=``, ``min_confidence=``, ``tags=``, ...) choose the snapshots
        exactly as ``db.query`` / ``db.count`` do; the licence policy then leaves some out (counted).
        """
        started = time.perf_counter()
        flt = SnapshotFilter.coerce(filter, **filters)
        fractions = common.parse_split(split)
        exporter = self._exporter(format, return_arrays)
        out = self._output_dir(output, format, return_arrays)
        self.events.emit(ExportProgressed(done=0, total=0, phase="selecting"))
        chosen = self._selection(flt, taxonomy, license_policy)
        kept, skipped, points = chosen.rows, chosen.skipped, chosen.points
        if not kept:
            raise ExportError(f"nothing to export: {chosen.matched} snapshots match ({flt.describe()}), "
                              f"none passed the licence policy ({dict(skipped)})")  # fmt: skip
        groups = self._duplicate_groups() if group_duplicates else None
        splits = common.assign_splits(((r["snapshot_id"], r["label"]) for r in kept), fractions, groups)
        label_names = sorted({r["label"] for r in kept})
        ordered = self._ordered(kept, splits)
        layout = ExportLayout(
            output=out or Path("."),
            label_names=label_names,
            split_counts=_split_counts(kept, splits),
            points_per_object=points,
            views=views,
            view_shape=self._view_shape(ordered) if views else None,
        )
        result = ExportResult(format=format, output=out, label_names=label_names, split_counts=layout.split_counts)
        entries = self._stream(exporter, layout, ordered, splits, label_names, skipped, result, cancel)
        result.skipped = dict(skipped)
        if result.interrupted:  # what was written, not what was planned
            result.split_counts = dict(Counter(e["split"] for e in entries))
        else:
            self._finish(exporter, layout, entries, result, options=self._options(locals()))
        result.seconds = time.perf_counter() - started
        self.events.emit(ExportFinished(output=str(out or ""), count=result.count, skipped=result.skipped_total))
        return result

    def _duplicate_groups(self) -> dict[str, str]:
        """snapshot_id -> its near-duplicate cluster's first member: copies never straddle splits."""
        threshold = self.settings.pipeline.near_duplicate_threshold
        return {sid: cluster[0] for cluster in self.duplicates(threshold) for sid in cluster}

    @staticmethod
    def _exporter(format: str, return_arrays: bool) -> common.Exporter:
        if return_arrays:
            if format != "numpy":
                raise ExportError("return_arrays=True needs format='numpy'")
            from .export.numpy_npz import NumpyExporter

            return NumpyExporter(in_memory=True)
        return common.get_exporter(format)

    @staticmethod
    def _output_dir(output: str | Path | None, format: str, return_arrays: bool) -> Path | None:
        """The export folder. ``dataset.h5`` style paths name the folder ``dataset``."""
        if return_arrays:
            return None
        if output is None:
            raise ExportError("export needs an output folder")
        out = Path(output).expanduser()
        if out.suffix.lower() in {".h5", ".hdf5", ".npz", ".parquet", ".tfrecord"}:
            out = out.with_suffix("")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ExportError(f"output {out} exists and is not an empty folder; choose a new path")
        return out

    @staticmethod
    def _ordered(rows: list[dict[str, Any]], splits: dict[str, str]) -> list[dict[str, Any]]:
        rank = {s: i for i, s in enumerate(common.SPLIT_NAMES)}
        sid = "snapshot_id"
        return sorted(rows, key=lambda r: (rank[splits[r[sid]]], r["label"], common.split_key(r[sid])))

    def _view_shape(self, rows: list[dict[str, Any]]) -> tuple[int, int, int] | None:
        for row in rows[:BLOB_CHUNK]:
            views = self._load([row["snapshot_id"]])[row["snapshot_id"]].geometry.views
            if views is not None:
                return tuple(int(v) for v in views.shape)  # type: ignore[return-value]
        return None

    def _load(self, ids: list[str]) -> dict[str, Snapshot]:
        marks = ",".join("?" * len(ids))
        cursor = self.store.execute(
            f"SELECT snapshot_id, snapshot_data FROM snapshots WHERE snapshot_id IN ({marks})", tuple(ids)
        )
        return {sid: Snapshot.from_bytes(bytes(blob)) for sid, blob in cursor.fetchall()}

    def _stream(
        self, exporter: common.Exporter, layout: ExportLayout, rows: list[dict[str, Any]], splits: dict[str, str],
        label_names: list[str], skipped: Counter[str], result: ExportResult, cancel: threading.Event | None,
    ) -> list[dict[str, Any]]:
        index_of = {name: i for i, name in enumerate(label_names)}
        entries: list[dict[str, Any]] = []
        exporter.begin(layout)
        last = 0.0
        try:
            for chunk in in_chunks([r["snapshot_id"] for r in rows], BLOB_CHUNK):
                if cancel is not None and cancel.is_set():
                    result.interrupted = True
                    exporter.abort()
                    return entries
                snaps = self._load(chunk)
                for row in rows[len(entries) : len(entries) + len(chunk)]:
                    record = self._record(row, snaps[row["snapshot_id"]], splits, index_of, layout)
                    entries.append(common.attribution_entry(record, exporter.write(record)))
                if time.monotonic() - last >= PROGRESS_EVERY_S or len(entries) == len(rows):
                    last = time.monotonic()
                    self.events.emit(ExportProgressed(done=len(entries), total=len(rows)))
            result.files = exporter.finish()
        except BaseException:
            exporter.abort()
            raise
        return entries

    @staticmethod
    def _record(
        row: dict[str, Any], snap: Snapshot, splits: dict[str, str], index_of: dict[str, int], layout: ExportLayout
    ) -> ExportRecord:
        meta = {
            "model_id": row["model_id"],
            "platform": row["platform"],
            "title": row.get("title") or "",
            "author": row.get("author") or "",
            "source_url": row.get("source_url") or "",
            "license": row.get("license") or "",
            "license_spdx": row.get("license_spdx") or "",
            "sha256": row.get("original_file_hash") or "",
            "original_format": row.get("original_format") or "",
            "confidence": row.get("confidence"),
            "label_model": row.get("label_model") or "",
        }
        views = snap.geometry.views
        if layout.views and layout.view_shape and (views is None or tuple(views.shape) != layout.view_shape):
            meta["has_views"] = False
            views = np.zeros(layout.view_shape, np.uint8)
        return ExportRecord(
            snapshot_id=row["snapshot_id"],
            points=np.asarray(snap.geometry.points, np.float32),
            normals=np.asarray(snap.geometry.normals, np.float32),
            label=row["label"],
            label_index=index_of[row["label"]],
            split=splits[row["snapshot_id"]],
            metadata=meta,
            views=views if layout.views else None,
        )

    @staticmethod
    def _options(scope: dict[str, Any]) -> dict[str, Any]:
        keys = ("format", "taxonomy", "split", "license_policy", "views", "group_duplicates")
        return {**{k: scope[k] for k in keys}, "filter": scope["flt"].to_dict()}

    def _finish(
        self, exporter: common.Exporter, layout: ExportLayout, entries: list[dict[str, Any]], result: ExportResult,
        options: dict[str, Any],
    ) -> None:
        if result.output is None:
            result.arrays = flatten_arrays(exporter.arrays)  # type: ignore[attr-defined]
            return
        label_counts, licence_counts = common.tally(
            (e["split"], e["label"], e["license_spdx"] or e["license"]) for e in entries
        )
        facts = common.CardFacts(
            format=result.format,
            label_names=layout.label_names,
            split_counts=layout.split_counts,
            label_counts=label_counts,
            licence_counts=licence_counts,
            skipped=result.skipped,
            options={**options, "split": list(common.parse_split(options["split"])), "objects": result.count},
            loading=exporter.loading_note(),
        )
        result.manifest = common.write_manifest(result.output, entries)
        result.card = common.write_card(result.output, facts)


@dataclass
class _Selection:
    matched: int  # rows the filter selects
    rows: list[dict[str, Any]]  # what will be written
    skipped: Counter[str]  # reason -> rows the policy or the point count left out
    points: int


@dataclass(frozen=True)
class ExportPlan:
    """What an export would do before it runs: the export dialog shows it."""

    matched: int  # snapshots the filter selects (== db.count of the same filter)
    count: int  # objects the export will write
    skipped: dict[str, int]  # reason -> objects the licence policy (or a point count) leaves out

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def _split_counts(rows: list[dict[str, Any]], splits: dict[str, str]) -> dict[str, int]:
    """Records per split, only splits that get any, in train/val/test order."""
    counts = Counter(splits[r["snapshot_id"]] for r in rows)
    return {s: counts[s] for s in common.SPLIT_NAMES if counts[s]}


# ---------------------------------------------------------------- the d3d.db attachment point

_SERVICES: weakref.WeakKeyDictionary[Any, DatasetService] = weakref.WeakKeyDictionary()
_SERVICES_LOCK = threading.Lock()


def service_for(d3d: Any) -> DatasetService:
    """The DatasetService of an engine (one per ``Destill3D``, so indexes stay open between calls)."""
    with _SERVICES_LOCK:
        service = _SERVICES.get(d3d)
        if service is None:
            service = DatasetService(d3d.store, d3d.settings, d3d.events)
            _SERVICES[d3d] = service
        return service


def find_similar(d3d: Any, snapshot_id: str, k: int = 10, min_similarity: float | None = None,
                 space: str = "auto") -> list[tuple[str, float]]:
    return service_for(d3d).find_similar(snapshot_id, k=k, min_similarity=min_similarity, space=space)


def duplicates(d3d: Any, threshold: float = 0.98) -> list[list[str]]:
    return service_for(d3d).duplicates(threshold=threshold)


def export(d3d: Any, format: str, output: str | Path | None = None, **options: Any) -> ExportResult:
    return service_for(d3d).export(format, output, **options)


def export_plan(d3d: Any, filter: SnapshotFilter | None = None, **options: Any) -> ExportPlan:
    return service_for(d3d).plan(filter, **options)
