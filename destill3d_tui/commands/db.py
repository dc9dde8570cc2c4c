"""`destill3d-tui db stats|query|show|vacuum` (+ the dataset commands from db_dataset.py)."""

from __future__ import annotations

import argparse
from typing import Any

from ..engine.api import FilterError
from . import db_dataset
from .context import CommandContext
from .filter_args import add_filter_arguments, filter_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="database statistics, queries and maintenance")
    sub = parser.add_subparsers(dest="db_command", metavar="COMMAND")
    parser.set_defaults(handler=None, group_parser=parser)

    stats = sub.add_parser("stats", help="totals, by platform / format / stage, coverage, storage")
    stats.add_argument("--json", action="store_true", dest="json_output")
    stats.add_argument("--recount", action="store_true",
                       help="rebuild the running totals from the tables first (full scans; normally never needed)")
    stats.set_defaults(handler=show_stats)

    query = sub.add_parser("query", help="list stored snapshots matching filters")
    add_filter_arguments(query, ("--format", "--source-format"))
    query.add_argument("--count", action="store_true", help="print only how many snapshots match")
    query.add_argument("--limit", type=int, default=50)
    query.add_argument("--offset", type=int, default=0, help="skip this many rows first (walks them: slow deep down)")
    query.add_argument("--after", metavar="ID",
                       help="the page after this snapshot (id or unique prefix; the last one listed): keyset "
                            "paging, as fast a million rows down as on the first page")  # fmt: skip
    query.add_argument("--json", action="store_true", dest="json_output")
    query.set_defaults(handler=run_query)

    show = sub.add_parser("show", help="one snapshot's columns (id or unique prefix)")
    show.add_argument("snapshot_id", metavar="ID")
    show.add_argument("--json", action="store_true", dest="json_output")
    show.set_defaults(handler=show_snapshot)

    vacuum = sub.add_parser("vacuum", help="reclaim space and refresh statistics")
    vacuum.set_defaults(handler=run_vacuum)

    db_dataset.register(sub)


def _percent(part: int, total: int) -> str:
    return f"{part:,} ({100.0 * part / total:.1f}%)" if total else f"{part:,}"


def show_stats(args: argparse.Namespace, ctx: CommandContext) -> int:
    stats = ctx.engine().db.stats(recount=args.recount)
    if ctx.json_output:
        ctx.emit_json(stats)
        return 0
    total = stats["total_count"]
    lines = [f"Total snapshots: {total:,}"]
    for title, key in (("By platform", "by_platform"), ("By format", "by_format"), ("By label", "by_label")):
        if stats[key]:
            lines.append(f"{title}:")
            lines += [f"  {name or '?'}: {_percent(n, total)}" for name, n in list(stats[key].items())[:15]]
    lines.append("Queue: " + ", ".join(f"{k} {v:,}" for k, v in stats["by_stage"].items()))
    lines.append(f"Classification coverage: {100.0 * stats['classification_coverage']:.1f}%")
    lines.append(f"Storage: {stats['storage_bytes'] / 1e6:.2f} MB in snapshots "
                 f"({stats['database_file_bytes'] / 1e6:.2f} MB database)")  # fmt: skip
    lines.append(f"Downloaded {stats['bytes_downloaded'] / 1e6:.2f} MB, kept {stats['bytes_kept'] / 1e6:.2f} MB; "
                 f"compression ratio {stats['compression_ratio']:.1f}x")  # fmt: skip
    for line in lines:
        ctx.out.print(line, markup=False, highlight=False)
    return 0


def _query_rows(ctx: CommandContext, args: argparse.Namespace, flt: Any) -> list[Any]:
    """``--after ID``: the keyset page after that row (the listing's order); else limit/offset."""
    db = ctx.engine().db
    if args.after is None:
        return db.query(limit=args.limit, offset=args.offset, filter=flt)
    if args.offset:
        raise FilterError("--after and --offset both say where to start: give one")
    last = db.row(args.after)
    if last.get("processed_at") is None:
        raise FilterError(f"snapshot {args.after} has no processed time to page after")
    return db.page((last["processed_at"], last["snapshot_id"]), args.limit, flt)


def run_query(args: argparse.Namespace, ctx: CommandContext) -> int:
    flt = filter_from_args(args)
    if args.count:
        total = ctx.engine().db.count(flt)
        if ctx.json_output:
            ctx.emit_json({"count": total, "filter": flt.to_dict()})
        else:
            ctx.out.print(f"{total} match ({flt.describe()})", markup=False, highlight=False)
        return 0
    rows = _query_rows(ctx, args, flt)
    if ctx.json_output:
        for row in rows:
            ctx.emit_json(row.to_dict())
        return 0
    from rich.table import Table
    from rich.text import Text

    from ..engine.text import display, label_with_guess

    table = Table()
    for column in ("id", "platform", "format", "points", "label", "conf", "title"):
        table.add_column(column, overflow="fold")
    for r in rows:
        conf = "" if r.confidence is None else f"{r.confidence:.2f}"
        label = label_with_guess(r.label, r.best_guess)  # "unknown · car?": the model's guess beside unknown
        cells = (r.snapshot_id[:8], r.platform, r.original_format or "", str(r.point_count), label, conf,
                 r.title or r.model_id)  # fmt: skip
        table.add_row(*(Text(display(c)) for c in cells))  # Text: "[WIP]" is not markup; display: no escapes
    ctx.out.print(table)
    return 0


def show_snapshot(args: argparse.Namespace, ctx: CommandContext) -> int:
    row = ctx.engine().db.row(args.snapshot_id)
    if ctx.json_output:
        ctx.emit_json(row)
        return 0
    from rich.table import Table
    from rich.text import Text

    from ..engine.text import display

    table = Table(show_header=False)
    table.add_column("column", style="cyan")
    table.add_column("value", overflow="fold")
    for key, value in row.items():
        table.add_row(Text(key), Text(display(value)))
    ctx.out.print(table)
    return 0


def run_vacuum(args: argparse.Namespace, ctx: CommandContext) -> int:
    ctx.engine().db.vacuum()
    ctx.err.print("database vacuumed", markup=False)
    return 0
