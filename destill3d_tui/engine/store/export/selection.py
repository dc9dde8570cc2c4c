"""Which snapshots an export writes, in which split, under which label: one keyset scan of the
metadata columns (no snapshot blobs), kept as compact arrays so memory stays near 20 bytes per
selected object whatever the collection's size.

Rows are read in the table's key order in batches (``WHERE key > last ORDER BY key LIMIT n``,
never OFFSET): SQLite's ``rowid`` (the order rows lie in the file, so blob reads are
sequential), PostgreSQL's ``snapshot_id`` (its primary-key index). The filter is the one
:func:`..service.where_sql` builds for ``db query`` / ``db count``.

An object is identified by the first 64 bits of the SHA-256 of its snapshot id
(:func:`id_hash`): the same key :func:`.common.split_key` orders splits by, so the
vectorised split here equals :func:`.common.assign_splits`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import common

if TYPE_CHECKING:
    from ..db import Store

SCAN_BATCH = 5000
"""Metadata rows per keyset query (a few hundred KB of rows: few round trips, small memory)."""

META_COLUMNS = ("snapshot_id", "platform", "license", "license_spdx", "license_flags", "point_count", "label",
                "confidence", "review", "label_source")  # fmt: skip
REJECTED = "rejected in review"
"""The skipped-reason of snapshots a curator rejected (left out unless the filter asks for them)."""


def scan_key(store: Store) -> str:
    """The column exports page by: SQLite's rowid (storage order), else the primary key."""
    return "snapshot_id" if store.is_postgres else "rowid"


def keyset(store: Store, columns: str, where: str, params: list[Any], batch: int,
           after: Any = None, through: Any = None) -> Iterator[list[tuple]]:  # fmt: skip
    """Batches of ``(key, *columns)`` rows matching ``where``, in key order, after ``after`` and up
    to ``through`` (None: no bound)."""
    key = scan_key(store)
    while True:
        cond, args = f"({where})", list(params)
        if after is not None:
            cond, args = f"{cond} AND {key} > ?", [*args, after]
        if through is not None:
            cond, args = f"{cond} AND {key} <= ?", [*args, through]
        sql = f"SELECT {key}, {columns} FROM snapshots WHERE {cond} ORDER BY {key} LIMIT ?"
        rows = store.execute(sql, [*args, batch]).fetchall()
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        after = rows[-1][0]


def rows_by_key(store: Store, columns: str, where: str, params: list[Any], keys: list[Any]) -> list[tuple]:
    """The ``(key, *columns)`` rows of ``keys`` that still match ``where``, in key order (one query;
    on SQLite a rowid lookup per key, as fast a row as the keyset scan's)."""
    key = scan_key(store)
    marks = ",".join("?" * len(keys))
    sql = f"SELECT {key}, {columns} FROM snapshots WHERE ({where}) AND {key} IN ({marks}) ORDER BY {key}"
    return store.execute(sql, [*params, *keys]).fetchall() if keys else []


def id_hash(snapshot_id: str) -> int:
    """The first 64 bits of SHA-256(snapshot id), big-endian: orders like :func:`.common.split_key`."""
    return int.from_bytes(hashlib.sha256(snapshot_id.encode()).digest()[:8], "big")


@dataclass
class Selection:
    """The objects an export writes, sorted by :func:`id_hash` for lookup during the write scan."""

    matched: int
    hashes: np.ndarray  # (n,) uint64, sorted
    labels: np.ndarray  # (n,) int32 into label_names
    splits: np.ndarray  # (n,) int8 into common.SPLIT_NAMES
    confidence: np.ndarray  # (n,) float64, NaN where none
    label_names: list[str]
    points: int
    skipped: Counter[str] = field(default_factory=Counter)
    label_sources: Counter[str] = field(default_factory=Counter)  # human | few_shot | model | none -> objects
    reviewed: int = 0  # selected objects a person accepted (rejected ones are left out or asked for)

    @property
    def count(self) -> int:
        return int(self.hashes.size)

    def split_counts(self) -> dict[str, int]:
        counts = np.bincount(self.splits, minlength=3)
        return {name: int(counts[i]) for i, name in enumerate(common.SPLIT_NAMES) if counts[i]}

    def position(self, snapshot_id: str) -> int | None:
        """Where a snapshot sits in the arrays, or None when the export leaves it out."""
        h = np.uint64(id_hash(snapshot_id))
        i = int(np.searchsorted(self.hashes, h))
        return i if i < self.hashes.size and self.hashes[i] == h else None

    def positions(self, snapshot_ids: list[str]) -> np.ndarray:
        """:meth:`position` of a batch at once: (n,) int64, -1 where the export leaves one out."""
        if not snapshot_ids or not self.hashes.size:
            return np.full(len(snapshot_ids), -1, np.int64)
        h = np.fromiter(map(id_hash, snapshot_ids), np.uint64, len(snapshot_ids))
        i = np.minimum(np.searchsorted(self.hashes, h), self.hashes.size - 1)
        return np.where(self.hashes[i] == h, i, -1).astype(np.int64)

    def save(self, path: Path) -> None:
        facts = {"matched": self.matched, "label_names": self.label_names, "points": self.points,
                 "skipped": dict(self.skipped), "label_sources": dict(self.label_sources),
                 "reviewed": self.reviewed}  # fmt: skip
        with path.open("wb") as handle:
            np.savez(handle, hashes=self.hashes, labels=self.labels, splits=self.splits,
                     confidence=self.confidence, facts=np.array(json.dumps(facts)))  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> Selection:
        with np.load(path, allow_pickle=False) as d:
            facts = json.loads(str(d["facts"]))
            return cls(matched=facts["matched"], hashes=d["hashes"], labels=d["labels"], splits=d["splits"],
                       confidence=d["confidence"], label_names=facts["label_names"], points=facts["points"],
                       skipped=Counter(facts["skipped"]), label_sources=Counter(facts.get("label_sources", {})),
                       reviewed=int(facts.get("reviewed", 0)))  # fmt: skip


class _Gather:
    """Accepted rows as compact columns while the scan runs."""

    def __init__(self, keep_ids: bool) -> None:
        self.hashes = array("Q")
        self.labels = array("i")
        self.points = array("i")
        self.confidence = array("d")
        self.codes: dict[str, int] = {}
        self.ids: list[str] | None = [] if keep_ids else None
        self.sources = array("b")  # index into LABEL_SOURCES, per object (a point count may drop it later)
        self.reviewed = array("b")

    def add(self, sid: str, label: str, points: int, confidence: float | None, source: str = "none",
            reviewed: bool = False) -> None:  # fmt: skip
        self.sources.append(LABEL_SOURCES.index(source))
        self.reviewed.append(int(reviewed))
        self.hashes.append(id_hash(sid))
        self.labels.append(self.codes.setdefault(label, len(self.codes)))
        self.points.append(points)
        self.confidence.append(np.nan if confidence is None else float(confidence))
        if self.ids is not None:
            self.ids.append(sid)

    def extend(self, rows: list[tuple[str, str, int, float | None, str, bool]]) -> None:
        """:meth:`add` for a batch of (sid, label, points, confidence, source, reviewed) tuples."""
        if not rows:
            return
        sids, labels, points, confidences, sources, reviewed = zip(*rows, strict=True)
        self.sources.extend(map(LABEL_SOURCES.index, sources))
        self.reviewed.extend(map(int, reviewed))
        self.hashes.extend(map(id_hash, sids))
        codes = self.codes
        self.labels.extend([codes.setdefault(label, len(codes)) for label in labels])
        self.points.extend(points)
        self.confidence.extend([np.nan if c is None else float(c) for c in confidences])
        if self.ids is not None:
            self.ids.extend(sids)


class _Policy:
    """The licence policy, remembered per distinct licence (a collection has few)."""

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self._seen: dict[tuple, str | None] = {}

    def refusal(self, row: dict[str, Any]) -> str | None:
        key = (row["license"], row["license_spdx"], row["license_flags"], row["platform"] == "local")
        if key not in self._seen:
            self._seen[key] = common.license_refusal(row, self.policy)
        return self._seen[key]


LABEL_SOURCES = ("human", "few_shot", "model", "none")
"""Whose label an exported object carries (the card counts them)."""


def label_source(row: dict[str, Any], taxonomy: str | None) -> str:
    """human / few_shot: a person's label (it wins over any model's); model; none (unlabelled)."""
    if row.get("label_source") in ("human", "few_shot"):
        return str(row["label_source"])
    return "model" if row.get("label") else "none"


def taxonomy_labels(store: Store, taxonomy: str, ids: list[str]) -> dict[str, tuple[str, float]]:
    """snapshot_id -> (label, confidence) of its latest rank-1 classification in ``taxonomy``."""
    marks = ",".join("?" * len(ids))
    cursor = store.execute(
        f"SELECT snapshot_id, label, confidence FROM classifications WHERE taxonomy = ? AND rank = 1 "
        f"AND snapshot_id IN ({marks}) ORDER BY classified_at, classification_id",
        [taxonomy, *ids],
    )
    return {sid: (label, conf) for sid, label, conf in cursor.fetchall()}


def select(
    store: Store, where: str, params: list[Any], *, taxonomy: str | None, policy: str,
    fractions: tuple[float, float, float], groups: dict[str, str] | None = None, keep_rejected: bool = False,
) -> Selection:  # fmt: skip
    """Filter -> review -> licence policy -> label -> one point count -> stratified splits.

    A snapshot a curator rejected is left out (counted under :data:`REJECTED`) unless
    ``keep_rejected`` (a filter asking for ``review=rejected``). A person's label wins over the
    model's, in the chosen taxonomy too: a taxonomy only relabels what no person labelled.
    """
    gather = _Gather(keep_ids=groups is not None)
    rules = _Policy(policy)
    skipped: Counter[str] = Counter()
    matched = 0
    for batch in keyset(store, ", ".join(META_COLUMNS), where, params, SCAN_BATCH):
        rows = [dict(zip(META_COLUMNS, r[1:], strict=True)) for r in batch]
        matched += len(rows)
        if taxonomy:
            relabel = taxonomy_labels(store, taxonomy, [r["snapshot_id"] for r in rows])
            for row in rows:
                if row["label_source"] not in ("human", "few_shot"):
                    row["label"], row["confidence"] = relabel.get(row["snapshot_id"], (None, None))
        kept = []
        for row in rows:
            refusal = rules.refusal(row)
            if row["review"] == "rejected" and not keep_rejected:
                skipped[REJECTED] += 1
            elif refusal:
                skipped[f"licence ({policy}): {refusal}"] += 1
            elif taxonomy and not row["label"]:
                skipped["no label in the chosen taxonomy"] += 1
            else:
                kept.append((row["snapshot_id"], row["label"] or common.UNLABELLED, int(row["point_count"] or 0),
                             row["confidence"], label_source(row, taxonomy), row["review"] is not None))  # fmt: skip
        gather.extend(kept)
    return _finish(gather, matched, skipped, fractions, groups)


PLAN_COLUMNS = ("review", "platform", "license_spdx", "license", "point_count", "license_flags")
"""What :func:`tally` groups by: schema v6's idx_snapshots_export_plan, in its order."""
PLAN_FILTERS = frozenset({"platform", "review", "license"})
"""The :class:`SnapshotFilter` fields whose conditions read only :data:`PLAN_COLUMNS` (``covered``)."""


def tally_sql(where: str, covered: bool) -> str:
    """The GROUP BY :func:`tally` runs.

    ``covered`` (the filter reads only :data:`PLAN_COLUMNS`): grouped in the index's order, the
    groups stream off the covering index (13 ms at 100,000). Otherwise the grouping is by
    expressions, which no index orders, so the planner picks the filter's own index (a label's:
    44 ms at 100,000) instead of walking the covering index and reading each row for the filter
    (330 ms).
    """
    keys = ", ".join(PLAN_COLUMNS if covered else (f"COALESCE({c}, {c})" for c in PLAN_COLUMNS))
    return f"SELECT {keys}, COUNT(*) FROM snapshots WHERE ({where}) GROUP BY {keys}"


def tally(store: Store, where: str, params: list[Any], *, policy: str, keep_rejected: bool = False,
          covered: bool = False) -> tuple[int, int, Counter[str]]:  # fmt: skip
    """``(matched, count, skipped)`` of :func:`select` with no taxonomy, counted by the database.

    One ``GROUP BY`` over the few columns the decision reads (review, licence, local or not, point
    count): a collection has a handful of distinct groups, so the licence policy runs once per group
    and no row comes into Python. The export dialog asks this while the curator looks at it; the
    row-by-row scan held the interpreter for 1.3-1.9 s at 100,000 snapshots (issue 15), where
    SQLite's step releases it; with the covering index the unfiltered count takes 13 ms, not 761.
    """
    rules = _Policy(policy)
    skipped: Counter[str] = Counter()
    kept: Counter[int] = Counter()  # point count -> objects that passed review and policy
    matched = 0
    for review, platform, spdx, lic, points, flags, n in store.execute(tally_sql(where, covered), params).fetchall():
        matched += n
        refusal = rules.refusal({"license": lic, "license_spdx": spdx, "license_flags": flags, "platform": platform})
        if review == "rejected" and not keep_rejected:
            skipped[REJECTED] += n
        elif refusal:
            skipped[f"licence ({policy}): {refusal}"] += n
        else:
            kept[int(points or 0)] += n
    if not kept:
        return matched, 0, skipped
    # the mode, ties to the smallest count as _finish's np.unique + argmax does
    points = min(kept, key=lambda p: (-kept[p], p))
    if len(kept) > 1:
        skipped[f"point count differs from {points}"] += sum(kept.values()) - kept[points]
    return matched, kept[points], skipped


def _finish(gather: _Gather, matched: int, skipped: Counter[str], fractions: tuple[float, float, float],
            groups: dict[str, str] | None) -> Selection:  # fmt: skip
    hashes = np.frombuffer(gather.hashes, np.uint64) if gather.hashes else np.zeros(0, np.uint64)
    codes = np.frombuffer(gather.labels, np.int32) if gather.labels else np.zeros(0, np.int32)
    points_of = np.frombuffer(gather.points, np.int32) if gather.points else np.zeros(0, np.int32)
    conf = np.frombuffer(gather.confidence, np.float64) if gather.confidence else np.zeros(0)
    sources = np.frombuffer(gather.sources, np.int8) if gather.sources else np.zeros(0, np.int8)
    reviewed = np.frombuffer(gather.reviewed, np.int8) if gather.reviewed else np.zeros(0, np.int8)
    points = 2048
    if points_of.size:  # an array needs one shape: keep the most common point count
        values, counts = np.unique(points_of, return_counts=True)
        points = int(values[np.argmax(counts)])
        keep = points_of == points
        if not keep.all():
            skipped[f"point count differs from {points}"] += int((~keep).sum())
        hashes, codes, conf, sources, reviewed = hashes[keep], codes[keep], conf[keep], sources[keep], reviewed[keep]
        if gather.ids is not None:
            gather.ids = [sid for sid, k in zip(gather.ids, keep, strict=True) if k]
    names = sorted(gather.codes, key=gather.codes.__getitem__)
    order = sorted(range(len(names)), key=names.__getitem__)
    remap = np.zeros(max(len(names), 1), np.int32)
    remap[order] = np.arange(len(names), dtype=np.int32)
    labels = remap[codes] if codes.size else codes
    label_names = [names[i] for i in order]
    if groups is not None and gather.ids is not None:
        by_id = common.assign_splits(((sid, label_names[lab]) for sid, lab in zip(gather.ids, labels, strict=True)),
                                     fractions, groups)  # fmt: skip
        splits = np.array([common.SPLIT_NAMES.index(by_id[sid]) for sid in gather.ids], np.int8)
    else:
        splits = assign_splits(hashes, labels, fractions)
    by_hash = np.argsort(hashes, kind="stable")
    tally = np.bincount(sources, minlength=len(LABEL_SOURCES)) if sources.size else np.zeros(len(LABEL_SOURCES))
    label_sources = Counter({name: int(n) for name, n in zip(LABEL_SOURCES, tally, strict=True) if n})
    return Selection(matched=matched, hashes=hashes[by_hash], labels=labels[by_hash], splits=splits[by_hash],
                     confidence=conf[by_hash], label_names=label_names, points=points, skipped=skipped,
                     label_sources=label_sources, reviewed=int(reviewed.sum()))  # fmt: skip


def assign_splits(hashes: np.ndarray, labels: np.ndarray, fractions: tuple[float, float, float]) -> np.ndarray:
    """Split codes for objects: within each label ordered by hash and cut by ``fractions``.

    The arrays' answer to :func:`.common.assign_splits` (same order key, same largest-remainder cut).
    """
    out = np.zeros(hashes.size, np.int8)
    if not hashes.size:
        return out
    order = np.lexsort((hashes, labels))
    ordered = labels[order]
    edges = [0, *(np.flatnonzero(np.diff(ordered)) + 1).tolist(), hashes.size]
    for start, end in itertools.pairwise(edges):
        counts = common._quota(end - start, fractions)
        out[order[start:end]] = np.repeat(np.arange(3, dtype=np.int8), counts)
    return out
