"""Where a model's weights live while it runs, chosen before it is loaded.

The model's size (from its files, at the precision it will run in) is compared with the
free memory of the device: CUDA memory from the driver, system memory for the CPU (and
Apple's unified memory). Then one of three placements, the way diffusers offers them:

- all on the device: everything fits with room for the activations;
- model CPU offload: the whole model fits in system memory and its largest part (the
  transformer / UNet) fits on the GPU; each part moves to the GPU while it runs;
- group offload: not even the largest part fits on the GPU; its blocks stream through
  the GPU one group at a time (slower, but runs a 12B model on an 8 GB card);

or a clear refusal when the model does not fit in system memory either. The numbers go
into the sentence the status bar shows. Pure arithmetic apart from two probes of free
memory, so every branch is tested with mocked sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psutil
import torch

from engine.api import EngineError, ErrorKind

GIB = 1024**3
# Room for activations, the VAE decode and the allocator's slack, beyond the weights.
_HEADROOM_FIXED = 1 * GIB
_HEADROOM_SHARE = 0.15


class Placement(StrEnum):
    ON_DEVICE = "all on the device"
    MODEL_OFFLOAD = "model CPU offload"
    GROUP_OFFLOAD = "group offload"


@dataclass(frozen=True)
class MemoryPlan:
    placement: Placement
    model_bytes: int
    largest_bytes: int
    device_free: int  # bytes free on the device (system memory for the CPU)
    system_free: int

    @property
    def notes(self) -> tuple[str, ...]:
        """What the status bar adds while the model runs: the placement when it is not
        the plain one (loading always says it)."""
        return () if self.placement is Placement.ON_DEVICE else (self.label,)

    @property
    def label(self) -> str:
        """For the status bar: "model CPU offload (model 23.8 GB, GPU 11.2 GB free)"."""
        where = "memory" if self.device_free == self.system_free else "GPU"
        return (
            f"{self.placement} (model {_gb(self.model_bytes)}, "
            f"{where} {_gb(self.device_free)} free)"
        )


def _gb(n: int) -> str:
    return f"{n / GIB:.1f} GB"


def headroom(model_bytes: int) -> int:
    return _HEADROOM_FIXED + int(_HEADROOM_SHARE * model_bytes)


def system_free() -> int:
    return int(psutil.virtual_memory().available)


def device_free(device: torch.device) -> int:
    """Free bytes where the weights would go: the CUDA device's, else system memory."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return system_free()


def choose(
    parts: Mapping[str, int],
    device: torch.device,
    *,
    free_on_device: int | None = None,
    free_in_system: int | None = None,
    what: str = "the model",
) -> MemoryPlan:
    """The placement for a model whose parts weigh `parts` bytes (at run precision);
    EngineError(OUT_OF_MEMORY) when it cannot fit at all."""
    total = sum(parts.values())
    largest = max(parts.values(), default=0)
    system = system_free() if free_in_system is None else free_in_system
    on_device = (
        (system if device.type != "cuda" else device_free(device))
        if free_on_device is None
        else free_on_device
    )

    def plan(placement: Placement) -> MemoryPlan:
        return MemoryPlan(placement, total, largest, on_device, system)

    if total + headroom(total) <= on_device:
        return plan(Placement.ON_DEVICE)
    if device.type == "cuda" and total <= system:
        if largest + headroom(largest) <= on_device:
            return plan(Placement.MODEL_OFFLOAD)
        # One block group at a time: a few hundred MB even for 12B transformers.
        if on_device >= _HEADROOM_FIXED:
            return plan(Placement.GROUP_OFFLOAD)
    where = (
        f"the GPU has {_gb(on_device)} free and the computer {_gb(system)}"
        if device.type == "cuda"
        else f"this computer has {_gb(system)} of memory free"
    )
    raise EngineError(
        ErrorKind.OUT_OF_MEMORY,
        f"{what} needs about {_gb(total + headroom(total))} to run and cannot fit: {where}. "
        "Close other programs, or use a smaller or quantized file of it (GGUF Q4/Q8 or fp8 "
        "take a quarter to a half of the memory).",
    )


def apply(pipe: object, plan: MemoryPlan, device: torch.device) -> None:
    """Put the pipeline's weights where the plan says."""
    if plan.placement is Placement.ON_DEVICE:
        pipe.to(device)  # type: ignore[attr-defined]
    elif plan.placement is Placement.MODEL_OFFLOAD:
        pipe.enable_model_cpu_offload(device=device)  # type: ignore[attr-defined]
    else:
        pipe.enable_group_offload(  # type: ignore[attr-defined]
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=True,
        )


# ---------------------------------------------------------------------------- sizes

_ELEMENT = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}


def file_bytes_at(
    path: Path,
    dtype: torch.dtype | None,
    prefix: str = "",
    skip: tuple[str, ...] = (),
    fp8_stays: bool = True,
) -> int:
    """What a weight file (its tensors under `prefix`, less those under `skip`) takes in
    memory once loaded at `dtype` (None: as stored, as for GGUF files, which stay
    quantized). fp8 tensors stay fp8 when `fp8_stays` (transformers run them so), except
    in scaled fp8 files, which are multiplied out on reading."""
    size = path.stat().st_size
    if dtype is None or path.suffix.lower() not in (".safetensors", ".sft"):
        return size
    from engine.library import read_safetensors_header

    try:
        header = read_safetensors_header(path)
    except (OSError, ValueError):
        return size
    from engine.quantized import is_scaled_fp8

    fp8_size = 1 if fp8_stays and not is_scaled_fp8(header) else None
    total = 0
    for key, n in _key_bytes(header, dtype, fp8_size):
        if key.startswith(prefix) and not (skip and key.startswith(skip)):
            total += n
    return total or size


def _key_bytes(
    header: Mapping[str, object], dtype: torch.dtype, fp8_size: int | None
) -> Iterable[tuple[str, int]]:
    """(tensor name, bytes at `dtype`) for each tensor a safetensors header lists; fp8
    tensors take fp8_size bytes an element (None: cast to dtype like the others)."""
    target = torch.empty((), dtype=dtype).element_size()
    for key, info in header.items():
        if key == "__metadata__" or not isinstance(info, dict):
            continue
        count = 1
        for n in info.get("shape", []):
            count *= int(n)
        stored = _ELEMENT.get(str(info.get("dtype")), 0)
        per = target if stored >= 2 else (fp8_size or target) if stored == 1 else 1
        yield key, count * per


def checkpoint_parts(
    path: Path, dtype: torch.dtype, parts: Mapping[str, tuple[str, ...]], rest: str
) -> dict[str, int]:
    """Bytes at `dtype` of a whole checkpoint's parts, told by key prefixes (an SD 1/2/XL
    file: the UNet, the VAE, and `rest` for the text encoders), from its header alone.
    A pickled file's parts cannot be told before it is read: the whole file is one."""
    size = path.stat().st_size
    if path.suffix.lower() not in (".safetensors", ".sft"):
        return {rest: size}
    from engine.library import read_safetensors_header

    try:
        header = read_safetensors_header(path)
    except (OSError, ValueError):
        return {rest: size}
    found = dict.fromkeys([*parts, rest], 0)
    for key, n in _key_bytes(header, dtype, None):
        part = next((name for name, prefixes in parts.items() if key.startswith(prefixes)), rest)
        found[part] += n
    return {name: n for name, n in found.items() if n} or {rest: size}


def tensors_bytes_at(tensors: Iterable[object], dtype: torch.dtype) -> int:
    """What tensors already read (a pickle's) take once cast to `dtype` (fp8 stays fp8)."""
    target = torch.empty((), dtype=dtype).element_size()
    total = 0
    for t in tensors:
        if isinstance(t, torch.Tensor):
            size = t.element_size()
            total += t.numel() * (target if t.is_floating_point() and size >= 2 else size)
    return total


def folder_parts(folder: Path, components: list[str], dtype: torch.dtype) -> dict[str, int]:
    """Bytes at `dtype` of each component of a diffusers folder (its safetensors weights:
    the plain ones, or the only variant there is)."""
    parts: dict[str, int] = {}
    for name in components:
        files = sorted((folder / name).glob("*.safetensors"))
        plain = [f for f in files if f.name.count(".") == 1]
        if files:
            parts[name] = sum(file_bytes_at(f, dtype) for f in (plain or files))
    return parts
