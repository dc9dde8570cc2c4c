"""Average the weights of several epochs of one train_classifier.py run (stochastic weight averaging).

The averaged weights need BatchNorm statistics of their own: they are recomputed over one pass of
the training split in batches composed as training composed them (right-way-up clouds, wrong-way
ones and, with ``--flip-pairs``, the same clouds upside down), so the upright head sees the
statistics it was trained under; or (``--bn-right-only``) of right-way-up clouds alone. The result
is a full checkpoint (the last epoch's metadata, the run's split) that tools/export_classifier.py
and tools/fit_upaxis.py ``--judge-ckpt`` take.

    .venv/bin/python tools/average_checkpoints.py --run runs/v4 --epochs 8-12 --out runs/v4_swa
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_classifier import (
    DATA,
    PN2KNN,
    accuracy,
    augment_turn_only,
    batch_clouds,
    canonicalise,
    flip_accuracy,
    fps_numpy,
    model_for,
    predict,
    stratified_split,
)


def averaged(run: Path, epochs: list[int]) -> dict[str, torch.Tensor]:
    """The mean of the floating-point tensors of ``run/epoch<N>.pt``; counters from the last."""
    states = [torch.load(run / f"epoch{e}.pt", map_location="cpu", weights_only=False)["model"] for e in epochs]
    return {k: (sum(s[k] for s in states) / len(states)) if states[0][k].is_floating_point() else states[-1][k]
            for k in states[0]}  # fmt: skip


@torch.no_grad()
def refresh_batchnorm(model: PN2KNN, x: np.ndarray, targs: dict, right_only: bool = False, seed: int = 0,
                      batch: int = 32) -> None:  # fmt: skip
    """Recompute every BatchNorm's running statistics as a plain average over one training pass
    (``right_only``: of right-way-up clouds alone, what classification feeds the model)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    rng = np.random.default_rng(seed)
    # the batches training composed (argparse names; an old run without --flip-pairs has none)
    upright = 0.0 if right_only else targs.get("upright", 0.0)
    composed = argparse.Namespace(**{"flip_pairs": 0.0, **targs, "upright": upright})
    for i in range(0, len(x) - batch + 1, batch):
        model(torch.from_numpy(np.concatenate(batch_clouds(x, np.arange(i, i + batch), rng, composed))))
    model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a train_classifier.py --out folder")
    ap.add_argument("--epochs", required=True, help="first-last, e.g. 8-12 (1-based, inclusive)")
    ap.add_argument("--out", type=Path, required=True, help="folder for swa.pt and the run's split.npz")
    ap.add_argument("--bn-right-only", action="store_true",
                    help="BatchNorm statistics from right-way-up clouds only (default: batches as in training)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    first, last = (int(v) for v in args.epochs.split("-"))
    state = torch.load(args.run / "last.pt", map_location="cpu", weights_only=False)
    targs = state["args"]
    if targs.get("holdout"):
        raise SystemExit("a --holdout run's labels are remapped: not supported here")
    model = model_for(targs, averaged(args.run, list(range(first, last + 1))))

    data = np.load(DATA)
    pts, labels = data["points"].astype(np.float32), data["labels"].astype(np.int64)
    tr, va = stratified_split(labels, float(targs["val_frac"]), int(targs["seed"]))
    cache = Path("/tmp") / f"d3d_fps_order_{targs['points']}.npy"
    order = np.load(cache) if cache.exists() else fps_numpy(pts, int(targs["points"]))
    x = np.take_along_axis(pts, order[..., None], axis=1)
    refresh_batchnorm(model, x[np.random.default_rng(0).permutation(tr)], targs, args.bn_right_only)

    turned = canonicalise(augment_turn_only(x[va], np.random.default_rng(int(targs["seed"]) + 1)))
    oa, macc = accuracy(predict(model, turned)[0], labels[va], len(state["keep_classes"]))
    flips = flip_accuracy(model, turned, True) if model.up is not None else float("nan")
    print(f"epochs {first}-{last}: validation turned {oa:.4f} mean per class {macc:.4f} over own flip {flips:.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    state.pop("opt", None)
    state.update(model=model.state_dict(), val_oa_turned=oa, val_macc_turned=macc, val_flip=flips,
                 averaged_epochs=f"{first}-{last}")  # fmt: skip
    torch.save(state, args.out / "swa.pt")
    shutil.copy(args.run / "split.npz", args.out / "split.npz")
    print(f"wrote {args.out / 'swa.pt'}")


if __name__ == "__main__":
    main()
