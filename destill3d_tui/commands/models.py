"""`destill3d-tui models ...`: list, info, import, download classification models."""

from __future__ import annotations

import argparse
from pathlib import Path

from .context import CommandContext


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", dest="json_output", default=argparse.SUPPRESS)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="classification models (shipped, imported, downloaded)")
    sub = parser.add_subparsers(dest="models_command", metavar="COMMAND")
    parser.set_defaults(handler=None, group_parser=parser)
    ls = sub.add_parser("list", help="registered models")
    _json_flag(ls)
    ls.set_defaults(handler=models_list)
    info = sub.add_parser("info", help="one model's card and whether its file verifies")
    info.add_argument("model_id")
    _json_flag(info)
    info.set_defaults(handler=models_info)
    imp = sub.add_parser("import", help="copy a local ONNX model + TOML card into the user models folder")
    imp.add_argument("path", type=Path, metavar="PATH.onnx")
    imp.add_argument("--card", type=Path, required=True, metavar="CARD.toml")
    _json_flag(imp)
    imp.set_defaults(handler=models_import)
    dl = sub.add_parser("download", help="fetch NAME.toml + its file from classification.models_url")
    dl.add_argument("name")
    _json_flag(dl)
    dl.set_defaults(handler=models_download)


def models_list(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.classify.registry import ModelRegistry

    models = ModelRegistry().list()
    if ctx.json_output:
        ctx.emit_json({"models": [m.to_dict() for m in models]})
        return 0
    from rich.table import Table

    table = Table(title="models")
    for col in ("model_id", "taxonomy", "classes", "points", "val acc", "source"):
        table.add_column(col)
    for m in models:
        acc = "" if m.modelnet40_accuracy is None else f"{m.modelnet40_accuracy:.3f}"
        table.add_row(m.model_id, m.taxonomy, str(len(m.labels)), str(m.input_points), acc, m.source)
    ctx.out.print(table)
    return 0


def models_info(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.classify.registry import ModelRegistry, verify_file
    from ..engine.errors import Destill3DError

    model = ModelRegistry().get(args.model_id)
    data = model.to_dict()
    try:
        verify_file(model)
        data["verified"], data["problem"] = True, None
    except Destill3DError as exc:
        data["verified"], data["problem"] = False, exc.to_dict()
    data["card"] = model.card
    if ctx.json_output:
        ctx.emit_json(data)
        return 0 if data["verified"] else 1
    for key in ("model_id", "name", "taxonomy", "architecture", "input_points", "up_axis", "normalisation",
                "temperature", "embedding_dim", "weights_path", "weights_hash", "verified"):  # fmt: skip
        ctx.out.print(f"{key}: {data[key]}", markup=False)
    for key, value in data["metrics"].items():
        ctx.out.print(f"metrics.{key}: {value}", markup=False)
    if data["problem"]:
        ctx.out.print(f"problem: {data['problem']['reason']}: {data['problem']['message']}", markup=False)
    return 0 if data["verified"] else 1


def models_import(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.classify.registry import ModelRegistry

    model = ModelRegistry().import_model(args.path, args.card)
    if ctx.json_output:
        ctx.emit_json({"imported": model.to_dict()})
    else:
        ctx.out.print(f"imported {model.model_id} -> {model.weights_path}", markup=False)
    return 0


def models_download(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.classify.registry import ModelRegistry

    model = ModelRegistry().download(args.name, ctx.settings.classification.models_url)
    if ctx.json_output:
        ctx.emit_json({"downloaded": model.to_dict()})
    else:
        ctx.out.print(f"downloaded {model.model_id} -> {model.weights_path}", markup=False)
    return 0
