"""The one way the engine compiles a numba kernel: ``njit(cache=True)`` with a disk cache.

Shared by the extraction kernels and the export's ``.d3d`` decoders (``store/export/kernels``),
so neither stage imports the other for it. The cache lives in the user's cache folder
(:func:`locations.kernel_cache_dir`; ``NUMBA_CACHE_DIR`` wins when set), never next to the
installed sources, which may be read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
from numba import njit

from . import locations


def kernel(func: Callable[..., Any]) -> Any:
    """``njit(cache=True)`` with the disk cache in the user's cache folder.

    numba picks a function's cache folder when it is decorated, from ``numba.config.CACHE_DIR``;
    it is set for the decoration only, so other numba users in this process keep their own.
    """
    saved = numba.config.CACHE_DIR
    if not saved:
        numba.config.CACHE_DIR = str(locations.kernel_cache_dir())
    try:
        return njit(cache=True)(func)
    finally:
        numba.config.CACHE_DIR = saved
