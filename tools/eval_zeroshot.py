"""Measure zero-/few-shot on classes a classifier never saw (the issue's protocol).

Uses a checkpoint trained with ``train_classifier.py --holdout ...`` (30 ModelNet40 classes);
the 10 held-out classes are the "new" ones.

(b) few-shot: N-way (the 10 unseen classes) k-shot episodes; prototypes are the mean unit
    embedding of k random shapes per class, the other shapes of those classes are queries.
(a) names: the NameMapper (exact / synonym table / MiniLM) over the 30 known labels, for
    synonyms of known labels (should map correctly) and for the unseen class names and their
    synonyms (should be reported unserved, not guessed onto a known label).

    .venv/bin/python tools/train_classifier.py --out runs/mn30_p512 --threads 1 \
        --holdout bathtub,bottle,cone,cup,guitar,keyboard,laptop,piano,stairs,tent
    .venv/bin/python tools/eval_zeroshot.py --ckpt runs/mn30_p512/best.pt > runs/zeroshot.json
    # then tools/export_classifier.py ... --zero-shot runs/zeroshot.json puts the figures on the card
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_classifier import DATA, fps_numpy, model_for, predict

from destill3d_tui.engine.classify.zeroshot import NameMapper

# names that mean a label, with the label they mean (none of these are in the synonym table)
KNOWN_SYNONYMS = {
    "couch": "sofa", "aeroplane": "airplane", "automobile": "car", "bookcase": "bookshelf", "human": "person",
    "television stand": "tv_stand", "flowerpot": "flower_pot", "night table": "night_stand",
    "potted plant": "plant", "computer monitor": "monitor", "floor lamp": "lamp", "door panel": "door",
    "dining table": "table", "office chair": "chair", "drinking glass": "glass_box", "curtains": "curtain",
}  # fmt: skip
UNSEEN_SYNONYMS = {"bath tub": "bathtub", "water bottle": "bottle", "traffic cone": "cone", "coffee cup": "cup",
                   "acoustic guitar": "guitar", "computer keyboard": "keyboard", "notebook computer": "laptop",
                   "grand piano": "piano", "staircase": "stairs", "camping tent": "tent"}  # fmt: skip


HOLDOUT = ("bathtub", "bottle", "cone", "cup", "guitar", "keyboard", "laptop", "piano", "stairs", "tent")


def few_shot(args: argparse.Namespace, data: Any, unseen: list[int]) -> dict[str, float]:
    """N-way k-shot accuracy on the held-out classes in the checkpoint's embedding space."""
    ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    t = ck["args"]
    model = model_for(t, ck["model"])
    labels = data["labels"].astype(np.int64)
    idx = np.flatnonzero(np.isin(labels, unseen))
    pts = data["points"][idx].astype(np.float32)
    x = np.take_along_axis(pts, fps_numpy(pts, t["points"])[..., None], axis=1)
    _, emb = predict(model, x)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    y = labels[idx]
    rng = np.random.default_rng(0)
    few = {}
    for k in (1, 5):
        accs = []
        for _ in range(args.episodes):
            support, protos = [], []
            for c in unseen:
                pick = rng.choice(np.flatnonzero(y == c), k, replace=False)
                support += list(pick)
                p = emb[pick].mean(0)
                protos.append(p / np.linalg.norm(p))
            query = np.setdiff1d(np.arange(len(y)), support)
            pred = np.array(unseen)[(emb[query] @ np.stack(protos).T).argmax(1)]
            accs.append(float((pred == y[query]).mean()))
        few[f"{k}-shot"] = round(float(np.mean(accs)), 4)
    return few


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=None, help="30-class checkpoint; without it only (a) is measured")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = np.load(DATA)
    classes = [str(c) for c in data["classes"]]
    held = [classes.index(c) for c in HOLDOUT]
    keep = [c for c in range(len(classes)) if c not in held]
    few = few_shot(args, data, held) if args.ckpt else "not measured (no 30-class checkpoint given)"
    mapper = NameMapper([classes[c] for c in keep])
    known = {n: mapper.match(n) for n, lb in KNOWN_SYNONYMS.items() if lb in [classes[c] for c in keep]}
    unseen = held
    names_unseen = [classes[c] for c in unseen] + list(UNSEEN_SYNONYMS)
    wrong = {n: m.label for n in names_unseen if (m := mapper.match(n)).label is not None}
    result = {
        "unseen_classes": [classes[c] for c in unseen],
        "few_shot_10way": few,
        "chance": 0.1,
        "names_known_correct": f"{sum(m.label == KNOWN_SYNONYMS[n] for n, m in known.items())}/{len(known)}",
        "names_known_missed": {n: m.label for n, m in known.items() if m.label != KNOWN_SYNONYMS[n]},
        "names_unseen_reported_unserved": f"{len(names_unseen) - len(wrong)}/{len(names_unseen)}",
        "names_unseen_wrongly_mapped": wrong,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
