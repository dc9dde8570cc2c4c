"""What every command handler gets: settings, output helpers, and the engine on demand."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from ..engine.api import Destill3D
    from ..engine.config import Settings


@dataclass
class CommandContext:
    settings: Settings
    json_output: bool = False
    stdout: Any = field(default_factory=lambda: sys.stdout)
    _engine: Destill3D | None = None

    @property
    def err(self) -> Console:
        """Human-facing output (progress, tables for people) goes to stderr when --json is on."""
        return Console(stderr=True, highlight=False)

    @property
    def out(self) -> Console:
        return Console(file=self.stdout, highlight=False)

    def engine(self) -> Destill3D:
        if self._engine is None:
            from ..engine.api import Destill3D

            self._engine = Destill3D(settings=self.settings)
        return self._engine

    def emit_json(self, obj: Any) -> None:
        """One JSON object per line on stdout, flushed (scripts read it as it comes).

        Strings are in the escaped display form (engine.text): a title holding terminal escapes
        or a name that is not UTF-8 reaches neither the terminal nor a ``jq -r`` raw.
        """
        from ..engine.text import display_all

        self.stdout.write(json.dumps(display_all(obj), default=str) + "\n")
        self.stdout.flush()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
