"""Curation: a person's decisions on stored snapshots, their history, and undo.

A snapshot is *accepted*, *rejected* (with a reason) or *unreviewed*; it may carry a label set by
a person (``human``) or confirmed from a few-shot class (``few_shot``), and free tags. These live
on the ``snapshots`` row (schema v5, :mod:`.migrations`): ``label`` is the label the snapshot goes
by, a person's when set, so every filter, count, index and export reads it as it is; a later
``classify`` rewrites only the model's rows (``write_predictions`` keeps ``human_label``). A
person's tags are ``snapshot_tags`` rows of source ``human``.

Every change is one ``review_actions`` row (what, who, when) and one ``review_history`` row per
snapshot and field with the value before and after. :meth:`Review.undo` writes the values from
before an action back, as a new action that is itself recorded.

Writes are small, independent transactions (at most :data:`CHUNK` snapshots each, SQLite's write
lock taken at BEGIN and waited for up to the busy timeout), so a review in the app interleaves
with the pipeline's single writer thread instead of holding it off for a whole bulk action.
"""

from __future__ import annotations

import datetime as dt
import getpass
import heapq
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import peewee as pw

from ..errors import Destill3DError, NotFoundError
from .db import Store, utcnow
from .filters import SnapshotFilter
from .provenance import BEST_GUESS_SQL

DECISIONS = ("accepted", "rejected")
REJECT_REASONS = ("broken geometry", "off-topic", "duplicate", "licence", "low quality", "other")
"""The short list a curator picks from (any other text is kept as typed)."""
LABEL_SOURCES = ("human", "few_shot")
FIELDS = ("review", "label", "tags")
CHUNK = 200
"""Snapshots per write transaction: a bulk action over a whole query never holds the lock long."""
UNKNOWN_LABEL = "unknown"
QUALITY_FIRED = ('"empty":true', '"too_simple":true', '"non_manifold":true')
"""Quality flags (``snapshots.quality_flags``, compact JSON) that send a snapshot to a person."""


class ReviewError(Destill3DError):
    """A review request that cannot mean anything (no label, an unknown decision, nothing to undo)."""

    reason = "review_invalid"


def reviewer_name(configured: str | None = None) -> str:
    """Who is deciding: the configured ``review.user`` (``DESTILL3D_REVIEW__USER``), else the OS user."""
    if configured and configured.strip():
        return configured.strip()
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (containers): still record something true
        return f"uid {os.getuid()}"


# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class ReviewState:
    """A snapshot's curation as stored."""

    snapshot_id: str
    decision: str | None  # None: unreviewed
    reason: str | None
    label: str | None  # the label it goes by (a person's when set)
    human_label: str | None
    label_source: str  # human | few_shot | model
    tags: tuple[str, ...]  # a person's tags
    reviewed_by: str | None
    reviewed_at: dt.datetime | None
    best_guess: str | None = None  # beside an ``unknown`` label: the model's top real label

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["tags"] = list(self.tags)
        out["reviewed_at"] = self.reviewed_at.isoformat(" ", "seconds") if self.reviewed_at else None
        return out


@dataclass
class ActionResult:
    """What one action did: its id (None when nothing changed), changed and unchanged snapshots."""

    kind: str
    action_id: int | None
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    undo_of: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.kind, "action_id": self.action_id, "changed": len(self.changed),
                "unchanged": self.unchanged, "undo_of": self.undo_of, "snapshot_ids": self.changed}  # fmt: skip


@dataclass(frozen=True)
class HistoryEntry:
    history_id: int
    action_id: int
    kind: str
    snapshot_id: str
    field: str
    old: Any
    new: Any
    actor: str
    at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["at"] = self.at.isoformat(" ", "seconds") if self.at else None
        return out


@dataclass(frozen=True)
class ReviewItem:
    """One snapshot in the review order and why it is there."""

    snapshot_id: str
    why: str  # unknown | duplicate | quality | uncertain | unlabelled
    label: str | None
    confidence: float | None
    cluster: int | None = None  # near-duplicate cluster number (the first member is the one kept)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def clean_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags as the filters compare them: trimmed, lower-case, no empties, sorted, once each."""
    return tuple(sorted({t.strip().lower() for t in tags if t and t.strip()}))


# ---------------------------------------------------------------- the store function


class Review:
    """Decisions, labels and tags on one database, each change recorded and undoable.

    Safe from any thread (the store's connections are per thread); usable by the CLI and the app.
    """

    def __init__(self, store: Store, user: str | None = None) -> None:
        self.store = store
        self.user = reviewer_name(user)

    # ------------------------------------------------------------ reading

    def states(self, snapshot_ids: Sequence[str]) -> dict[str, ReviewState]:
        """The stored curation of these snapshots (unknown ids are left out)."""
        out: dict[str, ReviewState] = {}
        for chunk in _chunks(list(dict.fromkeys(snapshot_ids)), 500):
            rows = self.store.execute(
                "SELECT snapshot_id, review, review_reason, label, human_label, label_source, reviewed_by, "
                f"reviewed_at, {BEST_GUESS_SQL} FROM snapshots WHERE snapshot_id IN ({_marks(len(chunk))})",
                list(chunk)).fetchall()  # fmt: skip
            tags = self._human_tags(chunk)
            for sid, decision, reason, label, human, source, by, at, guess in rows:
                out[sid] = ReviewState(sid, decision, reason, label, human, source or "model",
                                       tags.get(sid, ()), by, _time(at), guess)  # fmt: skip
        return out

    def state(self, snapshot_id: str) -> ReviewState:
        found = self.states([snapshot_id]).get(snapshot_id)
        if found is None:
            raise NotFoundError(f"no snapshot {snapshot_id!r}")
        return found

    def _human_tags(self, ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        rows = self.store.execute(
            "SELECT st.snapshot_id, tg.tag_name FROM snapshot_tags st JOIN tags tg ON tg.tag_id = st.tag_id "
            f"WHERE st.source = 'human' AND st.snapshot_id IN ({_marks(len(ids))})", list(ids)).fetchall()
        grouped: dict[str, list[str]] = {}
        for sid, name in rows:
            grouped.setdefault(sid, []).append(name)
        return {sid: clean_tags(names) for sid, names in grouped.items()}

    def ids(self, flt: SnapshotFilter | None = None, limit: int | None = None) -> list[str]:
        """Every snapshot id the filter selects (the WHERE of ``db query``), newest first."""
        from .service import where_sql

        where, params = where_sql(self.store, SnapshotFilter.coerce(flt))
        sql = f"SELECT snapshot_id FROM snapshots WHERE {where} ORDER BY processed_at DESC, snapshot_id"
        if limit is not None:
            sql, params = sql + " LIMIT ?", [*params, int(limit)]
        return [r[0] for r in self.store.execute(sql, params).fetchall()]

    def labels_in_use(self, prefix: str = "", limit: int = 200) -> list[str]:
        """Labels the collection already goes by (people's and models'), most used first."""
        rows = self.store.execute(
            "SELECT label, COUNT(*) FROM snapshots WHERE label IS NOT NULL AND LOWER(label) LIKE ? "
            "GROUP BY label ORDER BY COUNT(*) DESC, label LIMIT ?", (prefix.lower() + "%", int(limit))).fetchall()
        return [r[0] for r in rows]

    def history(self, snapshot_id: str | None = None, limit: int = 50) -> list[HistoryEntry]:
        """Recorded changes, newest first (of one snapshot, or of all)."""
        where, params = ("WHERE h.snapshot_id = ?", [snapshot_id]) if snapshot_id else ("", [])
        rows = self.store.execute(
            "SELECT h.history_id, h.action_id, a.kind, h.snapshot_id, h.field, h.old_value, h.new_value, h.actor, h.at "
            f"FROM review_history h JOIN review_actions a ON a.action_id = h.action_id {where} "
            "ORDER BY h.history_id DESC LIMIT ?", [*params, int(limit)]).fetchall()
        return [HistoryEntry(int(r[0]), int(r[1]), r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]), r[7],
                             _time(r[8])) for r in rows]  # fmt: skip

    def summary(self) -> dict[str, int]:
        """Counts for cards and status lines: reviewed, accepted, rejected, labels by source."""
        row = self.store.execute(
            "SELECT COUNT(review), SUM(CASE WHEN review = 'accepted' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN review = 'rejected' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN label_source = 'human' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN label_source = 'few_shot' THEN 1 ELSE 0 END) FROM snapshots").fetchone()
        return {"reviewed": int(row[0] or 0), "accepted": int(row[1] or 0), "rejected": int(row[2] or 0),
                "human_labels": int(row[3] or 0), "few_shot_labels": int(row[4] or 0)}  # fmt: skip

    # ------------------------------------------------------------ deciding

    def accept(self, snapshot_ids: Sequence[str]) -> ActionResult:
        return self._change("accept", snapshot_ids, "review", lambda _: {"decision": "accepted", "reason": None})

    def reject(self, snapshot_ids: Sequence[str], reason: str) -> ActionResult:
        why = (reason or "").strip()
        if not why:
            raise ReviewError("a rejection needs a reason: " + ", ".join(REJECT_REASONS) + " or your own words")
        return self._change("reject", snapshot_ids, "review", lambda _: {"decision": "rejected", "reason": why},
                            detail=why)  # fmt: skip

    def unreview(self, snapshot_ids: Sequence[str]) -> ActionResult:
        """Back to unreviewed (the decision is cleared, recorded like any other change)."""
        return self._change("unreview", snapshot_ids, "review", lambda _: {"decision": None, "reason": None})

    def set_label(self, snapshot_ids: Sequence[str], label: str | None, source: str = "human") -> ActionResult:
        """A person's label (``source`` few_shot: confirmed from a few-shot class); None clears it."""
        text = (label or "").strip() or None
        if source not in LABEL_SOURCES:
            raise ReviewError(f"label source must be one of {', '.join(LABEL_SOURCES)}, not {source!r}")
        value = {"label": text, "source": source if text else None}
        return self._change("label" if text else "unlabel", snapshot_ids, "label", lambda _: value, detail=text)

    def tag(self, snapshot_ids: Sequence[str], tags: Iterable[str]) -> ActionResult:
        add = clean_tags(tags)
        if not add:
            raise ReviewError("no tag given")
        return self._change("tag", snapshot_ids, "tags", lambda old: sorted({*old, *add}), detail=",".join(add))

    def untag(self, snapshot_ids: Sequence[str], tags: Iterable[str]) -> ActionResult:
        drop = set(clean_tags(tags))
        if not drop:
            raise ReviewError("no tag given")
        return self._change("untag", snapshot_ids, "tags", lambda old: sorted(set(old) - drop),
                            detail=",".join(sorted(drop)))  # fmt: skip

    def undo(self, action_id: int | None = None, *, any_user: bool = False) -> ActionResult:
        """Write back the values from before an action (default: this user's latest not yet undone).

        The undo is an action of its own (kind ``undo``, ``undo_of`` the action), so it is in the
        history too; undoing again steps further back, never re-does.
        """
        target = self._undo_target(action_id, any_user)
        rows = self.store.execute(
            "SELECT snapshot_id, field, old_value FROM review_history WHERE action_id = ? ORDER BY history_id",
            (target,)).fetchall()
        before: dict[tuple[str, str], Any] = {}
        for sid, name, old in rows:  # the earliest row of a (snapshot, field) holds the value before the action
            before.setdefault((sid, name), json.loads(old))
        result = ActionResult("undo", None, undo_of=target)
        items = list(before.items())
        for start in range(0, len(items), CHUNK):
            part = items[start : start + CHUNK]
            with self.store.atomic(immediate=True):
                if result.action_id is None:
                    result.action_id = self._new_action("undo", str(target), undo_of=target)
                    self.store.execute("UPDATE review_actions SET undone_by = ? WHERE action_id = ?",
                                       (result.action_id, target))  # fmt: skip
                current = self._read(self.store, [sid for (sid, _), _ in part], {name for (_, name), _ in part})
                live = [(sid, name, value) for (sid, name), value in part if sid in current]  # not deleted since
                self._write_many([(sid, name, current[sid][name], value) for sid, name, value in live],
                                 result.action_id)  # fmt: skip
                for sid, _, _ in live:
                    if sid not in result.changed:
                        result.changed.append(sid)
            self._count(result)
        return result

    def _undo_target(self, action_id: int | None, any_user: bool) -> int:
        if action_id is not None:
            row = self.store.execute("SELECT action_id, undone_by FROM review_actions WHERE action_id = ?",
                                     (int(action_id),)).fetchone()  # fmt: skip
            if row is None:
                raise ReviewError(f"no review action {action_id}")
            if row[1] is not None:
                raise ReviewError(f"review action {action_id} was already undone (by action {row[1]})")
            return int(row[0])
        who, params = ("", []) if any_user else ("AND actor = ?", [self.user])
        row = self.store.execute(
            f"SELECT action_id FROM review_actions WHERE undone_by IS NULL AND undo_of IS NULL {who} "
            "ORDER BY action_id DESC LIMIT 1", params).fetchone()
        if row is None:
            raise ReviewError("nothing to undo" + ("" if any_user else f" by {self.user}"))
        return int(row[0])

    # ------------------------------------------------------------ the one write path

    def _change(self, kind: str, snapshot_ids: Sequence[str], name: str, new_of: Callable[[Any], Any],
                detail: str | None = None) -> ActionResult:  # fmt: skip
        """Apply ``new_of(old)`` to one field of each snapshot; record what changed under one action."""
        ids = list(dict.fromkeys(snapshot_ids))
        if not ids:
            raise ReviewError("no snapshots given")
        result = ActionResult(kind, None)
        missing: list[str] = []
        for chunk in _chunks(ids):
            with self.store.atomic(immediate=True):
                current = self._read(self.store, chunk, {name})
                missing += [sid for sid in chunk if sid not in current]
                changes = []
                for sid in chunk:
                    if sid not in current:
                        continue
                    old = current[sid][name]
                    new = new_of(old)
                    if new == old:
                        result.unchanged += 1
                    else:
                        changes.append((sid, name, old, new))
                if changes:
                    if result.action_id is None:
                        result.action_id = self._new_action(kind, detail)
                    self._write_many(changes, result.action_id)
                    result.changed += [c[0] for c in changes]
            self._count(result)
        if missing and not result.changed and not result.unchanged:
            raise NotFoundError(f"no snapshot {missing[0]!r}")
        result.unchanged += len(missing)
        return result

    def _count(self, result: ActionResult) -> None:
        if result.action_id is not None:
            # immediate, as this class's other writes: the write lock is taken at BEGIN and waited for up
            # to the busy timeout (this deferred one failed with "database is locked" once in CI, in
            # tests/store/test_review beside a writer thread)
            with self.store.atomic(immediate=True):
                self.store.execute("UPDATE review_actions SET snapshots = ? WHERE action_id = ?",
                                   (len(result.changed), result.action_id))  # fmt: skip

    def _new_action(self, kind: str, detail: str | None, undo_of: int | None = None) -> int:
        row = self.store.execute(
            "INSERT INTO review_actions (kind, actor, at, detail, undo_of) VALUES (?, ?, ?, ?, ?) RETURNING action_id",
            (kind, self.user, self._now(), detail, undo_of)).fetchone()
        return int(row[0])

    def _now(self) -> Any:
        now = utcnow()
        return now if self.store.is_postgres else now.isoformat(" ")

    @staticmethod
    def _read(store: Store, ids: Sequence[str], names: set[str]) -> dict[str, dict[str, Any]]:
        """Current values of the named fields, in the form the history stores."""
        rows = store.execute(
            f"SELECT snapshot_id, review, review_reason, human_label, label_source FROM snapshots "
            f"WHERE snapshot_id IN ({_marks(len(ids))})", list(ids)).fetchall()
        out = {sid: {"review": {"decision": d, "reason": r}, "label": {"label": h, "source": s}}
               for sid, d, r, h, s in rows}  # fmt: skip
        if "tags" in names and out:
            tagged = Review(store, "-")._human_tags(list(out))
            for sid in out:
                out[sid]["tags"] = list(tagged.get(sid, ()))
        return out

    _SET_REVIEW = ("UPDATE snapshots SET review = ?, review_reason = ?, reviewed_by = ?, reviewed_at = ? "
                   "WHERE snapshot_id = ?")
    # no person's label: the snapshot goes by its model's top prediction again
    _SET_LABEL = ("UPDATE snapshots SET human_label = ?, label_source = ?, reviewed_by = ?, reviewed_at = ?, "
                  "label = COALESCE(?, (SELECT c.label FROM classifications c "
                  "WHERE c.snapshot_id = snapshots.snapshot_id AND c.model_id = snapshots.label_model AND c.rank = 1 "
                  "ORDER BY c.classified_at DESC, c.classification_id DESC LIMIT 1)) WHERE snapshot_id = ?")
    _SET_TOUCHED = "UPDATE snapshots SET reviewed_by = ?, reviewed_at = ? WHERE snapshot_id = ?"
    _HISTORY = ("INSERT INTO review_history (action_id, snapshot_id, field, old_value, new_value, actor, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)")

    def _write_many(self, changes: Sequence[tuple[str, str, Any, Any]], action_id: int) -> None:
        """Write (snapshot, field, old, new) changes and their history rows: one statement per kind
        for the whole chunk (executemany), so a bulk action costs few round trips on PostgreSQL."""
        now, user = self._now(), self.user
        review = [(n["decision"], n["reason"], user, now, sid) for sid, f, _, n in changes if f == "review"]
        label = [(n["label"], n["source"], user, now, n["label"], sid) for sid, f, _, n in changes if f == "label"]
        for sid, f, _, n in changes:
            if f == "tags":
                self._write_tags(sid, list(n))
        touched = [(user, now, sid) for sid, f, _, _ in changes if f == "tags"]
        history = [(action_id, sid, f, json.dumps(o), json.dumps(n), user, now) for sid, f, o, n in changes]
        for sql, rows in ((self._SET_REVIEW, review), (self._SET_LABEL, label), (self._SET_TOUCHED, touched),
                          (self._HISTORY, history)):  # fmt: skip
            self._executemany(sql, rows)

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            cursor = self.store.database.cursor()
            with pw.__exception_wrapper__:  # driver errors as peewee's, as store.execute raises them
                cursor.executemany(sql.replace("?", "%s") if self.store.is_postgres else sql, rows)

    def _write_tags(self, sid: str, names: list[str]) -> None:
        self.store.execute("DELETE FROM snapshot_tags WHERE snapshot_id = ? AND source = 'human'", (sid,))
        for name in names:
            self.store.execute("INSERT INTO tags (tag_name) VALUES (?) ON CONFLICT (tag_name) DO NOTHING", (name,))
            self.store.execute(
                "INSERT INTO snapshot_tags (snapshot_id, tag_id, source, confidence) "
                "SELECT ?, tag_id, 'human', NULL FROM tags WHERE tag_name = ?", (sid, name))

    # ------------------------------------------------------------ what to review first

    def order(self, flt: SnapshotFilter | None = None, limit: int = 200,
              clusters: Sequence[Sequence[str]] | None = None) -> list[ReviewItem]:  # fmt: skip
        """Unreviewed snapshots in the order that pays, each once, with why it is there.

        1. the model said ``unknown`` (least confident first); 2. near-duplicate clusters, members
        together (``clusters`` from the duplicates finder; the first is the one to keep); 3. quality
        flags fired (empty, too simple, non-manifold); 4. the rest by the model's confidence,
        lowest first; 5. never classified.
        """
        from .service import where_sql

        where, params = where_sql(self.store, SnapshotFilter.coerce(flt).merged(review="unreviewed"))
        seen: set[str] = set()
        out: list[ReviewItem] = []

        def take(why: str, rows: Iterable[Sequence[Any]], cluster: int | None = None) -> None:
            for sid, label, conf in rows:
                if sid not in seen and len(out) < limit:
                    seen.add(sid)
                    out.append(ReviewItem(sid, why, label, None if conf is None else float(conf), cluster))

        def select(cond: str, args: Sequence[Any], order: str) -> list[Sequence[Any]]:
            return self.store.execute(
                f"SELECT snapshot_id, label, confidence FROM snapshots WHERE ({where}) AND {cond} "
                f"ORDER BY {order}, snapshot_id LIMIT ?", [*params, *args, limit]).fetchall()

        take("unknown", select("label_source IS NULL AND LOWER(label) = ?", [UNKNOWN_LABEL], "confidence"))
        for number, members in enumerate(clusters or ()):
            if len(out) >= limit:
                break
            found = {r[0]: r for r in self._rows_of(list(members), where, params)}
            if len(found) > 1:  # a cluster with one unreviewed member left needs no decision
                take("duplicate", [found[m] for m in members if m in found], number)
        fired = " OR ".join("quality_flags LIKE ?" for _ in QUALITY_FIRED)
        take("quality", select(f"({fired})", [f"%{q}%" for q in QUALITY_FIRED], "processed_at DESC"))
        take("uncertain", select("label IS NOT NULL", [], "confidence"))
        take("unlabelled", select("label IS NULL", [], "processed_at DESC"))
        return out

    def _rows_of(self, ids: list[str], where: str, params: list[Any]) -> list[Sequence[Any]]:
        return self.store.execute(
            f"SELECT snapshot_id, label, confidence FROM snapshots WHERE ({where}) AND snapshot_id IN "
            f"({_marks(len(ids))})", [*params, *ids]).fetchall()

    # ------------------------------------------------------------ teaching from examples

    def examples_space(self, snapshot_ids: Sequence[str]) -> tuple[str, np.ndarray]:
        """(embedding model, (k, E) embeddings) of example snapshots; all must share one model."""
        marks = _marks(len(snapshot_ids))
        rows = self.store.execute(
            f"SELECT snapshot_id, model_id, embedding FROM embeddings WHERE snapshot_id IN ({marks})",
            list(snapshot_ids)).fetchall()
        if len(rows) < len(set(snapshot_ids)):
            have = {r[0] for r in rows}
            lacking = [s for s in snapshot_ids if s not in have]
            raise ReviewError(f"{len(lacking)} example(s) have no classifier embedding (classify them first): "
                              + ", ".join(s[:12] for s in lacking[:5]))  # fmt: skip
        models = {r[1] for r in rows}
        if len(models) != 1:
            raise ReviewError(f"the examples were embedded by different models ({', '.join(sorted(models))})")
        return models.pop(), np.stack([np.frombuffer(bytes(r[2]), "<f4") for r in rows])

    def nearest(self, vector: np.ndarray, model_id: str, k: int = 20, exclude: Iterable[str] = (),
                min_similarity: float = 0.0) -> list[tuple[str, float]]:  # fmt: skip
        """The ``k`` snapshots without a person's label and not rejected closest to ``vector``.

        Cosine similarity over the ``embeddings`` rows of ``model_id``, read in batches with a
        running top-k (memory stays at one batch whatever the collection's size).
        """
        query = unit(np.asarray(vector, np.float32).reshape(-1))
        skip = set(exclude)
        best: list[tuple[float, str]] = []
        after = ""
        while True:
            rows = self.store.execute(
                "SELECT e.snapshot_id, e.embedding FROM embeddings e JOIN snapshots s ON s.snapshot_id = e.snapshot_id "
                "WHERE e.model_id = ? AND e.snapshot_id > ? AND s.label_source IS NULL "
                "AND (s.review IS NULL OR s.review <> 'rejected') ORDER BY e.snapshot_id LIMIT 2000",
                (model_id, after)).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            keep = [r for r in rows if r[0] not in skip]
            if keep:
                bank = unit(np.stack([np.frombuffer(bytes(r[1]), "<f4") for r in keep]))
                for (sid, _), score in zip(keep, bank @ query, strict=True):
                    if score >= min_similarity:
                        item = (float(score), sid)
                        if len(best) < k:
                            heapq.heappush(best, item)
                        elif item > best[0]:
                            heapq.heapreplace(best, item)
        return [(sid, score) for score, sid in sorted(best, reverse=True)]


def unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (the few-shot prototypes' own normalisation)."""
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def prototype(embeddings: np.ndarray) -> np.ndarray:
    """The few-shot prototype of examples: the unit mean of their unit embeddings (classify/fewshot.build)."""
    return unit(unit(np.asarray(embeddings, np.float32)).mean(axis=0))
