"""The processing queue: the spec's state machine (section 3) over the ``processing_queue`` table.

::

    queued --acquire--> acquired --extract--> extracted --classify--> classified --store--> stored
       \\________________\\_____________________\\______________________\\--> failed (final)

An item that fails and still has attempts left keeps its last committed stage, gets
``scheduled_at`` (exponential backoff) and is claimed again later; ``failed`` is final.

Leases: a worker *claims* items (``lease_owner``, ``lease_expires_at``, ``heartbeat_at``) and
every transition it commits says ``WHERE lease_owner = me``, so a worker whose lease was taken
over can never commit anything for that item. Claims run in ``BEGIN IMMEDIATE`` on SQLite and
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL.

Attempts: a claim counts one (``retry_count += 1``). It sticks only when the item's own
processing failed (:meth:`Queue.fail`: its parser crashed, hung or hit the memory cap in the
isolated worker, its download failed, ...); how many attempts each error ``kind`` may use is
:func:`errors.tries_allowed`. An item handed back unfinished gets its attempt back: by the
runner itself on shutdown (:meth:`Queue.release`), or by :meth:`Queue.reap` when the runner
holding it died or stopped heartbeating (spec 12.3): being held by a runner that was killed
says nothing about the item, so 20 SIGKILLs of a runner fail no valid item.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee as pw

from .errors import NotFoundError, tries_allowed
from .events import EventBus, ItemsQueued
from .store.db import ACTIVE_STAGES, FAILED, FINAL_STAGES, QUEUED, STAGES, STORED, Store, dumps, loads, utcnow
from .text import display

_CHUNK = 500  # entries per INSERT/SELECT round trip when queueing (SQLite allows 32766 parameters)
_INSERT_COLUMNS = (
    "model_id", "platform", "source_url", "source_id", "file_id", "group_id", "stage", "priority",
    "retry_count", "max_retries", "metadata", "bytes_in", "created_at", "updated_at",
)  # fmt: skip


@dataclass
class QueueEntry:
    """One item to queue. ``model_id`` is ``platform:source_id`` (plus ``:file_id`` for one file of many)."""

    model_id: str
    platform: str
    source_url: str
    source_id: str = ""
    file_id: str | None = None
    group_id: str | None = None
    priority: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)  # title, author, license{raw,spdx,flags}, tags, ...
    max_retries: int | None = None


@dataclass
class QueueRow:
    queue_id: int
    model_id: str
    platform: str
    source_url: str
    stage: str
    priority: int
    retry_count: int
    max_retries: int
    reason: str | None
    last_error: str | None
    scheduled_at: dt.datetime | None
    updated_at: dt.datetime | None
    created_at: dt.datetime | None
    title: str
    snapshot_id: str | None
    duplicate_of: str | None
    bytes_in: int
    source_id: str = ""
    file_id: str | None = None
    group_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    temp_path: str | None = None
    file_hash: str | None = None
    primary_path: str | None = None
    error_stage: str | None = None
    finished_at: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "metadata"}
        return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in out.items()}


def _row(m: Any) -> QueueRow:
    meta = loads(m.metadata)
    return QueueRow(
        queue_id=m.queue_id,
        model_id=m.model_id,
        platform=m.platform,
        source_url=m.source_url,
        stage=m.stage,
        priority=m.priority or 0,
        retry_count=m.retry_count or 0,
        max_retries=m.max_retries if m.max_retries is not None else 3,
        reason=m.reason,
        last_error=m.last_error,
        scheduled_at=m.scheduled_at,
        updated_at=m.updated_at,
        created_at=m.created_at,
        title=str(meta.get("title") or ""),
        snapshot_id=m.snapshot_id,
        duplicate_of=m.duplicate_of,
        bytes_in=m.bytes_in or 0,
        source_id=m.source_id or "",
        file_id=m.file_id,
        group_id=m.group_id,
        metadata=meta,
        lease_owner=m.lease_owner,
        lease_expires_at=m.lease_expires_at,
        temp_path=m.temp_path,
        file_hash=m.file_hash,
        primary_path=m.primary_path,
        error_stage=m.error_stage,
        finished_at=m.finished_at,
    )


def _failure_message(error: dict[str, str], kind: str, attempts: int, final: bool) -> str:
    """The stored message; a resource error says whether the item gets its one more try."""
    message = error.get("message", "")
    if kind != "resource":
        return message
    if final:
        return f"{message} (failed this way on attempt {attempts} with the same bytes: not retried again)"
    return f"{message} (the same bytes will be tried once more)"


def make_owner() -> str:
    """``host:pid:token``: the reaper frees leases of dead processes on this host at once."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_dead(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text, _, _token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine: only the lease expiry tells
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def local_entries(
    paths: Iterable[str | Path], recursive: bool = False, pattern: str | None = None, priority: int = 0
) -> list[QueueEntry]:
    """Queue entries for local files; folders are scanned (``pattern`` is a glob on the file name)."""
    # imported here, as the scan's own imports were: `queue list` and the other commands that
    # never scan do not pay for the archive and adapter modules (about 20 ms)
    from .acquire.platforms.local import model_files, source_id_for

    return [_local_entry(path, source_id_for(path), priority) for path in model_files(paths, recursive, pattern)]


def _local_entry(path: Path, source_id: str, priority: int) -> QueueEntry:
    # People see the escaped display form of the name; the source id is the local adapter's.
    meta = {"title": display(path.stem), "original_filename": display(path.name), "source_url": path.as_uri()}
    return QueueEntry(
        model_id=f"local:{source_id}",
        platform="local",
        source_url=path.as_uri(),
        source_id=source_id,
        priority=priority,
        metadata=meta,
    )


class Queue:
    """The queue of one database. Thread-safe: every call uses the calling thread's connection."""

    def __init__(
        self,
        store: Store,
        *,
        max_retries: int = 3,
        lease_seconds: float = 300.0,
        retry_backoff_s: float = 30.0,
        events: EventBus | None = None,
    ) -> None:
        self.store = store
        self.max_retries = max_retries
        self.lease_seconds = lease_seconds
        self.retry_backoff_s = retry_backoff_s
        self.events = events
        self.Q = store.ProcessingQueue

    # ------------------------------------------------------------ adding

    def add_entries(self, entries: Sequence[QueueEntry]) -> list[int]:
        """Queue ids, in order; an entry whose ``model_id`` is already queued keeps its row.

        One transaction; each chunk is one multi-row ``INSERT .. ON CONFLICT (model_id) DO NOTHING
        RETURNING`` (SQLite >= 3.35 and PostgreSQL), then one SELECT for the model ids that were
        already there. Raw SQL: peewee's per-value query building cost ~0.3 ms a row.
        """
        by_model: dict[str, int] = {}
        added = 0
        now = utcnow()
        stamp: Any = now if self.store.is_postgres else now.isoformat(" ")
        with self.store.atomic(immediate=True):
            for start in range(0, len(entries), _CHUNK):
                fresh: dict[str, QueueEntry] = {}
                for e in entries[start : start + _CHUNK]:
                    if e.model_id not in by_model:
                        fresh.setdefault(e.model_id, e)  # the first of repeated model ids wins
                if not fresh:
                    continue
                inserted = self._insert_new(list(fresh.values()), stamp)
                by_model.update(inserted)
                added += len(inserted)
                missing = [m for m in fresh if m not in inserted]
                if missing:
                    by_model.update(self._existing(missing))
        ids = [by_model[e.model_id] for e in entries]
        if added and self.events is not None:
            self.events.emit(ItemsQueued(count=added, platform=entries[0].platform if entries else "local"))
        return ids

    def _insert_new(self, entries: list[QueueEntry], stamp: Any) -> dict[str, int]:
        """Insert ``entries`` (distinct model ids) that are not queued yet; model_id -> new queue_id."""
        rows = [self._row_tuple(e, stamp) for e in entries]
        marks = "(" + ", ".join("?" * len(_INSERT_COLUMNS)) + ")"
        sql = (
            f"INSERT INTO processing_queue ({', '.join(_INSERT_COLUMNS)}) VALUES {', '.join([marks] * len(rows))} "
            "ON CONFLICT (model_id) DO NOTHING RETURNING model_id, queue_id"
        )
        params = [v for row in rows for v in row]
        return {m: int(q) for m, q in self.store.execute(sql, params).fetchall()}

    def _existing(self, model_ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(model_ids), _CHUNK):
            chunk = model_ids[start : start + _CHUNK]
            sql = f"SELECT model_id, queue_id FROM processing_queue WHERE model_id IN ({', '.join('?' * len(chunk))})"
            found.update((m, int(q)) for m, q in self.store.execute(sql, chunk).fetchall())
        return found

    def _row_tuple(self, entry: QueueEntry, stamp: Any) -> tuple[Any, ...]:
        """Values in :data:`_INSERT_COLUMNS` order."""
        return (
            entry.model_id,
            entry.platform,
            entry.source_url,
            entry.source_id or entry.model_id.partition(":")[2],
            entry.file_id,
            entry.group_id,
            QUEUED,
            entry.priority,
            0,
            self.max_retries if entry.max_retries is None else entry.max_retries,
            dumps(entry.metadata),
            0,
            stamp,
            stamp,
        )

    def add_paths(
        self, paths: Iterable[str | Path], recursive: bool = False, pattern: str | None = None, priority: int = 0
    ) -> list[int]:
        return self.add_entries(local_entries(paths, recursive, pattern, priority))

    # ------------------------------------------------------------ reading

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STAGES, 0)
        query = self.Q.select(self.Q.stage, pw.fn.COUNT(self.Q.queue_id).alias("n")).group_by(self.Q.stage)
        for row in query:
            out[row.stage] = int(row.n)
        return out

    def pending(self) -> int:
        """Items not yet stored or failed."""
        return self.Q.select().where(self.Q.stage.in_(ACTIVE_STAGES)).count()

    def list(
        self, stage: str | None = None, limit: int = 100, offset: int = 0, order: str = "priority"
    ) -> list[QueueRow]:
        query = self.Q.select()
        if stage:
            if stage not in STAGES:
                raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
            query = query.where(self.Q.stage == stage)
        orders = {
            "priority": (self.Q.priority.desc(), self.Q.queue_id),
            "id": (self.Q.queue_id,),
            "updated": (self.Q.updated_at.desc(), self.Q.queue_id.desc()),
        }
        query = query.order_by(*orders.get(order, orders["priority"])).limit(limit).offset(offset)
        return [_row(m) for m in query]

    def page(self, after: tuple[int, int] | None = None, limit: int = 100, stage: str | None = None) -> list[QueueRow]:
        """The rows after ``after`` ((priority, queue_id) of the last shown) in ``list``'s priority order.

        Keyset, not OFFSET: page 500 costs what page 1 costs. ``idx_queue_stage`` (stage, priority
        DESC, then the row id) serves one stage's page as an index range; every stage's page merges
        one such range per stage in one statement (so one snapshot of the table: an item moving
        from stage to stage is read once), then reads the chosen rows by id. Ordering the whole
        table instead sorted every row: 30 ms a page at 100,000 items, the F3 board's read.
        """
        if stage:
            if stage not in STAGES:
                raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
            query = self.Q.select().where(self.Q.stage == stage)
            if after is not None:
                priority, queue_id = after
                query = query.where((self.Q.priority < priority)
                                    | ((self.Q.priority == priority) & (self.Q.queue_id > queue_id)))
            return [_row(m) for m in query.order_by(self.Q.priority.desc(), self.Q.queue_id).limit(limit)]
        keyset, key_params = "", []
        if after is not None:
            keyset = " AND (priority < ? OR (priority = ? AND queue_id > ?))"
            key_params = [after[0], after[0], after[1]]
        ranges, params = [], []
        for n, one in enumerate(STAGES):
            ranges.append(f"SELECT * FROM (SELECT priority, queue_id FROM processing_queue WHERE stage = ?{keyset} "
                          f"ORDER BY priority DESC, queue_id LIMIT ?) AS s{n}")
            params += [one, *key_params, limit]
        ids = [row[1] for row in self.store.execute(
            f"SELECT priority, queue_id FROM ({' UNION ALL '.join(ranges)}) AS every_stage "
            "ORDER BY priority DESC, queue_id LIMIT ?", [*params, limit]).fetchall()]
        if not ids:
            return []
        by_id = {m.queue_id: m for m in self.Q.select().where(self.Q.queue_id.in_(ids))}
        return [_row(by_id[i]) for i in ids if i in by_id]  # a row deleted in between is left out

    def get(self, queue_id: int) -> QueueRow:
        m = self.Q.get_or_none(self.Q.queue_id == queue_id)
        if m is None:
            raise NotFoundError(f"no queue item {queue_id}")
        return _row(m)

    # ------------------------------------------------------------ user actions

    def retry(self, ids: Sequence[int] | None = None, failed: bool = False) -> int:
        """Failed (or the given unfinished) items go back to ``queued`` with fresh attempts."""
        query = self.Q.update(
            stage=QUEUED, retry_count=0, reason=None, last_error=None, error_stage=None,
            scheduled_at=None, lease_owner=None, lease_expires_at=None, finished_at=None, updated_at=utcnow(),
        )  # fmt: skip
        if ids:
            query = query.where(self.Q.queue_id.in_(list(ids)), self.Q.stage != STORED)
        elif failed:
            query = query.where(self.Q.stage == FAILED)
        else:
            return 0
        with self.store.atomic(immediate=True):
            return int(query.execute())

    def cancel(self, ids: Sequence[int]) -> int:
        """Unfinished items end ``failed`` with reason ``cancelled``; a worker holding one loses it."""
        now = utcnow()
        query = self.Q.update(
            stage=FAILED, reason="cancelled", last_error="cancelled by the user", lease_owner=None,
            lease_expires_at=None, finished_at=now, updated_at=now,
        ).where(self.Q.queue_id.in_(list(ids)), self.Q.stage.in_(ACTIVE_STAGES))  # fmt: skip
        with self.store.atomic(immediate=True):
            return int(query.execute())

    def set_priority(self, queue_id: int, priority: int) -> None:
        with self.store.atomic(immediate=True):
            if not self.Q.update(priority=priority).where(self.Q.queue_id == queue_id).execute():
                raise NotFoundError(f"no queue item {queue_id}")

    # ------------------------------------------------------------ worker side

    def claim(self, owner: str, n: int, *, exclude_platforms: frozenset[str] = frozenset()) -> list[QueueRow]:
        """Lease up to ``n`` claimable items (highest priority first) and count an attempt on each.

        ``exclude_platforms``: skip these platforms' items (the pipeline claims round-robin by platform).
        """
        if n <= 0:
            return []
        now = utcnow()
        Q = self.Q
        with self.store.atomic(immediate=True):
            candidates = (
                Q.select(Q.queue_id)
                .where(
                    Q.stage.in_(ACTIVE_STAGES),
                    Q.lease_owner.is_null() | (Q.lease_expires_at < now),
                    Q.retry_count < Q.max_retries,
                    Q.scheduled_at.is_null() | (Q.scheduled_at <= now),
                )
                .order_by(Q.priority.desc(), Q.queue_id)
                .limit(n)
            )
            if exclude_platforms:
                candidates = candidates.where(Q.platform.not_in(sorted(exclude_platforms)))
            if self.store.is_postgres:
                candidates = candidates.for_update(skip_locked=True)
            ids = [r.queue_id for r in candidates]
            if not ids:
                return []
            Q.update(
                lease_owner=owner,
                lease_expires_at=now + dt.timedelta(seconds=self.lease_seconds),
                heartbeat_at=now,
                retry_count=Q.retry_count + 1,
                updated_at=now,
            ).where(Q.queue_id.in_(ids)).execute()
            rows = Q.select().where(Q.queue_id.in_(ids)).order_by(Q.priority.desc(), Q.queue_id)
            return [_row(m) for m in rows]

    def _mine(self, queue_id: int, owner: str) -> Any:
        return (self.Q.queue_id == queue_id) & (self.Q.lease_owner == owner)

    def advance(self, queue_id: int, owner: str, stage: str, **fields: Any) -> bool:
        """Commit a stage transition (inside the caller's transaction if there is one).

        Returns False when this owner no longer holds the item (its lease was taken over, or
        the user cancelled it): the caller must drop the item.
        """
        values = {"stage": stage, "updated_at": utcnow(), **fields}
        if stage in FINAL_STAGES:
            values.update(lease_owner=None, lease_expires_at=None, finished_at=values["updated_at"])
        # Raw SQL: every item passes here four times, and peewee's query building costs more than the UPDATE.
        assignments = ", ".join(f"{name} = ?" for name in values)
        params = [v.isoformat(" ") if isinstance(v, dt.datetime) and not self.store.is_postgres else v
                  for v in values.values()] + [queue_id, owner]  # fmt: skip
        sql = f"UPDATE processing_queue SET {assignments} WHERE queue_id = ? AND lease_owner = ?"
        return self.store.execute(sql, params).rowcount > 0

    def fail(
        self,
        queue_id: int,
        owner: str,
        error: dict[str, str],
        stage: str,
        retry_after: float | None = None,
        refund: bool = False,
    ) -> tuple[bool, bool]:
        """Record a failed attempt. Returns (held, final): final means the item is now ``failed``.

        ``error`` is :func:`errors.describe` output; its ``kind`` decides how many attempts the
        item may use (:func:`errors.tries_allowed`): permanent errors fail at once, resource
        errors (the same bytes timed out, crashed or hit the memory cap) get one more try, the
        rest back off exponentially until ``max_retries``. ``refund`` (the platform is banned or
        rate limited: the item itself did nothing wrong) gives back the attempt the claim counted
        and never ends the item, which waits ``retry_after`` seconds (else the backoff) instead:
        an hour-long ban must not fail the whole queue.
        """
        m = self.Q.get_or_none(self._mine(queue_id, owner))
        if m is None:
            return False, False
        now = utcnow()
        attempts = m.retry_count or 0
        if refund:
            attempts = max(0, attempts - 1)
        kind = error.get("kind", "permanent")
        final = not refund and attempts >= tries_allowed(kind, m.max_retries or 0)
        values: dict[str, Any] = {
            "reason": error.get("reason", "internal_error"),
            "last_error": _failure_message(error, kind, attempts, final)[:2000],
            "error_stage": stage,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
            "retry_count": attempts,
        }
        if final:
            values.update(stage=FAILED, finished_at=now)
        else:
            delay = (
                retry_after
                if retry_after is not None
                else self.retry_backoff_s * 2 ** max(0, max(attempts, 1) - 1)
            )
            values["scheduled_at"] = now + dt.timedelta(seconds=delay)
        held = bool(self.Q.update(**values).where(self._mine(queue_id, owner)).execute())
        return held, final

    def release(self, ids: Sequence[int], owner: str, refund: bool = True) -> int:
        """Hand items back unfinished (shutdown, drain); ``refund`` returns the attempt the claim counted."""
        if not ids:
            return 0
        Q = self.Q
        values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None, "updated_at": utcnow()}
        if refund:
            values["retry_count"] = pw.Case(None, [(Q.retry_count > 0, Q.retry_count - 1)], 0)
        with self.store.atomic(immediate=True):
            return int(Q.update(**values).where(Q.queue_id.in_(list(ids)), Q.lease_owner == owner).execute())

    def heartbeat(self, owner: str) -> int:
        """Extend every lease this owner holds."""
        now = utcnow()
        expires = now + dt.timedelta(seconds=self.lease_seconds)
        with self.store.atomic(immediate=True):
            return int(
                self.Q.update(heartbeat_at=now, lease_expires_at=expires)
                .where(self.Q.lease_owner == owner, self.Q.stage.in_(ACTIVE_STAGES))
                .execute()
            )

    def reap(self) -> tuple[int, int]:
        """Free expired or orphaned leases uncharged; out-of-attempts items end ``failed``. Returns (freed, failed)."""
        freed, failed = self.reap_detailed()
        return freed, len(failed)

    def reap_detailed(self) -> tuple[int, list[QueueRow]]:
        """:meth:`reap`, returning the rows it failed (so the pipeline can report each one).

        A lease whose owner died (this host) or stopped heartbeating (its expiry passed) goes
        back to the queue with the attempt its claim counted refunded: the runner was killed,
        not the item's parser (that would have come back through :meth:`fail`).
        """
        Q = self.Q
        now = utcnow()
        freed = 0
        failed_ids: list[int] = []
        with self.store.atomic(immediate=True):
            leased = Q.select(Q.queue_id, Q.lease_owner, Q.lease_expires_at).where(
                Q.lease_owner.is_null(False), Q.stage.in_(ACTIVE_STAGES)
            )
            if self.store.is_postgres:
                leased = leased.for_update(skip_locked=True)
            for m in list(leased):
                expired = m.lease_expires_at is None or m.lease_expires_at < now
                if expired or _owner_dead(m.lease_owner):
                    freed += self._hand_back_lost(m.queue_id, m.lease_owner, now)
            # Attempts used up without a lease (limits lowered by hand): nothing would ever claim them.
            stuck = Q.lease_owner.is_null() & Q.stage.in_(ACTIVE_STAGES) & (Q.retry_count >= Q.max_retries)
            stuck_ids = [r.queue_id for r in Q.select(Q.queue_id).where(stuck)]
            if stuck_ids:
                Q.update(
                    stage=FAILED, reason=pw.fn.COALESCE(Q.reason, "retries_exhausted"), finished_at=now, updated_at=now,
                    error_stage=pw.fn.COALESCE(Q.error_stage, Q.stage),
                ).where(Q.queue_id.in_(stuck_ids), stuck).execute()
                failed_ids += stuck_ids
            rows = [_row(m) for m in Q.select().where(Q.queue_id.in_(failed_ids))] if failed_ids else []
        return freed, rows

    def _hand_back_lost(self, queue_id: int, owner: str, now: dt.datetime) -> int:
        """Free one lease of a lost runner and refund the attempt its claim counted."""
        Q = self.Q
        refunded = pw.Case(None, [(Q.retry_count > 0, Q.retry_count - 1)], 0)
        return int(
            Q.update(lease_owner=None, lease_expires_at=None, retry_count=refunded, updated_at=now,
                     reason="worker_lost", last_error=f"handed back uncharged: the runner holding it ({owner}) stopped")
            .where(Q.queue_id == queue_id, Q.lease_owner == owner)
            .execute()
        )  # fmt: skip

    def next_scheduled(self) -> dt.datetime | None:
        """When the earliest backed-off item becomes claimable (None when none waits)."""
        Q = self.Q
        return (
            Q.select(pw.fn.MIN(Q.scheduled_at))
            .where(Q.stage.in_(ACTIVE_STAGES), Q.lease_owner.is_null(), Q.scheduled_at.is_null(False))
            .scalar()
        )
