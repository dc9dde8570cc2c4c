"""The Destill3D engine: everything that works without a terminal. Never imports textual.

``from destill3d_tui.engine import Destill3D`` gives the Python API (spec section 10).
Imports are lazy so that importing the package costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Destill3D

__all__ = ["Destill3D"]


def __getattr__(name: str) -> Any:
    if name == "Destill3D":
        from .api import Destill3D

        return Destill3D
    raise AttributeError(name)
