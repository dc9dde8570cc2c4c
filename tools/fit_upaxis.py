"""Fit and measure the geometric up-axis estimate (engine/classify/upaxis.py).

Each training shape (ModelNet: z up) is turned about z at random and laid on a random signed
axis (one of the 24 proper rotations of the cube after the turn); the six candidates' cues
(``upaxis.candidate_features``) are scored by a small MLP, fitted by maximum likelihood of a
softmax over the six; its weights go to ``classify/models/upaxis_scorer.npz``. The estimate is then measured on the
validation split of tools/train_classifier.py (seed 0, 10 %), never seen in the fit.

    .venv/bin/python tools/fit_upaxis.py            # writes the scorer, prints the validation figures
    .venv/bin/python tools/fit_upaxis.py --judge destill3d_pointnet_mn40_v3   # + the shipped model judging
    .venv/bin/python tools/fit_upaxis.py --cache runs/cues.npz --judge-ckpt runs/v4/best.pt   # a checkpoint
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import permutations, product
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_classifier import DATA, rotate_z, stratified_split

from destill3d_tui.engine.classify import upaxis


def cube_rotations() -> list[np.ndarray]:
    """The 24 proper rotations that permute and flip the axes."""
    out = []
    for perm, signs in product(permutations(range(3)), product((1, -1), repeat=3)):
        m = np.zeros((3, 3))
        m[range(3), perm] = signs
        if np.isclose(np.linalg.det(m), 1):
            out.append(m.astype(np.float32))
    return out


def lay(points: np.ndarray, rng: np.random.Generator, rots: list[np.ndarray]) -> tuple[np.ndarray, str]:
    """A random azimuth then a random cube rotation; returns the points and where +z went."""
    r = rots[rng.integers(len(rots))]
    p = rotate_z(points, float(rng.uniform(0, 2 * np.pi))) @ r.T
    up = r @ np.array([0, 0, 1], np.float32)
    i = int(np.abs(up).argmax())
    return p.astype(np.float32), ("" if up[i] > 0 else "-") + "xyz"[i]


def features_and_truth(pts: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng, rots = np.random.default_rng(seed), cube_rotations()
    feats, truth = [], []
    for p in pts:
        laid, up = lay(p, rng, rots)
        feats.append(upaxis.candidate_features(laid))
        truth.append(upaxis.SIGNED.index(up))
    return np.stack(feats), np.asarray(truth)


def fit(feats: np.ndarray, truth: np.ndarray, hidden: int = 64, epochs: int = 400, seed: int = 0,
        weight_decay: float = 1e-2) -> dict:  # fmt: skip
    """A small MLP scoring each candidate; trained on the softmax over the six (full batch, Adam).

    The weight decay keeps it from learning the training shapes (1e-4: 98 % up found on them,
    88 % on validation; 1e-2: 93 % and 90 %, the richer cues of 16 bands)."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    mean, std = feats.reshape(-1, feats.shape[2]).mean(0), feats.reshape(-1, feats.shape[2]).std(0) + 1e-6
    x = torch.from_numpy(((feats - mean) / std).astype(np.float32))
    y = torch.from_numpy(truth)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[2], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(epochs):
        loss = torch.nn.functional.cross_entropy(net(x)[..., 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    w1, b1, w2, b2 = (t.detach().numpy().astype(np.float64) for t in net.parameters())
    return {"mean": mean, "std": std, "w1": w1.T, "b1": b1, "w2": w2[0], "b2": b2}


def scores(model: dict, feats: np.ndarray) -> np.ndarray:
    """(n, 6) scores, as upaxis.geometry_scores computes them."""
    x = (feats - model["mean"]) / model["std"]
    return np.maximum(x @ model["w1"] + model["b1"], 0) @ model["w2"] + model["b2"]


def judged(model_id: str, pts: np.ndarray, geo: np.ndarray, truth: np.ndarray) -> dict:
    """Up found on the validation shapes with the classifier judging the geometry's shortlist,
    for several weights of its log-confidence (the engine's upaxis.JUDGE_WEIGHT is chosen here)."""
    from destill3d_tui.engine.classify.inference import OnnxClassifier
    from destill3d_tui.engine.classify.registry import ModelRegistry

    clf = OnnxClassifier(ModelRegistry().get(model_id), device="cpu")
    # a model with an upright head is judged by it, on a longer shortlist, as the engine does
    upright = bool(clf.model.upright_name)
    judge, n_short = (clf._judge_upright, upaxis.UPRIGHT_SHORTLIST) if upright else (clf._judge_up, upaxis.SHORTLIST)
    found = judged_by(judge, pts, geo, truth, n_short)
    found["judge"] = "upright head" if upright else "class confidence"
    return found


def checkpoint_judge(path: Path):
    """A judge like the engine's upright one, from a training checkpoint (train_classifier.py with
    --upright): each candidate prepared as the engine prepares it; it answers the head's logit
    (:func:`judged_by` measures its log-sigmoid, the engine's score, and the logit itself) and the
    class confidence (measured added to them)."""
    import torch
    from export_classifier import engine_ready
    from train_classifier import load_checkpoint, model_for

    torch.set_num_threads(1)
    targs, state = load_checkpoint(path)
    model = model_for(targs, state)
    n_points = int(targs["points"])

    def judge(laid: np.ndarray, axes: list[str]) -> np.ndarray:
        """(len(axes), 2): the head's logit, and the log of the top class probability (T = 1)."""
        ready = engine_ready(np.stack([upaxis.convert(laid, a, "z") for a in axes]), n_points, canonical_frame=True)
        with torch.no_grad():
            logits, _, up = model(torch.from_numpy(ready))
        up64, lo = up[:, 0].numpy().astype(np.float64), logits.numpy().astype(np.float64)
        top = -np.log(np.exp(lo - lo.max(1, keepdims=True)).sum(1))  # log softmax at the argmax
        return np.stack([up64, top], axis=1)

    return judge


def mirror_ratio(points: np.ndarray, seed: int = 0) -> float:
    """How far a z-up shape is from its own mirror image top to bottom, against sampling noise.

    Upside down, a shape that is its own mirror image about a horizontal plane is only its mirror
    image (half a turn about x = mirror in z, then in y), which the canonical frame and the height
    cues cannot tell apart. The cloud is split into two random halves A and B: the ratio is the
    chamfer distance from A to B mirrored in z (about the mean and the middle height, the closer)
    over the chamfer distance from A to B. Near 1: within sampling noise of that symmetry.
    """
    from scipy.spatial import cKDTree

    def chamfer(a: np.ndarray, b: np.ndarray) -> float:
        return 0.5 * float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())

    perm = np.random.default_rng(seed).permutation(len(points))
    a, b = points[perm[: len(points) // 2]], points[perm[len(points) // 2 :]]
    mirrored = []
    for centre in (float(points[:, 2].mean()), float(points[:, 2].max() + points[:, 2].min()) / 2):
        m = b.copy()
        m[:, 2] = 2 * centre - m[:, 2]
        mirrored.append(chamfer(a, m))
    return min(mirrored) / max(chamfer(a, b), 1e-12)


def sign_misses(pts: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> dict:
    """The misses that took the right axis upside down, and how many of those shapes are within 10 %
    of sampling noise of their own top-to-bottom mirror image (:func:`mirror_ratio` < 1.1)."""
    opposite = np.array([upaxis.SIGNED.index(a[1:] if a[0] == "-" else "-" + a) for a in upaxis.SIGNED])
    flipped = np.flatnonzero(pred == opposite[truth])
    mirror_like = sum(mirror_ratio(pts[i]) < 1.1 for i in flipped)
    return {"misses": int((pred != truth).sum()), "upside_down": len(flipped), "upside_down_mirror_like": mirror_like}


def judged_by(judge, pts: np.ndarray, geo: np.ndarray, truth: np.ndarray, n_short: int) -> dict:
    """Up found on the validation shapes, ``judge`` scoring the geometry's ``n_short`` best candidates."""
    rng, rots = np.random.default_rng(2), cube_rotations()  # the same draws as features_and_truth(seed=2)
    short = np.argsort(-geo, axis=1, kind="stable")[:, :n_short]
    conf = np.full((*geo.shape, 2), -np.inf)
    for i, p in enumerate(pts):
        laid, _ = lay(p, rng, rots)
        answer = np.asarray(judge(laid, [upaxis.SIGNED[k] for k in short[i]]))
        conf[i, short[i], : 1 if answer.ndim == 1 else 2] = answer.reshape(len(short[i]), -1)
    found: dict = {}
    listed = np.isfinite(conf[..., 0])
    # a checkpoint's judge answers the head's logit and its class confidence: both scores are measured
    scored = {"": conf[..., 0]}
    if np.isfinite(conf[..., 1]).any():
        logit = np.where(listed, conf[..., 0], 0.0)
        scored = {"log_sigmoid ": -np.logaddexp(0.0, -logit), "logit ": logit}
    best: tuple[float, str, np.ndarray] = (-1.0, "", truth)  # share found, which, its predictions
    for name, score in scored.items():
        for w in (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0):
            total = geo + np.where(listed, w * score, -np.inf)
            share = round(float((total.argmax(1) == truth).mean()), 4)
            found[f"{name}weight {w}"] = share
            best = max(best, (share, f"{name}weight {w}", total.argmax(1)), key=lambda b: b[0])
            if name:  # a judge that also lends its class confidence
                for wc in (0.5, 1.0, 2.0):
                    both = total + np.where(listed, wc * conf[..., 1], 0.0)
                    found[f"{name}weight {w} + class {wc}"] = round(float((both.argmax(1) == truth).mean()), 4)
    found["truth_in_shortlist"] = round(float((short == truth[:, None]).any(1).mean()), 4)
    found[f"misses at {best[1]}"] = sign_misses(pts, best[2], truth)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-shapes", type=int, default=0, help="0 = the whole training split")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--judge", default="", help="model id: also measure geometry + the classifier's confidence")
    ap.add_argument("--cache", type=Path, default=None, help="npz to keep the computed cues in (refits are quick)")
    ap.add_argument("--judge-ckpt", type=Path, default=None,
                    help="a train_classifier.py checkpoint with an upright head: up found with it judging the "
                    "shipped scorer's shortlist (nothing is refitted or written)")
    args = ap.parse_args()
    data = np.load(DATA)
    pts, labels = data["points"].astype(np.float32), data["labels"].astype(np.int64)
    tr, va = stratified_split(labels, 0.1, 0)
    if args.train_shapes:
        tr = np.sort(np.random.default_rng(0).permutation(tr)[: args.train_shapes])
    cues = dict(np.load(args.cache)) if args.cache and args.cache.exists() else {}
    if "fva" not in cues:
        cues["fva"], cues["tva"] = features_and_truth(pts[va], seed=2)
    if "ftr" not in cues and not args.judge_ckpt:  # judging a checkpoint needs the validation cues only
        cues["ftr"], cues["ttr"] = features_and_truth(pts[tr], seed=1)
    if args.cache:
        np.savez(args.cache, **cues)
    fva, tva = cues["fva"], cues["tva"]
    if args.judge_ckpt:  # measure a training checkpoint's head beside the shipped scorer; nothing written
        with np.load(upaxis.SCORER_FILE) as f:
            shipped = {k: f[k] for k in f.files}
        judge = checkpoint_judge(args.judge_ckpt)
        print(json.dumps(judged_by(judge, pts[va], scores(shipped, fva), tva, upaxis.UPRIGHT_SHORTLIST)))
        return
    ftr, ttr = cues["ftr"], cues["ttr"]
    model = fit(ftr, ttr, hidden=args.hidden)
    np.savez(upaxis.SCORER_FILE, **model)
    pred = scores(model, fva).argmax(axis=1)
    right = pred == tva
    axis_only = np.array([upaxis.SIGNED[a][-1] == upaxis.SIGNED[b][-1] for a, b in zip(pred, tva, strict=True)])
    classes = [str(c) for c in data["classes"]]
    per_class = {classes[c]: round(float(right[labels[va] == c].mean()), 3) for c in np.unique(labels[va])}
    worst = dict(sorted(per_class.items(), key=lambda kv: kv[1])[:6])
    print(f"wrote {upaxis.SCORER_FILE}")
    if args.judge:
        print(json.dumps(judged(args.judge, pts[va], scores(model, fva), tva)))
    print(json.dumps({"val_shapes": len(va), "val_up_found": round(float(right.mean()), 4),
                      "val_axis_found_any_sign": round(float(axis_only.mean()), 4),
                      "train_up_found": round(float((scores(model, ftr).argmax(1) == ttr).mean()), 4),
                      "worst_classes": worst}))


if __name__ == "__main__":
    main()
