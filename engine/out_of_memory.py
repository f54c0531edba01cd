"""Telling out-of-memory failures apart from other ones, on every device.

CUDA raises torch.OutOfMemoryError; the CPU allocator raises a plain RuntimeError
("DefaultCPUAllocator: can't allocate memory: you tried to allocate … bytes"); Python
raises MemoryError; MPS says "MPS backend out of memory". All of them mean the same to a
person: make the job smaller or free memory. No torch import: the type is matched by name.
"""

from __future__ import annotations

_MARKERS = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "defaultcpuallocator",
    "failed to allocate",
)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc)[:2000].lower()
    return any(marker in text for marker in _MARKERS)


def suggestion(device: str) -> str:
    """What to do, for the device the job ran on (e.g. "cpu (float32)")."""
    if device.startswith("cpu"):
        return "choose a smaller size or batch, or close other programs to free memory"
    return "choose a smaller size or batch, or run on the CPU"
