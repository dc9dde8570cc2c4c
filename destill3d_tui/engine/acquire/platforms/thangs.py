"""thangs: see unofficial.py for why this adapter goes only as far as solid facts."""

from .unofficial import ThangsAdapter

__all__ = ["ThangsAdapter"]
