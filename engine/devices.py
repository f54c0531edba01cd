"""Device and dtype policy: CUDA and Apple MPS in half precision, the CPU in float32.

"auto" picks the best available device; both choices can be overridden by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.api import EngineError, ErrorKind

DEVICE_NAMES = ("auto", "cuda", "mps", "cpu")
DTYPE_NAMES = {
    "auto": None,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    dtype: torch.dtype

    @property
    def description(self) -> str:
        """e.g. "cpu (float32)" or "cuda:0 (float16)"."""
        return f"{self.device} ({str(self.dtype).removeprefix('torch.')})"


def cuda_available() -> bool:
    return torch.cuda.is_available()


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def default_dtype(device: torch.device) -> torch.dtype:
    # Half precision halves memory and is fast on GPUs; on CPUs float16 matmuls are slow
    # or unsupported, so float32 stays the default there (bfloat16 only on request).
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


def resolve_device(name: str = "auto") -> torch.device:
    """Turn "auto", "cuda", "cuda:1", "mps" or "cpu" into an available torch.device."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if cuda_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":", 1)[0]
    if kind not in DEVICE_NAMES:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"Unknown device {name!r}; choose one of auto, cuda, mps or cpu.",
        )
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise EngineError(ErrorKind.BAD_INPUT, f"Invalid device {name!r}: {exc}") from exc
    if kind == "cuda":
        if not cuda_available():
            raise EngineError(
                ErrorKind.BAD_INPUT,
                "The CUDA device was requested but no CUDA GPU is available to this "
                "PyTorch build; choose the CPU (or auto).",
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EngineError(
                ErrorKind.BAD_INPUT,
                f"GPU {device.index} does not exist; this machine has "
                f"{torch.cuda.device_count()} CUDA device(s).",
            )
    if kind == "mps" and not mps_available():
        raise EngineError(
            ErrorKind.BAD_INPUT,
            "Apple MPS was requested but is not available on this machine; choose the CPU "
            "(or auto).",
        )
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Turn "auto", "float32", "float16" or "bfloat16" into a dtype usable on device."""
    key = (name or "auto").strip().lower()
    if key not in DTYPE_NAMES:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"Unknown precision {name!r}; choose auto, float32, float16 or bfloat16.",
        )
    dtype = DTYPE_NAMES[key]
    if dtype is None:
        return default_dtype(device)
    if dtype == torch.float16 and device.type == "cpu":
        raise EngineError(
            ErrorKind.BAD_INPUT,
            "float16 is not supported on the CPU; use float32 (or bfloat16).",
        )
    return dtype


def resolve(device: str = "auto", dtype: str = "auto") -> DevicePolicy:
    dev = resolve_device(device)
    return DevicePolicy(dev, resolve_dtype(dtype, dev))
