"""`destill3d-tui config show|set|init`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .context import CommandContext


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="show and change settings")
    sub = parser.add_subparsers(dest="config_command", metavar="COMMAND")
    parser.set_defaults(handler=None, group_parser=parser)

    show = sub.add_parser("show", help="print the effective settings (all layers applied)")
    show.add_argument("--json", action="store_true", dest="json_output")
    show.set_defaults(handler=show_config)

    set_ = sub.add_parser("set", help="write KEY=VALUE into the config file (validated first)")
    set_.add_argument("key", help="dotted key, e.g. extraction.target_points")
    set_.add_argument("value")
    set_.set_defaults(handler=set_config)

    init = sub.add_parser("init", help="write a config file with every default")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=init_config)

    from .credentials import register as register_credentials

    register_credentials(sub)


def _config_path(args: argparse.Namespace) -> Path:
    from ..engine import locations

    return Path(args.config) if getattr(args, "config", None) else locations.config_file()


def show_config(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.config import dump_toml

    data = ctx.settings.to_dict()
    if ctx.json_output:
        ctx.emit_json(data)
    else:
        ctx.out.print(f"# effective settings (file: {_config_path(args)})", markup=False)
        ctx.out.print(dump_toml(json.loads(json.dumps(data))), markup=False)
    return 0


def set_config(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.config import set_value

    path = _config_path(args)
    set_value(path, args.key, args.value)
    ctx.err.print(f"{args.key} = {args.value} written to {path}", markup=False)
    return 0


def init_config(args: argparse.Namespace, ctx: CommandContext) -> int:
    from ..engine.config import init_file

    path = init_file(_config_path(args), force=args.force)
    ctx.err.print(f"wrote {path}", markup=False)
    return 0
