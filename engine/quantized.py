"""Quantized transformer files: GGUF (city96's and ComfyUI-GGUF's) and fp8 safetensors.

GGUF weights stay quantized in memory and are dequantized layer by layer as they run
(diffusers' GGUF quantizer, `gguf` package). fp8 weights (float8_e4m3fn / e5m2, as
ComfyUI's `*_fp8_e4m3fn.safetensors`) stay in fp8 and each layer is cast up to the
compute precision only while it runs (diffusers' layerwise casting); norms and embeddings,
which the casting skips, are kept in the compute precision. ComfyUI's "fp8_scaled" files
(a scale per weight, `X.scale_weight` or `X.weight_scale`) cannot run that way, since the
casting knows no scales: their weights are multiplied out into bfloat16 as they are read.
Unscaled fp8 takes about half, GGUF Q4-Q8 a quarter to a half of the memory of bf16.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.api import EngineError, ErrorKind

GGUF_SUFFIX = ".gguf"
_FP8 = {torch.float8_e4m3fn: "fp8 (e4m3fn)", torch.float8_e5m2: "fp8 (e5m2)"}


def is_gguf(path: Path) -> bool:
    return path.suffix.lower() == GGUF_SUFFIX


_SAFETENSORS_FP8 = {"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
# ComfyUI's scaled fp8: a scale beside each weight, and bookkeeping tensors that are no
# weights at all (the input scales only matter to fp8 matrix products).
_SCALES = (".scale_weight", ".weight_scale")
_SCALE_EXTRAS = (".scale_input", ".input_scale", ".comfy_quant")
_SCALED_MARK = "scaled_fp8"


def is_scaled_fp8(keys: Iterable[str]) -> bool:
    return any(k == _SCALED_MARK or k.endswith(_SCALES) for k in keys)


def unscale_fp8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scaled fp8 weights multiplied out (into bfloat16, whose range holds them) and the
    scales dropped; other tensors as they are."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == _SCALED_MARK or key.endswith(_SCALES + _SCALE_EXTRAS):
            continue
        stem = key.removesuffix(".weight")
        scale = next((state[stem + s] for s in _SCALES if stem + s in state), None)
        if scale is not None and key.endswith(".weight"):
            if scale.numel() > 1:  # one per output row
                scale = scale.reshape(-1, *([1] * (value.ndim - 1)))
            value = (value.float() * scale.float()).to(torch.bfloat16)
        out[key] = value
    return out


@dataclass(frozen=True)
class Header:
    """A weight file's tensor names and logical shapes, and how its weights are stored."""

    shapes: dict[str, list[int]]
    quantization: str  # "", "GGUF Q8_0", "fp8 (e4m3fn)"
    storage_dtype: torch.dtype | None  # fp8 files: the fp8 type the weights stay in


def read_header(path: Path) -> Header:
    """Names, shapes and storage of a .safetensors or .gguf file, without its tensors.
    ValueError when the file cannot be read."""
    if is_gguf(path):
        from gguf import GGUFReader

        try:
            reader = GGUFReader(str(path))  # memory-mapped: reads the index only
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise ValueError(f"not a readable GGUF file ({exc})") from exc
        # GGUF lists dimensions innermost first; torch's shapes are the other way round.
        shapes = {t.name: [int(n) for n in reversed(t.shape.tolist())] for t in reader.tensors}
        kinds = Counter(
            t.tensor_type.name for t in reader.tensors if t.tensor_type.name not in ("F32", "F16")
        )
        label = f"GGUF {kinds.most_common(1)[0][0]}" if kinds else "GGUF"
        return Header(shapes, label, None)
    from engine.library import read_safetensors_header

    header = read_safetensors_header(path)
    found: dict[str, list[int]] = {}
    stored: Counter[str] = Counter()
    for key, info in header.items():
        if key == "__metadata__" or not isinstance(info, dict):
            continue
        found[key] = [int(n) for n in info.get("shape", [])]
        if len(found[key]) >= 2:
            stored[str(info.get("dtype"))] += 1
    most = stored.most_common(1)[0][0] if stored else ""
    fp8 = _SAFETENSORS_FP8.get(most)
    if fp8 is not None and is_scaled_fp8(found):
        return Header(found, f"{_FP8[fp8]}, scaled: run unpacked", None)
    return Header(found, _FP8[fp8] if fp8 is not None else "", fp8)


def header_of(weights: dict[str, torch.Tensor]) -> Header:
    """The Header of tensors already in memory (a pickle file read as weights only)."""
    tensors = {k: v for k, v in weights.items() if isinstance(v, torch.Tensor)}
    shapes = {k: [int(n) for n in v.shape] for k, v in tensors.items()}
    stored = Counter(v.dtype for v in tensors.values() if v.ndim >= 2)
    fp8 = stored.most_common(1)[0][0] if stored else None
    fp8 = fp8 if fp8 in _FP8 else None
    return Header(shapes, _FP8[fp8] if fp8 is not None else "", fp8)


def read_weights(
    path: Path, prefix: str = "", skip: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """The file's tensors under `prefix` (removed from the names), leaving out names that
    start with any of `skip`; GGUF quantized tensors come as diffusers' GGUFParameter;
    scaled fp8 weights come multiplied out. Only the wanted tensors of a .safetensors file
    are read."""
    if is_gguf(path):
        from diffusers.models.model_loading_utils import load_gguf_checkpoint

        return load_gguf_checkpoint(str(path))
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        for key in f.keys():  # noqa: SIM118 (a safe_open handle is not a mapping)
            if key.startswith(prefix) and not key.startswith(skip):
                out[key[len(prefix) :]] = f.get_tensor(key)
    return unscale_fp8(out) if is_scaled_fp8(out) else out


def gguf_config(compute_dtype: torch.dtype) -> object:
    from diffusers import GGUFQuantizationConfig

    return GGUFQuantizationConfig(compute_dtype=compute_dtype)


def dequantize_strays(model: torch.nn.Module, compute: torch.dtype) -> int:
    """Dequantize, once, GGUF weights that a module other than diffusers' GGUFLinear holds
    (SANA's modulation tables, a quantized convolution): only linear layers compute from
    quantized weights, anything else would meet raw GGUF blocks. Returns how many."""
    from diffusers.quantizers.gguf.utils import GGUFLinear, GGUFParameter, dequantize_gguf_tensor

    count = 0
    for module in model.modules():
        if isinstance(module, GGUFLinear):
            continue
        for name, param in list(module.named_parameters(recurse=False)):
            if isinstance(param, GGUFParameter):
                plain = dequantize_gguf_tensor(param).as_subclass(torch.Tensor).to(compute)
                setattr(module, name, torch.nn.Parameter(plain, requires_grad=False))
                count += 1
    return count


def load_transformer(
    cls: type,
    checkpoint: dict[str, torch.Tensor],
    path: Path,
    dtype: torch.dtype,
    storage_dtype: torch.dtype | None,
    label: str,
    config: str,
) -> torch.nn.Module:
    """A transformer of diffusers class `cls` from a file's tensors in diffusers' names (or
    names its from_single_file converts) and a config folder (holding `transformer/`), kept
    as the file stores it: GGUF quantized (diffusers' quantizer), fp8 run one layer at a
    time in `dtype`, anything else in `dtype`. A MODEL error naming the file when it cannot
    be read or lacks weights."""
    kwargs: dict[str, object] = {"config": config, "subfolder": "transformer"}
    if is_gguf(path):
        kwargs["quantization_config"] = gguf_config(dtype)
        kwargs["torch_dtype"] = dtype
    elif storage_dtype is None:
        kwargs["torch_dtype"] = dtype
    try:
        model = cls.from_single_file(checkpoint, local_files_only=True, **kwargs)  # type: ignore[attr-defined]
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:
        raise EngineError(
            ErrorKind.MODEL,
            f"{path.name} could not be read as a {label} transformer ({exc}); the file may be "
            "damaged or a variant DiffusionDesk does not know.",
        ) from exc
    if any(p.is_meta for p in model.parameters()):
        raise EngineError(
            ErrorKind.MODEL, f"{path.name} lacks some of the {label} transformer's weights."
        )
    if is_gguf(path):
        dequantize_strays(model, dtype)
    if storage_dtype is not None:
        keep_fp8(model, storage_dtype, dtype)
    return model


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
