"""The Destill3D error tree.

Every error carries a stable ``reason`` code (stored in the queue's ``reason`` column,
printed in ``--json`` output, shown in the TUI) and a ``kind`` that the retry policy reads:

- ``transient``: try again later (network faults, rate limits, timeouts of a server).
- ``permanent``: the input itself is bad; retrying gives the same answer.
- ``resource``: the item exhausted a limit (time, memory); it may succeed with other limits,
  so it is retried up to ``max_retries`` like a transient error.

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
    │   ├── ArchiveError                 reason: unsafe_archive / archive_bomb
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
    └── DatabaseError                    reason: database_error / schema_too_new / not_found
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["transient", "permanent", "resource"]


class Destill3DError(Exception):
    """Base class. ``reason`` is a stable machine code, ``str(err)`` a human message."""

    reason: str = "error"
    kind: ErrorKind = "permanent"

    def __init__(self, message: str, *, reason: str | None = None, kind: ErrorKind | None = None):
        super().__init__(message)
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


def describe(exc: BaseException) -> dict[str, str]:
    """Reason/kind/message for any exception; unknown ones are ``internal_error``."""
    if isinstance(exc, Destill3DError):
        return exc.to_dict()
    return {"reason": "internal_error", "kind": "permanent", "message": f"{type(exc).__name__}: {exc}"}
