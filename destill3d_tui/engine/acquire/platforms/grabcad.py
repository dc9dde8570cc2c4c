"""grabcad: see unofficial.py for why this adapter goes only as far as solid facts."""

from .unofficial import GrabCADAdapter

__all__ = ["GrabCADAdapter"]
