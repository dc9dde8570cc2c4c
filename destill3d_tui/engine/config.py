"""Typed settings: defaults <- TOML file <- ``DESTILL3D_*`` environment <- command-line flags.

Sections are dataclasses; ``load_settings()`` builds a :class:`Settings` from all layers.
Environment variables nest with ``__``: ``DESTILL3D_EXTRACTION__TARGET_POINTS=1024``,
``DESTILL3D_PLATFORMS__THINGIVERSE__BASE_URL=http://127.0.0.1:8000``.
Unknown keys are errors with a "did you mean" hint, in every layer; values outside their
allowed range (:data:`LIMITS`, :data:`CHOICES`) are errors that give the range.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import locations
from .errors import ConfigError

ENV_PREFIX = "DESTILL3D_"
# Environment variables with this prefix that are not settings (see locations.py).
RESERVED_ENV = {"DESTILL3D_CONFIG", "DESTILL3D_HOME", "DESTILL3D_CRASH_AT", "DESTILL3D_EXTRACT_TARGET",
                "DESTILL3D_SERVE_TOKEN"}  # serve: the access token, not a setting


@dataclass
class DatabaseSettings:
    url: str = ""  # empty: SQLite file at locations.default_database_path()
    busy_timeout_ms: int = 10_000


@dataclass
class TessellationSettings:
    preset: str = "standard"  # preview | standard | high | custom
    linear_deflection: float = 0.001
    angular_deflection: float = 0.5
    relative: bool = True  # deflection as a fraction of the bbox diagonal
    relative_linear: float = 0.001


@dataclass
class ExtractionSettings:
    target_points: int = 2048
    sampling_strategy: str = "hybrid"  # uniform | fps | poisson | voxel | hybrid
    oversample_ratio: float = 5.0
    seed: int = 0
    precision: str = "compact"  # compact | exact
    compute_views: bool = False
    view_count: int = 12
    view_resolution: int = 224
    normal_k: int = 30
    orient_normals: bool = True
    max_faces: int = 2_000_000  # simplify above this (spec 13.2)
    timeout_s: float = 120.0  # wall clock per file, in the supervised child
    memory_limit_mb: int = 4096  # address-space cap of the child
    # how far below the app the children run (os.nice): a parse takes what the app leaves, so the
    # terminal app answers a key at once with every worker busy (bench/tui.py); 0 = same priority
    worker_nice: int = 10
    tessellation: TessellationSettings = field(default_factory=TessellationSettings)


@dataclass
class ClassificationSettings:
    enabled: bool = True
    default_model: str = "destill3d_pointnet_mn40_v3"  # azimuth-invariant, upright head; older ones stay listed
    batch_size: int = 32
    max_wait_ms: int = 200
    device: str = "auto"  # auto | cuda | cpu
    precision: str = "auto"  # auto (int8 graph on the CPU provider, fp32 on CUDA) | int8 | fp32
    top_k: int = 5
    unknown_threshold: float = 0.0  # below this calibrated confidence -> "unknown"
    tta: int = 1  # number of rotations about the up axis averaged (1 = off)
    # files of arbitrary azimuth: try this many turns about the up axis, keep the most confident (0 = off)
    azimuth_search: int = 0
    models_url: str = ""  # where `models download` fetches from; never used implicitly
    zero_shot_encoder: str = ""  # model id of an imported OpenShape-style point encoder (kind point_encoder)


@dataclass
class PlatformSettings:
    base_url: str = ""  # empty: the adapter's public API
    rate_limit: str = ""  # "300/5min"; empty: the adapter's default
    file_rate_limit: str = ""  # hosts other than the API's (file CDNs); empty: 10/s per host
    concurrency: int = 2
    enabled: bool = True


@dataclass
class AcquisitionSettings:
    temp_directory: str = ""  # empty: locations.temp_root()
    max_concurrent_downloads: int = 4
    max_download_mb: int = 500
    max_unpacked_mb: int = 2000
    max_archive_entries: int = 10_000
    max_archive_ratio: float = 200.0
    request_timeout_s: float = 30.0
    download_deadline_s: float = 900.0
    retry_attempts: int = 3
    allow_hosts: list[str] = field(default_factory=list)  # extra "host:port" let through
    license_policy: str = "research"  # research | commercial | any
    user_agent: str = "Destill3D/0.1 (+https://github.com/destill3d/destill3d-tui)"
    read_timeout_s: float = 15.0  # one socket read; a silent server fails after this
    min_download_bytes_per_s: int = 1024  # slower than this over stall_window_s -> timeout
    stall_window_s: float = 20.0
    backoff_initial_s: float = 15.0  # first back-off after a 429/5xx without Retry-After
    backoff_max_s: float = 300.0
    max_retry_wait_s: float = 600.0  # a longer Retry-After/reset pauses the platform instead
    ban_after_403: int = 3  # consecutive 403s on different URLs that mean "banned"
    ban_pause_s: float = 3600.0


@dataclass
class PipelineSettings:
    workers: int = 2
    max_retries: int = 3
    lease_seconds: float = 300.0
    retry_backoff_s: float = 30.0
    keep_failed_temp: bool = False
    skip_near_duplicates: bool = False
    near_duplicate_threshold: float = 0.98


@dataclass
class IndexSettings:
    hnsw_threshold: int = 20_000  # exact search below this many embeddings
    hnsw_m: int = 32
    ef_search: int = 128  # recall@10 >= 0.95 on 100K x 1024 (bench/search.py); 64 gave 0.93
    # IVF-PQ (64-byte codes) above this many: ~80 bytes a vector instead of HNSW's ~1.3 KB at 256-d;
    # recall@10 0.91 at 100K (bench/scale.py --index-n, docs/scaling.md)
    compress_above: int = 200_000
    nprobe: int = 16  # inverted lists an IVF-PQ search visits
    rerank: int = 4  # an IVF-PQ search re-scores k x this many candidates exactly (vectors read from the source)


@dataclass
class ReviewSettings:
    user: str = ""  # who review decisions are recorded as; empty: the OS user


@dataclass
class LoggingSettings:
    level: str = "WARNING"
    file: str = ""


@dataclass
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    extraction: ExtractionSettings = field(default_factory=ExtractionSettings)
    classification: ClassificationSettings = field(default_factory=ClassificationSettings)
    acquisition: AcquisitionSettings = field(default_factory=AcquisitionSettings)
    platforms: dict[str, PlatformSettings] = field(default_factory=dict)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)

    def platform(self, name: str) -> PlatformSettings:
        return self.platforms.get(name) or PlatformSettings()

    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{locations.default_database_path()}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- applying layers


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _did_you_mean(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a TOML/env/flag value to the field's declared type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(value, inner[0], where)
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return [_coerce(v, item, where) for v in value]
    try:
        if hint is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                    raise ValueError(value)
                return low in {"1", "true", "yes", "on"}
            return bool(value)
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return hint(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}") from exc


def _apply(target: Any, values: dict[str, Any], where: str) -> None:
    hints = _hints(type(target))
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in hints:
            raise ConfigError(f"unknown setting '{where}{key}'{_did_you_mean(key, list(hints))}")
        current = getattr(target, key)
        hint = hints[key]
        path = f"{where}{key}"
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a table of settings, got {value!r}")
            _apply(current, value, path + ".")
        elif typing.get_origin(hint) is dict:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a table of settings, got {value!r}")
            for name, sub in value.items():
                entry = current.setdefault(name.lower(), PlatformSettings())
                if not isinstance(sub, dict):
                    raise ConfigError(f"{path}.{name}: expected a table of settings")
                _apply(entry, sub, f"{path}.{name.lower()}.")
        else:
            setattr(target, key, _coerce(value, hint, path))


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"a.b.c": 1} -> {"a": {"b": {"c": 1}}}"""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def env_overrides(environ: typing.Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    dotted = {
        key[len(ENV_PREFIX) :].lower().replace("__", "."): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX) and key not in RESERVED_ENV
    }
    return _nest(dotted)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


# ---------------------------------------------------------------- range checks

_ANY = float("inf")
LIMITS: dict[str, tuple[float, float]] = {
    "database.busy_timeout_ms": (0, 3_600_000),
    "extraction.target_points": (256, 16384),  # spec 11.2
    "extraction.oversample_ratio": (1.0, 100.0),  # spec 11.2: ge=1.0
    "extraction.seed": (0, 2**63 - 1),  # numpy seeds are non-negative
    "extraction.view_count": (1, 64),
    "extraction.view_resolution": (16, 2048),
    "extraction.normal_k": (3, 256),
    "extraction.max_faces": (1000, _ANY),
    "extraction.timeout_s": (1.0, 86_400.0),
    "extraction.memory_limit_mb": (0, 1 << 24),  # 0: no cap
    "extraction.worker_nice": (0, 19),  # os.nice's range
    "extraction.tessellation.linear_deflection": (1e-9, _ANY),
    "extraction.tessellation.angular_deflection": (1e-6, 3.141592653589793),
    "extraction.tessellation.relative_linear": (1e-9, 1.0),
    "classification.batch_size": (1, 4096),
    "classification.max_wait_ms": (0, 60_000),
    "classification.top_k": (1, 100),
    "classification.unknown_threshold": (0.0, 1.0),
    "classification.tta": (1, 64),
    "classification.azimuth_search": (0, 360),
    "platforms.*.concurrency": (1, 64),
    "acquisition.max_concurrent_downloads": (1, 256),
    "acquisition.max_download_mb": (1, _ANY),
    "acquisition.max_unpacked_mb": (1, _ANY),
    "acquisition.max_archive_entries": (1, _ANY),
    "acquisition.max_archive_ratio": (1.0, _ANY),
    "acquisition.request_timeout_s": (0.001, _ANY),
    "acquisition.download_deadline_s": (0.001, _ANY),
    "acquisition.read_timeout_s": (0.001, _ANY),
    "acquisition.retry_attempts": (0, 100),
    "pipeline.workers": (1, 256),
    "pipeline.max_retries": (0, 100),
    "pipeline.lease_seconds": (1.0, _ANY),
    "pipeline.retry_backoff_s": (0.0, _ANY),
    "pipeline.near_duplicate_threshold": (0.0, 1.0),
    "index.hnsw_threshold": (0, _ANY),
    "index.hnsw_m": (2, 256),
    "index.ef_search": (1, 4096),
    "index.compress_above": (0, _ANY),
    "index.nprobe": (1, 65536),
    "index.rerank": (1, 100),
}
"""Allowed (min, max) per numeric setting, both included; ``platforms.*`` applies to each platform."""

CHOICES: dict[str, tuple[str, ...]] = {
    "extraction.sampling_strategy": ("uniform", "fps", "poisson", "voxel", "hybrid"),
    "extraction.precision": ("compact", "exact"),
    "extraction.tessellation.preset": ("preview", "standard", "high", "custom"),
    "classification.device": ("auto", "cuda", "cpu"),
    "classification.precision": ("auto", "int8", "fp32"),
    "acquisition.license_policy": ("research", "commercial", "any"),
    "logging.level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
}
"""The values a string setting may take (``logging.level`` compared in upper case)."""


def _shown_limit(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def range_message(key: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``key`` (``"extraction.target_points"``), or None when it is."""
    pattern = "platforms.*." + key.split(".")[-1] if key.startswith("platforms.") else key
    if pattern in LIMITS:
        lo, hi = LIMITS[pattern]
        if lo <= value <= hi:
            return None
        allowed = f"at least {_shown_limit(lo)}" if hi == _ANY else f"{_shown_limit(lo)}-{_shown_limit(hi)}"
        return f"{key} = {value!r} is out of range: allowed {allowed}"
    if pattern in CHOICES:
        options = CHOICES[pattern]
        if (value.upper() if key == "logging.level" else value) in options:
            return None
        return f"{key} = {value!r} is not allowed: one of {', '.join(options)}"
    return None


def _values(settings: Settings) -> typing.Iterator[tuple[str, Any]]:
    """(dotted key, value) for every setting that has a range or a list of choices."""
    for key in (*LIMITS, *CHOICES):
        if key.startswith("platforms.*."):
            field_name = key.rsplit(".", 1)[1]
            for name, entry in settings.platforms.items():
                yield f"platforms.{name}.{field_name}", getattr(entry, field_name)
        else:
            yield key, _lookup(settings, key.split("."))


def check_ranges(settings: Settings) -> Settings:
    """Raise :class:`ConfigError` for the first setting outside its allowed range or choices."""
    for key, value in _values(settings):
        message = range_message(key, value)
        if message is not None:
            raise ConfigError(message)
    return settings


def load_settings(
    config_path: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: typing.Mapping[str, str] | None = None,
) -> Settings:
    """Defaults <- TOML file <- environment <- ``overrides`` (dotted keys or nested dicts)."""
    settings = Settings()
    path = Path(config_path) if config_path else locations.config_file()
    if config_path and not path.exists():
        raise ConfigError(f"config file {path} does not exist (create it with `destill3d-tui config init`)")
    _apply(settings, read_toml(path), "")
    _apply(settings, env_overrides(environ), "")
    if overrides:
        dotted = {k: v for k, v in overrides.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in overrides.items() if isinstance(v, dict)}
        _apply(settings, _nest(dotted), "")
        _apply(settings, nested, "")
    return check_ranges(settings)


# ---------------------------------------------------------------- writing the TOML file


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def dump_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for the nested dicts of scalars and lists that settings are."""
    lines: list[str] = []

    def table(prefix: str, node: dict[str, Any]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in node.items() if isinstance(v, dict)}
        if prefix and scalars:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{key} = {_toml_value(value)}")
        if prefix and scalars:
            lines.append("")
        for key, value in tables.items():
            table(f"{prefix}.{key}" if prefix else key, value)

    table("", data)
    return "\n".join(lines).rstrip() + "\n"


def set_value(path: Path, dotted_key: str, raw_value: str) -> Settings:
    """Validate ``dotted_key=raw_value`` against the schema, then write it into the TOML file."""
    data = read_toml(path)
    node = data
    parts = dotted_key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = raw_value
    check = Settings()
    _apply(check, data, "")  # raises ConfigError with a hint on unknown keys / bad values
    check_ranges(check)  # and on values outside their range: nothing is written then
    typed = _lookup(check, parts)
    node[parts[-1]] = typed
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_toml(data))
    return check


def _lookup(settings: Settings, parts: list[str]) -> Any:
    node: Any = settings
    for part in parts:
        node = node[part] if isinstance(node, dict) else getattr(node, part.replace("-", "_"))
    return node


def init_file(path: Path, *, force: bool = False) -> Path:
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = Settings().to_dict()
    data.pop("platforms")
    path.write_text("# Destill3D settings. Environment: DESTILL3D_SECTION__KEY=value\n" + dump_toml(data))
    return path
