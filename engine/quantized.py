"""Quantized transformer files: GGUF (city96's and ComfyUI-GGUF's) and fp8 safetensors.

GGUF weights stay quantized in memory and are dequantized layer by layer as they run
(diffusers' GGUF quantizer, `gguf` package). fp8 weights (float8_e4m3fn / e5m2, as
ComfyUI's `*_fp8_e4m3fn.safetensors`) stay in fp8 and each layer is cast up to the
compute precision only while it runs (diffusers' layerwise casting); norms and embeddings,
which the casting skips, are kept in the compute precision. Either way the model takes
about half (fp8) or a quarter to a half (GGUF Q4-Q8) of the memory of bf16 weights.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

GGUF_SUFFIX = ".gguf"
_FP8 = {torch.float8_e4m3fn: "fp8 (e4m3fn)", torch.float8_e5m2: "fp8 (e5m2)"}


def is_gguf(path: Path) -> bool:
    return path.suffix.lower() == GGUF_SUFFIX


def read_gguf(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a GGUF file: quantized ones as diffusers' GGUFParameter."""
    from diffusers.models.model_loading_utils import load_gguf_checkpoint

    return load_gguf_checkpoint(str(path))


def gguf_label(checkpoint: dict[str, torch.Tensor]) -> str:
    """ "GGUF Q8_0" (the most common quantization among the file's tensors)."""
    kinds = Counter(
        getattr(t.quant_type, "name", str(t.quant_type))
        for t in checkpoint.values()
        if getattr(t, "quant_type", None) is not None
    )
    return f"GGUF {kinds.most_common(1)[0][0]}" if kinds else "GGUF"


def fp8_dtype(checkpoint: dict[str, torch.Tensor]) -> torch.dtype | None:
    """The fp8 storage type when most of the file's weights are fp8, else None."""
    counts = Counter(t.dtype for t in checkpoint.values() if t.ndim >= 2)
    if not counts:
        return None
    dtype, _ = counts.most_common(1)[0]
    return dtype if dtype in _FP8 else None


def fp8_label(dtype: torch.dtype) -> str:
    return _FP8.get(dtype, str(dtype))


def gguf_config(compute_dtype: torch.dtype) -> object:
    from diffusers import GGUFQuantizationConfig

    return GGUFQuantizationConfig(compute_dtype=compute_dtype)


def keep_fp8(model: torch.nn.Module, storage: torch.dtype, compute: torch.dtype) -> None:
    """Run an fp8-stored model in `compute` precision one layer at a time."""
    model.enable_layerwise_casting(storage_dtype=storage, compute_dtype=compute)  # type: ignore[operator]
    for module in model.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None and registry.get_hook("layerwise_casting") is not None:
            continue
        # Skipped modules (norms, embeddings) would otherwise meet fp8 weights at run time.
        for name, param in module.named_parameters(recurse=False):
            if param.dtype in _FP8 or (param.is_floating_point() and param.dtype != compute):
                setattr(module, name, torch.nn.Parameter(param.to(compute), requires_grad=False))
        for name, buffer in module.named_buffers(recurse=False):
            if buffer.is_floating_point() and buffer.dtype in _FP8:
                module.register_buffer(name, buffer.to(compute))
