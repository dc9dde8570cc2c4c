"""The snapshot filter flags shared by `db query` and `db export`, so both select the same rows."""

from __future__ import annotations

import argparse
from typing import Any

FILTER_DESTS = ("platform", "source_format", "label", "min_confidence", "license", "commercial", "derivatives",
                "tags", "text", "since", "until", "review", "label_source")  # fmt: skip
"""Namespace attributes the flags below fill: the fields of engine.store.filters.SnapshotFilter."""


def add_filter_arguments(parser: argparse.ArgumentParser, format_flags: tuple[str, ...]) -> None:
    """Add every SnapshotFilter field as a flag; ``format_flags`` names the source-format flag(s)
    (`db export` has its own ``--format``, the dataset format)."""
    group = parser.add_argument_group("which snapshots (the same filters in db query and db export)")
    group.add_argument("--platform", help="platform name, e.g. thingiverse or local")
    group.add_argument(*format_flags, dest="source_format", help="source file format, e.g. STL")
    group.add_argument("--label", help="the label a snapshot goes by (a person's when set, else the model's)")
    group.add_argument("--min-confidence", "--confidence", dest="min_confidence", metavar="X",
                       help="top prediction's confidence at least X (0.8 or 80%%)")
    group.add_argument("--license", help="SPDX id or the platform's licence string")
    group.add_argument("--commercial", choices=("yes", "no"), help="licence allows commercial use (yes/no)")
    group.add_argument("--derivatives", choices=("yes", "no"), help="licence allows derivatives (yes/no)")
    group.add_argument("--tag", action="append", dest="tags", metavar="TAG",
                       help="has this tag (repeat for several: all must be present)")
    group.add_argument("--text", help="substring of title, label, author, platform or model id")
    group.add_argument("--since", metavar="DATE", help="processed on or after DATE (2026-01-31 or ISO time)")
    group.add_argument("--until", metavar="DATE", help="processed on or before DATE (a date includes that day)")
    group.add_argument("--review", choices=("accepted", "rejected", "unreviewed"),
                       help="the curator's decision (exports leave rejected snapshots out unless asked for them)")
    group.add_argument("--label-source", dest="label_source", choices=("human", "few_shot", "model", "any"),
                       help="whose label: a person's, confirmed from a few-shot class, the classifier's, or any")


def filter_from_args(args: argparse.Namespace) -> Any:
    """The SnapshotFilter the flags describe (a FilterError names a bad value)."""
    from ..engine.store.filters import SnapshotFilter

    return SnapshotFilter.from_mapping({name: getattr(args, name, None) for name in FILTER_DESTS})
