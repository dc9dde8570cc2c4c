"""What flows between the pipeline's stages: work items, writer ops, provenance, the run summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PlatformError, RateLimitError
from ..queue import QueueRow
from ..store.snapshot import Provenance, Snapshot
from ..text import display  # a file name that is not UTF-8 is stored in its escaped form

CHECKPOINT = "snapshot.d3d"
BATCH_MAX = 200  # ops per writer transaction: large enough to amortise commits, small enough to stay responsive
IDLE_POLL_S = 0.25  # how often an idle writer looks for new work


@dataclass
class RunSummary:
    stored: int = 0
    failed: int = 0
    duplicates: int = 0
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------- work items


@dataclass
class WorkItem:
    row: QueueRow
    temp_dir: Path
    primary: Path | None = None
    sha256: str = ""
    bytes_in: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    blob: bytes | None = None
    started: float = field(default_factory=time.monotonic)
    siblings: list[Any] = field(default_factory=list)  # QueueEntry: the other model files of its archive

    @property
    def queue_id(self) -> int:
        return self.row.queue_id

    @property
    def model_id(self) -> str:
        return self.row.model_id


@dataclass
class Op:
    """A stage's result for the writer to commit (:meth:`~.writer.Writer.submit`)."""

    kind: str  # acquired | duplicate | extracted | classified | store | failed | release
    item: WorkItem
    error: BaseException | None = None
    stage: str = ""
    duplicate_of: str | None = None
    in_batch: bool = False  # duplicate_of is a snapshot stored earlier in the same writer batch


def platform_wait(error: BaseException | None) -> bool:
    """The platform, not the item, refused (rate limited or banned): the attempt does not count."""
    if isinstance(error, RateLimitError):
        return True
    return isinstance(error, PlatformError) and getattr(error, "reason", "") in ("banned", "rate_limited")


def metadata_from_download(meta: Any) -> dict[str, Any]:
    if meta is None:
        return {}
    lic = meta.license
    out = {
        "title": meta.title,
        "author": meta.author,
        "description": meta.description,
        "source_url": meta.source_url,
        "license": {"raw": lic.raw, "spdx": lic.spdx, "commercial": lic.commercial,
                    "derivatives": lic.derivatives, "share_alike": lic.share_alike, "attribution": lic.attribution},
        "tags": list(meta.tags),
        "created": meta.created_at,
        "modified": meta.modified_at,
    }  # fmt: skip
    return {k: v for k, v in out.items() if v not in ("", None, [])}


def provenance_for(item: WorkItem) -> Provenance:
    """Provenance from the queue row's metadata plus what acquisition learned."""
    meta = {**item.row.metadata, **item.metadata}
    lic = meta.get("license") or {}
    if isinstance(lic, str):
        lic = {"raw": lic}
    flags = {k: bool(lic[k]) for k in ("commercial", "derivatives", "share_alike", "attribution") if k in lic}
    row = item.row
    return Provenance(
        platform=row.platform,
        source_url=meta.get("source_url") or row.source_url,
        source_id=row.source_id,
        title=str(meta.get("title") or ""),
        description=str(meta.get("description") or "")[:4000],
        author=str(meta.get("author") or ""),
        license=str(lic.get("raw") or ""),
        license_spdx=str(lic.get("spdx") or meta.get("license_spdx") or ""),
        license_flags=flags or dict(meta.get("license_flags") or {}),
        tags=[str(t) for t in meta.get("tags") or []],
        original_filename=str(meta.get("archive_member") or "")  # the model file inside an archive
        or (display(item.primary.name) if item.primary else str(meta.get("original_filename") or "")),
        original_file_size=item.bytes_in,
        original_file_hash=item.sha256,
        source_created=str(meta.get("created") or ""),
        source_modified=str(meta.get("modified") or ""),
        acquired_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
