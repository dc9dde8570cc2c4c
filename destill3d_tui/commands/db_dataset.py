"""`db similar|duplicates|export`: registered into the `db` group by commands/db.py."""

from __future__ import annotations

import argparse
from typing import Any

from .context import CommandContext
from .filter_args import add_filter_arguments, filter_from_args

FORMATS = ("hdf5", "numpy", "parquet", "tfrecord", "webdataset", "modelnet")


def register(db_subparsers: argparse._SubParsersAction) -> None:
    """Adds the dataset subcommands to ``db``."""
    similar = db_subparsers.add_parser("similar", help="stored objects most similar in shape to one snapshot")
    similar.add_argument("snapshot_id", metavar="ID", help="snapshot id or unique prefix, or a .d3d / 3D file")
    similar.add_argument("--k", type=int, default=10, help="how many neighbours (default 10)")
    similar.add_argument("--min-similarity", type=float, dest="min_similarity", help="cosine similarity floor")
    similar.add_argument("--json", action="store_true", dest="json_output")
    similar.set_defaults(handler=run_similar)

    dups = db_subparsers.add_parser("duplicates", help="clusters of near-duplicates (same file, rescaled, re-meshed)")
    dups.add_argument("--threshold", type=float, default=0.98, help="similarity for a near-duplicate (default 0.98)")
    dups.add_argument("--json", action="store_true", dest="json_output")
    dups.set_defaults(handler=run_duplicates)

    index = db_subparsers.add_parser("index", help="similarity index maintenance")
    index_sub = index.add_subparsers(dest="index_command", required=True)
    rebuild = index_sub.add_parser("rebuild", help="build the similarity index anew from the embeddings table")
    rebuild.add_argument("--model", help="only this embedding model (default: every model)")
    rebuild.add_argument("--json", action="store_true", dest="json_output")
    rebuild.set_defaults(handler=run_index_rebuild)

    export = db_subparsers.add_parser("export", help="write a training dataset (splits, attribution, card)")
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument("--output", required=True, metavar="PATH", help="a new (or empty) folder")
    export.add_argument("--taxonomy", help="label objects by their top class in this taxonomy (e.g. modelnet40)")
    export.add_argument("--split", default="0.8:0.1:0.1", help="train:val:test fractions (default 0.8:0.1:0.1)")
    add_filter_arguments(export, ("--source-format",))
    export.add_argument("--license-policy", choices=("research", "commercial", "any"), default="research",
                        dest="license_policy")  # fmt: skip
    export.add_argument("--views", action="store_true", help="include depth views where snapshots have them")
    export.add_argument("--group-duplicates", action="store_true", dest="group_duplicates",
                        help="keep near-duplicates in one split (no copies of a training object in test)")
    export.add_argument("--shard-rows", type=int, dest="shard_rows", metavar="N",
                        help="objects per shard file (default: as many as fit in --shard-mb)")
    export.add_argument("--shard-mb", type=int, dest="shard_mb", metavar="MB",
                        help="shard size budget in MB (default 500; NumPy 200)")
    export.add_argument("--json", action="store_true", dest="json_output")
    export.set_defaults(handler=run_export)


def _titles(ctx: CommandContext, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = {}
    for sid in ids:
        row = ctx.engine().db.row(sid)
        rows[sid] = {"title": row.get("title") or row.get("model_id") or "", "label": row.get("label") or "",
                     "platform": row.get("platform") or ""}  # fmt: skip
    return rows


def _query(ctx: CommandContext, text: str) -> Any:
    """A stored id, or the snapshot of a file (a .d3d snapshot, or any 3D file, extracted now)."""
    from pathlib import Path

    path = Path(text).expanduser()
    if not path.is_file():
        return text
    if path.suffix.lower() == ".d3d":
        from ..engine.store.snapshot import Snapshot

        return Snapshot.load(path)
    return ctx.engine().extract.from_file(path)


def run_similar(args: argparse.Namespace, ctx: CommandContext) -> int:
    query = _query(ctx, args.snapshot_id)
    hits = ctx.engine().db.find_similar(query, k=args.k, min_similarity=args.min_similarity)
    info = _titles(ctx, [sid for sid, _ in hits])
    if ctx.json_output:
        for rank, (sid, score) in enumerate(hits, 1):
            ctx.emit_json({"rank": rank, "snapshot_id": sid, "similarity": round(score, 6), **info[sid]})
        return 0
    from rich.table import Table
    from rich.text import Text

    from ..engine.text import display

    table = Table()
    for column in ("#", "id", "similarity", "label", "platform", "title"):
        table.add_column(column, overflow="fold")
    for rank, (sid, score) in enumerate(hits, 1):
        row = info[sid]
        cells = (Text(display(row[key])) for key in ("label", "platform", "title"))  # display: no terminal escapes
        table.add_row(str(rank), sid[:8], f"{score:.4f}", *cells)
    ctx.out.print(table)
    return 0


def run_duplicates(args: argparse.Namespace, ctx: CommandContext) -> int:
    clusters = ctx.engine().db.duplicates(threshold=args.threshold)
    if ctx.json_output:
        for n, cluster in enumerate(clusters, 1):
            ctx.emit_json({"cluster": n, "size": len(cluster), "snapshot_ids": cluster})
        return 0
    if not clusters:
        ctx.err.print(f"no near-duplicates at threshold {args.threshold}", markup=False)
        return 0
    from rich.text import Text

    from ..engine.text import display

    for n, cluster in enumerate(clusters, 1):
        ctx.out.print(Text(f"cluster {n} ({len(cluster)} objects, first stored first)"))
        for sid, row in _titles(ctx, cluster).items():
            ctx.out.print(Text(display(f"  {sid[:8]}  {row['platform']:<12} {row['title']}")))
    return 0


def run_index_rebuild(args: argparse.Namespace, ctx: CommandContext) -> int:
    done = ctx.engine().db.rebuild_index(args.model)
    for model, count, seconds in done:
        if ctx.json_output:
            ctx.emit_json({"model": model, "vectors": count, "seconds": round(seconds, 3)})
        else:
            ctx.out.print(f"rebuilt the index of {model}: {count} vectors in {seconds:.1f} s", markup=False)
    if not done:
        ctx.err.print("no embeddings stored: nothing to index", markup=False)
    return 0


def _progress(ctx: CommandContext) -> Any:
    """A bar with count, rate (snapshots/s) and time left, on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="progress.data.speed")

    return Progress(TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), RateColumn(), TimeRemainingColumn(),
                    console=ctx.err, transient=True, speed_estimate_period=10)  # fmt: skip


def run_export(args: argparse.Namespace, ctx: CommandContext) -> int:
    from pathlib import Path

    from ..engine.events import ExportProgressed
    from ..engine.store.export.shards import STATE_FILE

    d3d = ctx.engine()
    progress = _progress(ctx)
    task = progress.add_task("export", total=None)
    if (Path(args.output).expanduser() / STATE_FILE).is_file():
        ctx.err.print(f"resuming the interrupted export in {args.output}", markup=False)

    def on_event(event: Any) -> None:
        if isinstance(event, ExportProgressed) and event.total:
            progress.update(task, completed=event.done, total=event.total)

    unsubscribe = d3d.events.subscribe(on_event)
    shard_bytes = args.shard_mb * 1_000_000 if args.shard_mb else None
    try:
        with progress:
            result = d3d.db.export(
                args.format, args.output, taxonomy=args.taxonomy, split=args.split, filter=filter_from_args(args),
                license_policy=args.license_policy, views=args.views, group_duplicates=args.group_duplicates,
                shard_rows=args.shard_rows, shard_bytes=shard_bytes,
            )  # fmt: skip
    finally:
        unsubscribe()
    if ctx.json_output:
        ctx.emit_json(result.to_dict())
        return 0
    splits = ", ".join(f"{name} {n}" for name, n in result.split_counts.items())
    rate = result.count / result.seconds if result.seconds else 0.0
    ctx.out.print(f"exported {result.count} objects ({splits}) in {len(result.label_names)} classes "
                  f"to {result.output} in {result.seconds:.1f} s ({rate:,.0f}/s)", markup=False)  # fmt: skip
    for reason, n in sorted(result.skipped.items()):
        ctx.out.print(f"  left out {n}: {reason}", markup=False)
    return 0
