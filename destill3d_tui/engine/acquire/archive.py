"""Safe unpacking of downloaded zip and tar archives, and choosing the model files inside.

Everything is checked before a byte is written: names (no absolute paths, no ``..``, no
backslash or drive tricks), member types (no symlinks, hard links, devices, FIFOs), entry
count, declared total size and compression ratio, and for zips overlapping entries (the
"overlapped entry" bomb that Python's ``zipfile`` does not notice). While writing, actual
bytes are counted again because headers can lie. Only ``dest`` (the item's temp dir) is written.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import struct
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ArchiveError

# Model formats the extractor reads, best first (single self-contained files before multi-file ones).
MODEL_EXTENSIONS = (
    ".glb", ".stl", ".3mf", ".ply", ".obj", ".off", ".gltf", ".step", ".stp", ".iges", ".igs",
    ".brep", ".brp", ".dae", ".fbx", ".pcd", ".xyz", ".pts", ".las", ".laz",
)
# Files a model may reference (OBJ materials, glTF buffers and textures); unpacked, never chosen.
SIDECAR_EXTENSIONS = (".mtl", ".bin", ".png", ".jpg", ".jpeg", ".webp", ".ktx2", ".tga", ".bmp")
ARCHIVE_EXTENSIONS = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")

_CHUNK = 1 << 16
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # 30 bytes


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 10_000
    max_total_bytes: int = 2000 * 1024 * 1024
    max_ratio: float = 200.0

    @classmethod
    def from_settings(cls, acquisition: object) -> ArchiveLimits:
        return cls(
            max_entries=int(getattr(acquisition, "max_archive_entries", 10_000)),
            max_total_bytes=int(getattr(acquisition, "max_unpacked_mb", 2000)) * 1024 * 1024,
            max_ratio=float(getattr(acquisition, "max_archive_ratio", 200.0)),
        )


def is_archive(path: Path) -> bool:
    """By content: zip magic or a readable tar header (extensions lie)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
        if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
            return True
        return path.suffix.lower() in (".tar", ".tgz", ".gz", ".bz2", ".xz") and tarfile.is_tarfile(path)
    except OSError:
        return False


def _wanted(name: str) -> bool:
    low = name.lower()
    return low.endswith(MODEL_EXTENSIONS) or low.endswith(SIDECAR_EXTENSIONS)


def _safe_relpath(name: str) -> PurePosixPath:
    """The member's path inside dest, or ArchiveError for anything that could escape it."""
    if "\\" in name or "\x00" in name:
        raise ArchiveError(f"archive member {name[:80]!r} uses a backslash or NUL in its name", reason="unsafe_archive")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise ArchiveError(f"archive member {name[:80]!r} has an absolute path", reason="unsafe_archive")
    if any(part == ".." for part in path.parts):
        raise ArchiveError(f"archive member {name[:80]!r} points outside the archive", reason="unsafe_archive")
    if any(len(part.encode()) > 255 for part in path.parts):
        raise ArchiveError(f"archive member name longer than 255 bytes: {name[:40]!r}...", reason="unsafe_archive")
    return path


def _check_totals(count: int, declared: int, packed: int, limits: ArchiveLimits) -> None:
    if count > limits.max_entries:
        raise ArchiveError(f"archive has {count} entries (limit {limits.max_entries})", reason="archive_bomb")
    if declared > limits.max_total_bytes:
        raise ArchiveError(
            f"archive expands to {declared} bytes (limit {limits.max_total_bytes})", reason="archive_bomb"
        )
    if packed > 0 and declared / packed > limits.max_ratio:
        raise ArchiveError(
            f"archive compression ratio {declared / packed:.0f}:1 exceeds {limits.max_ratio:.0f}:1",
            reason="archive_bomb",
        )


def _write_stream(source, target: Path, budget: int, declared: int | None) -> int:  # type: ignore[no-untyped-def]
    """Copy with a byte budget; headers that under-declare are caught here."""
    written = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = target.open("xb")
    except (FileExistsError, NotADirectoryError):
        raise ArchiveError(f"archive holds {target.name} twice (or a file and a folder of that name)",
                           reason="unsafe_archive") from None
    with out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > budget or (declared is not None and written > declared):
                raise ArchiveError(f"{target.name} expands past its declared size or the cap", reason="archive_bomb")
            out.write(chunk)
    return written


# ---------------------------------------------------------------- zip


def _zip_check_overlaps(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], path: Path) -> None:
    """Each entry's local header + data must lie strictly before the next entry's header."""
    spans: list[tuple[int, int]] = []
    with path.open("rb") as raw:
        for info in infos:
            raw.seek(info.header_offset)
            header = raw.read(_LOCAL_HEADER.size)
            if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
                raise ArchiveError(f"zip entry {info.filename[:80]!r} has no local header", reason="unsafe_archive")
            name_len, extra_len = struct.unpack("<2H", header[26:30])
            end = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + info.compress_size
            spans.append((info.header_offset, end))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise ArchiveError("zip entries overlap (overlapped-entry zip bomb)", reason="archive_bomb")


def _zip_member_type(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0o170000


def _extract_zip(path: Path, dest: Path, limits: ArchiveLimits) -> list[Path]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"not a readable zip archive: {exc}", reason="unsafe_archive") from exc
    with archive:
        infos = archive.infolist()
        _check_totals(len(infos), sum(i.file_size for i in infos), path.stat().st_size, limits)
        for info in infos:
            _safe_relpath(info.filename)
            kind = _zip_member_type(info)
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise ArchiveError(
                    f"zip member {info.filename[:80]!r} is a symlink or special file", reason="unsafe_archive"
                )
            if info.flag_bits & 0x1:
                raise ArchiveError(f"zip member {info.filename[:80]!r} is encrypted", reason="unsafe_archive")
        _zip_check_overlaps(archive, infos, path)
        budget = limits.max_total_bytes
        written: list[Path] = []
        for info in infos:
            if info.is_dir() or not _wanted(info.filename):
                continue
            target = dest / _safe_relpath(info.filename)
            try:
                with archive.open(info) as source:
                    budget -= _write_stream(source, target, budget, info.file_size)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
                message = f"zip member {info.filename[:80]!r} is corrupt: {exc}"
                raise ArchiveError(message, reason="unsafe_archive") from exc
            written.append(target)
        return written


# ---------------------------------------------------------------- tar


def _extract_tar(path: Path, dest: Path, limits: ArchiveLimits) -> list[Path]:
    try:
        archive = tarfile.open(path)  # noqa: SIM115 - closed by the with-block below
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"not a readable tar archive: {exc}", reason="unsafe_archive") from exc
    with archive:
        members = []
        for member in archive:
            members.append(member)
            if len(members) > limits.max_entries:
                raise ArchiveError(f"archive has more than {limits.max_entries} entries", reason="archive_bomb")
        _check_totals(len(members), sum(m.size for m in members), path.stat().st_size, limits)
        for member in members:
            _safe_relpath(member.name)
            if not (member.isfile() or member.isdir()):
                raise ArchiveError(
                    f"tar member {member.name[:80]!r} is a link, device or FIFO", reason="unsafe_archive"
                )
        budget = limits.max_total_bytes
        written: list[Path] = []
        for member in members:
            if not member.isfile() or not _wanted(member.name):
                continue
            target = dest / _safe_relpath(member.name)
            source = archive.extractfile(member)
            if source is None:
                continue
            with source:
                budget -= _write_stream(source, target, budget, member.size)
            os.chmod(target, 0o644)  # never keep setuid/exec bits from the archive
            written.append(target)
        return written


# ---------------------------------------------------------------- public


def safe_extract(path: Path, dest: Path, limits: ArchiveLimits | None = None) -> list[Path]:
    """Unpack the model and sidecar files of ``path`` into ``dest``.

    Parameters
    ----------
    path : Path
        A zip or tar (optionally compressed) archive.
    dest : Path
        The item's temp dir; nothing is written anywhere else.
    limits : ArchiveLimits, optional
        Entry count, total size and ratio caps.

    Returns
    -------
    list[Path]
        The files written, in archive order.

    Raises
    ------
    ArchiveError
        ``unsafe_archive`` (traversal, links, devices, encryption, corruption) or
        ``archive_bomb`` (count, size, ratio, overlapping entries). Partially written files are removed.
    """
    limits = limits or ArchiveLimits()
    dest = dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.rglob("*"))
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
        if head.startswith(b"PK"):
            return _extract_zip(path, dest, limits)
        return _extract_tar(path, dest, limits)
    except ArchiveError:
        _remove_new(dest, before)
        raise


def _remove_new(dest: Path, before: set[Path]) -> None:
    for item in sorted(set(dest.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True):
        if item.is_file() or item.is_symlink():
            item.unlink(missing_ok=True)
        elif item.is_dir():
            with contextlib.suppress(OSError):
                item.rmdir()


def choose_model_files(paths: Iterable[Path]) -> list[Path]:
    """Model files among ``paths``, best format first (by :data:`MODEL_EXTENSIONS` order), then by size."""
    models = [p for p in paths if p.suffix.lower() in MODEL_EXTENSIONS and p.is_file()]

    def rank(p: Path) -> tuple[int, int]:
        return MODEL_EXTENSIONS.index(p.suffix.lower()), -p.stat().st_size

    return sorted(models, key=rank)


def model_format(name: str) -> str:
    """'part.STL' -> 'stl'; '' when it is not a model file."""
    suffix = PurePosixPath(name.lower()).suffix
    return suffix[1:] if suffix in MODEL_EXTENSIONS else ""


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_EXTENSIONS)
