"""Up axis: conversion for classifier input, and an estimate when the file does not say.

Models state the up axis they were trained with (ModelNet: z). Snapshots say which axis their
points use (``processing.up_axis``: "z", "y", "x" when the format fixes it, "" when it does
not: glTF is y-up and 3MF z-up by specification; STL/OBJ/PLY/OFF/XYZ/STEP/IGES carry no
convention). Rotations here are proper (det = +1), so shapes are never mirrored.

When the file does not say, :func:`estimate` decides among the six signed axes from

- the geometry: every candidate "up" is scored by a small MLP over cues of how an object
  stands (its side silhouette and cross-sections: share of points, spread and width per height
  band; a support face: the convex hull area of the lowest slab against the footprint and
  whether the centroid projects inside it; the skew and extent along the candidate), fitted on ModelNet training
  shapes laid on random axes (``tools/fit_upaxis.py``, weights in ``models/upaxis_scorer.npz``),
- the classifier: a model with an upright head (``destill3d_pointnet_mn40_v3``) is asked of
  each of the geometry's best candidates whether the shape is the right way up in it; other
  models lend their class confidence instead, and
- a prior per platform and format: files from print-bed platforms (Thingiverse, Printables,
  MyMiniFactory, Cults3D) and STL files are laid out z-up on a build plate, which adds
  :data:`PRINT_BED_PRIOR` to the +z candidate's score; scanners and DCC exports (OBJ, PLY,
  XYZ ...) get no prior, STEP/IGES none either (no convention).

The decision and how it was reached is one line in ``processing.transforms``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# rotation taking the named axis onto +z
_TO_Z = {
    "z": np.eye(3, dtype=np.float32),
    "y": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float32),  # +90 deg about x: y -> z
    "x": np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=np.float32),  # -90 deg about y: x -> z
    "-z": np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]], dtype=np.float32),  # 180 deg about x: -z -> z
    "-y": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float32),  # -90 deg about x: -y -> z
    "-x": np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], dtype=np.float32),  # +90 deg about y: -x -> z
}
AXES = ("z", "y", "x")  # what a file format can state
SIGNED = ("z", "-z", "y", "-y", "x", "-x")  # what the estimate can find ("z" means +z)

PRINT_BED_PLATFORMS = frozenset({"thingiverse", "printables", "myminifactory", "cults3d"})
PRINT_BED_FORMATS = frozenset({"STL", "3MF"})
PRINT_BED_PRIOR = 2.0  # logit bonus of +z for print-bed files: the geometry overrides it only when clearly surer

JUDGE_WEIGHT = 1.0  # the classifier's log-confidence against the geometry's score (fit_upaxis --judge: see the v3 card)
SHORTLIST = 3  # candidates the classifier judges (the geometry's best): 3 extra passes, not 6
UPRIGHT_SHORTLIST = 4  # candidates a model's upright head judges (one batched pass of 4 clouds)
BINS = 16  # height bands of the profile cues
END_SLABS = (0.01, 0.05, 0.1)  # the bottom and top slabs (share of the height) whose share of points is a cue
SCORER_FILE = Path(__file__).resolve().parent / "models" / "upaxis_scorer.npz"  # tools/fit_upaxis.py writes it
_SCORER: dict[str, np.ndarray] = {}


def rotation(src: str, dst: str = "z") -> np.ndarray:
    """(3, 3) rotation taking points whose up axis is ``src`` to a frame whose up axis is ``dst``."""
    if src not in _TO_Z or dst not in _TO_Z:
        raise ValueError(f"up axis must be one of {SIGNED}, not {src!r} -> {dst!r}")
    return _TO_Z[dst].T @ _TO_Z[src]


def convert(points: np.ndarray, src: str, dst: str = "z") -> np.ndarray:
    """points (..., N, 3) from up-axis ``src`` to ``dst``."""
    return (points @ rotation(src, dst).T).astype(np.float32)


def describe(src: str, dst: str, how: str) -> str:
    """The line recorded in ``processing.transforms``."""
    if src == dst:
        return f"classifier input: up axis {src} ({how}), no rotation"
    return f"classifier input: rotated {src}-up to {dst}-up ({how})"


# ----------------------------------------------------------------------------- geometry cues
def _hull_area(xy: np.ndarray) -> float:
    """Area of the 2-D convex hull of (n, 2) points (0 when degenerate)."""
    if len(xy) < 3:
        return 0.0
    from scipy.spatial import ConvexHull, QhullError

    try:
        return float(ConvexHull(xy).volume)  # in 2-D, "volume" is the area
    except QhullError:
        return 0.0


def _inside_hull(xy: np.ndarray, point: np.ndarray) -> float:
    """1.0 when ``point`` (2,) lies inside the convex hull of ``xy`` (n, 2), else 0.0."""
    if len(xy) < 3:
        return 0.0
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(xy)
    except QhullError:
        return 0.0
    return float((hull.equations[:, :2] @ point + hull.equations[:, 2] <= 1e-9).all())


def _profile(p: np.ndarray) -> np.ndarray:
    """Cues of one candidate frame (up = +z), all unchanged by a turn about z.

    Per height band (:data:`BINS`): the share of points, their mean and largest distance from
    the vertical line through the centroid, the band's own spread as the square roots of its
    ground-plane covariance's eigenvalues, and how far its centre sits off that line (the
    silhouette and the cross-sections of the shape from the side); then the support cues: the
    hull area of the lowest and highest 3 % slab over the footprint, whether the centroid projects
    inside each, the skew of the heights, the extent along z over the largest extent, the share
    of points within 1, 5 and 10 % of the bottom and of the top, the centroid's height and the
    heights' kurtosis.
    """
    z, xy = p[:, 2], p[:, :2] - p[:, :2].mean(axis=0)
    span = max(float(np.ptp(z)), 1e-9)
    z01 = (z - z.min()) / span
    radius = np.sqrt((xy**2).sum(axis=1))
    rmax = max(float(radius.max()), 1e-9)
    bins = np.minimum((z01 * BINS).astype(int), BINS - 1)
    count = np.bincount(bins, minlength=BINS)
    n = np.maximum(count, 1)

    def per_band(values: np.ndarray) -> np.ndarray:
        return np.bincount(bins, weights=values, minlength=BINS) / n

    spread = per_band(radius)
    widest = np.zeros(BINS)
    np.maximum.at(widest, bins, radius)
    mx, my = per_band(xy[:, 0]), per_band(xy[:, 1])
    cxx, cyy = per_band(xy[:, 0] ** 2) - mx**2, per_band(xy[:, 1] ** 2) - my**2
    cxy = per_band(xy[:, 0] * xy[:, 1]) - mx * my
    half_trace, det = (cxx + cyy) / 2, cxx * cyy - cxy**2
    disc = np.sqrt(np.maximum(half_trace**2 - det, 0.0))
    major, minor = np.sqrt(np.maximum(half_trace + disc, 0.0)), np.sqrt(np.maximum(half_trace - disc, 0.0))
    off = np.sqrt(mx**2 + my**2)
    footprint = max(_hull_area(xy), 1e-9)
    low, high = z01 < 0.03, z01 > 0.97
    centre = np.zeros(2)
    sd = float(z.std()) or 1e-9
    skew = float((((z - z.mean()) / sd) ** 3).mean())
    kurtosis = float((((z - z.mean()) / sd) ** 4).mean())
    support = [_hull_area(xy[low]) / footprint, _hull_area(xy[high]) / footprint,
               _inside_hull(xy[low], centre), _inside_hull(xy[high], centre),
               skew, span / max(float(np.ptp(p, axis=0).max()), 1e-9)]  # fmt: skip
    ends = [float((z01 < t).mean()) for t in END_SLABS] + [float((z01 > 1 - t).mean()) for t in END_SLABS]
    bands = np.concatenate([count / len(z), spread / rmax, widest / rmax, major / rmax, minor / rmax, off / rmax])
    return np.concatenate([bands, support, ends, [float(z01.mean()), kurtosis]])


def candidate_features(points: np.ndarray) -> np.ndarray:
    """(6, F) cues for each signed axis of ``SIGNED`` taken as up; points (N, 3), any scale."""
    return np.stack([_profile(convert(points, axis, "z")) for axis in SIGNED])


def _scorer() -> dict[str, np.ndarray]:
    """The fitted scorer (a small MLP over candidate_features), loaded once."""
    if not _SCORER:
        with np.load(SCORER_FILE) as f:
            _SCORER.update({k: f[k] for k in f.files})
    return _SCORER


def geometry_scores(points: np.ndarray) -> np.ndarray:
    """(6,) scores (logits) of each signed axis in ``SIGNED`` being up, from the geometry alone."""
    m = _scorer()
    x = (candidate_features(points) - m["mean"]) / m["std"]
    hidden = np.maximum(x @ m["w1"] + m["b1"], 0.0)
    return hidden @ m["w2"] + m["b2"]


# ----------------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class UpEstimate:
    """Which signed axis of the file is up, and how that was decided (for processing.transforms)."""

    axis: str  # one of SIGNED
    how: str  # "from the file", "estimated: ...", "print-bed prior ..."
    confidence: float  # softmax share of the chosen candidate (1.0 when the file says)


def prior_scores(platform: str, fmt: str) -> tuple[np.ndarray, str]:
    """(6,) prior bonus per candidate, and the reason ('' when no prior applies)."""
    bonus = np.zeros(len(SIGNED))
    if platform.lower() in PRINT_BED_PLATFORMS:
        bonus[0] = PRINT_BED_PRIOR
        return bonus, f"{platform.lower()} files sit on a print bed, z up"
    if fmt.upper() in PRINT_BED_FORMATS:
        bonus[0] = PRINT_BED_PRIOR
        return bonus, f"{fmt.upper()} files are laid out z up for printing"
    return bonus, ""


Judge = Callable[[list[str]], np.ndarray]  # candidate axes -> log of the classifier's top probability each


def estimate(points: np.ndarray, file_axis: str = "", platform: str = "", fmt: str = "",
             judge: Judge | None = None, judge_weight: float = JUDGE_WEIGHT,
             judge_name: str = "the classifier's confidence", shortlist: int = SHORTLIST) -> UpEstimate:  # fmt: skip
    """Decide the up axis of ``points`` (N, 3).

    The file's own statement wins (glTF y, 3MF z, FBX's header). Otherwise the geometry's
    score of each signed axis plus the per-platform/format prior; with a ``judge``, its score
    of the ``shortlist`` best candidates is added too, weighted by ``judge_weight``: the
    classifier's log-confidence (a shape upright looks like its class, upside down it looks
    like nothing; :data:`JUDGE_WEIGHT`), or a model's upright head, trained for exactly this
    question (its log-probability, weighted as its card says). The largest sum wins.
    """
    if file_axis in AXES:
        return UpEstimate(file_axis, "from the file", 1.0)
    geo = geometry_scores(points)
    prior, reason = prior_scores(platform, fmt)
    total = geo + prior
    cues = "support face, silhouette"
    if judge is not None:
        short = np.argsort(-total, kind="stable")[:shortlist]
        bonus = np.full(len(SIGNED), -np.inf)
        bonus[short] = judge_weight * np.asarray(judge([SIGNED[i] for i in short]), dtype=np.float64)
        total = total + bonus
        cues += f" and {judge_name}"
    best = int(total.argmax())
    share = np.exp(total - total.max())
    confidence = float(share[best] / share.sum())
    geo_best = SIGNED[int(geo.argmax())]
    if not reason:
        how = f"estimated from the geometry ({cues}), {confidence:.0%}"
    elif geo_best == SIGNED[best]:
        how = f"estimated: {reason}, and the geometry agrees ({confidence:.0%})"
    elif best == 0:
        how = f"estimated: {reason}; the geometry preferred {geo_best} but not clearly ({confidence:.0%})"
    else:
        how = f"estimated from the geometry ({confidence:.0%}), overriding the prior: {reason}"
    return UpEstimate(SIGNED[best], how, confidence)
