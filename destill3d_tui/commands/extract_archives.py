"""Archives in ``extract dir --output-dir``: one result per model file inside.

An archive is listed by a supervised worker (``ExtractionSupervisor.submit_listing``: the same
timeout, memory cap and bomb checks as extraction), then each model file inside is extracted
as its own job, with the archive's path and the member's name in its record and provenance.
An archive that is refused (bomb, unsafe, corrupt) or holds no model becomes one failed job,
like any file.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Job:
    """One result to report: a file, or one model file inside an archive."""

    path: Path  # the input file (the archive for a member)
    member: str | None = None

    @property
    def label(self) -> Path:
        """A unique name for the output file: ``archive.zip#dir_part.stl`` for a member."""
        if self.member is None:
            return self.path
        return self.path.with_name(f"{self.path.name}#{self.member.replace('/', '_')}")


def submit_jobs(supervisor: Any, files: list[Path], options: Any) -> dict[Future, Job]:
    """Every job's future: plain files at once, archives once their listing is back."""
    from ..engine.archive import is_archive_name

    listings = {f: supervisor.submit_listing(str(f), f.absolute()) for f in files if is_archive_name(f.name)}
    jobs = {supervisor.submit(str(f), f.absolute(), options, None): Job(f) for f in files if f not in listings}
    for archive, listing in listings.items():
        jobs.update(_archive_jobs(supervisor, archive, listing, options))
    return jobs


def _archive_jobs(supervisor: Any, archive: Path, listing: Future, options: Any) -> dict[Future, Job]:
    from ..engine.errors import FormatError

    try:
        members = listing.result()
    except Exception:  # refused or unreadable: reported with its reason like any failed file
        return {listing: Job(archive)}
    if members is None:  # named like an archive but not one (a 3MF, or a page saved as .zip)
        return {supervisor.submit(str(archive), archive.absolute(), options, None): Job(archive)}
    if not members:
        return {_failed(FormatError(f"{archive.name}: the archive holds no model file",
                                    reason="format_unsupported")): Job(archive)}  # fmt: skip
    return {
        supervisor.submit(f"{archive}#{m[0]}", archive.absolute(), options, None, member=m[0]): Job(archive, m[0])
        for m in members
    }


def _failed(error: Exception) -> Future:
    future: Future = Future()
    future.set_exception(error)
    return future
