"""``Destill3D``: the Python API (spec section 10), the facade that wires the engine's services.

::

    from destill3d_tui.engine import Destill3D
    d3d = Destill3D(db="dataset.db")
    d3d.queue.add_paths(["models/"], recursive=True)
    summary = d3d.pipeline.run_until_empty()
    rows = d3d.db.query(format="STL", limit=10)
    snap = d3d.db.get(rows[0].snapshot_id)

Namespaces: ``extract``, ``queue``, ``pipeline``, ``db`` (defined here, over the store and the
queue); ``acquire``, ``classify``, ``models`` and the dataset methods of ``db`` (``find_similar``,
``duplicates``, ``export``) forward to the services in :mod:`.services`. ``Destill3D.__init__``
hands each service exactly what it needs (a settings section, the store, the queue, the event
bus); the costly ones are built on first use. No service holds the facade, and :meth:`close`
closes everything the facade opened.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .acquire.base import SearchFilters as SearchFilters  # re-exported: screens reach the engine only here
from .config import Settings, load_settings
from .events import EventBus
from .queue import Queue, QueueEntry, QueueRow
from .store.db import Store
from .store.filters import FilterError as FilterError  # re-exported for the screens
from .store.filters import SnapshotFilter
from .store.review import REJECT_REASONS as REJECT_REASONS  # re-exported for the screens' reason picker
from .store.service import SnapshotRow, StoreService

if TYPE_CHECKING:
    from .pipeline import Pipeline, RunSummary
    from .services.acquire import AcquireService
    from .services.classify import ClassifyService, ModelsService
    from .services.dataset import DatasetService, ExportPlan
    from .services.review import ReviewService
    from .store.export.common import ExportResult
    from .store.snapshot import Snapshot


class Closeable(Protocol):
    def close(self) -> None: ...


S = TypeVar("S", bound=Closeable)


def database_url(db: str | Path) -> str:
    """A URL as given, or a plain path as a SQLite URL."""
    text = str(db)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser().resolve()}"


class ExtractAPI:
    """Extraction from local files: in-process (nothing stored) or through the queue into the DB."""

    def __init__(self, settings: Settings, queue: QueueAPI, pipeline: PipelineAPI) -> None:
        self._settings = settings
        self._queue = queue
        self._pipeline = pipeline

    def from_file(self, path: str | Path, **opts: Any) -> Snapshot:
        """One file -> Snapshot, in this process. ``opts``: points, strategy, views, seed, options."""
        from .pipeline import extract_in_process

        return extract_in_process(Path(path), self._settings, **opts)

    def from_directory(
        self, directory: str | Path, recursive: bool = True, pattern: str | None = None, priority: int = 0
    ) -> RunSummary:
        """Queue every model file under ``directory`` and run the pipeline until the queue is empty."""
        self._queue.add_paths([directory], recursive=recursive, pattern=pattern, priority=priority)
        return self._pipeline.run_until_empty()


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

    def page(self, after: tuple[int, int] | None = None, limit: int = 100, stage: str | None = None) -> list[QueueRow]:
        """Rows after ``after`` ((priority, queue_id) of the last shown), highest priority first; keyset paging."""
        return self._queue.page(after, limit, stage)

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

    def __init__(self, settings: Settings, store: Store, queue: Queue, events: EventBus) -> None:
        self._settings, self._store, self._queue, self._events = settings, store, queue, events
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Pipeline:
        """The :class:`Pipeline` itself (built on first use): its writer, stages and temp root."""
        return self._get()

    def _get(self) -> Pipeline:
        with self._lock:
            if self._pipeline is None:
                from .pipeline import Pipeline

                self._pipeline = Pipeline(self._settings, self._store, self._queue, self._events)
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
    """Database reads (``d3d.db``); each call uses the calling thread's connection.

    Reads and totals forward to the :class:`StoreService`; similarity, duplicates and export to
    the facade's one :class:`DatasetService` (``dataset`` builds it on first use). A new group
    of database methods forwards the same way to the service that owns it.
    """

    def __init__(self, service: StoreService, dataset: Callable[[], DatasetService]) -> None:
        self._service = service
        self._dataset = dataset

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

    # ---- similarity, duplicates, export: the DatasetService -----------------------------------

    def find_similar(
        self, snapshot_id: str | Snapshot, k: int = 10, min_similarity: float | None = None, space: str = "auto"
    ) -> list[tuple[str, float]]:
        """The ``k`` stored objects most like a snapshot (an id, a unique prefix or a Snapshot), best first."""
        return self._dataset().find_similar(snapshot_id, k=k, min_similarity=min_similarity, space=space)

    def duplicates(self, threshold: float = 0.98) -> list[list[str]]:
        return self._dataset().duplicates(threshold=threshold)

    def export(self, format: str, output: str | Path | None = None, **kwargs: Any) -> ExportResult:
        return self._dataset().export(format, output, **kwargs)

    def export_plan(self, filter: SnapshotFilter | None = None, **kwargs: Any) -> ExportPlan:
        """How many objects ``export`` with the same filter, taxonomy and licence policy would write."""
        return self._dataset().plan(filter, **kwargs)

    def rebuild_index(self, model_id: str | None = None) -> list[tuple[str, int, float]]:
        """Rebuild the similarity index of one embedding model, or of each: (model, vectors, seconds)."""
        return self._dataset().rebuild_index(model_id)


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
        self._snapshots = StoreService(self.store)
        self.queue = QueueAPI(self.queue_engine)
        self.pipeline = PipelineAPI(settings, self.store, self.queue_engine, self.events)
        self.extract = ExtractAPI(settings, self.queue, self.pipeline)
        self.db = DbAPI(self._snapshots, lambda: self.dataset)
        self._built: dict[str, Closeable] = {}  # services built so far, in build order (close() closes them)
        self._built_lock = threading.Lock()

    def _service(self, name: str, build: Callable[[], S]) -> S:
        """The service called ``name``, built on first use (importing a service module is costly:
        FAISS, numba, onnxruntime, httpx), then kept until :meth:`close`."""
        with self._built_lock:
            service = self._built.get(name)
            if service is None:
                service = self._built[name] = build()
            return service  # type: ignore[return-value]

    # ---- the services ---------------------------------------------------------------------------

    @property
    def acquire(self) -> AcquireService:
        from .services.acquire import AcquireService

        return self._service("acquire", lambda: AcquireService(self.settings, self.queue_engine, self.events))

    @property
    def classify(self) -> ClassifyService:
        from .services.classify import ClassifyService

        return self._service("classify", lambda: ClassifyService(self.settings.classification, self._snapshots))

    @property
    def models(self) -> ModelsService:
        from .services.classify import ModelsService

        return self._service("models", lambda: ModelsService(self.settings.classification))

    @property
    def dataset(self) -> DatasetService:
        """Similarity, duplicates, export (``d3d.db`` forwards to it); one per engine: indexes stay open."""
        from .services.dataset import DatasetService

        return self._service("dataset", lambda: DatasetService(self.store, self.settings, self.events))

    @property
    def review(self) -> ReviewService:
        """Curation (``d3d.review``): decisions, a person's labels and tags, undo, review order, teaching."""
        from .services.review import ReviewService

        def clusters() -> list[list[str]]:
            return self.dataset.duplicates(self.settings.pipeline.near_duplicate_threshold)

        return self._service("review", lambda: ReviewService(
            self.store, user=self.settings.review.user, default_model=self.settings.classification.default_model,
            duplicates=clusters))

    # ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the pipeline (draining in-flight items), close every service built so far (newest
        first: the dataset service writes its index patches back) and this thread's DB connection.

        Harmless twice; the engine may be used again afterwards (services are built anew).
        """
        with self._built_lock:
            built, self._built = list(self._built.values()), {}
        with contextlib.ExitStack() as closing:  # each closes even when one before it raised
            closing.callback(self.store.close)
            for service in built:
                closing.callback(service.close)
            self.pipeline.stop(drain=True)

    def __enter__(self) -> Destill3D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
