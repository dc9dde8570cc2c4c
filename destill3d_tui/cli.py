"""Argument parsing for ``destill3d-tui``.

- no subcommand: the Textual app (imported only then);
- ``--headless``: hands off to :mod:`engine.headless` at once;
- a subcommand: the spec's command tree (``commands/``).

Exit codes: 0 ok, 1 some items failed (or a command met an engine or database error: one line
on stderr, never a traceback), 2 usage or configuration error (``--headless``: also a database
that stopped the run), 130 interrupted (``--headless``: 143 after SIGTERM).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .commands import register_all
from .commands.context import CommandContext

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="destill3d-tui",
        description="Turn 3D-model platforms and folders into ML-ready datasets.",
    )
    parser.add_argument("--version", action="version", version=f"destill3d-tui {__version__}")
    parser.add_argument("--db", metavar="URL", help="database: a SQLite path or postgresql://user@host:port/name")
    parser.add_argument("--config", metavar="PATH", help="TOML config file (default: user config dir)")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one setting for this run, e.g. --set extraction.target_points=1024",
    )
    headless = parser.add_argument_group("unattended runs")
    headless.add_argument("--headless", action="store_true", help="process the queue without the terminal app")
    headless.add_argument("--workers", type=int, metavar="N", help="extraction worker processes")
    headless.add_argument("--watch", action="store_true", help="keep waiting for new work when the queue is empty")
    headless.add_argument("--json", action="store_true", dest="json_output", help="one JSON line per finished item")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_all(sub)
    return parser


def settings_overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    if args.db:
        overrides["database.url"] = normalise_db_url(args.db)
    if args.workers is not None:
        overrides["pipeline.workers"] = args.workers
    return overrides


def normalise_db_url(value: str) -> str:
    """A plain path means a SQLite file."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def new_database_path(db: str | None) -> Path | None:
    """The explicit ``--db`` SQLite file when it does not exist yet (its creation is then announced)."""
    if not db or "://" in db:
        return None
    path = Path(db).expanduser().resolve()
    return None if path.exists() else path


def database_fault_line(exc: BaseException, settings: Any) -> str | None:
    """One line for a fault of the database itself (full, damaged, read-only, ...); None otherwise."""
    from .engine.store.db import database_fault, display_url, is_fault

    if not is_fault(exc):
        return None
    fault = database_fault(exc, display_url(settings.database_url()))
    return f"destill3d-tui: {fault.reason}: {fault}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .engine.config import load_settings
    from .engine.errors import ConfigError

    try:
        settings = load_settings(args.config, settings_overrides(args))
    except ConfigError as exc:
        print(f"destill3d-tui: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    created = new_database_path(args.db)
    try:
        return _dispatch(args, settings)
    finally:
        if created is not None and created.exists():
            print(f"destill3d-tui: created a new database at {created}", file=sys.stderr)


def _dispatch(args: argparse.Namespace, settings: Any) -> int:
    if args.headless:
        from .engine.headless import run_headless

        return run_headless(settings, watch=args.watch, json_lines=args.json_output)
    if args.command is None:
        from .app import run_app

        return run_app(settings)
    handler = getattr(args, "handler", None)
    if handler is None:
        args.group_parser.print_help(sys.stderr)
        return EXIT_USAGE
    return _run_command(handler, args, settings)


def _run_command(handler: Any, args: argparse.Namespace, settings: Any) -> int:
    """Run one subcommand; every engine error, database faults included, is one line on stderr."""
    from .engine.errors import ConfigError, Destill3DError

    ctx = CommandContext(settings=settings, json_output=getattr(args, "json_output", False))
    try:
        return int(handler(args, ctx) or 0)
    except ConfigError as exc:
        print(f"destill3d-tui: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Destill3DError as exc:
        print(f"destill3d-tui: {exc.reason}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        line = database_fault_line(exc, settings)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return EXIT_FAILED
    finally:
        _close_quietly(ctx, settings)


def _close_quietly(ctx: CommandContext, settings: Any) -> None:
    """Closing after a database fault may meet the same fault: it was reported already."""
    try:
        ctx.close()
    except Exception as exc:
        if database_fault_line(exc, settings) is None:
            raise
