"""Train the shipped point-cloud classifier on ModelNet40 (CPU-friendly) and export it to ONNX.

Architecture: a compact PointNet++-style network ("pn2knn").  Centroids come from farthest
point sampling and neighbourhoods from k nearest neighbours, both written as plain tensor ops
(``argmax``/``min`` unrolled, ``topk`` on pairwise distances), so the ONNX graph has no custom
ops and runs on onnxruntime's CPU and CUDA providers.  During training the FPS order is
precomputed once per shape (FPS is invariant to rotation about the up axis, the main
augmentation), which gives the same centroids as the in-graph FPS the export uses.

Usage (reproduces the shipped model: a fixed 40-epoch cosine schedule, seed 0, one thread;
about 47 minutes on one core of the 2-core machine)::

    .venv/bin/pip install torch==2.13.0
    .venv/bin/python tools/train_classifier.py --out runs/mn40_p512 --threads 1
    .venv/bin/python tools/export_classifier.py --ckpt runs/mn40_p512/best.pt \
        --out destill3d_tui/engine/classify/models --notes tools/classifier_card_notes.md

``--minutes`` runs the schedule on wall time instead (not reproducible: the epoch count then
depends on the machine's load).

Torch is needed only here: the application runs the exported ONNX file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from destill3d_tui.engine.classify.canonical import canonicalise  # numpy only

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "modelnet40_train_1024.npz"


# ----------------------------------------------------------------------------- geometry ops
def fps_torch(xyz: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Farthest point sampling as plain tensor ops.

    Parameters
    ----------
    xyz : (B, N, 3) float tensor.
    n_samples : number of points to pick.

    Returns
    -------
    (B, n_samples) int64 indices. The first pick is point 0, so on an input that is already
    FPS-ordered (the engine's preparation) the result is exactly the prefix, the same centroids
    the training saw; on any other order it is still a farthest point sample.
    """
    far = torch.zeros(xyz.shape[0], dtype=torch.long, device=xyz.device)
    mind = torch.full(xyz.shape[:2], 1e10, dtype=xyz.dtype, device=xyz.device)
    picks = []
    idx = far
    for _ in range(n_samples):
        picks.append(idx)
        last = torch.gather(xyz, 1, idx.view(-1, 1, 1).expand(-1, 1, 3))  # (B,1,3)
        mind = torch.minimum(mind, ((xyz - last) ** 2).sum(-1))
        idx = mind.argmax(dim=1)
    return torch.stack(picks, dim=1)


def fps_numpy(xyz: np.ndarray, n_samples: int) -> np.ndarray:
    """Batched FPS in numpy with the same rule as :func:`fps_torch`. xyz (B, N, 3) -> (B, n_samples)."""
    b = xyz.shape[0]
    centre = xyz.mean(axis=1, keepdims=True)
    idx = ((xyz - centre) ** 2).sum(-1).argmax(axis=1)
    mind = np.full(xyz.shape[:2], 1e10, dtype=np.float32)
    out = np.empty((b, n_samples), dtype=np.int64)
    rows = np.arange(b)
    for i in range(n_samples):
        out[:, i] = idx
        last = xyz[rows, idx][:, None, :]
        mind = np.minimum(mind, ((xyz - last) ** 2).sum(-1))
        idx = mind.argmax(axis=1)
    return out


def gather_points(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, N, C), idx (B, S) or (B, S, K) -> (B, S, C) or (B, S, K, C)."""
    b, _, c = x.shape
    flat = idx.reshape(b, -1)
    out = torch.gather(x, 1, flat.unsqueeze(-1).expand(-1, -1, c))
    return out.reshape(*idx.shape, c)


def knn(query: torch.Tensor, ref: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k nearest ``ref`` points for each ``query`` point: (B,S,3),(B,N,3) -> (B,S,k)."""
    d = (query * query).sum(-1, keepdim=True) - 2 * query @ ref.transpose(1, 2) + (ref * ref).sum(-1).unsqueeze(1)
    return d.topk(k, dim=-1, largest=False).indices


# ----------------------------------------------------------------------------- network
class MLP(nn.Sequential):
    """Shared per-point MLP on the last dim with BatchNorm over channels."""

    def __init__(self, dims: list[int]) -> None:
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b, bias=False), BNLast(b), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class BNLast(nn.BatchNorm1d):
    """BatchNorm over the last dimension of an (..., C) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).reshape(shape)


class SetAbstraction(nn.Module):
    def __init__(self, n_centroids: int, k: int, dims: list[int]) -> None:
        super().__init__()
        self.n_centroids, self.k = n_centroids, k
        self.mlp = MLP(dims)

    def forward(
        self, xyz: torch.Tensor, feats: torch.Tensor | None, ordered: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if ordered:  # input already FPS-ordered: the prefix is the FPS sample
            new_xyz = xyz[:, : self.n_centroids]
        else:
            new_xyz = gather_points(xyz, fps_torch(xyz, self.n_centroids))
        idx = knn(new_xyz, xyz, self.k)  # (B,S,K)
        rel = gather_points(xyz, idx) - new_xyz.unsqueeze(2)  # (B,S,K,3)
        grouped = rel if feats is None else torch.cat([rel, gather_points(feats, idx)], dim=-1)
        return new_xyz, self.mlp(grouped).amax(dim=2)


class PN2KNN(nn.Module):
    """Compact PointNet++ (kNN grouping). forward(points (B,N,3)) -> (logits (B,C), embedding (B,E))."""

    def __init__(self, n_classes: int = 40, width: int = 1, s1: int = 128, s2: int = 32, k: int = 16,
                 upright: bool = False) -> None:  # fmt: skip
        super().__init__()
        w = width
        self.sa1 = SetAbstraction(s1, k, [3, 32 * w, 32 * w, 64 * w])
        self.sa2 = SetAbstraction(s2, k, [64 * w + 3, 128 * w, 128 * w])
        self.glob = MLP([128 * w + 3, 256 * w, 512 * w])
        emb = 256
        self.head = nn.Sequential(nn.Linear(512 * w, emb, bias=False), nn.BatchNorm1d(emb), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(emb, n_classes)
        # "is this cloud the right way up?" (one logit), from the same embedding: what the up-axis
        # estimate asks of each candidate axis (engine/classify/upaxis.py)
        self.up = nn.Linear(emb, 1) if upright else None
        self.ordered = False  # training sets True (precomputed FPS order); export leaves False

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(logits, embedding), and the upright logit (B, 1) when the model has that head."""
        xyz1, f1 = self.sa1(points, None, self.ordered)
        # FPS of an FPS-prefix is its own prefix, so the ordered shortcut stays valid one level down
        xyz2, f2 = self.sa2(xyz1, f1, self.ordered)
        g = self.glob(torch.cat([xyz2, f2], dim=-1)).amax(dim=1)
        emb = self.head(g)
        if self.up is None:
            return self.fc(self.drop(emb)), emb
        return self.fc(self.drop(emb)), emb, self.up(emb)


def model_for(targs: dict, state: dict[str, torch.Tensor]) -> PN2KNN:
    """The network a run's arguments (a checkpoint's ``args``) describe, with ``state``'s weights,
    in eval mode on FPS-ordered clouds; the upright head exists when the weights have one."""
    model = PN2KNN(len(state["fc.bias"]), int(targs.get("width", 1)), int(targs.get("s1", 128)),
                   int(targs.get("s2", 32)), int(targs.get("k", 16)), upright="up.weight" in state)  # fmt: skip
    model.load_state_dict(state)
    model.eval()
    model.ordered = True
    return model


def load_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """A checkpoint's training arguments and weights; a per-epoch file without arguments takes its
    run's (last.pt)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    targs = ck.get("args") or torch.load(path.parent / "last.pt", map_location="cpu", weights_only=False)["args"]
    return targs, ck["model"]


# ----------------------------------------------------------------------------- data
def stratified_split(labels: np.ndarray, val_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = max(1, round(len(idx) * val_frac))
        va.append(idx[:n_val])
        tr.append(idx[n_val:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


def augment(pts: np.ndarray, rng: np.random.Generator, rot_deg: float = 180.0, canonical: bool = False) -> np.ndarray:
    """Rotation about z (up) within +-rot_deg, anisotropic scale 0.8-1.25, translation, clipped jitter. (B,N,3).

    With ``canonical`` the scale is applied in the shape's own frame before the turn (a wider or
    deeper object, not a sheared one), and the result is put in the canonical ground frame last,
    exactly as the engine prepares a cloud: the network sees what inference feeds it.
    """
    b = pts.shape[0]
    th = rng.uniform(-np.radians(rot_deg), np.radians(rot_deg), b)
    c, s = np.cos(th), np.sin(th)
    rot = np.zeros((b, 3, 3), np.float32)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1
    scale = rng.uniform(0.8, 1.25, (b, 1, 3)).astype(np.float32)
    out = (pts * scale) @ rot.transpose(0, 2, 1) if canonical else (pts @ rot.transpose(0, 2, 1)) * scale
    out = out + rng.uniform(-0.1, 0.1, (b, 1, 3)).astype(np.float32)
    out = out + np.clip(rng.normal(0, 0.01, out.shape), -0.03, 0.03).astype(np.float32)
    return canonicalise(out) if canonical else out.astype(np.float32)


def rotate_z(pts: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float32)
    return (pts @ rot.T).astype(np.float32)


def augment_turn_only(pts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each (B, N, 3) cloud turned about z by a uniformly random angle, nothing else."""
    return np.stack([rotate_z(p, a) for p, a in zip(pts, rng.uniform(0, 2 * np.pi, len(pts)), strict=True)])


# rotations taking a shape's up (+z) to each wrong signed axis: upside down (-z) half the time,
# laid on a side (+-x, +-y) otherwise, what the up-axis estimate's wrong candidates look like
_WRONG_UP = [
    np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]], np.float32),  # up -> -z
    np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float32),  # up -> -y
    np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float32),  # up -> +y
    np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], np.float32),  # up -> +x
    np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], np.float32),  # up -> -x
]


def laid_wrong(pts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each (B, N, 3) z-up cloud turned about its up axis at random, then laid the wrong way up.

    Upside down for half of them, on one of its four sides for the rest. Rotations keep the FPS
    order valid (distances are unchanged).
    """
    out = np.empty_like(pts)
    for i, p in enumerate(pts):
        k = 0 if rng.random() < 0.5 else int(rng.integers(1, len(_WRONG_UP)))
        out[i] = rotate_z(p, float(rng.uniform(0, 2 * np.pi))) @ _WRONG_UP[k].T
    return out


def upright_accuracy(model: PN2KNN, right: np.ndarray, wrong: np.ndarray, bs: int = 128) -> float:
    """Share of clouds whose upright logit has the right sign (right-way-up > 0, wrong-way < 0)."""
    model.eval()
    hits = 0
    with torch.no_grad():
        for pts, sign in ((right, 1.0), (wrong, -1.0)):
            for i in range(0, len(pts), bs):
                up = model(torch.from_numpy(pts[i : i + bs]))[2][:, 0].numpy()
                hits += int((sign * up > 0).sum())
    return hits / (len(right) + len(wrong))


# ----------------------------------------------------------------------------- train / eval
def resume(
    path: Path, model: nn.Module, opt: torch.optim.Optimizer, rng: np.random.Generator
) -> tuple[int, int, float]:
    """Load weights, optimiser and both RNG states from ``path``; returns (next epoch, step, best score)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    return state["epoch"] + 1, state["steps"], state["best"]


@torch.no_grad()
def predict(model: PN2KNN, pts: np.ndarray, bs: int = 128) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    logits, embs = [], []
    for i in range(0, len(pts), bs):
        lo, em = model(torch.from_numpy(pts[i : i + bs]))[:2]
        logits.append(lo.numpy())
        embs.append(em.numpy())
    return np.concatenate(logits), np.concatenate(embs)


def accuracy(logits: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[float, float]:
    pred = logits.argmax(1)
    per = [float((pred[labels == c] == c).mean()) for c in range(n_classes) if (labels == c).any()]
    return float((pred == labels).mean()), float(np.mean(per))


def step_loss(model: PN2KNN, xtr: np.ndarray, ytr: np.ndarray, sel: np.ndarray, rng: np.random.Generator,
              args: argparse.Namespace) -> torch.Tensor:  # fmt: skip
    """One batch's loss: the class loss on right-way-up clouds, plus (with ``--upright``) the upright
    head's loss over them and as many wrong-way-up clouds as ``args.upright`` asks (drawn at random)."""
    right, wrong, flipped = batch_clouds(xtr, sel, rng, args)
    if not args.upright:
        logits, _ = model(torch.from_numpy(right))
        return F.cross_entropy(logits, torch.from_numpy(ytr[sel]), label_smoothing=args.smoothing)
    n_wrong, n_pairs = len(wrong), len(flipped)
    logits, _, up = model(torch.from_numpy(np.concatenate([right, wrong, flipped])))
    target = torch.cat([torch.ones(len(sel)), torch.zeros(n_wrong + n_pairs)])
    cls = F.cross_entropy(logits[: len(sel)], torch.from_numpy(ytr[sel]), label_smoothing=args.smoothing)
    loss = cls + 0.5 * F.binary_cross_entropy_with_logits(up[:, 0], target)
    if n_pairs:  # the shape against its own upside-down copy: the estimate's hardest choice, ranked directly
        up_right, up_flipped = up[:n_pairs, 0], up[len(sel) + n_wrong :, 0]
        loss = loss + args.pair_weight * F.softplus(up_flipped - up_right).mean()
    return loss


def batch_clouds(xtr: np.ndarray, sel: np.ndarray, rng: np.random.Generator,
                 args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """A training batch's clouds, augmented: the right-way-up ones (``sel``), and with ``--upright``
    as many others laid wrong as it asks (drawn at random) and ``--flip-pairs``' share of the right
    ones upside down (empty arrays otherwise)."""
    right = augment(xtr[sel], rng, args.rot_deg, args.canonical)
    if not args.upright:
        return right, right[:0], right[:0]
    n_wrong = max(1, round(len(sel) * args.upright))
    wrong = augment(laid_wrong(xtr[rng.choice(len(xtr), n_wrong)], rng), rng, args.rot_deg, args.canonical)
    n_pairs = round(len(sel) * args.flip_pairs)
    return right, wrong, upside_down(right[:n_pairs], args.canonical) if n_pairs else right[:0]


def upside_down(ready: np.ndarray, canonical: bool) -> np.ndarray:
    """The same model-ready clouds (B, N, 3) turned upside down (half a turn about x), prepared again
    as the engine prepares its -z candidate: only the sign of up differs between the two."""
    flipped = (ready @ _WRONG_UP[0].T).astype(np.float32)
    return canonicalise(flipped) if canonical else flipped


def flip_accuracy(model: PN2KNN, right: np.ndarray, canonical: bool, bs: int = 128) -> float:
    """Share of clouds whose upright logit is higher than that of their own upside-down copy."""
    model.eval()
    hits = 0
    with torch.no_grad():
        for i in range(0, len(right), bs):
            r = right[i : i + bs]
            up_r = model(torch.from_numpy(r))[2][:, 0]
            up_f = model(torch.from_numpy(upside_down(r, canonical)))[2][:, 0]
            hits += int((up_r > up_f).sum())
    return hits / len(right)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--points", type=int, default=512, help="model input size (FPS from the 1024 given)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--minutes", type=float, default=0, help="wall budget: the cosine schedule runs on wall time")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=1)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--s1", type=int, default=128)
    ap.add_argument("--s2", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-frac", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--holdout", type=str, default="", help="comma-separated classes left out (zero/few-shot study)")
    ap.add_argument("--rot-deg", type=float, default=15.0, help="rotation about z: uniform in +-this many degrees")
    ap.add_argument("--canonical", action="store_true",
                    help="train on the canonical ground frame (engine.classify.canonical) of shapes turned by "
                    "--rot-deg")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (weights, optimiser, RNG, epoch)")
    ap.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    ap.add_argument("--init", type=Path, default=None, help="warm start from a checkpoint (same widths)")
    ap.add_argument("--fps-cache", type=Path, default=None, help="where the precomputed FPS order is cached")
    ap.add_argument("--bench", action="store_true", help="time a few steps and exit")
    ap.add_argument("--upright", type=float, default=0.0,
                    help="train an upright head too: this many wrong-way-up clouds per right one in a batch "
                    "(0.5 = 16 extra per 32), its loss weighted 0.5")
    ap.add_argument("--flip-pairs", type=float, default=0.0,
                    help="with --upright: this share of a batch's right-way-up clouds joins it upside down too, "
                    "and the head is asked to rank each above its own flipped copy (a pairwise logistic loss)")
    ap.add_argument("--pair-weight", type=float, default=1.0, help="weight of the --flip-pairs ranking loss")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "train.log", "a", buffering=1)  # noqa: SIM115

    def say(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        log.write(line + "\n")

    data = np.load(args.data)
    pts_all = data["points"].astype(np.float32)
    labels_all = data["labels"].astype(np.int64)
    classes = [str(c) for c in data["classes"]]
    keep_classes = list(range(len(classes)))
    if args.holdout:
        held = {classes.index(c.strip()) for c in args.holdout.split(",")}
        keep_classes = [c for c in keep_classes if c not in held]
    tr_idx, va_idx = stratified_split(labels_all, args.val_frac, args.seed)
    np.savez(args.out / "split.npz", train=tr_idx, val=va_idx)
    remap = {c: i for i, c in enumerate(keep_classes)}
    tr_idx = np.array([i for i in tr_idx if labels_all[i] in remap])
    va_idx_k = np.array([i for i in va_idx if labels_all[i] in remap])
    n_classes = len(keep_classes)

    cache = args.fps_cache or Path("/tmp") / f"d3d_fps_order_{args.points}.npy"
    longer = sorted(Path("/tmp").glob("d3d_fps_order_*.npy"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    longer = [p for p in longer if int(p.stem.rsplit("_", 1)[1]) >= args.points]
    if cache.exists() or (longer and not args.fps_cache):
        # an FPS order's prefix is the FPS sample of that size, so a longer cached order serves too
        order = np.load(cache if cache.exists() else longer[0])[:, : args.points]
    else:
        say(f"FPS-ordering {len(pts_all)} shapes to {args.points} points")
        t0 = time.time()
        order = np.concatenate([fps_numpy(pts_all[i : i + 1024], args.points) for i in range(0, len(pts_all), 1024)])
        np.save(str(cache) + ".tmp.npy", order)
        Path(str(cache) + ".tmp.npy").rename(cache)
        say(f"  done in {time.time() - t0:.0f}s")
    pts_fps = np.take_along_axis(pts_all, order[..., None], axis=1)  # (M, P, 3), FPS-ordered

    ytr = np.array([remap[c] for c in labels_all[tr_idx]])
    yva = np.array([remap[c] for c in labels_all[va_idx_k]])
    xtr, xva = pts_fps[tr_idx], pts_fps[va_idx_k]
    # validation as inference will see it: aligned, and every shape turned at random (a fixed draw)
    xva_turned = augment_turn_only(xva, np.random.default_rng(args.seed + 1))
    if args.canonical:
        xva, xva_turned = canonicalise(xva), canonicalise(xva_turned)

    if args.upright:
        # wrong-way-up validation clouds, a fixed draw, prepared as inference prepares a candidate
        xva_wrong = laid_wrong(pts_fps[va_idx_k], np.random.default_rng(args.seed + 2))
        xva_wrong = canonicalise(xva_wrong) if args.canonical else xva_wrong

    model = PN2KNN(n_classes, args.width, args.s1, args.s2, args.k, upright=args.upright > 0)
    if args.init:
        # strict=False: a warm start from a model without the upright head starts that head fresh
        model.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=False)["model"],
                              strict=not args.upright)  # fmt: skip
    model.ordered = True
    n_par = sum(p.numel() for p in model.parameters())
    say(f"params {n_par} train {len(xtr)} val {len(xva)} classes {n_classes} args {vars(args)}")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps_per_epoch = len(xtr) // args.batch

    if args.bench:
        model.train()
        for i in range(6):
            if i == 1:
                t0 = time.time()
            sel = rng.choice(len(xtr), args.batch)
            logits = model(torch.from_numpy(augment(xtr[sel], rng)))[0]
            loss = F.cross_entropy(logits, torch.from_numpy(ytr[sel]), label_smoothing=0.2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        dt = (time.time() - t0) / 5
        say(f"bench: {dt * 1000:.0f} ms/step, {dt * steps_per_epoch / 60:.2f} min/epoch, params {n_par}")
        return

    # The cosine schedule runs on wall time when a budget is given (--minutes): on a shared machine
    # the epoch time varies, and the learning rate must reach zero exactly when the budget ends.
    budget_s = args.minutes * 60
    best = -1.0
    t_start = time.time()
    epoch, step, done = 0, 0, False
    total_steps = args.epochs * steps_per_epoch
    if args.resume and (args.out / "last.pt").exists():
        epoch, step, best = resume(args.out / "last.pt", model, opt, rng)
        say(f"resumed after epoch {epoch} (step {step}, best {best:.4f})")
        done = step >= total_steps

    def progress_now() -> float:
        return (time.time() - t_start) / budget_s if budget_s else step / total_steps

    while not done:
        model.train()
        perm = rng.permutation(len(xtr))
        t_ep = time.time()
        tot_loss, n_steps = 0.0, 0
        for s in range(steps_per_epoch):
            progress = progress_now()
            if progress >= 1.0:
                done = True
                break
            lr = args.lr * 0.5 * (1 + math.cos(math.pi * progress))
            if not args.init:
                lr *= min(1.0, (step + 1) / (steps_per_epoch * 0.5))  # warm-up over half an epoch
            for g in opt.param_groups:
                g["lr"] = lr
            sel = perm[s * args.batch : (s + 1) * args.batch]
            loss = step_loss(model, xtr, ytr, sel, rng, args)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot_loss += float(loss.detach())
            n_steps += 1
            step += 1
        ep_min = (time.time() - t_ep) / 60
        oa, macc = accuracy(predict(model, xva)[0], yva, n_classes)
        oa_t, macc_t = accuracy(predict(model, xva_turned)[0], yva, n_classes)
        up_acc = upright_accuracy(model, xva_turned, xva_wrong) if args.upright else float("nan")
        flip_acc = flip_accuracy(model, xva_turned, args.canonical) if args.upright else float("nan")
        say(f"epoch {epoch + 1} steps {n_steps} loss {tot_loss / max(n_steps, 1):.3f} lr {lr:.2e} "
            f"val {oa:.4f} mAcc {macc:.4f} turned {oa_t:.4f} mAcc {macc_t:.4f} upright {up_acc:.4f} "
            f"over-own-flip {flip_acc:.4f} "
            f"({ep_min:.2f} min, "
            f"{(time.time() - t_start) / 60:.1f} total, progress {progress_now():.2f})")
        # selection on the turned split: real files face any way
        score = oa_t if args.canonical or args.rot_deg >= 180 else oa
        best = max(best, score)
        state = {"model": model.state_dict(), "epoch": epoch, "args": vars(args), "classes": classes,
                 "keep_classes": keep_classes, "val_oa": oa, "val_macc": macc, "val_oa_turned": oa_t,
                 "val_macc_turned": macc_t, "val_upright": up_acc, "val_flip": flip_acc,
                 "steps": step, "best": best, "opt": opt.state_dict(),
                 "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}  # fmt: skip
        if score >= best:
            torch.save(state, args.out / "best.pt.tmp")
            (args.out / "best.pt.tmp").replace(args.out / "best.pt")
        torch.save({"model": model.state_dict(), "epoch": epoch, "args": vars(args)},
                   args.out / f"epoch{epoch + 1}.pt")  # any epoch
        torch.save(state, args.out / "last.pt.tmp")  # written whole, then renamed: a kill never leaves half a file
        (args.out / "last.pt.tmp").replace(args.out / "last.pt")
        epoch += 1
        done = done or (not budget_s and step >= total_steps)
    (args.out / "done.json").write_text(json.dumps({"best_val_oa": best, "epochs": epoch, "steps": step}))
    say(f"finished: best val {best:.4f}")


if __name__ == "__main__":
    main()
