"""printables: see unofficial.py for why this adapter goes only as far as solid facts."""

from .unofficial import PrintablesAdapter

__all__ = ["PrintablesAdapter"]
