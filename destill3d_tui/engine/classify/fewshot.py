"""Few-shot prototypes in a classifier's embedding space.

A new class is defined by a handful of example snapshots: its prototype is the mean of their
L2-normalised penultimate-layer embeddings. A snapshot is scored against prototypes by cosine
similarity. Prototypes are kept per model in ``<data dir>/fewshot/<model_id>.npz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import locations


def unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length. (..., E) -> (..., E)."""
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


@dataclass
class Prototype:
    name: str
    vector: np.ndarray  # (E,) unit length
    examples: list[str]


def build(name: str, embeddings: np.ndarray, examples: list[str]) -> Prototype:
    """embeddings (k, E) of the examples -> one prototype."""
    return Prototype(name, unit(unit(embeddings).mean(axis=0)), list(examples))


class PrototypeStore:
    """The saved prototypes of one model."""

    def __init__(self, model_id: str, folder: Path | None = None) -> None:
        self.model_id = model_id
        self.path = (folder or locations.data_dir() / "fewshot") / f"{model_id}.npz"

    def load(self) -> dict[str, Prototype]:
        if not self.path.exists():
            return {}
        data = np.load(self.path, allow_pickle=False)
        names, vecs, ex = data["names"], data["vectors"], data["examples"]
        return {str(n): Prototype(str(n), v.astype(np.float32), str(e).split(",")) for n, v, e in
                zip(names, vecs, ex, strict=True)}  # fmt: skip

    def save(self, protos: dict[str, Prototype]) -> None:
        locations.ensure_dir(self.path.parent)
        names = sorted(protos)
        tmp = self.path.with_name(self.path.stem + ".part.npz")
        vectors = np.stack([protos[n].vector for n in names]) if names else np.zeros((0, 0), np.float32)
        examples = np.array([",".join(protos[n].examples) for n in names])
        np.savez(tmp, names=np.array(names), vectors=vectors, examples=examples)
        tmp.replace(self.path)

    def add(self, proto: Prototype) -> None:
        protos = self.load()
        protos[proto.name] = proto
        self.save(protos)

    def remove(self, name: str) -> bool:
        protos = self.load()
        found = protos.pop(name, None) is not None
        self.save(protos)
        return found


def scores(embeddings: np.ndarray, protos: list[Prototype], others: np.ndarray | None = None,
           temperature: float = 0.1) -> np.ndarray:  # fmt: skip
    """Probability-like score per (snapshot, prototype).

    Parameters
    ----------
    embeddings : (B, E) snapshot embeddings.
    protos : the requested few-shot classes.
    others : (K, E) unit prototypes of the model's own labels; they compete in the softmax so a
        snapshot that is plainly a known class does not score high on a new one.
    temperature : softmax temperature on cosine similarity.

    Returns
    -------
    (B, len(protos)) in [0, 1].
    """
    if not protos:
        return np.zeros((len(embeddings), 0), np.float32)
    bank = np.stack([p.vector for p in protos])
    if others is not None and len(others):
        bank = np.concatenate([bank, others])
    sims = unit(embeddings) @ unit(bank).T / temperature
    sims -= sims.max(axis=1, keepdims=True)
    e = np.exp(sims)
    return (e / e.sum(axis=1, keepdims=True))[:, : len(protos)].astype(np.float32)
