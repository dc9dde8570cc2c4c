"""`destill3d-tui queue add|list|retry|cancel`: the processing queue."""

from __future__ import annotations

import argparse

from .context import CommandContext


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("queue", help="add local files, list, retry and cancel queue items")
    sub = parser.add_subparsers(dest="queue_command", metavar="COMMAND")
    parser.set_defaults(handler=None, group_parser=parser)

    add = sub.add_parser("add", help="queue local files and folders (run them with --headless)")
    add.add_argument("paths", nargs="+", metavar="PATH")
    add.add_argument("--recursive", "-r", action="store_true", help="scan folders recursively")
    add.add_argument("--pattern", metavar="GLOB", help='file-name glob for folders, e.g. "*.stl"')
    add.add_argument("--priority", type=int, default=0, metavar="P", help="higher runs first (default 0)")
    add.add_argument("--json", action="store_true", dest="json_output")
    add.set_defaults(handler=add_paths)

    list_ = sub.add_parser("list", help="list queue items")
    list_.add_argument("--stage", choices=("queued", "acquired", "extracted", "classified", "stored", "failed"))
    list_.add_argument("--limit", type=int, default=50)
    list_.add_argument("--json", action="store_true", dest="json_output")
    list_.set_defaults(handler=list_items)

    retry = sub.add_parser("retry", help="send failed items (or the given ids) back to the queue")
    retry.add_argument("ids", nargs="*", type=int, metavar="ID")
    retry.add_argument("--failed", action="store_true", help="every failed item")
    retry.set_defaults(handler=retry_items)

    cancel = sub.add_parser("cancel", help="cancel unfinished items")
    cancel.add_argument("ids", nargs="+", type=int, metavar="ID")
    cancel.set_defaults(handler=cancel_items)


def add_paths(args: argparse.Namespace, ctx: CommandContext) -> int:
    ids = ctx.engine().queue.add_paths(args.paths, recursive=args.recursive, pattern=args.pattern,
                                       priority=args.priority)  # fmt: skip
    if ctx.json_output:
        ctx.emit_json({"queued": len(ids), "queue_ids": ids})
    else:
        ctx.err.print(f"{len(ids)} item(s) in the queue; run them with `destill3d-tui --headless`", markup=False)
    return 0


def list_items(args: argparse.Namespace, ctx: CommandContext) -> int:
    d3d = ctx.engine()
    rows = d3d.queue.list(stage=args.stage, limit=args.limit)
    if ctx.json_output:
        for row in rows:
            ctx.emit_json(row.to_dict())
        return 0
    from rich.table import Table
    from rich.text import Text

    from ..engine.text import display

    counts = d3d.queue.counts()
    table = Table(title=Text(" ".join(f"{k}:{v}" for k, v in counts.items())), title_justify="left")
    for column in ("id", "stage", "prio", "tries", "reason", "model"):
        table.add_column(column, overflow="fold")
    for r in rows:
        cells = (str(r.queue_id), r.stage, str(r.priority), f"{r.retry_count}/{r.max_retries}", r.reason or "",
                 r.title or r.model_id)  # fmt: skip
        table.add_row(*(Text(display(c)) for c in cells))  # Text: "[WIP]" is not markup; display: no escapes
    ctx.out.print(table)
    return 0


def retry_items(args: argparse.Namespace, ctx: CommandContext) -> int:
    if not args.ids and not args.failed:
        ctx.err.print("queue retry: give item ids or --failed", markup=False)
        return 2
    n = ctx.engine().queue.retry(ids=args.ids or None, failed=args.failed)
    ctx.err.print(f"{n} item(s) queued again", markup=False)
    return 0


def cancel_items(args: argparse.Namespace, ctx: CommandContext) -> int:
    n = ctx.engine().queue.cancel(args.ids)
    ctx.err.print(f"{n} item(s) cancelled", markup=False)
    return 0
