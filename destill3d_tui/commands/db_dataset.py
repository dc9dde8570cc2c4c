"""`db similar|duplicates|export`: registered into the `db` group by commands/db.py."""

from __future__ import annotations

import argparse


def register(db_subparsers: argparse._SubParsersAction) -> None:
    """Adds the dataset subcommands to ``db``; filled in by the similarity/export work."""
