"""`destill3d-tui queue ...` commands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("queue", help="queue commands (not yet available)")
    parser.set_defaults(handler=None, group_parser=parser)
