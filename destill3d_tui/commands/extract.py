"""`destill3d-tui extract ...` commands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("extract", help="extract commands (not yet available)")
    parser.set_defaults(handler=None, group_parser=parser)
