"""Settings layers: defaults <- TOML <- environment <- overrides, with did-you-mean errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from destill3d_tui.engine import config
from destill3d_tui.engine.errors import ConfigError


def test_defaults_match_the_spec() -> None:
    s = config.Settings()
    assert s.extraction.target_points == 2048
    assert s.extraction.sampling_strategy == "hybrid"
    assert s.extraction.oversample_ratio == 5.0
    assert s.classification.batch_size == 32


def test_layers_apply_in_order(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("[extraction]\ntarget_points = 4096\nseed = 7\n")
    env = {"DESTILL3D_EXTRACTION__TARGET_POINTS": "1024"}
    s = config.load_settings(toml, environ=env)
    assert s.extraction.target_points == 1024  # env beats file
    assert s.extraction.seed == 7  # file beats default
    s = config.load_settings(toml, {"extraction.target_points": "512"}, environ=env)
    assert s.extraction.target_points == 512  # flags beat env


def test_nested_env_and_platform_tables() -> None:
    env = {
        "DESTILL3D_PLATFORMS__THINGIVERSE__BASE_URL": "http://127.0.0.1:9",
        "DESTILL3D_ACQUISITION__ALLOW_HOSTS": "127.0.0.1:9, localhost:10",
        "DESTILL3D_EXTRACTION__TESSELLATION__PRESET": "preview",
        "DESTILL3D_EXTRACTION__COMPUTE_VIEWS": "yes",
    }
    s = config.load_settings(None, environ=env)
    assert s.platform("thingiverse").base_url == "http://127.0.0.1:9"
    assert s.platform("sketchfab").base_url == ""
    assert s.acquisition.allow_hosts == ["127.0.0.1:9", "localhost:10"]
    assert s.extraction.tessellation.preset == "preview"
    assert s.extraction.compute_views is True


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'target_points'"):
        config.load_settings(None, environ={"DESTILL3D_EXTRACTION__TARGET_POINT": "5"})
    with pytest.raises(ConfigError, match="did you mean 'extraction'"):
        config.load_settings(None, {"extractoin.seed": 1}, environ={})


def test_bad_values_are_errors() -> None:
    with pytest.raises(ConfigError, match="expected int"):
        config.load_settings(None, environ={"DESTILL3D_EXTRACTION__TARGET_POINTS": "many"})
    with pytest.raises(ConfigError, match="expected bool"):
        config.load_settings(None, environ={"DESTILL3D_EXTRACTION__COMPUTE_VIEWS": "maybe"})


def test_set_and_init_write_valid_toml(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "config.toml"
    config.init_file(path)
    with pytest.raises(ConfigError, match="already exists"):
        config.init_file(path)
    config.set_value(path, "extraction.target_points", "1024")
    config.set_value(path, "platforms.thingiverse.base_url", "http://127.0.0.1:8000")
    s = config.load_settings(path, environ={})
    assert s.extraction.target_points == 1024
    assert s.platform("thingiverse").base_url == "http://127.0.0.1:8000"
    with pytest.raises(ConfigError, match="unknown setting"):
        config.set_value(path, "extraction.nope", "1")
    assert config.load_settings(path, environ={}).extraction.target_points == 1024  # file untouched


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "destill3d_tui", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_cli_config_commands_round_trip(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    assert _cli("--config", str(cfg), "config", "show").returncode == 2  # missing explicit file
    assert _cli("config", "init", env={"DESTILL3D_CONFIG": str(cfg)}).returncode == 0
    assert _cli("--config", str(cfg), "config", "set", "extraction.seed", "3").returncode == 0
    shown = _cli("--config", str(cfg), "config", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert '"seed": 3' in shown.stdout
    bad = _cli("--config", str(cfg), "--set", "extraction.sed=1", "config", "show")
    assert bad.returncode == 2
    assert "did you mean 'seed'" in bad.stderr


def test_values_outside_their_range_are_errors_that_give_the_range(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"extraction.target_points = 100 is out of range: allowed 256-16384"):
        config.load_settings(None, environ={"DESTILL3D_EXTRACTION__TARGET_POINTS": "100"})
    with pytest.raises(ConfigError, match=r"target_points = 20000 .*allowed 256-16384"):
        config.load_settings(None, {"extraction.target_points": 20000}, environ={})
    with pytest.raises(ConfigError, match=r"oversample_ratio = 0.5 .*allowed 1-100"):
        config.load_settings(None, {"extraction.oversample_ratio": "0.5"}, environ={})
    with pytest.raises(ConfigError, match=r"platforms.thingiverse.concurrency = 0 .*allowed 1-64"):
        config.load_settings(None, environ={"DESTILL3D_PLATFORMS__THINGIVERSE__CONCURRENCY": "0"})
    with pytest.raises(ConfigError, match=r"near_duplicate_threshold = 1.5 .*allowed 0-1"):
        config.load_settings(None, {"pipeline.near_duplicate_threshold": 1.5}, environ={})
    with pytest.raises(ConfigError, match=r"sampling_strategy = 'best' is not allowed: one of uniform, fps"):
        config.load_settings(None, {"extraction.sampling_strategy": "best"}, environ={})
    toml = tmp_path / "c.toml"
    toml.write_text("[extraction]\ntarget_points = 128\n")
    with pytest.raises(ConfigError, match="allowed 256-16384"):
        config.load_settings(toml, environ={})
    with pytest.raises(ConfigError, match="allowed 256-16384"):
        config.set_value(toml, "extraction.target_points", "100")  # nothing written on a bad value
    assert toml.read_text() == "[extraction]\ntarget_points = 128\n"
    edges = {"extraction.target_points": 256, "extraction.oversample_ratio": 1.0, "logging.level": "info"}
    assert config.load_settings(None, edges, environ={}).extraction.target_points == 256  # bounds are allowed
    config.check_ranges(config.Settings())  # the defaults are inside every range


def test_cli_refuses_points_outside_the_range() -> None:
    bad = _cli("--set", "extraction.target_points=100", "config", "show")
    assert bad.returncode == 2 and "allowed 256-16384" in bad.stderr
    flag = _cli("extract", "file", "any.stl", "--points", "100")
    assert flag.returncode == 2 and "--points = 100 is out of range: allowed 256-16384" in flag.stderr
