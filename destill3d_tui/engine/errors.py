"""The Destill3D error tree.

Every error carries a stable ``reason`` code (stored in the queue's ``reason`` column,
printed in ``--json`` output, shown in the TUI) and a ``kind`` that the retry policy reads:

- ``transient``: something outside the item may change (network faults, platform answers,
  rate limits, a lost worker, a locked database): retried up to ``max_retries`` attempts.
- ``permanent``: the input itself is bad; retrying gives the same answer: final at once.
- ``resource``: the item's own bytes exhausted a limit (timeout, parser crash, memory cap):
  almost always the same answer again, so one more try at most (:data:`RESOURCE_TRIES`; a busy
  machine can make one timeout a fluke), then final with a message saying so.

:func:`tries_allowed` is the policy the queue applies to a ``kind``.

::

    Destill3DError
    ├── ConfigError                      reason: config_invalid
    ├── AcquisitionError
    │   ├── PlatformError                reason: platform_error / platform_unavailable / banned / auth_failed /
    │   │                                        forbidden / not_found / unsupported_url
    │   ├── RateLimitError               reason: rate_limited
    │   ├── DownloadError                reason: download_failed / too_large / truncated / expired_url /
    │   │                                        host_not_allowed / redirect_loop / timeout / connection_failed /
    │   │                                        no_model_file
    │   ├── ArchiveError                 reason: unsafe_archive / too_large (count, size, ratio) / archive_bomb
    │   └── LicenseError                 reason: license_forbidden
    ├── ExtractionError
    │   ├── FormatError                  reason: format_unsupported / parse_error / reference_outside_item
    │   │                                        / too_large (declared or expanded size over a cap)
    │   ├── GeometryError                reason: empty_geometry / non_finite / degenerate
    │   ├── TessellationError            reason: tessellation_failed
    │   └── IsolationError               reason: timeout / memory_limit / parser_crashed
    ├── ClassificationError
    │   ├── ModelNotFoundError           reason: model_not_found
    │   ├── ModelIntegrityError          reason: model_corrupt / model_card_mismatch
    │   └── InferenceError               reason: inference_failed
    └── DatabaseError                    reason: database_error / schema_too_new / not_found /
                                                 database_full / database_corrupt / database_readonly /
                                                 database_io / database_unavailable / database_not_found
                                                 (permanent: the run stops) / database_locked (transient)
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["transient", "permanent", "resource"]


class Destill3DError(Exception):
    """Base class. ``reason`` is a stable machine code, ``str(err)`` a human message."""

    reason: str = "error"
    kind: ErrorKind = "permanent"

    def __init__(self, message: str, *, reason: str | None = None, kind: ErrorKind | None = None):
        from .text import storable  # a file name that is not UTF-8 must not stop the database write

        super().__init__(storable(str(message)))
        if reason is not None:
            self.reason = reason
        if kind is not None:
            self.kind = kind

    @property
    def message(self) -> str:
        return str(self)

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "kind": self.kind, "message": str(self)}


class ConfigError(Destill3DError):
    reason = "config_invalid"


# ---------------------------------------------------------------- acquisition


class AcquisitionError(Destill3DError):
    reason = "acquisition_failed"
    kind: ErrorKind = "transient"


class PlatformError(AcquisitionError):
    reason = "platform_error"

    def __init__(
        self,
        message: str,
        *,
        platform: str = "",
        status_code: int | None = None,
        reason: str | None = None,
        kind: ErrorKind | None = None,
    ):
        super().__init__(message, reason=reason, kind=kind)
        self.platform = platform
        self.status_code = status_code


class RateLimitError(AcquisitionError):
    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, reason: str | None = None):
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class DownloadError(AcquisitionError):
    reason = "download_failed"

    def __init__(self, message: str, *, url: str = "", reason: str | None = None, kind: ErrorKind | None = None):
        super().__init__(message, reason=reason, kind=kind)
        self.url = url


class ArchiveError(AcquisitionError):
    reason = "unsafe_archive"
    kind: ErrorKind = "permanent"


class LicenseError(AcquisitionError):
    reason = "license_forbidden"
    kind: ErrorKind = "permanent"


# ---------------------------------------------------------------- extraction


class ExtractionError(Destill3DError):
    reason = "extraction_failed"


class FormatError(ExtractionError):
    reason = "parse_error"

    def __init__(self, message: str, *, format: str | None = None, reason: str | None = None):
        super().__init__(message, reason=reason)
        self.format = format


class GeometryError(ExtractionError):
    reason = "empty_geometry"


class TessellationError(ExtractionError):
    reason = "tessellation_failed"


class IsolationError(ExtractionError):
    """The supervised child died, hung or ran out of memory while holding one file."""

    reason = "parser_crashed"
    kind: ErrorKind = "resource"


# ---------------------------------------------------------------- classification


class ClassificationError(Destill3DError):
    reason = "classification_failed"


class ModelNotFoundError(ClassificationError):
    reason = "model_not_found"


class ModelIntegrityError(ClassificationError):
    reason = "model_corrupt"


class InferenceError(ClassificationError):
    reason = "inference_failed"


# ---------------------------------------------------------------- database


class DatabaseError(Destill3DError):
    reason = "database_error"
    kind: ErrorKind = "transient"


class NotFoundError(DatabaseError):
    reason = "not_found"
    kind: ErrorKind = "permanent"


RESOURCE_TRIES = 2  # a timeout, crash or memory cap on the same bytes: the first attempt and one more

# Reasons that say nothing about the item whatever class raised them: the worker process was
# lost or failed to start, the database was locked. The item may well succeed next time.
TRANSIENT_REASONS = frozenset({"worker_lost", "worker_failed", "database_locked"})


def tries_allowed(kind: str, max_retries: int) -> int:
    """How many attempts an item may use when its latest error has this ``kind``."""
    if kind == "permanent":
        return 1
    if kind == "resource":
        return max(1, min(max_retries, RESOURCE_TRIES))
    return max(1, max_retries)


def describe(exc: BaseException) -> dict[str, str]:
    """Reason/kind/message for any exception; unknown ones are ``internal_error``."""
    if isinstance(exc, Destill3DError):
        info = exc.to_dict()
        if info["reason"] in TRANSIENT_REASONS:
            info["kind"] = "transient"
        return info
    from .text import storable

    return {"reason": "internal_error", "kind": "permanent", "message": storable(f"{type(exc).__name__}: {exc}")}
