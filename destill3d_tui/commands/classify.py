"""`destill3d-tui classify ...`: classify snapshots, zero-shot and few-shot answers."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .context import CommandContext


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", dest="json_output", default=argparse.SUPPRESS)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("classify", help="classify snapshots (ONNX models, zero-shot, few-shot)")
    sub = parser.add_subparsers(dest="classify_command", metavar="COMMAND")
    parser.set_defaults(handler=None, group_parser=parser)

    one = sub.add_parser("snapshot", help="classify one stored snapshot (ID) or a .d3d file")
    one.add_argument("ref", metavar="ID|FILE.d3d")
    one.add_argument("--model", default=None, help="model id (default: classification.default_model)")
    one.add_argument("--top-k", type=int, default=5)
    one.add_argument("--tta", type=int, default=None, help="rotations about the up axis to average")
    one.add_argument("--write", action="store_true", help="for a .d3d file: save the predictions into it")
    _json_flag(one)
    one.set_defaults(handler=classify_snapshot)

    every = sub.add_parser("all", help="classify every stored snapshot")
    every.add_argument("--model", default=None)
    _json_flag(every)
    every.set_defaults(handler=classify_all)

    zs = sub.add_parser("zero-shot", help="answer for arbitrary class names (says which method served each)")
    target = zs.add_mutually_exclusive_group(required=True)
    target.add_argument("--snapshot", action="append", default=None, metavar="ID|FILE.d3d")
    target.add_argument("--all", action="store_true")
    zs.add_argument("--classes", required=True, help='comma-separated names, e.g. "couch,aeroplane,lamp"')
    zs.add_argument("--model", default=None)
    _json_flag(zs)
    zs.set_defaults(handler=classify_zero_shot)

    fs = sub.add_parser("few-shot", help="define new classes from example snapshots, or list them")
    fs.add_argument("--examples", action="append", default=[], metavar="NAME=ID,ID,...")
    fs.add_argument("--model", default=None)
    _json_flag(fs)
    fs.set_defaults(handler=classify_few_shot)


def _pred_dict(p: Any) -> dict[str, Any]:
    return dataclasses.asdict(p)


def classify_snapshot(args: argparse.Namespace, ctx: CommandContext) -> int:
    from pathlib import Path

    service = ctx.engine().classify
    path = Path(args.ref)
    if args.write and path.suffix.lower() == ".d3d":
        from ..engine.store.snapshot import Snapshot

        snap = Snapshot.load(path)
        service.classifier(args.model, args.tta, args.top_k).classify_batch([snap])
        snap.save(path)
        preds = [p for p in snap.predictions if p.source == "classifier"]
    else:
        preds = service.snapshot(args.ref, model=args.model, top_k=args.top_k, tta=args.tta)
    if ctx.json_output:
        ctx.emit_json({"snapshot": args.ref, "predictions": [_pred_dict(p) for p in preds]})
        return 0
    from rich.table import Table

    table = Table(title=f"{args.ref} ({preds[0].model_name if preds else 'no model'})")
    for col in ("rank", "label", "confidence", "uncertainty"):
        table.add_column(col)
    for p in preds:
        unc = "" if p.uncertainty is None else f"{p.uncertainty:.3f}"
        table.add_row(str(p.rank), p.label, f"{p.confidence:.3f}", unc)
    ctx.out.print(table)
    return 0


def classify_all(args: argparse.Namespace, ctx: CommandContext) -> int:
    def progress(done: int, total: int) -> None:
        if not ctx.json_output:
            ctx.err.print(f"classified {done}/{total}", markup=False)

    count = ctx.engine().classify.all(model=args.model, progress=progress)
    if ctx.json_output:
        ctx.emit_json({"classified": count, "model": args.model or ctx.settings.classification.default_model})
    else:
        ctx.out.print(f"classified {count} snapshots", markup=False)
    return 0


def classify_zero_shot(args: argparse.Namespace, ctx: CommandContext) -> int:
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    answers = ctx.engine().classify.zero_shot(classes, None if args.all else args.snapshot, model=args.model)
    if ctx.json_output:
        for a in answers:
            ctx.emit_json(a.to_dict())
        return 0
    if answers:
        for name, how in answers[0].methods.items():
            ctx.out.print(f"{name}: {how}", markup=False)
    for a in answers:
        if a.label is None:
            ctx.out.print(f"{a.snapshot_id}: no answer ({a.detail})", markup=False)
        else:
            ctx.out.print(f"{a.snapshot_id}: {a.label} {a.confidence:.3f} via {a.method}", markup=False)
    return 0


def classify_few_shot(args: argparse.Namespace, ctx: CommandContext) -> int:
    service = ctx.engine().classify
    created = []
    for spec in args.examples:
        name, sep, ids = spec.partition("=")
        if not sep or not name.strip() or not ids.strip():
            ctx.err.print(f"destill3d-tui: --examples wants NAME=ID,ID,... (got {spec!r})", markup=False)
            return 2
        proto = service.few_shot(name, [i.strip() for i in ids.split(",") if i.strip()], model=args.model)
        created.append(proto.name)
    classes = service.few_shot_classes(args.model)
    rows = [{"name": p.name, "examples": p.examples, "created": p.name in created} for p in classes.values()]
    if ctx.json_output:
        ctx.emit_json({"few_shot_classes": rows})
    else:
        for r in rows:
            ctx.out.print(f"{r['name']}: {len(r['examples'])} examples" + (" (new)" if r["created"] else ""),
                          markup=False)  # fmt: skip
        if not rows:
            ctx.out.print("no few-shot classes yet: classify few-shot --examples NAME=ID,ID,...", markup=False)
    return 0
