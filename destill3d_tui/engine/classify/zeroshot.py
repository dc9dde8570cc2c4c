"""Zero-shot answers for arbitrary class names, as honestly as the offline world allows.

Each requested name is served by the first method that can serve it, and every answer says
which one did:

- ``encoder``: a user-supplied OpenShape-style point encoder (ONNX, ``kind = "point_encoder"``
  in its card) with precomputed text embeddings for the names it knows; cosine similarity,
  softmax over the requested names.
- ``few_shot``: a prototype built from example snapshots (``classify few-shot``), scored in the
  classifier's embedding space against the model's own label prototypes.
- ``synonym``: the name means a label the classifier knows (exact, the synonym table, or
  all-MiniLM-L6-v2 similarity above a threshold: couch -> sofa); score = the classifier's
  calibrated probability of that label.
- names none of these serve are listed in ``unserved``; they are never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from . import fewshot
from .minilm import model_dir, shared_minilm

# names that mean a ModelNet40 label where MiniLM alone falls short (couch, aeroplane, automobile,
# bookcase, human are left to MiniLM, which maps them at similarity >= 0.7)
SYNONYMS: dict[str, str] = {
    "aircraft": "airplane", "plane": "airplane", "jet": "airplane", "airliner": "airplane",
    "bath": "bathtub", "tub": "bathtub", "shelf": "bookshelf",
    "vehicle": "car", "sedan": "car", "armchair": "chair", "seat": "chair", "mug": "cup", "teacup": "cup",
    "drape": "curtain", "drapes": "curtain", "writing_desk": "desk", "chest_of_drawers": "dresser",
    "flowerpot": "flower_pot", "planter": "flower_pot", "pot": "flower_pot", "display": "monitor",
    "screen": "monitor", "nightstand": "night_stand", "bedside_table": "night_stand",
    "man": "person", "woman": "person", "figure": "person", "people": "person", "houseplant": "plant",
    "extractor_hood": "range_hood", "cooker_hood": "range_hood", "basin": "sink", "washbasin": "sink",
    "settee": "sofa", "loveseat": "sofa", "staircase": "stairs", "steps": "stairs",
    "stair": "stairs", "barstool": "stool", "tv_cabinet": "tv_stand", "television_stand": "tv_stand",
    "tv_unit": "tv_stand", "commode": "toilet", "wc": "toilet", "closet": "wardrobe", "armoire": "wardrobe",
    "game_console": "xbox", "console": "xbox", "notebook_computer": "laptop", "fireplace": "mantel",
    "fireplace_mantel": "mantel", "bed_frame": "bed", "ottoman": "stool", "bowls": "bowl", "bottles": "bottle",
}  # fmt: skip
MINILM_THRESHOLD = 0.7  # below this similarity a name is not taken to mean a known label


def normalise_name(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def phrase(label: str) -> str:
    return label.replace("_", " ")


@dataclass
class NameMatch:
    name: str
    label: str | None
    method: str  # exact | synonym_table | synonym_minilm | none
    similarity: float = 0.0


@dataclass
class ZeroShotAnswer:
    snapshot_id: str
    label: str | None  # one of the requested names, or None when no requested name could be served
    confidence: float
    method: str  # encoder | few_shot | synonym | none
    scores: dict[str, float] = field(default_factory=dict)  # requested name -> score (served names only)
    methods: dict[str, str] = field(default_factory=dict)  # requested name -> how it was served / "unserved"
    unserved: list[str] = field(default_factory=list)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@lru_cache(maxsize=8)
def _label_bank(labels: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """MiniLM embeddings of each label's phrase and of the table's synonyms (with their labels)."""
    texts = [phrase(lb) for lb in labels]
    targets = list(labels)
    for syn, lb in SYNONYMS.items():
        if lb in labels:
            texts.append(phrase(syn))
            targets.append(lb)
    return targets, shared_minilm().encode(texts)


class NameMapper:
    """Maps free-form class names onto a classifier's labels (exact, table, MiniLM)."""

    def __init__(self, labels: list[str], use_minilm: bool = True, threshold: float = MINILM_THRESHOLD) -> None:
        self.labels = list(labels)
        self.use_minilm = use_minilm and model_dir() is not None
        self.threshold = threshold

    def match(self, name: str) -> NameMatch:
        key = normalise_name(name)
        if key in self.labels:
            return NameMatch(name, key, "exact", 1.0)
        if key.rstrip("s") in self.labels:
            return NameMatch(name, key.rstrip("s"), "exact", 1.0)
        if SYNONYMS.get(key) in self.labels:
            return NameMatch(name, SYNONYMS[key], "synonym_table", 1.0)
        if not self.use_minilm:
            return NameMatch(name, None, "none")
        targets, bank = _label_bank(tuple(self.labels))
        sims = bank @ shared_minilm().encode([phrase(key)])[0]
        best = int(sims.argmax())
        if sims[best] >= self.threshold:
            return NameMatch(name, targets[best], "synonym_minilm", float(sims[best]))
        return NameMatch(name, None, "none", float(sims[best]))


def answer(
    snapshot_ids: list[str],
    classes: list[str],
    probs: np.ndarray,
    embeddings: np.ndarray,
    labels: list[str],
    mapper: NameMapper,
    prototypes: dict[str, fewshot.Prototype],
    label_prototypes: np.ndarray | None = None,
    encoder_scores: dict[str, np.ndarray] | None = None,
) -> list[ZeroShotAnswer]:
    """Combine the methods for a batch.

    Parameters
    ----------
    probs : (B, C) calibrated classifier probabilities over ``labels``.
    embeddings : (B, E) classifier embeddings (few-shot space).
    label_prototypes : (C, E) unit prototypes of the classifier's labels, or None.
    encoder_scores : requested name -> (B,) encoder scores, for names the encoder serves.
    """
    encoder_scores = encoder_scores or {}
    served: dict[str, tuple[str, np.ndarray]] = {}
    methods: dict[str, str] = {}
    few = [prototypes[c] for c in classes if c in prototypes and c not in encoder_scores]
    few_scores = fewshot.scores(embeddings, few, label_prototypes)
    for c in classes:
        if c in encoder_scores:
            served[c], methods[c] = ("encoder", encoder_scores[c]), "encoder"
        elif c in prototypes:
            served[c] = ("few_shot", few_scores[:, [p.name for p in few].index(c)])
            methods[c] = f"few_shot ({len(prototypes[c].examples)} examples)"
        else:
            m = mapper.match(c)
            if m.label is None:
                methods[c] = "unserved"
                continue
            served[c] = ("synonym", probs[:, labels.index(m.label)])
            methods[c] = f"synonym ({m.method} -> {m.label}" + (f", {m.similarity:.2f})" if m.similarity < 1 else ")")
    unserved = [c for c in classes if c not in served]
    out = []
    for b, sid in enumerate(snapshot_ids):
        scores = {c: float(v[b]) for c, (_, v) in served.items()}
        if not scores:
            out.append(ZeroShotAnswer(sid, None, 0.0, "none", {}, methods, unserved,
                                      "none of the requested names can be served offline"))  # fmt: skip
            continue
        best = max(scores, key=lambda c: scores[c])
        out.append(ZeroShotAnswer(sid, best, scores[best], served[best][0], scores, methods, unserved,
                                  methods[best]))  # fmt: skip
    return out


def encoder_text_scores(point_emb: np.ndarray, text_emb: dict[str, np.ndarray], classes: list[str],
                        logit_scale: float = 100.0) -> dict[str, np.ndarray]:  # fmt: skip
    """OpenShape-style scoring: softmax over the requested names the encoder has text embeddings for."""
    names = [c for c in classes if c in text_emb]
    if not names:
        return {}
    t = fewshot.unit(np.stack([text_emb[c] for c in names]))
    logits = fewshot.unit(point_emb) @ t.T * logit_scale
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return {c: p[:, i] for i, c in enumerate(names)}
