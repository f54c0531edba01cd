"""The one memory-release path: after a job fails for memory, a model is dropped, or the
engine stops.

Python's garbage first (tensors held in reference cycles), then the accelerator's
cached blocks, then glibc's free lists, which otherwise keep freed CPU tensors' pages
in the process for good (resident memory that only grows over hours of use).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
from collections.abc import Callable

import torch


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # musl and other C libraries without it
        return None


def free_memory() -> None:
    """Give freed memory back: collect garbage, empty torch's caches, trim the C heap."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
