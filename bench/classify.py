"""Classifier latency and accuracy: the engine's path against plain fp32 onnxruntime on the same model.

Baseline ("plain"): the shipped self-contained graph (FPS and kNN in the graph), onnxruntime
CPU, default session options, one intra-op thread. Candidates: the engine's fp32 graph (the same
weights for FPS-ordered input, so the in-graph FPS is skipped, BatchNorm folded into the Linear
layers; what CUDA runs) and the engine's CPU default, the card's static int8 graph (fixed
activation scales, so a sample's answer does not depend on its batch). Dynamic int8 is shown
for reference only: its activation scales come from the whole batch.
Measurements interleave the variants (the machine is shared) and keep each one's best round;
each row also says whether batch-32 outputs equal one-at-a-time outputs.

Per-sample latency at batch 1 and 32 and accuracy on the validation split the training script
holds out (stratified, seed 0, 10 %), the same split the model card reports.

``--cases`` then runs each model in ``--models`` (the old one and the new default) through the
engine's own classify path (OnnxClassifier.classify: up axis, FPS, canonical frame, int8 on
CPU, the card's unknown rule) on the same shapes in three poses: aligned (z up given), turned
at random about z (z up given), and turned then laid on a random signed axis with no up axis
given (the estimate decides, as for an .xyz file); ``--xyz`` adds that last case written out as
``.xyz`` files and extracted by the engine (``extract_file``) before classification. Run::

    .venv/bin/python bench/classify.py [--limit 985] [--repeat 3] [--cases-only] [--xyz]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from destill3d_tui.engine.classify import canonical
from destill3d_tui.engine.classify.inference import fps, normalise
from destill3d_tui.engine.classify.registry import ModelRegistry

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "modelnet40_train_1024.npz"


def validation_split(labels: np.ndarray, frac: float = 0.1, seed: int = 0) -> np.ndarray:
    """The training script's stratified split (same rng calls), validation indices sorted."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        val.append(idx[: max(1, round(len(idx) * frac))])
    return np.sort(np.concatenate(val))


def session(path: Path, plain: bool) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    if not plain:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def per_sample_ms(sess: ort.InferenceSession, x: np.ndarray, batch: int, repeat: int) -> float:
    chunks = [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)][: max(1, 64 // batch)]
    sess.run(["logits"], {"points": chunks[0]})  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for c in chunks:
            sess.run(["logits"], {"points": c})
        best = min(best, (time.perf_counter() - t) / (len(chunks) * batch))
    return best * 1000


def accuracy(sess: ort.InferenceSession, x: np.ndarray, y: np.ndarray) -> float:
    pred = np.concatenate([sess.run(["logits"], {"points": x[i : i + 64]})[0].argmax(1) for i in range(0, len(x), 64)])
    return float((pred == y).mean())


MODELS = ("destill3d_pointnet_mn40", "destill3d_pointnet_mn40_v2", "destill3d_pointnet_mn40_v3")


def cube_rotations() -> list[np.ndarray]:
    """The 24 proper rotations that permute and flip the axes."""
    from itertools import permutations, product

    out = []
    for perm, signs in product(permutations(range(3)), product((1, -1), repeat=3)):
        m = np.zeros((3, 3), np.float32)
        m[range(3), perm] = signs
        if np.isclose(np.linalg.det(m), 1):
            out.append(m)
    return out


def poses(pts: np.ndarray, seed: int = 5) -> dict[str, tuple[np.ndarray, str, list[str]]]:
    """case -> (points, the up axis the file states, the true signed up axis per shape)."""
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0, 2 * np.pi, len(pts))
    c, s = np.cos(angles), np.sin(angles)
    rz = np.zeros((len(pts), 3, 3), np.float32)
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = c, -s, s, c, 1
    turned = np.einsum("bij,bnj->bni", rz, pts)
    rots = cube_rotations()
    picks = [rots[i] for i in rng.integers(len(rots), size=len(pts))]
    laid = np.stack([t @ r.T for t, r in zip(turned, picks, strict=True)])
    ups = []
    for r in picks:
        up = r @ np.array([0, 0, 1], np.float32)
        i = int(np.abs(up).argmax())
        ups.append(("" if up[i] > 0 else "-") + "xyz"[i])
    n = len(pts)
    return {"aligned": (pts, "z", ["z"] * n), "turned": (turned, "z", ["z"] * n), "unknown_up": (laid, "", ups)}


def run_case(clf: object, pts: np.ndarray, stated: str, labels: list[str]) -> tuple[list, float]:
    """The engine's classify on duck-typed snapshots (points on the unit sphere, as extraction gives)."""
    from types import SimpleNamespace

    results, t0 = [], time.perf_counter()
    for i in range(0, len(pts), 32):
        snaps = [SimpleNamespace(geometry=SimpleNamespace(points=p),
                                 processing=SimpleNamespace(up_axis=stated),
                                 provenance=SimpleNamespace(platform="local", original_format="XYZ"))
                 for p in pts[i : i + 32]]  # fmt: skip
        results += clf.classify(snaps)  # type: ignore[attr-defined]
    return results, (time.perf_counter() - t0) * 1000 / len(pts)


def xyz_snapshots(laid: np.ndarray) -> tuple[list, float]:
    """Each cloud written as an ``.xyz`` file (no up axis in the format) and extracted by the
    engine's own ``extract_file`` (oversampling + FPS to 2048 points, normals, unit sphere):
    what the pipeline's extract stage hands the classifier. Returns the snapshots and ms each."""
    from destill3d_tui.engine.extract import extract_file

    snaps, t0 = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, cloud in enumerate(laid):
            path = Path(tmp) / f"shape_{i:04d}.xyz"
            np.savetxt(path, cloud, fmt="%.6f")
            snaps.append(extract_file(path))
    return snaps, (time.perf_counter() - t0) * 1000 / max(len(laid), 1)


def run_snapshots(clf: object, snaps: list) -> tuple[list, float]:
    """The engine's classify on real snapshots, in batches of 32 as the pipeline's classify stage."""
    results, t0 = [], time.perf_counter()
    for i in range(0, len(snaps), 32):
        results += clf.classify(snaps[i : i + 32])  # type: ignore[attr-defined]
    return results, (time.perf_counter() - t0) * 1000 / max(len(snaps), 1)


def cases(model_ids: list[str], pts: np.ndarray, y: np.ndarray, classes: list[str], xyz: bool = False) -> dict:
    """Accuracy (overall, mean per class), up axis found, share unknown, ms per sample; per model and case.

    With ``xyz`` a fourth case runs the unknown-up clouds through ``.xyz`` files and extraction.
    """
    from destill3d_tui.engine.classify.inference import OnnxClassifier

    registry, out = ModelRegistry(), {}
    posed = poses(pts)
    snaps: list = []
    if xyz:
        snaps, extract_ms = xyz_snapshots(posed["unknown_up"][0])
        print(f"extracted {len(snaps)} .xyz files, {extract_ms:.1f} ms each")
    for mid in model_ids:
        clf = OnnxClassifier(registry.get(mid), device="cpu")
        runs = {case: (*run_case(clf, x, stated, ups), ups) for case, (x, stated, ups) in posed.items()}
        if xyz:
            runs["unknown_up_xyz_files"] = (*run_snapshots(clf, snaps), posed["unknown_up"][2])
        for case, (res, ms, ups) in runs.items():
            best = np.array([next(p.label for p in r.predictions if p.label != "unknown") for r in res])
            right = best == np.array([classes[c] for c in y])
            per = [float(right[y == c].mean()) for c in np.unique(y)]
            out[f"{mid} {case}"] = {
                "overall": round(float(right.mean()), 4), "mean_per_class": round(float(np.mean(per)), 4),
                "up_found": round(float(np.mean([r.up_axis == u for r, u in zip(res, ups, strict=True)])), 4),
                "unknown_share": round(float(np.mean([r.unknown for r in res])), 4),
                "ms_per_sample": round(ms, 2), "graph": clf.session_path.name,
            }  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="validation shapes for accuracy (0 = all)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--models", default=",".join(MODELS), help="model ids for the pose cases (old,new)")
    ap.add_argument("--cases-only", action="store_true", help="skip the graph latency table")
    ap.add_argument("--xyz", action="store_true", help="also run the unknown-up case through .xyz files + extraction")
    args = ap.parse_args()

    model = ModelRegistry().get("destill3d_pointnet_mn40")
    data = np.load(DATA)
    labels = data["labels"].astype(np.int64)
    val = validation_split(labels)
    if args.limit:
        val = val[np.random.default_rng(0).permutation(len(val))[: args.limit]]
    pts = data["points"][val].astype(np.float32)
    dense = normalise(pts)  # the engine's preparation: normalise the dense cloud, then FPS
    x = np.take_along_axis(dense, fps(dense, model.input_points)[..., None], axis=1)
    y = labels[val]
    table = cases(args.models.split(","), pts, y, [str(c) for c in data["classes"]], xyz=args.xyz)
    print(f"engine classify path, CPU, {len(y)} validation shapes (overall / mean per class / up found / unknown)")
    for name, r in table.items():
        print(f"{name:45s} {r['overall']:.4f} {r['mean_per_class']:.4f} {r['up_found']:.4f} {r['unknown_share']:.4f} "
              f"{r['ms_per_sample']:6.2f} ms  {r['graph']}")  # fmt: skip
    print(json.dumps(table))
    if args.cases_only:
        return

    fast_path = model.card_path.parent / model.card["fast_file"]
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = Path(tempfile.mkdtemp())
    quantize_dynamic(str(fast_path), str(tmp / "int8.onnx"), weight_type=QuantType.QInt8)
    variants = {
        "plain fp32 (shipped graph)": (session(model.weights_path, plain=True), x),
        "engine fp32 (ordered, BN)": (session(fast_path, plain=False), x),
    }
    if model.card.get("int8_file"):
        int8_path = model.card_path.parent / model.card["int8_file"]
        variants["engine int8 (CPU default)"] = (session(int8_path, plain=False), x)
    variants["int8 dynamic (reference)"] = (session(tmp / "int8.onnx", plain=False), x)
    for mid in args.models.split(",")[1:]:  # the newer models' CPU default graphs, on their own input
        newer = ModelRegistry().get(mid)
        graph = newer.card_path.parent / (newer.card.get("int8_file") or newer.card["fast_file"])
        x_new = canonical.canonicalise(x) if newer.canonical == canonical.METHOD else x
        variants[f"{mid.removeprefix('destill3d_pointnet_')} {graph.suffixes[-2].strip('.')} (its default)"] = (
            session(graph, plain=False), x_new)  # fmt: skip
    rows = {name: {"ms_per_sample_b1": float("inf"), "ms_per_sample_b32": float("inf")} for name in variants}
    for _ in range(args.repeat):
        for name, (sess, xs) in variants.items():
            for b in (1, 32):
                key = f"ms_per_sample_b{b}"
                rows[name][key] = min(rows[name][key], per_sample_ms(sess, xs, b, 1))
    for name, (sess, xs) in variants.items():
        rows[name]["val_accuracy"] = accuracy(sess, xs, y)
        single = np.concatenate([sess.run(["logits"], {"points": xs[i : i + 1]})[0] for i in range(32)])
        rows[name]["batch_equals_single"] = bool(np.array_equal(single, sess.run(["logits"], {"points": xs[:32]})[0]))
    base = rows["plain fp32 (shipped graph)"]
    print(f"CPU, 1 intra-op thread, {len(y)} validation shapes, {model.input_points} points")
    print(f"{'variant':30s} {'b1 ms':>8s} {'b32 ms':>8s} {'x b1':>6s} {'x b32':>6s} {'acc':>7s} batch==single")
    for name, r in rows.items():
        r["ratio_b1"] = r["ms_per_sample_b1"] / base["ms_per_sample_b1"]
        r["ratio_b32"] = r["ms_per_sample_b32"] / base["ms_per_sample_b32"]
        print(f"{name:30s} {r['ms_per_sample_b1']:8.2f} {r['ms_per_sample_b32']:8.2f} {r['ratio_b1']:6.2f} "
              f"{r['ratio_b32']:6.2f} {r['val_accuracy']:7.4f} {r['batch_equals_single']}")  # fmt: skip
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
