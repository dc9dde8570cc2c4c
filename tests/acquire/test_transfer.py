"""The streaming loop lifted out of ``HttpClient._download_once`` (acquire/transfer.py), on real
httpx responses; test_http_faults.py drives the same code through loopback servers."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from pathlib import Path

import httpx
import pytest

from destill3d_tui.engine.acquire.credentials import remember_secret
from destill3d_tui.engine.acquire.transfer import BodyStream, Received, StreamLimits, declared_length
from destill3d_tui.engine.config import Settings
from destill3d_tui.engine.errors import DownloadError

BODY = b"solid x\nendsolid x\n" * 100
LIMITS = StreamLimits(cap=len(BODY), min_bytes_per_s=1, stall_window_s=20.0)


def _response(body: bytes = BODY, **headers: str) -> httpx.Response:
    return httpx.Response(200, headers=headers, content=body)


def test_limits_come_from_the_shipped_settings() -> None:
    acq = Settings().acquisition
    limits = StreamLimits.of(acq)
    assert limits.cap == acq.max_download_mb * 1024 * 1024
    assert (limits.min_bytes_per_s, limits.stall_window_s) == (acq.min_download_bytes_per_s, acq.stall_window_s)


def test_declared_length() -> None:
    assert declared_length(_response()) == len(BODY)
    packed = _response(gzip.compress(BODY), **{"content-encoding": "gzip"})
    assert declared_length(packed) is None  # Content-Length counts the compressed bytes
    bare = httpx.Response(200, headers={"content-length": "many"})
    assert declared_length(bare) is None


def test_body_is_written_and_hashed(tmp_path: Path) -> None:
    part = tmp_path / "m.stl.part"
    stream = BodyStream("local", "http://example.test/m.stl", LIMITS)
    response = _response()
    received = asyncio.run(stream.write(response, part, stream.refuse_oversized(response)))
    assert received == Received(hashlib.sha256(BODY).hexdigest(), len(BODY), len(BODY))
    assert part.read_bytes() == BODY
    received.check_complete("local", "http://example.test/m.stl", len(BODY))


def test_over_the_cap_is_permanent(tmp_path: Path) -> None:
    small = StreamLimits(cap=len(BODY) - 1, min_bytes_per_s=1, stall_window_s=20.0)
    stream = BodyStream("local", "http://example.test/m.stl", small)
    with pytest.raises(DownloadError) as declared:
        stream.refuse_oversized(_response())
    with pytest.raises(DownloadError) as streamed:  # no Content-Length to go by: counted as it arrives
        asyncio.run(stream.write(_response(), tmp_path / "m.part", None))
    for error in (declared.value, streamed.value):
        assert error.reason == "too_large" and error.kind == "permanent"


def test_sizes_that_disagree_are_truncated_and_name_no_secret() -> None:
    remember_secret("s3cr3t-token")
    url = "http://example.test/m.stl?token=s3cr3t-token"
    for received, expected in ((Received("x", 10, 12), None), (Received("x", 10, None), 11)):
        with pytest.raises(DownloadError) as info:
            received.check_complete("local", url, expected)
        assert info.value.reason == "truncated" and "s3cr3t" not in str(info.value) + str(info.value.url)
