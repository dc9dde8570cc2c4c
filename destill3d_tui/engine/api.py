"""``Destill3D``: the Python API (spec section 10), composing the engine's services.

::

    from destill3d_tui.engine import Destill3D
    d3d = Destill3D(db="dataset.db")
    d3d.queue.add_paths(["models/"], recursive=True)
    summary = d3d.pipeline.run_until_empty()
    rows = d3d.db.query(format="STL", limit=10)
    snap = d3d.db.get(rows[0].snapshot_id)

Namespaces: ``extract``, ``queue``, ``pipeline``, ``db`` (here); ``acquire``, ``classify``,
``models`` and the dataset methods of ``db`` (``find_similar``, ``duplicates``, ``export``) are
attachment points filled by their own modules (marked ATTACHMENT POINT below).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .acquire.base import SearchFilters as SearchFilters  # re-exported: screens reach the engine only here
from .config import Settings, load_settings
from .events import EventBus
from .queue import Queue, QueueEntry, QueueRow
from .store.db import Store
from .store.filters import FilterError as FilterError  # re-exported for the screens
from .store.filters import SnapshotFilter
from .store.service import SnapshotRow, StoreService

if TYPE_CHECKING:
    from .pipeline import Pipeline, RunSummary
    from .store.snapshot import Snapshot


def database_url(db: str | Path) -> str:
    """A URL as given, or a plain path as a SQLite URL."""
    text = str(db)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser().resolve()}"


class ExtractAPI:
    """Extraction from local files: in-process (nothing stored) or through the queue into the DB."""

    def __init__(self, d3d: Destill3D) -> None:
        self._d3d = d3d

    def from_file(self, path: str | Path, **opts: Any) -> Snapshot:
        """One file -> Snapshot, in this process. ``opts``: points, strategy, views, seed, options."""
        from .pipeline import extract_in_process

        return extract_in_process(Path(path), self._d3d.settings, **opts)

    def from_directory(
        self, directory: str | Path, recursive: bool = True, pattern: str | None = None, priority: int = 0
    ) -> RunSummary:
        """Queue every model file under ``directory`` and run the pipeline until the queue is empty."""
        self._d3d.queue.add_paths([directory], recursive=recursive, pattern=pattern, priority=priority)
        return self._d3d.pipeline.run_until_empty()


class QueueAPI:
    """The processing queue (``processing_queue`` table)."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    def add_paths(
        self, paths: Iterable[str | Path], recursive: bool = False, pattern: str | None = None, priority: int = 0
    ) -> list[int]:
        return self._queue.add_paths(paths, recursive=recursive, pattern=pattern, priority=priority)

    def add_entries(self, entries: Sequence[QueueEntry]) -> list[int]:
        return self._queue.add_entries(entries)

    def counts(self) -> dict[str, int]:
        return self._queue.counts()

    def list(
        self, stage: str | None = None, limit: int = 100, offset: int = 0, order: str = "priority"
    ) -> list[QueueRow]:
        return self._queue.list(stage=stage, limit=limit, offset=offset, order=order)

    def get(self, queue_id: int) -> QueueRow:
        return self._queue.get(queue_id)

    def retry(self, ids: Sequence[int] | None = None, failed: bool = False) -> int:
        return self._queue.retry(ids=ids, failed=failed)

    def cancel(self, ids: Sequence[int]) -> int:
        return self._queue.cancel(ids)

    def set_priority(self, queue_id: int, priority: int) -> None:
        self._queue.set_priority(queue_id, priority)


class PipelineAPI:
    """The staged pipeline the TUI and ``--headless`` both drive (created on first use)."""

    def __init__(self, d3d: Destill3D) -> None:
        self._d3d = d3d
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()

    def _get(self) -> Pipeline:
        with self._lock:
            if self._pipeline is None:
                from .pipeline import Pipeline

                self._pipeline = Pipeline(self._d3d.settings, self._d3d.store, self._d3d.queue_engine, self._d3d.events)
            return self._pipeline

    def start(self) -> None:
        self._get().start()

    def pause(self) -> None:
        self._get().pause()

    def resume(self) -> None:
        self._get().resume()

    def stop(self, drain: bool = True) -> None:
        if self._pipeline is not None:
            self._pipeline.stop(drain=drain)

    @property
    def state(self) -> str:
        return self._pipeline.state if self._pipeline is not None else "stopped"

    def run_until_empty(self, cancel: threading.Event | None = None, watch: bool = False) -> RunSummary:
        return self._get().run_until_empty(cancel=cancel, watch=watch)


class DbAPI:
    """Database reads (``d3d.db``); each call uses the calling thread's connection."""

    def __init__(self, d3d: Destill3D, service: StoreService) -> None:
        self._d3d = d3d
        self._service = service

    def query(
        self, limit: int = 100, offset: int = 0, order: str = "processed_at",
        filter: SnapshotFilter | None = None, **filters: Any,
    ) -> list[SnapshotRow]:
        """A :class:`SnapshotFilter` and/or its fields as keywords: platform, format (source format),
        label, min_confidence, license, commercial, derivatives, tags, text, since, until."""
        return self._service.query(limit=limit, offset=offset, order=order, filter=filter, **filters)

    def page(self, after_key: tuple[Any, str] | None = None, limit: int = 100,
             filter: SnapshotFilter | None = None) -> list[SnapshotRow]:
        """The rows after ``after_key`` ((processed_at, snapshot_id) of the last shown), newest first."""
        return self._service.page(after_key, limit, filter)

    def count(self, filter: SnapshotFilter | None = None, **filters: Any) -> int:
        return self._service.count(filter, **filters)

    def get(self, snapshot_id: str) -> Snapshot:
        return self._service.get(snapshot_id)

    def row(self, snapshot_id: str) -> dict[str, Any]:
        return self._service.row(snapshot_id)

    def stats(self, *, recount: bool = False) -> dict[str, Any]:
        """Totals and breakdowns from the running totals (``recount``: rebuilt from the tables first)."""
        if recount:
            self._service.recount()
        return self._service.stats()

    def totals(self) -> dict[str, Any]:
        """Running counts and bytes (snapshots, queue by stage, downloaded/kept) without a table scan."""
        return self._service.totals()

    def vacuum(self) -> None:
        self._service.vacuum()

    # ---- ATTACHMENT POINT (similarity/export engineer): engine/store/dataset.py -------------
    # Each method forwards to a module-level function ``dataset.<name>(d3d, *args, **kwargs)``.

    def find_similar(
        self, snapshot_id: str, k: int = 10, min_similarity: float | None = None
    ) -> list[tuple[str, float]]:
        from .store import dataset

        return dataset.find_similar(self._d3d, snapshot_id, k=k, min_similarity=min_similarity)

    def duplicates(self, threshold: float = 0.98) -> list[list[str]]:
        from .store import dataset

        return dataset.duplicates(self._d3d, threshold=threshold)

    def export(self, format: str, output: str | Path | None = None, **kwargs: Any) -> Any:
        from .store import dataset

        return dataset.export(self._d3d, format, output, **kwargs)

    def export_plan(self, filter: SnapshotFilter | None = None, **kwargs: Any) -> Any:
        """How many objects ``export`` with the same filter, taxonomy and licence policy would write."""
        from .store import dataset

        return dataset.export_plan(self._d3d, filter, **kwargs)


class Destill3D:
    """The engine. ``db``: a SQLite path or ``postgresql://`` URL; ``config``: a TOML file."""

    def __init__(
        self, settings: Settings | None = None, *, db: str | Path | None = None, config: str | Path | None = None
    ):
        if settings is None:
            settings = load_settings(config)
        if db is not None:
            settings.database.url = database_url(db)
        self.settings = settings
        self.events = EventBus()
        self.store = Store(settings.database_url(), busy_timeout_ms=settings.database.busy_timeout_ms)
        p = settings.pipeline
        self.queue_engine = Queue(
            self.store,
            max_retries=p.max_retries,
            lease_seconds=p.lease_seconds,
            retry_backoff_s=p.retry_backoff_s,
            events=self.events,
        )
        self.extract = ExtractAPI(self)
        self.queue = QueueAPI(self.queue_engine)
        self.pipeline = PipelineAPI(self)
        self.db = DbAPI(self, StoreService(self.store))
        self._attached: dict[str, Any] = {}

    # ---- ATTACHMENT POINTS (acquisition / classification engineers) --------------------------
    # ``engine/acquire/service.py`` defines ``AcquireService(d3d)``; ``engine/classify/service.py``
    # defines ``ClassifyService(d3d)`` and ``ModelsService(d3d)``. Built on first use.

    def _service(self, name: str, module: str, cls: str) -> Any:
        if name not in self._attached:
            import importlib

            mod = importlib.import_module(module, __package__)
            self._attached[name] = getattr(mod, cls)(self)
        return self._attached[name]

    @property
    def acquire(self) -> Any:
        return self._service("acquire", ".acquire.service", "AcquireService")

    @property
    def classify(self) -> Any:
        return self._service("classify", ".classify.service", "ClassifyService")

    @property
    def models(self) -> Any:
        return self._service("models", ".classify.service", "ModelsService")

    # ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the pipeline (draining in-flight items) and close this thread's DB connection."""
        self.pipeline.stop(drain=True)
        for service in self._attached.values():
            closer = getattr(service, "close", None)
            if callable(closer):
                closer()
        self.store.close()

    def __enter__(self) -> Destill3D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
