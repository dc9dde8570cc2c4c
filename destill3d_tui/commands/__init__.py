"""The spec's command tree, one module per group.

Each module exposes ``register(subparsers)`` that adds its group and sets ``handler`` on every
leaf parser: ``handler(args, ctx: CommandContext) -> int`` (the exit code). Modules import the
engine inside handlers, so ``destill3d-tui --help`` stays fast.
"""

from __future__ import annotations

import importlib

GROUPS = ("extract", "snapshot", "queue", "db", "acquire", "classify", "models", "config", "serve")


def register_all(subparsers) -> None:  # type: ignore[no-untyped-def]
    for name in GROUPS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(subparsers)
