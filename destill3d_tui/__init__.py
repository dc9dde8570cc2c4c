"""Destill3D: public 3D-model platforms in, ML-ready datasets out."""

__version__ = "0.1.0"
