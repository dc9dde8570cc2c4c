"""`destill3d-tui snapshot ...` commands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("snapshot", help="snapshot commands (not yet available)")
    parser.set_defaults(handler=None, group_parser=parser)
