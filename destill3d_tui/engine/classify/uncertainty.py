"""Softmax, calibration and uncertainty measures (spec 7.4)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(..., C) logits -> (..., C) probabilities at ``temperature`` (calibrated when fitted)."""
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy / log(C): 0 = one class certain, 1 = uniform. (..., C) -> (...)."""
    c = probs.shape[-1]
    h = -(probs * np.log(probs + 1e-12)).sum(axis=-1)
    return np.clip(h / np.log(c), 0.0, 1.0)


def tta_spread(probs_per_pass: np.ndarray) -> np.ndarray:
    """Disagreement between test-time-augmented passes, in [0, 1].

    Parameters
    ----------
    probs_per_pass : (T, B, C) probabilities of each pass.

    Returns
    -------
    (B,) twice the standard deviation, across passes, of the probability of the averaged top
    class (a probability's std is at most 0.5, so 1 means the passes disagree completely).
    """
    top = probs_per_pass.mean(axis=0).argmax(axis=-1)  # (B,)
    p_top = np.take_along_axis(probs_per_pass, top[None, :, None], axis=-1)[..., 0]  # (T, B)
    return np.clip(2.0 * p_top.std(axis=0), 0.0, 1.0)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins. probs (n, C), labels (n,)."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def energy(logits: np.ndarray, temperature: float) -> np.ndarray:
    """(B,) T * logsumexp(logits / T), computed stably: the free energy's negative, the ``unknown``
    rule's energy score (out-of-distribution inputs get lower logits across the board)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=1, keepdims=True)
    return temperature * (top[:, 0] + np.log(np.exp(z - top).sum(axis=1)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising validation NLL (golden-section search on log T in [-3, 3])."""
    return fit_temperature_for(lambda t: softmax(logits, t), labels)


def fit_temperature_for(probs_at: Callable[[float], np.ndarray], labels: np.ndarray) -> float:
    """Temperature minimising the NLL of ``probs_at(T)`` (n, C) on ``labels``: golden section on log T in [-3, 3]."""

    def nll(log_t: float) -> float:
        p = probs_at(float(np.exp(log_t)))
        return float(-np.log(p[np.arange(len(labels)), labels] + 1e-12).mean())

    lo, hi = -3.0, 3.0
    g = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))
