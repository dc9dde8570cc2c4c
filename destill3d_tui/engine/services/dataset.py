"""The service behind ``d3d.db.find_similar / duplicates / export``.

Reads the database through a :class:`~..store.db.Store` (never writes it), keeps the derived
FAISS indexes (:mod:`..store.index`) reconciled, and drives the exporters (:mod:`..store.export`):
select rows -> licence policy -> labels -> stratified splits -> stream snapshot blobs into the
writer -> attribution manifest + dataset card, with progress events.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import locations
from ..config import Settings
from ..errors import NotFoundError
from ..events import EventBus, ExportFinished, ExportProgressed
from ..store import duplicates as dup
from ..store.db import Store
from ..store.export import common, shards, stream
from ..store.export import selection as sel
from ..store.export.common import ExportError, ExportLayout, ExportResult, flatten_arrays
from ..store.export.shards import SELECTION_FILE, STATE_FILE, ExportState, ShardedExporter
from ..store.filters import SnapshotFilter
from ..store.index import EmbeddingIndex, EmbeddingTableSource
from ..store.service import where_sql
from ..store.snapshot import Snapshot

VIEW_PROBE = 128
"""Selected snapshots looked at for the shape of depth views before an export with ``views``."""


class DatasetService:
    """Similarity, duplicates and export over one database (the facade owns one: indexes stay open)."""

    def __init__(self, store: Store, settings: Settings | None = None, events: EventBus | None = None) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.events = events or EventBus()
        self._indexes: dict[str, EmbeddingIndex] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Write back index patches not yet saved (optional: stale files are reconciled on open)
        and let the indexes go; a later call opens them again, a second close does nothing."""
        with self._lock:
            indexes, self._indexes = list(self._indexes.values()), {}
        for index in indexes:
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

    def rebuild_index(self, model_id: str | None = None) -> list[tuple[str, int, float]]:
        """Rebuild the similarity index of one embedding model, or of each: (model, vectors, seconds).

        Maintenance only: indexes grow with the data and are patched on use; a rebuild drops
        tombstones and re-chooses flat or HNSW for the current size.
        """
        models = [model_id] if model_id else [
            str(r[0]) for r in self.store.execute("SELECT DISTINCT model_id FROM embeddings ORDER BY model_id")]
        done = []
        for model in models:
            began = time.perf_counter()
            source = EmbeddingTableSource(self.store, model, name_prefix=dup.database_key(self.store) + "-")
            index = EmbeddingIndex(locations.index_dir(), source, self.settings.index)
            index.rebuild()
            with self._lock:
                self._indexes[model] = index
            done.append((model, len(index), time.perf_counter() - began))
        return done

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

    # ------------------------------------------------------------------ export

    def _selection(self, flt: SnapshotFilter, taxonomy: str | None, policy: str, split: Any = (0.8, 0.1, 0.1),
                   groups: dict[str, str] | None = None) -> sel.Selection:  # fmt: skip
        """Filter (the WHERE of ``db query``) -> review -> licence policy -> one point count -> splits; no blobs read.

        A curator's rejected snapshots are left out unless the filter asks for them (``review=rejected``).
        """
        where, params = where_sql(self.store, flt)
        return sel.select(self.store, where, params, taxonomy=taxonomy, policy=policy,
                          fractions=common.parse_split(split), groups=groups,
                          keep_rejected=flt.review == "rejected")  # fmt: skip

    def plan(
        self, filter: SnapshotFilter | None = None, *, taxonomy: str | None = None, license_policy: str = "research",
        **filters: Any,
    ) -> ExportPlan:
        """How many objects :meth:`export` with these arguments would write (reads no snapshot blobs)."""
        flt = SnapshotFilter.coerce(filter, **filters)
        if taxonomy:  # the label each object gets decides whether it is written: the row scan reads it
            chosen = self._selection(flt, taxonomy, license_policy)
            return ExportPlan(matched=chosen.matched, count=chosen.count, skipped=dict(chosen.skipped))
        where, params = where_sql(self.store, flt)
        covered = set(flt.to_dict()) <= sel.PLAN_FILTERS
        matched, count, skipped = sel.tally(self.store, where, params, policy=license_policy,
                                            keep_rejected=flt.review == "rejected", covered=covered)  # fmt: skip
        return ExportPlan(matched=matched, count=count, skipped=dict(skipped))

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
        shard_rows: int | None = None,
        shard_bytes: int | None = None,
        batch: int | None = None,
        **filters: Any,
    ) -> ExportResult:
        """Write the selected snapshots as a dataset (see :mod:`.export`); spec 8.3 / 10.1.

        ``filter`` (a :class:`SnapshotFilter`) and/or its fields as keywords (``platform=``,
        ``label=``, ``source_format=``, ``min_confidence=``, ``tags=``, ...) choose the snapshots
        exactly as ``db.query`` / ``db.count`` do; the licence policy then leaves some out (counted).
        Sharded formats write at most ``shard_rows`` objects (else ``shard_bytes``) per file and
        resume an interrupted export into the same folder; ``batch`` snapshots are read per query.
        """
        started = time.perf_counter()
        flt = SnapshotFilter.coerce(filter, **filters)
        fractions = common.parse_split(split)
        exporter = self._exporter(format, return_arrays)
        options = {"format": format, "taxonomy": taxonomy, "split": list(fractions), "license_policy": license_policy,
                   "views": views, "group_duplicates": group_duplicates, "filter": flt.to_dict()}  # fmt: skip
        fingerprint = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()
        out, state = self._output_dir(output, return_arrays, fingerprint if _sharded(exporter) else None)  # fmt: skip
        self.events.emit(ExportProgressed(done=0, total=0, phase="selecting"))
        where = where_sql(self.store, flt)
        if state is not None and out is not None:
            chosen = sel.Selection.load(out / SELECTION_FILE)
        else:
            groups = self._duplicate_groups() if group_duplicates else None
            chosen = self._selection(flt, taxonomy, license_policy, fractions, groups)
        if not chosen.count:
            raise ExportError(f"nothing to export: {chosen.matched} snapshots match ({flt.describe()}), "
                              f"none passed the licence policy ({dict(chosen.skipped)})")  # fmt: skip
        layout = ExportLayout(
            output=out or Path("."), label_names=chosen.label_names, split_counts=chosen.split_counts(),
            points_per_object=chosen.points, views=views,
            view_shape=self._view_shape(where, chosen, state) if views else None,
        )
        result = ExportResult(format=format, output=out, label_names=chosen.label_names,
                              split_counts=layout.split_counts)  # fmt: skip
        run = self._write(exporter, layout, chosen, where, state, fingerprint, cancel, shard_rows, shard_bytes, batch)
        result.skipped = dict(chosen.skipped)
        if run.unreadable:
            result.skipped["snapshot unreadable (damaged blob)"] = run.unreadable
        result.split_counts = {s: run.tally.written[s] for s in common.SPLIT_NAMES if run.tally.written[s]}
        result.interrupted = run.interrupted
        if not run.interrupted:
            self._finish(exporter, layout, run, result, options)
        result.seconds = time.perf_counter() - started
        self.events.emit(ExportFinished(output=str(out or ""), count=result.count, skipped=result.skipped_total))
        return result

    def _write(
        self, exporter: common.Exporter, layout: ExportLayout, chosen: sel.Selection, where: tuple[str, list[Any]],
        state: ExportState | None, fingerprint: str, cancel: threading.Event | None, shard_rows: int | None,
        shard_bytes: int | None, batch: int | None,
    ) -> stream.StreamExport:  # fmt: skip
        """Runs the write scan: shards (resumable) or record by record."""

        def progress(done: int, total: int) -> None:
            self.events.emit(ExportProgressed(done=done, total=total))

        kwargs: dict[str, Any] = {"cancel": cancel, "progress": progress, "batch": batch or stream.BLOB_BATCH}
        if not _sharded(exporter):
            run = stream.StreamExport(self.store, exporter, layout, chosen, where, **kwargs)
            part = layout.output / stream.attribution_part(layout.output, "all", 0).name
            run.run_records(part if self._has_output(layout) else None)
            return run
        if state is None:
            rows = shards.rows_per_shard(layout, shard_bytes or exporter.shard_bytes, shard_rows)
            totals = {s: -(-n // rows) for s, n in layout.split_counts.items()}
            state = ExportState(fingerprint=fingerprint, format=exporter.name, rows_per_shard=rows, totals=totals,
                                view_shape=list(layout.view_shape) if layout.view_shape else None)  # fmt: skip
            layout.output.mkdir(parents=True, exist_ok=True)
            chosen.save(layout.output / SELECTION_FILE)
            state.save(layout.output)
        sharded = stream.ShardedRun(self.store, exporter, layout, chosen, where, state=state, **kwargs)
        sharded.run()
        return sharded

    @staticmethod
    def _has_output(layout: ExportLayout) -> bool:
        return layout.output != Path(".")

    def _duplicate_groups(self) -> dict[str, str]:
        """snapshot_id -> its near-duplicate cluster's first member: copies never straddle splits."""
        threshold = self.settings.pipeline.near_duplicate_threshold
        return {sid: cluster[0] for cluster in self.duplicates(threshold) for sid in cluster}

    @staticmethod
    def _exporter(format: str, return_arrays: bool) -> common.Exporter:
        if return_arrays:
            if format != "numpy":
                raise ExportError("return_arrays=True needs format='numpy'")
            from ..store.export.numpy_npz import NumpyExporter

            return NumpyExporter(in_memory=True)
        return common.get_exporter(format)

    @staticmethod
    def _output_dir(output: str | Path | None, return_arrays: bool,
                    fingerprint: str | None) -> tuple[Path | None, ExportState | None]:  # fmt: skip
        """The export folder (``dataset.h5`` style paths name the folder ``dataset``), and the state
        of an interrupted export of the same options found there (it is resumed)."""
        if return_arrays:
            return None, None
        if output is None:
            raise ExportError("export needs an output folder")
        out = Path(output).expanduser()
        if out.suffix.lower() in {".h5", ".hdf5", ".npz", ".parquet", ".tfrecord", ".tar"}:
            out = out.with_suffix("")
        if not out.exists() or (out.is_dir() and not any(out.iterdir())):
            return out, None
        state = ExportState.load(out) if out.is_dir() and fingerprint else None
        if state is not None and state.fingerprint == fingerprint and (out / SELECTION_FILE).is_file():
            return out, state
        if state is not None:
            raise ExportError(f"output {out} holds an interrupted export with other options; "
                              "repeat that export to resume it, or choose a new path")  # fmt: skip
        raise ExportError(f"output {out} exists and is not an empty folder; choose a new path")

    def _view_shape(self, where: tuple[str, list[Any]], chosen: sel.Selection,
                    state: ExportState | None) -> tuple[int, int, int] | None:  # fmt: skip
        """The views' shape of the first selected snapshots that have views (None: none of the first 128)."""
        if state is not None:
            return tuple(state.view_shape) if state.view_shape else None  # type: ignore[return-value]
        checked = 0
        for rows in sel.keyset(self.store, "snapshot_id, snapshot_data", where[0], where[1], VIEW_PROBE):
            for _, sid, blob in rows:
                if chosen.position(sid) is None:
                    continue
                views = stream.decode_arrays(blob, True)[2]
                if views is not None:
                    return tuple(int(v) for v in views.shape)  # type: ignore[return-value]
                checked += 1
                if checked >= VIEW_PROBE:
                    return None
        return None

    def _finish(self, exporter: common.Exporter, layout: ExportLayout, run: stream.StreamExport,
                result: ExportResult, options: dict[str, Any]) -> None:  # fmt: skip
        """Index files, attribution manifest and dataset card; the resume state is removed."""
        if result.output is None:
            result.arrays = flatten_arrays(exporter.arrays)  # type: ignore[attr-defined]
            return
        out = result.output
        if isinstance(run, stream.ShardedRun):
            names = {s: run.shard_names(s) for s in run.state.totals}
            rows = {s: [d.rows for d in run.state.done[s]] for s in run.state.totals}
            result.files = [out / n for s in names for n in names[s]]
            result.files += exporter.write_indexes(names, rows)  # type: ignore[attr-defined]
            parts = [stream.attribution_part(out, s, i) for s in names for i in range(len(names[s]))]
        else:
            result.files = run.files
            parts = [stream.attribution_part(out, "all", 0)]
        result.manifest = stream.write_attribution(out, parts)
        facts = common.CardFacts(
            format=result.format, label_names=layout.label_names, split_counts=result.split_counts,
            label_counts={s: dict(c) for s, c in run.tally.labels.items()}, licence_counts=dict(run.tally.licences),
            skipped=result.skipped, loading=exporter.loading_note(),
            options={**options, "objects": result.count},
            label_sources=dict(run.sel.label_sources), reviewed=run.sel.reviewed,
        )
        result.card = common.write_card(out, facts)
        for name in (STATE_FILE, SELECTION_FILE):
            (out / name).unlink(missing_ok=True)


def _sharded(exporter: common.Exporter) -> bool:
    """Written in shards by the driver (the in-memory NumPy export is written record by record)."""
    return isinstance(exporter, ShardedExporter) and exporter.sharded


@dataclass(frozen=True)
class ExportPlan:
    """What an export would do before it runs: the export dialog shows it."""

    matched: int  # snapshots the filter selects (== db.count of the same filter)
    count: int  # objects the export will write
    skipped: dict[str, int]  # reason -> objects the licence policy (or a point count) leaves out

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())
