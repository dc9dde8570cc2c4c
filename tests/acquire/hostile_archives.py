"""Hostile archives made in the test, in the spirit of ../shared/badinputs/make_bad_inputs.py.

bzip2 streams may be concatenated, and 10 MiB of zeros compresses to 49 bytes: a tar.bz2 that
declares gigabytes is built in milliseconds from one compressed block of zeros repeated.
"""

from __future__ import annotations

import bz2
import io
import tarfile
import zipfile
from pathlib import Path

ZEROS_MB = 10
_ZEROS = bz2.compress(bytes(ZEROS_MB << 20), 9)  # one stream: 10 MiB of zeros


def tiny_stl(tag: str = "x") -> bytes:
    """A binary STL of one tetrahedron (4 faces); ``tag`` makes its bytes unique."""
    import struct

    v = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
    faces = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]
    body = b"".join(struct.pack("<3f", 0, 0, 0) + b"".join(struct.pack("<3f", *v[i]) for i in f) + b"\0\0"
                    for f in faces)  # fmt: skip
    return f"tet {tag}".encode().ljust(80, b" ") + struct.pack("<I", len(faces)) + body


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, 0o644
    return info.tobuf(tarfile.GNU_FORMAT)


def tar_bz2_bomb(path: Path, members: int = 300, member_mb: int = ZEROS_MB) -> Path:
    """``members`` files of ``member_mb`` MiB of zeros each (3 GB by default) in about 60 KB."""
    parts = []
    for i in range(members):
        parts.append(bz2.compress(_header(f"bomb/{i:04d}.stl", member_mb << 20)))
        parts.append(_ZEROS * (member_mb // ZEROS_MB))
    parts.append(bz2.compress(bytes(2 * tarfile.BLOCKSIZE)))
    path.write_bytes(b"".join(parts))
    return path


def tar_bz2_one_huge_member(path: Path, gigabytes: int = 8) -> Path:
    """One member declaring ``gigabytes`` GiB of zeros, in about 40 KB (the issue's 31 KB bomb)."""
    streams = (gigabytes << 30) // (ZEROS_MB << 20)
    path.write_bytes(bz2.compress(_header("huge.stl", gigabytes << 30)) + _ZEROS * streams
                     + bz2.compress(bytes(2 * tarfile.BLOCKSIZE)))  # fmt: skip
    return path


def tar_bz2_gnu_long_name(path: Path, name_mb: int = 1000) -> Path:
    """A GNU long-name header claiming a ``name_mb`` MiB name: ``tarfile`` reads it whole into memory."""
    streams = name_mb // ZEROS_MB
    stl = tiny_stl("after the long name")
    tail = _header("model.stl", len(stl)) + stl.ljust(-(-len(stl) // 512) * 512, b"\0") + bytes(1024)
    head = _header("././@LongLink", name_mb << 20, tarfile.GNUTYPE_LONGNAME)
    path.write_bytes(bz2.compress(head) + _ZEROS * streams + bz2.compress(tail))
    return path


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    path.write_bytes(buf.getvalue())
    return path


def tar_gz_of(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


# name -> the reason the bad-input tests expect (tests/integration and tests/store test_badinputs)
CASES = {
    "ours_tar_bz2_bomb_3GB.tar.bz2": "too_large",
    "ours_tar_bz2_one_8GiB_member.tar.bz2": "too_large",
    "ours_tar_bz2_gnu_long_name_4000MB.tar.bz2": "too_large",
}


def write_cases(folder: Path) -> None:
    """The hostile archives of :data:`CASES` into ``folder`` (beside the shared bad inputs)."""
    tar_bz2_bomb(folder / "ours_tar_bz2_bomb_3GB.tar.bz2")
    tar_bz2_one_huge_member(folder / "ours_tar_bz2_one_8GiB_member.tar.bz2", gigabytes=8)
    tar_bz2_gnu_long_name(folder / "ours_tar_bz2_gnu_long_name_4000MB.tar.bz2", name_mb=4000)
