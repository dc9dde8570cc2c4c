"""`destill3d-tui acquire search|url|list|run`: find models on platforms and queue them."""

from __future__ import annotations

import argparse
from typing import Any

from .context import CommandContext

POLICIES = ("research", "commercial", "any")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("acquire", help="search platforms, queue models, run downloads")
    sub = parser.add_subparsers(dest="acquire_command", metavar="COMMAND")
    parser.set_defaults(handler=None, group_parser=parser)

    search = sub.add_parser("search", help="search a platform (and optionally queue the results)")
    search.add_argument("--platform", "-p", required=True, help="thingiverse, sketchfab, github, ...")
    search.add_argument("--query", "-q", required=True)
    search.add_argument("--limit", "-n", type=int, default=20, help="results to fetch (follows pagination)")
    search.add_argument("--license", dest="license", metavar="L",
                        help="policy research|commercial|any, or an SPDX id such as CC0-1.0")
    search.add_argument("--queue", action="store_true", help="queue the results the licence policy allows")
    search.add_argument("--priority", type=int, default=0)
    search.add_argument("--json", action="store_true", dest="json_output")
    search.set_defaults(handler=search_cmd)

    url = sub.add_parser("url", help="queue model-page URLs of any supported platform (or local paths)")
    url.add_argument("urls", nargs="+", metavar="URL")
    url.add_argument("--license", dest="license", choices=POLICIES, help="licence policy (default: settings)")
    url.add_argument("--priority", type=int, default=0)
    url.add_argument("--json", action="store_true", dest="json_output")
    url.set_defaults(handler=url_cmd)

    list_ = sub.add_parser("list", help="platforms, whether they are usable, and their rate budgets")
    list_.add_argument("--json", action="store_true", dest="json_output")
    list_.set_defaults(handler=list_cmd)

    run = sub.add_parser("run", help="run the queue headless (acquire -> extract -> classify -> store)")
    run.add_argument("--concurrency", type=int, metavar="N", help="concurrent downloads")
    run.add_argument("--json", action="store_true", dest="json_output")
    run.set_defaults(handler=run_cmd)


def _policy_and_spdx(value: str | None, default: str) -> tuple[str, str | None]:
    if not value:
        return default, None
    if value.lower() in POLICIES:
        return value.lower(), None
    return "any", value  # an SPDX id: exactly that licence


def _row(meta: Any) -> dict[str, Any]:
    return {
        "platform": meta.platform,
        "source_id": meta.source_id,
        "title": meta.title,
        "author": meta.author,
        "license": meta.license.spdx or "",
        "license_raw": meta.license.raw,
        "files": [f.name for f in meta.files],
        "url": meta.source_url,
    }


def search_cmd(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.acquire.base import SearchFilters

    d3d = ctx.engine()
    policy, spdx = _policy_and_spdx(args.license, ctx.settings.acquisition.license_policy)
    filters = SearchFilters(license_policy=policy, per_page=min(args.limit, 50),
                            extra={"license_spdx": spdx} if spdx else {})
    results = d3d.acquire.search_many(args.platform, args.query, args.limit, filters)
    if not args.queue:
        if ctx.json_output:
            for meta in results:
                ctx.emit_json(_row(meta))
        else:
            _print_results(ctx, results)
        return 0
    ids = d3d.acquire.queue_results(results, priority=args.priority, policy=policy, only_spdx=spdx)
    _report_queued(ctx, ids, d3d.acquire.refused)
    return 0


def _print_results(ctx: CommandContext, results: list[Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..engine.text import display  # platform text may hold terminal escapes

    table = Table(title=f"{len(results)} results")
    for column in ("id", "title", "author", "licence", "files"):
        table.add_column(column)
    for meta in results:
        table.add_row(escape(display(meta.source_id)), escape(display(meta.title)), escape(display(meta.author)),
                      escape(display(meta.license.spdx or (meta.license.raw and f"? {meta.license.raw}") or "unknown")),
                      str(len(meta.files)) if meta.files else "-")
    ctx.out.print(table)


def _report_queued(ctx: CommandContext, ids: list[int], refused: list[Any]) -> None:
    if ctx.json_output:
        ctx.emit_json({"queued": ids, "refused": [r.__dict__ for r in refused]})
        return
    from ..engine.text import display

    ctx.err.print(f"queued {len(ids)} item(s)", markup=False)
    for refusal in refused:
        line = f"  not queued: {refusal.platform}:{refusal.source_id} {refusal.title!r}: {refusal.why}"
        ctx.err.print(display(line), markup=False)


def url_cmd(args: argparse.Namespace, ctx: CommandContext) -> int:
    d3d = ctx.engine()
    ids = d3d.acquire.add_urls(args.urls, priority=args.priority, policy=args.license)
    _report_queued(ctx, ids, d3d.acquire.refused)
    return 0 if ids or not d3d.acquire.refused else 1


def list_cmd(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.acquire.http import rate_status
    from ..engine.services.acquire import platform_infos

    infos = platform_infos(ctx.settings)  # a listing needs the settings only: no database is opened
    status = rate_status()
    if ctx.json_output:
        for info in infos:
            state = status.get(info.platform_id)
            ctx.emit_json({**info.__dict__, "banned": bool(state and state.banned),
                           "paused_until": state.paused_until if state else None})
        return 0
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="platforms")
    for column in ("platform", "usable", "rate budget", "why not"):
        table.add_column(column)
    for info in infos:
        table.add_row(info.platform_id, "yes" if info.available else "no", info.rate_budget, escape(info.why))
    ctx.out.print(table)
    return 0


def run_cmd(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.headless import run_headless

    if args.concurrency:
        ctx.settings.acquisition.max_concurrent_downloads = max(1, args.concurrency)
    return run_headless(ctx.settings, json_lines=ctx.json_output)
