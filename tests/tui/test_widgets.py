"""Pure rendering pieces of the TUI: point-cloud projection and shading, bars, the live fold."""

from __future__ import annotations

import numpy as np
import pytest

from destill3d_tui.engine import events as ev
from destill3d_tui.live import LiveState
from destill3d_tui.widgets.bars import bar, chart_lines
from destill3d_tui.widgets.depth_view import downsample, half_block_text
from destill3d_tui.widgets.pointcloud import SHADE_LEVELS, rasterize, rotation, shade_values
from destill3d_tui.widgets.stage_board import board_text, ordered_stages


def sphere(n: int = 4000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 3))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_rotation_is_orthonormal_and_turns_x_into_y() -> None:
    r = rotation(np.pi / 2, 0.0)
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.allclose(r @ np.array([1.0, 0, 0]), [0, 1, 0], atol=1e-12)
    assert np.isclose(np.linalg.det(rotation(0.3, -0.7)), 1.0)


def test_sphere_fills_a_round_disc_centred_in_the_grid() -> None:
    pts = sphere()
    raster = rasterize(pts, np.ones(len(pts)), np.eye(3), cols=40, rows=20)
    assert len(raster.lines) == 20 and all(len(line) == 40 for line in raster.lines)
    filled = raster.levels >= 0
    rows, cols = np.nonzero(filled)
    # a unit sphere fits min(80 dots wide, 80 dots tall) -> 40 cells wide, 20 rows tall, centred
    assert abs(cols.mean() - 19.5) < 1.0 and abs(rows.mean() - 9.5) < 1.0
    width_cells, height_cells = cols.max() - cols.min() + 1, rows.max() - rows.min() + 1
    assert abs(width_cells / 2 - height_cells) <= 2  # square dots: 2 cells wide per row tall
    assert raster.dot_count > 500


def test_points_off_the_grid_are_dropped_and_empty_cells_blank() -> None:
    pts = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]], dtype=np.float32)
    raster = rasterize(pts, np.array([1.0, 1.0]), np.eye(3), cols=10, rows=5)
    assert raster.dot_count == 1
    assert (raster.levels >= 0).sum() == 1
    assert rasterize(np.zeros((0, 3)), np.zeros(0), np.eye(3), 4, 2).lines == ["    ", "    "]


def test_rotating_a_flat_plate_changes_its_outline() -> None:
    rng = np.random.default_rng(1)
    plate = np.column_stack([rng.uniform(-1, 1, 3000), rng.uniform(-1, 1, 3000), np.zeros(3000)]).astype(np.float32)
    flat = rasterize(plate, np.ones(3000), rotation(0.0, 0.0), 30, 15)
    tilted = rasterize(plate, np.ones(3000), rotation(0.0, np.pi / 2), 30, 15)
    assert np.unique(np.nonzero(flat.levels >= 0)[0]).size == 1  # seen edge-on: one row of cells
    assert (tilted.levels >= 0).sum() > 100  # seen face-on: a filled square
    assert flat.lines != tilted.lines


def test_depth_shading_makes_the_near_side_brighter() -> None:
    pts = np.array([[0, -1, 0], [0, 1, 0]], dtype=np.float32)  # y is depth: -1 near, +1 far
    values = shade_values(pts, None, None, np.eye(3), "depth")
    assert values[0] == pytest.approx(1.0) and values[1] == pytest.approx(0.0)
    raster = rasterize(pts, values, np.eye(3), 10, 5)
    assert raster.levels.max() == SHADE_LEVELS - 1  # the near point wins the shared cell


def test_normal_and_curvature_shading() -> None:
    pts = sphere(200)
    lit = shade_values(pts, pts, None, np.eye(3), "normal")
    assert lit.min() >= 0 and lit.max() <= 1 and lit.std() > 0.1
    curv = np.linspace(0, 1, 200, dtype=np.float32)
    shaded = shade_values(pts, None, curv, np.eye(3), "curvature")
    assert shaded[0] == 0 and shaded[-1] == 1 and np.all(np.diff(shaded) >= 0)
    # no normals: falls back to depth instead of failing
    assert shade_values(pts, None, None, np.eye(3), "normal").max() == pytest.approx(1.0)


def test_bars_use_eighth_blocks() -> None:
    assert bar(0.0, 4) == "    "
    assert bar(1.0, 4) == "████"
    assert bar(0.5, 4) == "██  "
    assert bar(1 / 32, 4) == "▏   "
    lines = chart_lines([("stl", 10), ("[WIP]", 5)], width=40)
    assert lines[0].startswith("stl") and lines[0].endswith("10")
    assert lines[1].startswith("[WIP]") and lines[1].count("█") == lines[0].count("█") // 2


def test_stage_board_orders_stages_and_keeps_unknown_ones() -> None:
    order = [s for s, _ in ordered_stages({"stored": 3, "queued": 1, "weird": 2})]
    assert order[:6] == ["queued", "acquired", "extracted", "classified", "stored", "failed"]
    assert order[-1] == "weird"
    text = board_text({"stored": 1234}, 80).plain
    assert "STORED" in text and "1,234" in text


def test_depth_view_downsamples_with_aspect_and_two_rows_per_cell() -> None:
    image = np.arange(64 * 32, dtype=np.uint8).reshape(64, 32)
    small = downsample(image, cols=16, rows=8)
    assert small.shape == (16, 8)
    assert half_block_text(small).plain.count("\n") == 7


def test_live_state_folds_events() -> None:
    now = [1000.0]
    live = LiveState(clock=lambda: now[0])
    live.apply([
        ev.StageStarted(1, "local:a", "acquire", at=990.0),
        ev.StageProgressed(1, "acquire", 5, 10),
        ev.StageStarted(2, "local:b", "extract", at=991.0),
        ev.ItemStored(2, "local:b", "s2", bytes_in=1000, bytes_kept=100, at=995.0),
        ev.ItemFailed(3, "local:c", "extract", "parse_error", "bad [b]file[/b]", attempts=1),
        ev.PipelineStateChanged("running"),
        ev.RateBudgetChanged("thingiverse", 3, 10, banned=True),
    ])
    assert live.active[1].progress == 0.5 and 2 not in live.active
    assert live.session_stored == 1 and live.compression_ratio == 10.0
    assert live.failures[0].reason == "parse_error" and live.session_failed == 1
    assert live.pipeline_state == "running" and live.rates["thingiverse"].banned
    assert live.throughput(5) == [0, 0, 0, 0, 1]
    assert live.take_changed() == {1, 2, 3} and live.take_changed() == set()


def test_fit_unit_sphere_centres_and_scales_an_off_centre_cloud() -> None:
    from destill3d_tui.widgets.pointcloud import fit_unit_sphere

    pts = sphere(500) * 0.3 + np.array([0.5, -0.2, 0.1], dtype=np.float32)
    fitted = fit_unit_sphere(pts)
    assert np.allclose((fitted.min(axis=0) + fitted.max(axis=0)) / 2, 0, atol=1e-5)
    assert np.linalg.norm(fitted, axis=1).max() == pytest.approx(1.0, abs=1e-5)
