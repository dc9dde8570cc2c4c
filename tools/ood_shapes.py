"""Out-of-distribution test material for the classifier's ``unknown`` rule, without torch:
synthetic clouds that are none of ModelNet's classes, and the AUROC of a score on them.

Used by ``export_classifier.py`` (the card's ``[unknown]`` table) and ``fit_tta.py`` (the same
rule with test-time augmentation).
"""

from __future__ import annotations

import numpy as np


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """Probability that an in-distribution score beats an out-of-distribution one (ties half)."""
    both = np.concatenate([inside, outside])
    ranks = np.empty(len(both))
    ranks[np.argsort(both, kind="stable")] = np.arange(1, len(both) + 1)
    for v in np.unique(both):  # average ranks of ties
        tie = both == v
        ranks[tie] = ranks[tie].mean()
    return float((ranks[: len(inside)].sum() - len(inside) * (len(inside) + 1) / 2) / (len(inside) * len(outside)))


def synthetic_ood(n: int, points: int, seed: int) -> np.ndarray:
    """(n, points, 3) clouds that are none of ModelNet's classes: random blob clusters, noise
    volumes, tori, helices and scattered boxes (a stand-in for odd parts and scan debris)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = i % 5
        if kind == 0:  # a few gaussian blobs
            centres = rng.normal(0, 1, (rng.integers(2, 6), 3))
            pick = rng.integers(len(centres), size=points)
            cloud = centres[pick] + rng.normal(0, rng.uniform(0.05, 0.3), (points, 3))
        elif kind == 1:  # noise filling a box
            cloud = rng.uniform(-1, 1, (points, 3)) * rng.uniform(0.3, 1, 3)
        elif kind == 2:  # a torus
            u, v = rng.uniform(0, 2 * np.pi, (2, points))
            r, s = rng.uniform(0.5, 1), rng.uniform(0.05, 0.4)
            cloud = np.stack([(r + s * np.cos(v)) * np.cos(u), (r + s * np.cos(v)) * np.sin(u), s * np.sin(v)], 1)
        elif kind == 3:  # a helix tube
            t = rng.uniform(0, rng.uniform(2, 6) * np.pi, points)
            cloud = np.stack([np.cos(t), np.sin(t), t / 6], 1) + rng.normal(0, 0.05, (points, 3))
        else:  # scattered small boxes
            centres = rng.uniform(-1, 1, (rng.integers(3, 9), 3))
            pick = rng.integers(len(centres), size=points)
            cloud = centres[pick] + rng.uniform(-0.1, 0.1, (points, 3))
        out.append(cloud @ np.linalg.qr(rng.normal(size=(3, 3)))[0].T)
    return np.asarray(out, dtype=np.float32)
