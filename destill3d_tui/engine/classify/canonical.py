"""A canonical frame in the ground plane: what makes the classifier blind to azimuth.

Real files face any way about their up axis (a print-bed STL, a scan), while ModelNet faces one
way. Rather than teach the network every azimuth, each cloud is turned into a frame computed
from the cloud itself: its principal axes in the xy plane (PCA of the x/y coordinates), each
axis' sign chosen so the third moment (skew) of the coordinates along it is positive. A shape
and any turned copy of it map to the same canonical cloud, so the prediction cannot depend on
azimuth (up to ties: see below). The classifier is trained on canonicalised clouds turned at
random *before* canonicalisation, so it sees exactly what inference feeds it.

Ties, and why they are harmless:
- a sign is ambiguous when the skew along that axis is near zero, i.e. the shape is nearly
  mirror-symmetric along it, where either sign gives nearly the same cloud;
- the axes are ambiguous when the two xy variances are nearly equal (round tables, bowls,
  pots): those shapes look alike at every azimuth, and training covered them at random ones.

The two signs are chosen independently, so the frame may be a mirror image (det = -1); no
class here depends on handedness, and it makes the frame mirror-invariant too.
"""

from __future__ import annotations

import numpy as np

METHOD = "pca_xy_skew"  # the card's ``input.canonical`` value for this frame


def ground_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The xy centre and canonical axes of each cloud.

    Parameters
    ----------
    points : (B, N, 3) float32, up axis z.

    Returns
    -------
    centre : (B, 2) float32, the xy mean.
    axes : (B, 2, 2) float32, rows are the major and minor axis (unit, sign by skew).
    """
    xy = points[..., :2].astype(np.float64)
    centre = xy.mean(axis=1)
    rel = xy - centre[:, None, :]
    cov = np.einsum("bni,bnj->bij", rel, rel) / max(points.shape[1], 1)
    _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues: column 1 is the major axis
    axes = np.stack([vecs[..., :, 1], vecs[..., :, 0]], axis=1)  # (B, 2, 2) rows
    proj = np.einsum("bni,bki->bnk", rel, axes)  # coordinates along each axis
    skew = (proj**3).mean(axis=1)  # (B, 2)
    axes = axes * np.where(skew < 0, -1.0, 1.0)[..., None]
    return centre.astype(np.float32), axes.astype(np.float32)


def canonicalise(points: np.ndarray) -> np.ndarray:
    """(B, N, 3) up-axis-z clouds -> the same clouds in their canonical ground frame.

    x/y become the coordinates along the major/minor axis (centred on the xy mean); z is kept.
    Point order is kept, so an FPS-ordered cloud stays FPS-ordered.
    """
    centre, axes = ground_frame(points)
    out = np.empty_like(points, dtype=np.float32)
    rel = points[..., :2] - centre[:, None, :]
    out[..., :2] = np.einsum("bni,bki->bnk", rel, axes)
    out[..., 2] = points[..., 2]
    return out


def azimuth_deg(points: np.ndarray) -> np.ndarray:
    """(B,) the angle in degrees of each cloud's major axis from +x (what the frame undid)."""
    _, axes = ground_frame(points)
    return np.degrees(np.arctan2(axes[:, 0, 1], axes[:, 0, 0]))
