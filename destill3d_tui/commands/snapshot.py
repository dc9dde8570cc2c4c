"""`destill3d-tui snapshot show FILE.d3d`: summary, features, quality flags, predictions, provenance.

The review subcommands (accept, reject, label, tag, undo, ...) are in :mod:`.snapshot_review`.

A ``.d3d`` may come from anyone: every string in it is shown in its escaped display form
(:func:`engine.text.display`), in the table and in ``--json``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from . import snapshot_review
from .context import CommandContext

# names of the 32 global features in the layout of spec 5.4, for people reading the table
FEATURE_GROUPS = (
    ("bbox dimensions (sorted)", 3), ("aspect ratios", 3), ("surface area (log)", 1), ("volume (log)", 1),
    ("sphericity", 1), ("convexity", 1), ("curvature mean/std/min/max", 4), ("curvature histogram", 10),
    ("PCA eigenvalue ratios", 3), ("anisotropy/planarity/linearity", 3), ("reserved", 2),
)  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("snapshot", help="inspect .d3d files; review stored snapshots (accept, reject, "
                                   "label, tag, undo)")  # fmt: skip
    sub = parser.add_subparsers(dest="snapshot_command", metavar="COMMAND")
    parser.set_defaults(handler=None, group_parser=parser)
    show = sub.add_parser("show", help="print what a .d3d file holds")
    show.add_argument("file", type=Path)
    show.add_argument("--json", action="store_true", dest="json_output", default=argparse.SUPPRESS)
    show.set_defaults(handler=show_snapshot)
    snapshot_review.register(sub)


def snapshot_dict(snapshot: Any) -> dict[str, Any]:
    """Everything but the arrays, as plain JSON-able values."""
    g, f = snapshot.geometry, snapshot.features
    features = dataclasses.asdict(dataclasses.replace(f, global_features=[]))
    features["global_features"] = [round(float(v), 6) for v in f.global_features]
    return {
        "snapshot_id": snapshot.snapshot_id,
        "model_id": snapshot.model_id,
        "format_version": snapshot.version,
        "geometry": {
            "points": g.point_count,
            "has_density": g.density is not None,
            "views": None if g.views is None else list(g.views.shape),
            "centroid": list(g.centroid),
            "scale": g.scale,
        },
        "features": features,
        "predictions": [dataclasses.asdict(p) for p in snapshot.predictions],
        "embedding": _embedding(snapshot),
        "provenance": dataclasses.asdict(snapshot.provenance),
        "processing": dataclasses.asdict(snapshot.processing),
    }


def _embedding(snapshot: Any) -> dict[str, Any] | None:
    if snapshot.embedding is None:
        return None
    return {"dim": int(snapshot.embedding.shape[0]), "model": snapshot.embedding_model}


def show_snapshot(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.store.snapshot import Snapshot
    from ..engine.text import display, display_all

    path: Path = args.file
    if not path.is_file():
        ctx.err.print(f"destill3d-tui: no such file: {display(path)}", markup=False)
        return 2
    snapshot = Snapshot.load(path)
    data = display_all(snapshot_dict(snapshot))
    data["file"] = {"path": display(path), "bytes": path.stat().st_size}
    if ctx.json_output:
        ctx.emit_json(data)
    else:
        _print_human(ctx, data)
    return 0


def _print_human(ctx: CommandContext, data: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = ctx.out
    prov, proc, feat = data["provenance"], data["processing"], data["features"]
    out.print(f"Snapshot {data['snapshot_id']}  ({data['file']['bytes']} bytes)", markup=False)
    summary = Table(show_header=False, box=None)
    for key, value in (
        ("source", prov["original_filename"] or prov["source_url"] or "-"),
        ("format", prov["original_format"] or "-"),
        ("title / author", f"{prov['title'] or '-'} / {prov['author'] or '-'}"),
        ("licence", prov["license_spdx"] or prov["license"] or "-"),
        ("points", data["geometry"]["points"]),
        ("vertices / faces", f"{feat['vertex_count']} / {feat['face_count']}"),
        ("bbox", f"{_fmt(feat['bbox_min'])} .. {_fmt(feat['bbox_max'])}"),
        ("area / volume", f"{feat['surface_area']:.6g} / {feat['volume']:.6g}"),
        ("watertight", feat["is_watertight"]),
        (
            "sampling",
            f"{proc['sampling_strategy']} x{proc['oversample_ratio']}, seed {proc['seed']}, {proc['precision']}",
        ),
        ("extractor", f"{proc['extractor_version']} (destill3d {proc['destill3d_version']})"),
        ("warnings", "; ".join(proc["warnings"]) or "-"),
    ):
        summary.add_row(key, escape(str(value)))  # titles and licences are untrusted text
    out.print(summary)
    out.print("Quality flags: " + ", ".join(f"{k}={v}" for k, v in feat["quality"].items()), markup=False)
    _print_features(ctx, feat["global_features"])
    _print_predictions(ctx, data["predictions"])


def _print_features(ctx: CommandContext, values: list[float]) -> None:
    from rich.table import Table

    table = Table(title="Global features (spec 5.4)")
    table.add_column("group")
    table.add_column("values")
    start = 0
    for name, width in FEATURE_GROUPS:
        table.add_row(name, " ".join(f"{v:.4g}" for v in values[start : start + width]))
        start += width
    ctx.out.print(table)


def _print_predictions(ctx: CommandContext, predictions: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    if not predictions:
        ctx.out.print("Predictions: none (not classified yet)", markup=False)
        return
    table = Table(title="Predictions")
    for column in ("rank", "label", "confidence", "taxonomy", "model"):
        table.add_column(column)
    for p in sorted(predictions, key=lambda p: p["rank"]):
        table.add_row(
            str(p["rank"]), escape(p["label"]), f"{p['confidence']:.3f}", escape(p["taxonomy"]), escape(p["model_name"])
        )
    ctx.out.print(table)


def _fmt(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"
