"""Archives in the pipeline: one queue item per model file inside.

A downloaded (or local) archive is never opened in the runner's own process: its model files
are listed by the isolated extraction worker (``ExtractionSupervisor.submit_listing``, under
the worker's timeout and address-space cap), which refuses bombs and unsafe archives with the
archive's own reason. The item that brought the archive keeps its first model file; every other
model becomes a sibling queue row, committed by the writer in the same transaction as the
item's ``acquired`` stage (so a crash before it loses nothing and queues nothing twice). A
sibling downloads the archive again and extracts its own member. The member's name, size and
sha256 travel in the row's metadata, so duplicate detection and provenance name the model
file, not the archive.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ..archive import ArchiveMember, is_archive
from ..errors import FormatError
from ..queue import QueueEntry, QueueRow

MEMBER = "archive_member"  # metadata keys of a row that stands for one model file in an archive
MEMBER_SHA256 = "archive_member_sha256"
MEMBER_SIZE = "archive_member_size"


def member_of(metadata: dict[str, Any]) -> str | None:
    """The archive member a queue row stands for, or None (a plain file, or an archive not yet listed)."""
    member = metadata.get(MEMBER)
    return str(member) if member is not None else None


async def split_archive(item: Any, supervisor: Any) -> None:
    """After download: pick this item's model file inside an archive and queue the others.

    ``item`` is a :class:`~.items.WorkItem` whose ``primary`` was just downloaded; it gains
    ``metadata`` (member, its sha256 and size), its ``sha256``/``bytes_in`` become the member's,
    and ``siblings`` holds the queue entries for the archive's other model files.
    """
    if item.primary is None or not members_are_models(item.row.platform):
        return
    if not await asyncio.to_thread(is_archive, Path(item.primary)):
        return  # reads at most one decompressed tar block: safe in the runner
    known = member_of(item.row.metadata)
    if known is not None:  # a sibling (or a retry): its member was chosen when the archive was listed
        item.sha256 = str(item.row.metadata.get(MEMBER_SHA256) or item.sha256)
        item.bytes_in = int(item.row.metadata.get(MEMBER_SIZE) or item.bytes_in)
        if item.row.metadata.get("title"):  # "archive / member", not the archive's own title again
            item.metadata["title"] = item.row.metadata["title"]
        return
    members = await asyncio.wrap_future(supervisor.submit_listing(item.queue_id, item.primary))
    if members is None:
        return  # a model format that is a zip (3MF)
    if not members:
        # the same answer `extract file` and `extract dir` give for it
        raise FormatError(f"{Path(item.primary).name}: the archive holds no model file", reason="format_unsupported")
    first, *rest = (ArchiveMember(*m) for m in members)
    item.metadata.update(_member_metadata(item.row, first, several=bool(rest)))
    item.sha256, item.bytes_in = first.sha256, first.size
    item.siblings = [sibling_entry(item.row, m) for m in rest]


def members_are_models(platform: str) -> bool:
    """Whether an archive from ``platform`` holds separate models (a Thingiverse zip of parts, a
    local folder's archives) or one model's encodings (a Sketchfab or Smithsonian package, whose
    ``files_are_models`` is False: the worker extracts its best file)."""
    from ..acquire.registry import adapter_class
    from ..errors import Destill3DError

    try:
        return bool(getattr(adapter_class(platform), "files_are_models", True))
    except Destill3DError:
        return True


def _member_metadata(row: QueueRow, member: ArchiveMember, several: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {MEMBER: member.name, MEMBER_SHA256: member.sha256, MEMBER_SIZE: member.size}
    if several:
        meta["title"] = f"{row.metadata.get('title') or row.title} / {member.name}"
    return meta


def sibling_entry(row: QueueRow, member: ArchiveMember) -> QueueEntry:
    """The queue entry for another model file of the archive ``row`` brought."""
    base = {k: v for k, v in row.metadata.items() if k not in (MEMBER, MEMBER_SHA256, MEMBER_SIZE)}
    return QueueEntry(
        model_id=f"{row.model_id}#{member.name}",
        platform=row.platform,
        source_url=row.source_url,
        source_id=row.source_id,
        file_id=row.file_id,
        group_id=row.group_id or row.model_id,
        priority=row.priority,
        metadata={**base, **_member_metadata(row, member, several=True)},
    )
