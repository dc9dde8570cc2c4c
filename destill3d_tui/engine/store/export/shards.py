"""Sharded exporters and the resume state of an export folder.

A sharded format writes each split as numbered files of at most ``rows_per_shard`` records
(planned from the split's count, so every file's final name, ``train-00000-of-00004``, is known
before the first record arrives). Shard ``i`` of a split holds the ``i``-th block of
``rows_per_shard`` of the split's records in scan-key order: before the first write, a key-only
pass fixes each shard's key range (:mod:`.ranges`) and ``.destill3d-export.json`` keeps them.
A shard is written under ``<name>.partial`` and renamed when it is complete, so the folder never
shows half a file under a final name, and the state file records each completed shard by its
index. A format whose shards have writer threads of their own writes two shards of a split at
once, so an interrupted export can leave any set of shards complete (shard 3 while shard 2 was
partial): a resumed export writes exactly the missing ones, each from its recorded key range.
State files of the earlier layout (completed shards as a list from shard 0, no ranges) still
resume: their missing shards are planned after the last completed one.
"""

from __future__ import annotations

import contextlib
import json
import os
from abc import abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .common import Exporter, ExportError, ExportLayout, ExportRecord

STATE_FILE = ".destill3d-export.json"
SELECTION_FILE = ".destill3d-selection.npz"
PARTIAL = ".partial"
RECORD_OVERHEAD = 4096
"""Bytes per record beside its arrays (ids, provenance columns, metadata JSON): a generous bound,
so a shard planned from it stays under its byte budget."""


class ShardWriter:
    """One open shard file of one split (a format subclasses it)."""

    def __init__(self, path: Path, layout: ExportLayout, split: str, capacity: int) -> None:
        self.path = path
        self.layout = layout
        self.split = split
        self.capacity = capacity
        self.rows = 0

    @abstractmethod
    def write(self, records: list[ExportRecord]) -> None:
        """Append records (``rows`` + len(records) <= ``capacity``)."""

    @abstractmethod
    def close(self) -> None:
        """Flush and close: the file is complete."""

    def discard(self) -> None:
        """Close after a failure or a cancel; the caller deletes the partial file."""
        with contextlib.suppress(Exception):
            self.close()


class ShardedExporter(Exporter):
    """A format written as shards: the export driver opens, fills and closes them."""

    sharded: ClassVar[bool] = True
    suffix: ClassVar[str] = ""
    shard_bytes: ClassVar[int] = 500_000_000
    """Default byte budget of one shard (the Hub's limit for a Parquet file is 500 MB)."""
    in_flight: ClassVar[int] = 1
    """Shards of one split written at once: 2 where each shard has a writer thread of its own (two
    threads then share a split's rows); 1 where a shard is written on the export's thread or buffered
    whole in memory (a second open shard would only cost memory)."""

    def shard_name(self, split: str, index: int, total: int) -> str:
        """Where shard ``index`` of ``total`` of ``split`` goes, relative to the output folder."""
        return f"{split}-{index:05d}-of-{total:05d}{self.suffix}"

    @abstractmethod
    def open_shard(self, path: Path, split: str, capacity: int) -> ShardWriter: ...

    def write_indexes(self, shards: dict[str, list[str]], rows: dict[str, list[int]]) -> list[Path]:
        """Files beside the shards that list them (``index.json`` always; a format may add its own)."""
        assert self.layout is not None
        index = {"format": self.name, "label_names": self.layout.label_names,
                 "splits": {s: [{"file": f, "rows": n} for f, n in zip(names, rows[s], strict=True)]
                            for s, names in shards.items()}}  # fmt: skip
        path = self.layout.output / "index.json"
        path.write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
        return [path]

    def write(self, record: ExportRecord) -> str:
        raise TypeError(f"{self.name} is written in shards by the export driver, not record by record")

    def finish(self) -> list[Path]:
        raise TypeError(f"{self.name} is written in shards by the export driver")


def rows_per_shard(layout: ExportLayout, shard_bytes: int, shard_rows: int | None) -> int:
    """Records per shard: ``shard_rows``, else the byte budget over a generous record size."""
    if shard_rows is not None:
        if shard_rows < 1:
            raise ExportError(f"shard_rows {shard_rows}: expected at least 1")
        return shard_rows
    record = layout.points_per_object * 3 * 4 * 2 + RECORD_OVERHEAD
    if layout.views and layout.view_shape:
        record += layout.view_shape[0] * layout.view_shape[1] * layout.view_shape[2]
    return max(1, shard_bytes // record)


@dataclass
class ShardDone:
    """A completed shard: its index, its rows, the scan key of its last record, what it holds."""

    rows: int
    last_key: Any
    labels: dict[str, int] = field(default_factory=dict)
    licences: dict[str, int] = field(default_factory=dict)
    index: int = -1  # state files of the earlier layout have none: their list position is the index


@dataclass
class ExportState:
    """What ``.destill3d-export.json`` holds: the plan, each shard's key range and the completed shards.

    ``ranges[split][i]`` is ``[after, last]``: shard ``i`` holds the split's selected records whose
    scan key is above ``after`` (None: from the first) and at most ``last`` (None: no records, the
    shard is written empty). ``done[split]`` lists the completed shards by index.
    """

    fingerprint: str
    format: str
    rows_per_shard: int
    totals: dict[str, int]  # split -> planned shard count
    view_shape: list[int] | None = None
    done: dict[str, list[ShardDone]] = field(default_factory=dict)
    ranges: dict[str, list[list[Any] | None]] = field(default_factory=dict)

    def completed(self, split: str) -> int:
        return len(self.done.get(split, []))

    def missing(self, split: str) -> list[int]:
        """Indexes of the shards of ``split`` not yet complete, ascending."""
        have = {d.index for d in self.done.get(split, [])}
        return [i for i in range(self.totals[split]) if i not in have]

    def rows_done(self) -> int:
        return sum(d.rows for shards in self.done.values() for d in shards)

    def done_through(self, split: str) -> Any:
        """The scan key of the last record of the completed shards from shard 0 on, without a gap (None: none)."""
        last = None
        for expected, done in enumerate(self.done.get(split, [])):
            if done.index != expected:
                break
            last = done.last_key
        return last

    def record(self, split: str, done: ShardDone) -> None:
        """A shard completed: listed in index order (what ``index.json`` and the card read)."""
        shards = self.done.setdefault(split, [])
        shards.append(done)
        shards.sort(key=lambda d: d.index)

    def key_range(self, split: str, index: int) -> list[Any] | None:
        """``[after, last]`` of shard ``index`` (None: not planned yet)."""
        planned = self.ranges.get(split) or []
        return planned[index] if index < len(planned) else None

    def save(self, output: Path) -> None:
        tmp = output / (STATE_FILE + PARTIAL)
        tmp.write_text(json.dumps(asdict(self), ensure_ascii=False))
        os.replace(tmp, output / STATE_FILE)  # a crash leaves the old state or the new one, never half

    @classmethod
    def load(cls, output: Path) -> ExportState | None:
        path = output / STATE_FILE
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
            done = {s: [ShardDone(**{"index": i, **d}) for i, d in enumerate(shards)]
                    for s, shards in raw.pop("done", {}).items()}  # fmt: skip
            return cls(**raw, done=done)
        except (ValueError, TypeError) as exc:
            raise ExportError(f"{path} is damaged ({exc}); delete the folder and export again") from exc
