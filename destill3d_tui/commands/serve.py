"""`destill3d-tui serve`: the app in a browser (textual-serve), one app process per session.

Loopback by default; any other bind needs an access token (``--token``, ``DESTILL3D_SERVE_TOKEN``,
or one generated and printed at start). See :mod:`destill3d_tui.serve` for the gate.

Exit status after SIGTERM or SIGINT is 0, not 143/130 as for ``--headless``: the server has no
work of its own to leave unfinished, and it returns only once every session's app has quit
(their engines drained and closed), which is the outcome a service manager should see as clean.
"""

from __future__ import annotations

import argparse
import os
import sys

from .context import CommandContext


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve the app to web browsers (one app per session)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8566, help="port (default 8566)")
    # the global --db, also accepted after `serve` (SUPPRESS: absent here, the global one stands)
    parser.add_argument("--db", metavar="URL", default=argparse.SUPPRESS,
                        help="database the sessions open: a SQLite path or postgresql://...")
    parser.add_argument("--token", metavar="T", default=None,
                        help="access token (default: $DESTILL3D_SERVE_TOKEN; generated when the bind is not loopback)")
    parser.add_argument("--require-token", action="store_true",
                        help="demand a token on a loopback bind too (one is generated if none is given)")
    parser.set_defaults(handler=serve, group_parser=parser)


def session_args(args: argparse.Namespace, database_url: str) -> list[str]:
    """What each session's app is started with: the same database, config file and overrides."""
    out = ["--db", database_url]
    if args.config:
        out += ["--config", args.config]
    for item in args.set:
        out += ["--set", item]
    return out


def serve(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..serve import TOKEN_ENV, ServeOptions, choose_token, serve, session_command

    if not 0 < args.port < 65536:
        print(f"destill3d-tui: serve: --port {args.port} is not a TCP port", file=sys.stderr)
        return 2
    given = args.token or os.environ.get(TOKEN_ENV) or None
    token = choose_token(args.host, given, require=args.require_token)
    command = session_command(session_args(args, ctx.settings.database_url()))
    options = ServeOptions(host=args.host, port=args.port, token=token)
    return serve(command, options, announce=lambda line: print(f"destill3d-tui: {line}", file=sys.stderr, flush=True))
