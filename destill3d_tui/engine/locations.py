"""Where Destill3D keeps its files (platformdirs), with environment overrides.

Nothing here touches the disk at import time; callers create directories when they write.

- ``DESTILL3D_CONFIG``: path of the TOML config file (default: user config dir / config.toml)
- ``DESTILL3D_HOME``: one folder that replaces config, data and cache dirs (tests, portable use);
  compiled kernels stay in the user cache dir (:func:`kernel_cache_dir`)
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "destill3d"


def _home() -> Path | None:
    value = os.environ.get("DESTILL3D_HOME")
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME))


def config_file() -> Path:
    value = os.environ.get("DESTILL3D_CONFIG")
    return Path(value).expanduser() if value else config_dir() / "config.toml"


def data_dir() -> Path:
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    home = _home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME))


def default_database_path() -> Path:
    return data_dir() / "destill3d.db"


def index_dir() -> Path:
    return data_dir() / "index"


def user_models_dir() -> Path:
    return data_dir() / "models"


def temp_root() -> Path:
    return cache_dir() / "tmp"


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def kernel_cache_dir() -> Path:
    """Compiled extraction kernels (numba). Not under ``DESTILL3D_HOME``: compiled code belongs
    to this installation and machine, not to a data home, so every home shares one compile."""
    return Path(platformdirs.user_cache_dir(APP_NAME)) / "kernels"
