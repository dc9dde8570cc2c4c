"""Which scan keys each shard of a sharded export holds, and reading one shard's keys.

Shard ``i`` of a split holds the ``i``-th block of ``rows_per_shard`` of that split's selected
records in scan-key order (:func:`.selection.scan_key`). Before the write scan, :func:`plan`
walks the keys alone (``SELECT key, snapshot_id``: no blobs, about 2 us a row on SQLite) through
the same selection lookup the write scan uses and records each shard's key range, so a shard can
be written without the ones before it, and two shards of a split can be written at once.

The write scan then reads each open shard through a :class:`ShardKeys`: key-only pages of the
shard's range, kept to the shard's split, handed out a batch at a time; the blobs of a batch are
read by key (:func:`.selection.rows_by_key`). Every selected record is read once, whatever the
number of splits and shards (a range scan per shard would read the other splits' blobs in that
range too). A shard is its key range, not a count of written records: a damaged blob (left out
and counted) or a snapshot deleted since the plan leaves its shard that much shorter.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from . import common
from .selection import Selection, keyset

if TYPE_CHECKING:
    from ..db import Store

KEY_BATCH = 5000
"""Keys per key-only query (a few hundred KB of rows: few round trips, small memory)."""


def split_codes(sel: Selection, rows: list[tuple]) -> np.ndarray:
    """The split code (into ``common.SPLIT_NAMES``) of each ``(key, snapshot_id)`` row; -1 where the
    selection leaves the snapshot out."""
    positions = sel.positions([row[1] for row in rows])
    taken = positions >= 0
    codes = np.full(len(rows), -1, np.int16)
    codes[taken] = sel.splits[positions[taken]]
    return codes


def keys_of(rows: list[tuple], codes: np.ndarray, split: str) -> list[Any]:
    """The keys of the rows whose code is ``split``'s, in row order."""
    return [rows[i][0] for i in np.flatnonzero(codes == common.SPLIT_NAMES.index(split)).tolist()]


class _Planner:
    """Cuts one split's keys into shards of ``rows`` records, from shard ``index`` after key ``after``."""

    def __init__(self, index: int, after: Any, rows: int, total: int) -> None:
        self.index, self.after, self.rows, self.total = index, after, rows, total
        self.skip_through = after  # keys at or below it belong to shards already complete
        self.count, self.last = 0, None
        self.ranges: dict[int, list[Any]] = {}

    def feed(self, keys: list[Any]) -> None:
        if self.skip_through is not None:
            keys = [k for k in keys if k > self.skip_through]
        at = 0
        while at < len(keys) and self.index < self.total:
            took = min(self.rows - self.count, len(keys) - at)
            at += took
            self.count += took
            self.last = keys[at - 1]
            if self.count == self.rows:
                self._cut()

    def _cut(self) -> None:
        self.ranges[self.index] = [self.after, self.last]
        self.after, self.count, self.last = self.last, 0, None
        self.index += 1

    def finish(self) -> dict[int, list[Any]]:
        """The ranges; a shard the keys did not reach (records deleted since the plan) holds none."""
        if self.count:
            self._cut()
        for index in range(self.index, self.total):
            self.ranges[index] = [self.after, None]
        return self.ranges


def plan(
    store: Store, sel: Selection, where: str, params: list[Any], starts: dict[str, tuple[int, Any]],
    rows_per_shard: int, totals: dict[str, int],
) -> dict[str, dict[int, list[Any]]]:  # fmt: skip
    """``[after, last]`` of each shard from ``starts[split] = (first index, after key)`` to the last.

    One key-only scan in key order from the lowest start. A new export starts every split at
    ``(0, None)``; a state file of the earlier layout at its first missing shard, after the last
    key of the completed ones.
    """
    planners = {s: _Planner(index, after, rows_per_shard, totals[s]) for s, (index, after) in starts.items()}
    if not planners:
        return {}
    afters = [after for _, after in starts.values()]
    first = None if None in afters else min(afters)
    for rows in keyset(store, "snapshot_id", where, params, KEY_BATCH, after=first):
        codes = split_codes(sel, rows)
        for split, planner in planners.items():
            planner.feed(keys_of(rows, codes, split))
    return {split: planner.finish() for split, planner in planners.items()}


class ShardKeys:
    """The keys of one shard's records, read a page at a time and handed out in batches, ascending."""

    def __init__(self, store: Store, sel: Selection, where: str, params: list[Any], split: str,
                 key_range: list[Any]) -> None:  # fmt: skip
        self.store, self.sel, self.where, self.params, self.split = store, sel, where, params, split
        self.after, self.last = key_range
        self._keys: deque[Any] = deque()
        self._read_all = self.last is None  # an empty shard has no keys to read

    def exhausted(self) -> bool:
        """No keys left to hand out (reads the next page to know, when none is buffered)."""
        if not self._keys and not self._read_all:
            self._read_page()
        return not self._keys and self._read_all

    def take(self, n: int) -> list[Any]:
        """Up to ``n`` next keys ([] once all were taken)."""
        while len(self._keys) < n and not self._read_all:
            self._read_page()
        return [self._keys.popleft() for _ in range(min(n, len(self._keys)))]

    def _read_page(self) -> None:
        page = next(iter(keyset(self.store, "snapshot_id", self.where, self.params, KEY_BATCH, after=self.after,
                                through=self.last)), [])  # fmt: skip
        if len(page) < KEY_BATCH:
            self._read_all = True
        if page:
            self.after = page[-1][0]
            self._keys.extend(keys_of(page, split_codes(self.sel, page), self.split))
