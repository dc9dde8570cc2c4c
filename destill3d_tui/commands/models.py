"""`destill3d-tui models ...` commands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="models commands (not yet available)")
    parser.set_defaults(handler=None, group_parser=parser)
