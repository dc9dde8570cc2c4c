"""Safe unpacking of zip and tar archives, and choosing the model files inside.

Everything is checked before a byte is written: names (no absolute paths, no ``..``, no
backslash or drive tricks), member types (no symlinks, hard links, devices, FIFOs, sparse
files), entry count, declared total size and compression ratio, and for zips overlapping
entries (the "overlapped entry" bomb that Python's ``zipfile`` does not notice). A tar is a
stream: its totals are checked member by member as the headers arrive, before the next
member's data is decompressed, and header blocks (GNU long names, pax records) are capped
before they are read, so a bomb costs a few megabytes of decompression, never all of it.
While writing, actual bytes are counted again because headers can lie. Only ``dest`` (the
item's temp dir) is written.

Bombs (count, size, ratio) are refused with reason ``too_large`` and the figure in the
message; structural attacks with ``unsafe_archive`` (overlapping zip entries: ``archive_bomb``).
Decompressing a hostile archive is itself the risk: callers run this in the isolated
extraction worker (``extract.isolate``), under its timeout and address-space cap.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import itertools
import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, NamedTuple

from .errors import ArchiveError
from .formats import EXTENSIONS

# Which format to extract when an archive (or a download) holds several, best first: single
# self-contained files before multi-file ones, meshes before CAD, point clouds last.
FORMAT_PREFERENCE = (
    "GLB", "STL", "3MF", "PLY", "OBJ", "OFF", "GLTF", "STEP", "IGES", "BREP", "DAE", "FBX",
    "PCD", "XYZ", "PTS", "LAS", "LAZ",
)  # fmt: skip
# The extractor's own extension list (engine/formats.EXTENSIONS), ordered by FORMAT_PREFERENCE.
MODEL_EXTENSIONS = tuple(sorted(EXTENSIONS, key=lambda ext: FORMAT_PREFERENCE.index(EXTENSIONS[ext])))
# Files a model may reference (OBJ materials, glTF buffers and textures); unpacked, never chosen.
SIDECAR_EXTENSIONS = (".mtl", ".bin", ".png", ".jpg", ".jpeg", ".webp", ".ktx2", ".tga", ".bmp")
ARCHIVE_EXTENSIONS = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

_CHUNK = 1 << 16
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # 30 bytes
MAX_HEADER_BYTES = 1 << 20  # a GNU long name or pax record this big is an attack, not a name
# What a damaged (not hostile) archive raises while it is read.
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError)
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error)
_COMPRESSED = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))


class ArchiveMember(NamedTuple):
    """A model file inside an archive: its name there, its size and the sha256 of its bytes."""

    name: str
    size: int
    sha256: str


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


# ---------------------------------------------------------------- names


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_EXTENSIONS)


def model_format(name: str) -> str:
    """'part.STL' -> 'stl'; '' when it is not a model file."""
    suffix = PurePosixPath(name.lower()).suffix
    return suffix[1:] if suffix in EXTENSIONS else ""


def is_archive(path: Path) -> bool:
    """By content: zip magic, or a valid tar header (plain or gzip/bzip2/xz-compressed).

    Only the first 512 bytes of a compressed tar are decompressed, so a bomb costs nothing here.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(6)
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return True
        block = _first_block(path, head)
    except (OSError, EOFError, ValueError, lzma.LZMAError):
        return False
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _first_block(path: Path, head: bytes) -> bytes:
    for magic, opener in _COMPRESSED:
        if head.startswith(magic):
            with opener(path, "rb") as stream:
                return stream.read(tarfile.BLOCKSIZE)
    with path.open("rb") as handle:
        return handle.read(tarfile.BLOCKSIZE)


def _wanted(name: str) -> bool:
    low = name.lower()
    return low.endswith(MODEL_EXTENSIONS) or low.endswith(SIDECAR_EXTENSIONS)


def _is_model(name: str) -> bool:
    return bool(model_format(name))


def _safe_relpath(name: str) -> PurePosixPath:
    """The member's path inside dest, or ArchiveError for anything that could escape it."""
    if "\\" in name or "\x00" in name:
        raise ArchiveError(f"archive member {name[:80]!r} uses a backslash or NUL in its name", reason="unsafe_archive")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise ArchiveError(f"archive member {name[:80]!r} has an absolute path", reason="unsafe_archive")
    if any(part == ".." for part in path.parts):
        raise ArchiveError(f"archive member {name[:80]!r} points outside the archive", reason="unsafe_archive")
    if any(len(part.encode(errors="surrogateescape")) > 255 for part in path.parts):
        raise ArchiveError(f"archive member name longer than 255 bytes: {name[:40]!r}...", reason="unsafe_archive")
    return path


# ---------------------------------------------------------------- totals


def _check_totals(count: int, expanded: int, packed: int, limits: ArchiveLimits) -> None:
    """Refuse with ``too_large`` once the entries so far pass a cap (called as they arrive)."""
    if count > limits.max_entries:
        raise ArchiveError(f"archive has more than {limits.max_entries} entries ({count} so far)", reason="too_large")
    if expanded > limits.max_total_bytes:
        raise ArchiveError(
            f"archive expands to at least {expanded} bytes (limit {limits.max_total_bytes})", reason="too_large"
        )
    if packed > 0 and expanded / packed > limits.max_ratio:
        raise ArchiveError(
            f"archive expands to at least {expanded} bytes from {packed}: compression ratio "
            f"{expanded / packed:.0f}:1 exceeds {limits.max_ratio:.0f}:1",
            reason="too_large",
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
                raise ArchiveError(
                    f"{target.name} expands past its declared size ({declared} bytes) or the cap", reason="too_large"
                )
            out.write(chunk)
    return written


def _digest_stream(source: IO[bytes], name: str, budget: int, declared: int) -> tuple[int, str]:
    """sha256 of a member's bytes, counted against the budget like a write."""
    digest, read = hashlib.sha256(), 0
    while chunk := source.read(_CHUNK):
        read += len(chunk)
        if read > budget or read > declared:
            raise ArchiveError(f"{name[:80]!r} expands past its declared size ({declared} bytes) or the cap",
                               reason="too_large")  # fmt: skip
        digest.update(chunk)
    return read, digest.hexdigest()


def _corrupt(kind: str, name: str, exc: BaseException) -> ArchiveError:
    return ArchiveError(f"{kind} member {name[:80]!r} is corrupt: {exc}", reason="unsafe_archive")


def _selected(name: str, member: str | None) -> bool:
    """Model and sidecar files; with ``member``, that one model plus every sidecar."""
    if not _wanted(name):
        return False
    return member is None or not _is_model(name) or name == member


# ---------------------------------------------------------------- zip


def _zip_check_overlaps(infos: list[zipfile.ZipInfo], path: Path) -> None:
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


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveError(f"not a readable zip archive: {exc}", reason="unsafe_archive") from exc


def _zip_infos(archive: zipfile.ZipFile, path: Path, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    """The central directory, checked: a zip declares every total before any data is read."""
    infos = archive.infolist()
    packed = path.stat().st_size
    _check_totals(len(infos), 0, packed, limits)
    expanded = 0
    for info in infos:
        expanded += info.file_size
        _check_totals(len(infos), expanded, packed, limits)
        _safe_relpath(info.filename)
        kind = _zip_member_type(info)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(
                f"zip member {info.filename[:80]!r} is a symlink or special file", reason="unsafe_archive"
            )
        if info.flag_bits & 0x1:
            raise ArchiveError(f"zip member {info.filename[:80]!r} is encrypted", reason="unsafe_archive")
    _zip_check_overlaps(infos, path)
    return infos


def _list_zip(path: Path, limits: ArchiveLimits) -> list[ArchiveMember]:
    with _open_zip(path) as archive:
        budget, found = limits.max_total_bytes, []
        for info in _zip_infos(archive, path, limits):
            if info.is_dir() or not _is_model(info.filename):
                continue
            try:
                with archive.open(info) as source:
                    size, sha = _digest_stream(source, info.filename, budget, info.file_size)
            except _ZIP_ERRORS as exc:
                raise _corrupt("zip", info.filename, exc) from exc
            budget -= size
            found.append(ArchiveMember(info.filename, size, sha))
        return found


def _extract_zip(path: Path, dest: Path, limits: ArchiveLimits, member: str | None) -> list[Path]:
    with _open_zip(path) as archive:
        infos = _zip_infos(archive, path, limits)
        budget = limits.max_total_bytes
        written: list[Path] = []
        for info in infos:
            if info.is_dir() or not _selected(info.filename, member):
                continue
            target = dest / _safe_relpath(info.filename)
            try:
                with archive.open(info) as source:
                    budget -= _write_stream(source, target, budget, info.file_size)
            except _ZIP_ERRORS as exc:
                raise _corrupt("zip", info.filename, exc) from exc
            written.append(target)
        return written


# ---------------------------------------------------------------- tar


class _CappedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses oversized GNU long-name and pax header blocks before reading them.

    ``tarfile`` reads such a block whole into memory: a header claiming gigabytes is a
    ``MemoryError`` (or minutes of decompression) inside ``TarFile.next()``.
    """

    def _proc_gnulong(self, tarfile):  # type: ignore[no-untyped-def]
        self._check_header_size()
        return super()._proc_gnulong(tarfile)

    def _proc_pax(self, tarfile):  # type: ignore[no-untyped-def]
        self._check_header_size()
        return super()._proc_pax(tarfile)

    def _check_header_size(self) -> None:
        if self.size > MAX_HEADER_BYTES:
            raise ArchiveError(
                f"tar header block of {self.size} bytes (long name or pax record; limit {MAX_HEADER_BYTES})",
                reason="too_large",
            )


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, tarinfo=_CappedTarInfo)
    except _TAR_ERRORS as exc:
        raise ArchiveError(f"not a readable tar archive: {exc}", reason="unsafe_archive") from exc


def _tar_members(archive: tarfile.TarFile, packed: int, limits: ArchiveLimits) -> Iterator[tarfile.TarInfo]:
    """Members as their headers arrive, each checked before the next one is read.

    ``TarFile.next()`` decompresses the previous member's data to reach the next header, so the
    running totals (declared sizes and the stream offset) are checked before asking for it.
    """
    count = declared = 0
    members = iter(archive)
    while True:
        try:
            member = next(members)
        except StopIteration:
            return
        except _TAR_ERRORS as exc:
            raise ArchiveError(f"tar archive is corrupt: {exc}", reason="unsafe_archive") from exc
        count += 1
        declared += member.size
        _check_totals(count, declared, packed, limits)  # what the headers so far say they will expand to
        _check_totals(count, archive.offset, packed, limits)  # what was decompressed to reach this header
        _check_tar_member(member)
        yield member


def _check_tar_member(member: tarfile.TarInfo) -> None:
    _safe_relpath(member.name)
    if member.issparse() or not (member.isfile() or member.isdir()):
        raise ArchiveError(
            f"tar member {member.name[:80]!r} is a link, device, FIFO or sparse file", reason="unsafe_archive"
        )


def _list_tar(path: Path, limits: ArchiveLimits) -> list[ArchiveMember]:
    with _open_tar(path) as archive:
        budget, found = limits.max_total_bytes, []
        for info in _tar_members(archive, path.stat().st_size, limits):
            if not info.isfile() or not _is_model(info.name):
                continue
            try:
                source = archive.extractfile(info)
                if source is None:
                    continue
                with source:
                    size, sha = _digest_stream(source, info.name, budget, info.size)
            except _TAR_ERRORS as exc:
                raise _corrupt("tar", info.name, exc) from exc
            budget -= size
            found.append(ArchiveMember(info.name, size, sha))
        return found


def _extract_tar(path: Path, dest: Path, limits: ArchiveLimits, member: str | None) -> list[Path]:
    """One pass: each member is checked, then (if wanted) written, before the next header is read."""
    with _open_tar(path) as archive:
        budget = limits.max_total_bytes
        written: list[Path] = []
        for info in _tar_members(archive, path.stat().st_size, limits):
            if not info.isfile() or not _selected(info.name, member):
                continue
            target = dest / _safe_relpath(info.name)
            try:
                source = archive.extractfile(info)
                if source is None:
                    continue
                with source:
                    budget -= _write_stream(source, target, budget, info.size)
            except _TAR_ERRORS as exc:
                raise _corrupt("tar", info.name, exc) from exc
            os.chmod(target, 0o644)  # never keep setuid/exec bits from the archive
            written.append(target)
        return written


# ---------------------------------------------------------------- public


def _is_zip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == b"PK"


def list_models(path: Path, limits: ArchiveLimits | None = None) -> list[ArchiveMember]:
    """The model files in ``path`` (name, size, sha256), in archive order, after every check
    ``safe_extract`` makes; their bytes are read to hash them, nothing is written.

    Raises :class:`ArchiveError` like :func:`safe_extract`.
    """
    limits = limits or ArchiveLimits()
    try:
        return _list_zip(path, limits) if _is_zip(path) else _list_tar(path, limits)
    except RecursionError:
        raise ArchiveError("archive headers nest too deeply", reason="unsafe_archive") from None


def safe_extract(path: Path, dest: Path, limits: ArchiveLimits | None = None, member: str | None = None) -> list[Path]:
    """Unpack the model and sidecar files of ``path`` into ``dest``.

    Parameters
    ----------
    path : Path
        A zip or tar (optionally gzip/bzip2/xz-compressed) archive.
    dest : Path
        The item's temp dir; nothing is written anywhere else.
    limits : ArchiveLimits, optional
        Entry count, total size and ratio caps.
    member : str, optional
        Unpack only this model file (and every sidecar file, which it may reference).

    Returns
    -------
    list[Path]
        The files written, in archive order.

    Raises
    ------
    ArchiveError
        ``unsafe_archive`` (traversal, links, devices, encryption, corruption), ``too_large``
        (count, size, ratio) or ``archive_bomb`` (overlapping entries). Partially written files
        are removed.
    """
    limits = limits or ArchiveLimits()
    dest = dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.rglob("*"))
    try:
        if _is_zip(path):
            return _extract_zip(path, dest, limits, member)
        return _extract_tar(path, dest, limits, member)
    except (ArchiveError, RecursionError) as exc:
        _remove_new(dest, before)
        if isinstance(exc, RecursionError):
            raise ArchiveError("archive headers nest too deeply", reason="unsafe_archive") from None
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
