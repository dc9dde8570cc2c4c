"""A point cloud drawn in the terminal with braille cells, rotated with the arrow keys.

The rendering is pure (arrays in, characters and shade levels out) so it is unit-tested
without a terminal; :class:`PointCloudView` only turns those into styled text.
Each braille cell holds 2x4 dots and a terminal cell is about twice as tall as it is wide,
so one dot is roughly square: the unit sphere maps to a circle, not an ellipse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.color import Color
from textual.reactive import reactive
from textual.widget import Widget

SHADINGS = ("depth", "normal", "curvature")
SHADE_LEVELS = 8
"""Distinct brightness steps: enough to read shape, few enough that cells merge into runs."""
ROTATE_STEP = np.radians(15.0)
"""One key press turns the cloud by 15 degrees: 24 presses for a full turn."""
LIGHT = np.array([0.45, -0.6, 0.65])
"""Light from the upper left in front of the viewer (view space: x right, y into screen, z up)."""

# braille dot bit for the dot at (column, row) within a 2x4 cell
_DOT_BITS = np.array([[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]], dtype=np.int64)


def rotation(yaw: float, pitch: float) -> np.ndarray:
    """Rotation about z (yaw) then about x (pitch).

    Returns
    -------
    (3, 3) float64 matrix R; rotated points are ``points @ R.T``.
    """
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    return rx @ rz


def shade_values(
    points: np.ndarray,
    normals: np.ndarray | None,
    curvature: np.ndarray | None,
    matrix: np.ndarray,
    mode: str,
) -> np.ndarray:
    """Brightness in [0, 1] per point.

    Parameters
    ----------
    points : (n, 3) float32, on the unit sphere
    normals : (n, 3) float32 or None (falls back to depth)
    curvature : (n,) float32 or None (falls back to depth)
    matrix : (3, 3) the view rotation
    mode : "depth" (near is bright), "normal" (Lambert light) or "curvature" (high is bright)
    """
    rotated = points @ matrix.T
    if mode == "normal" and normals is not None and len(normals) == len(points):
        light = LIGHT / np.linalg.norm(LIGHT)
        # normals of an unoriented cloud may point inwards: light both sides
        return np.clip(np.abs((normals @ matrix.T) @ light), 0.0, 1.0)
    if mode == "curvature" and curvature is not None and len(curvature) == len(points):
        top = float(np.percentile(curvature, 95)) if len(curvature) else 0.0
        return np.clip(curvature / top, 0.0, 1.0) if top > 0 else np.zeros(len(points))
    depth = rotated[:, 1]
    span = float(depth.max() - depth.min()) if len(depth) else 0.0
    return 1.0 - (depth - depth.min()) / span if span > 0 else np.ones(len(points))


def fit_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre on the bounding-box middle and scale into the unit sphere.

    A snapshot is normalised about its centroid, which can leave the shape off-centre and
    small; fitting once (not per frame) keeps the size steady while the view rotates.

    points : (n, 3) -> (n, 3) float32
    """
    pts = np.asarray(points, dtype=np.float32)
    if len(pts) == 0:
        return pts
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
    radius = float(np.linalg.norm(pts - centre, axis=1).max())
    return (pts - centre) / radius if radius > 0 else pts - centre


@dataclass
class Raster:
    """A rendered frame: ``rows`` strings of ``cols`` characters and a shade level per cell.

    ``levels`` is (rows, cols) int8: -1 where the cell is empty, else 0..SHADE_LEVELS-1.
    """

    lines: list[str]
    levels: np.ndarray

    @property
    def dot_count(self) -> int:
        return sum(bin(ord(ch) - 0x2800).count("1") for line in self.lines for ch in line if ch != " ")


def rasterize(points: np.ndarray, values: np.ndarray, matrix: np.ndarray, cols: int, rows: int) -> Raster:
    """Project rotated points orthographically onto a braille grid.

    Parameters
    ----------
    points : (n, 3) float32 on the unit sphere
    values : (n,) float in [0, 1], the shade of each point
    matrix : (3, 3) rotation
    cols, rows : size of the grid in terminal cells

    The nearest point in a cell (smallest depth) decides that cell's shade.
    """
    levels = np.full((rows, cols), -1, dtype=np.int8)
    if cols <= 0 or rows <= 0 or len(points) == 0:
        return Raster([" " * max(cols, 0)] * max(rows, 0), levels)
    rotated = points @ matrix.T
    width, height = cols * 2, rows * 4
    size = min(width, height) - 1
    px = np.floor((rotated[:, 0] + 1.0) * 0.5 * size + (width - size) / 2).astype(np.int64)
    py = np.floor((1.0 - (rotated[:, 2] + 1.0) * 0.5) * size + (height - size) / 2).astype(np.int64)
    keep = (px >= 0) & (px < width) & (py >= 0) & (py < height)
    px, py, depth, vals = px[keep], py[keep], rotated[keep, 1], values[keep]
    bits = np.zeros((rows, cols), dtype=np.int64)
    np.bitwise_or.at(bits, (py // 4, px // 2), _DOT_BITS[px % 2, py % 4])
    cell = (py // 4) * cols + px // 2
    order = np.lexsort((depth, cell))  # by cell, nearest first
    first = np.unique(cell[order], return_index=True)[1]
    nearest = order[first]
    shade = np.clip((vals[nearest] * SHADE_LEVELS).astype(np.int64), 0, SHADE_LEVELS - 1)
    levels.flat[cell[nearest]] = shade
    lines = ["".join(chr(0x2800 + b) if b else " " for b in row) for row in bits]
    return Raster(lines, levels)


def shade_palette(low: Color, high: Color, steps: int = SHADE_LEVELS) -> list[Style]:
    """``steps`` foreground styles from ``low`` to ``high`` (theme colours)."""
    return [Style(color=low.blend(high, (i + 1) / steps).rich_color) for i in range(steps)]


def raster_text(raster: Raster, palette: list[Style]) -> Text:
    """Styled text of a raster: runs of equal shade share one span."""
    text = Text(no_wrap=True, overflow="crop")
    for r, line in enumerate(raster.lines):
        run_start, current = 0, int(raster.levels[r, 0]) if line else -1
        for c in range(1, len(line) + 1):
            level = int(raster.levels[r, c]) if c < len(line) else None
            if level != current:
                text.append(line[run_start:c], palette[current] if current >= 0 else Style())
                run_start, current = c, level if level is not None else -1
        if r < len(raster.lines) - 1:
            text.append("\n")
    return text


class PointCloudView(Widget, can_focus=True):
    """Draws a snapshot's points; arrows rotate, ``s`` cycles shading, ``0`` resets the view."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "rotate(-1, 0)", "Rotate left", show=False),
        Binding("right", "rotate(1, 0)", "Rotate right", show=False),
        Binding("up", "rotate(0, -1)", "Tilt up", show=False),
        Binding("down", "rotate(0, 1)", "Tilt down", show=False),
        Binding("s", "cycle_shading", "Shading", tooltip="Shade by depth, normal or curvature"),
        Binding("0", "reset_view", "Reset view", show=False),
    ]

    yaw: reactive[float] = reactive(np.radians(30.0))
    pitch: reactive[float] = reactive(np.radians(20.0))
    shading: reactive[str] = reactive("normal")

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._points: np.ndarray | None = None
        self._normals: np.ndarray | None = None
        self._curvature: np.ndarray | None = None

    def set_cloud(
        self, points: np.ndarray | None, normals: np.ndarray | None = None, curvature: np.ndarray | None = None
    ) -> None:
        """points : (n, 3), normals : (n, 3), curvature : (n,); None clears the view."""
        self._points = None if points is None else fit_unit_sphere(points)
        self._normals, self._curvature = normals, curvature
        self.refresh()

    @property
    def has_cloud(self) -> bool:
        return self._points is not None and len(self._points) > 0

    def action_rotate(self, d_yaw: int, d_pitch: int) -> None:
        self.yaw = float(self.yaw + d_yaw * ROTATE_STEP)
        self.pitch = float(np.clip(self.pitch + d_pitch * ROTATE_STEP, -np.pi / 2, np.pi / 2))

    def action_cycle_shading(self) -> None:
        self.shading = SHADINGS[(SHADINGS.index(self.shading) + 1) % len(SHADINGS)]

    def action_reset_view(self) -> None:
        self.yaw, self.pitch = np.radians(30.0), np.radians(20.0)

    def current_raster(self) -> Raster:
        cols, rows = self.content_size.width, max(self.content_size.height - 1, 1)
        if not self.has_cloud:
            return Raster([], np.zeros((0, 0), dtype=np.int8))
        matrix = rotation(self.yaw, self.pitch)
        values = shade_values(self._points, self._normals, self._curvature, matrix, self.shading)
        return rasterize(self._points, values, matrix, cols, rows)

    def render(self) -> Text:
        if not self.has_cloud:
            return Text("no point cloud selected", style="italic")
        variables = self.app.theme_variables
        palette = shade_palette(Color.parse(variables["panel"]), Color.parse(variables["accent"]))
        text = raster_text(self.current_raster(), palette)
        caption = f"\n{len(self._points)} pts · {self.shading} · yaw {np.degrees(self.yaw):.0f}° "
        caption += f"pitch {np.degrees(self.pitch):.0f}° · ←→↑↓ rotate, s shading"
        text.append(caption[: self.content_size.width + 1], style="dim")
        return text
