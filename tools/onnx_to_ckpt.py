"""Rebuild a training checkpoint from a shipped fp32 ``.ordered.onnx`` graph (a warm start).

The export folds each BatchNorm into the Linear before it, so the graph holds ``W`` and a bias
``b`` per layer. Here each Linear gets ``W`` back and its BatchNorm is set so that it passes
``z + b`` through in eval mode *and* close to it in train mode: its running mean/variance are
the statistics of ``z = W x`` over real training shapes, and its affine part undoes them
(gamma = sqrt(var + eps), beta = mean + b). The result predicts what the ONNX graph predicts.

Usage::

    .venv/bin/python tools/onnx_to_ckpt.py \
        --onnx destill3d_tui/engine/classify/models/destill3d_pointnet_mn40.ordered.onnx \
        --out runs/mn40_from_onnx.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_classifier import DATA, PN2KNN, fps_numpy

# the Linear layers of PN2KNN in graph order (the exporter names the bias-free MatMul weights
# onnx::MatMul_<n>, in this order) and the BatchNorm that follows each
LINEARS = ["sa1.mlp.0", "sa1.mlp.3", "sa1.mlp.6", "sa2.mlp.0", "sa2.mlp.3", "glob.0", "glob.3"]
FOLDED_BIAS = ["sa1.mlp.0", "sa1.mlp.2", "sa1.mlp.4", "sa2.mlp.0", "sa2.mlp.2", "glob.0", "glob.2"]


def bn_after(name: str) -> str:
    prefix, idx = name.rsplit(".", 1)
    return f"{prefix}.{int(idx) + 1}"


def load_folded(path: Path) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    named = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    matmuls = [named[k] for k in sorted((k for k in named if k.startswith("onnx::MatMul_")),
                                        key=lambda k: int(k.rsplit("_", 1)[1]))]  # fmt: skip
    return named, matmuls


def rebuild(path: Path, sample: np.ndarray) -> PN2KNN:
    named, matmuls = load_folded(path)
    # a graph with an "upright" output (v3 on) has the up head: rebuild it too
    model = PN2KNN(len(named["fc.bias"]), upright="up.weight" in named)
    mods = dict(model.named_modules())
    biases: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for lin, fb, w in zip(LINEARS, FOLDED_BIAS, matmuls, strict=True):
            mods[lin].weight.copy_(torch.from_numpy(w.T.copy()))
            biases[bn_after(lin)] = named[f"{fb}.bias"]
        mods["head.0"].weight.copy_(torch.from_numpy(named["head.0.weight"]))
        biases["head.1"] = named["head.0.bias"]
        mods["fc"].weight.copy_(torch.from_numpy(named["fc.weight"]))
        mods["fc"].bias.copy_(torch.from_numpy(named["fc.bias"]))
        if model.up is not None:
            model.up.weight.copy_(torch.from_numpy(named["up.weight"]))
            model.up.bias.copy_(torch.from_numpy(named["up.bias"]))
        for name, b in biases.items():  # identity BatchNorms plus the bias: eval mode = the folded graph
            bn = mods[name]
            bn.running_mean.zero_()
            bn.running_var.fill_(1 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b))
    stats = collect_inputs(model, list(biases), sample)
    with torch.no_grad():
        for name, b in biases.items():
            bn, (mean, var) = mods[name], stats[name]
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.copy_(mean + torch.from_numpy(b))
    return model


def collect_inputs(model: PN2KNN, names: list[str], sample: np.ndarray) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and variance of each BatchNorm's input over ``sample`` (eval mode)."""
    mods = dict(model.named_modules())
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(name: str):
        def f(_m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
            z = inp[0].reshape(-1, inp[0].shape[-1])
            stats[name] = (z.mean(0), z.var(0, unbiased=False))

        return f

    handles = [mods[n].register_forward_pre_hook(hook(n)) for n in names]
    model.eval()
    model.ordered = True
    with torch.no_grad():
        model(torch.from_numpy(sample))
    for h in handles:
        h.remove()
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--points", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = np.load(DATA)
    pick = np.random.default_rng(0).choice(len(data["labels"]), 256, replace=False)
    pts = data["points"][np.sort(pick)].astype(np.float32)
    sample = np.take_along_axis(pts, fps_numpy(pts, args.points)[..., None], axis=1)
    model = rebuild(args.onnx, sample)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # the input size travels with the weights (model_for / load_checkpoint read it); widths and k are the defaults
    torch.save({"model": model.state_dict(), "source": str(args.onnx), "args": {"points": args.points}}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
