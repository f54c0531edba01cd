"""FLUX.2 klein as the single files people download: the transformer, the VAE.

Black Forest Labs and ComfyUI share klein as one transformer file in BFL's layout
(flux-2-klein-4b.safetensors, flux-2-klein-base-9b.safetensors, `-fp8` variants, GGUF
conversions), the Qwen3 text encoder as ComfyUI's qwen_3_4b / qwen_3_8b files and the
FLUX.2 VAE as flux2-vae.safetensors. What a file is (klein, 4B or 9B, distilled or base)
is read from its header by engine/families/flux2.py, which the window reads too; this
module builds the weights. The transformer's config is the shipped one with the
dimensions the file states put in, and it loads through diffusers' own converter
(`Flux2Transformer2DModel.from_single_file`); diffusers has no single-file map for
`AutoencoderKLFlux2`, so the VAE's BFL names are renamed here to what diffusers' LDM VAE
converter reads, plus the batch-norm statistics FLUX.2 adds. Text encoders are loaded by
engine/flow_single_file.py like every family's.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from engine import quantized
from engine.api import EngineError, ErrorKind
from engine.diffusers_layout import telling_shapes
from engine.families.flux2 import FILE_PREFIX, file_shape


def _error(message: str) -> EngineError:
    return EngineError(ErrorKind.MODEL, message)


def transformer_config(base: Mapping[str, Any], shapes: Mapping[str, Sequence[int]]) -> dict:
    """The shipped config with every dimension the file itself states put in, so a file of
    another depth or width (a pruned klein, the tests' tiny one) builds the model it holds.
    ValueError when the file lacks the tensors that tell."""
    config = dict(base)
    x_in = file_shape(shapes, "img_in.weight")
    context = file_shape(shapes, "txt_in.weight")
    head = file_shape(shapes, "double_blocks.0.img_attn.norm.query_norm.scale")
    mlp = file_shape(shapes, "double_blocks.0.img_mlp.0.weight")
    time_in = file_shape(shapes, "time_in.in_layer.weight")
    out = file_shape(shapes, "final_layer.linear.weight")
    if not (x_in and context and head):
        raise ValueError("it lacks klein's input projections or attention norms")
    width, head_dim = x_in[0], head[0]
    names = [k.removeprefix(FILE_PREFIX) for k in shapes]

    def blocks(kind: str) -> int:
        return len({k.split(".")[1] for k in names if k.startswith(kind)})

    config.update(
        in_channels=x_in[1],
        joint_attention_dim=context[1],
        attention_head_dim=head_dim,
        num_attention_heads=width // head_dim,
        num_layers=blocks("double_blocks."),
        num_single_layers=blocks("single_blocks."),
        guidance_embeds=any(k.startswith("guidance_in.") for k in names),
    )
    if mlp:  # SwiGLU: the first projection holds the gate and the value
        config["mlp_ratio"] = mlp[0] / 2 / width
    if time_in:
        config["timestep_guidance_channels"] = time_in[1]
    if out and out[0] != x_in[1]:
        config["out_channels"] = out[0]
    rope = list(config.get("axes_dims_rope") or [])
    if sum(rope) != head_dim:  # four rotary axes share each head
        config["axes_dims_rope"] = [head_dim // 4] * 4
    return config


def load_transformer(
    path: Path,
    config_dir: Path,
    dtype: torch.dtype,
    storage_dtype: torch.dtype | None,
    label: str,
    weights: Mapping[str, torch.Tensor] | None = None,
) -> torch.nn.Module:
    """The klein transformer from a BFL-layout file (bf16, fp8, scaled fp8 or GGUF);
    weights: its tensors when they are already read (a pickle, read as weights only)."""
    from diffusers import Flux2Transformer2DModel

    # Scaled fp8 comes multiplied out (engine/quantized.py).
    raw = quantized.read_weights(path) if weights is None else weights
    checkpoint = {k.removeprefix(FILE_PREFIX): v for k, v in raw.items()}
    del raw
    shapes = telling_shapes(
        {k: list(getattr(v, "quant_shape", v.shape)) for k, v in checkpoint.items()}
    )
    shipped = json.loads((config_dir / "transformer" / "config.json").read_text())
    try:
        config = transformer_config(shipped, shapes)
    except ValueError as exc:
        raise _error(f"{path.name} is not a complete {label} transformer: {exc}.") from exc
    with tempfile.TemporaryDirectory() as folder:
        if config != shipped:
            (Path(folder) / "transformer").mkdir()
            (Path(folder) / "transformer" / "config.json").write_text(json.dumps(config))
            config_dir = Path(folder)
        return quantized.load_transformer(
            Flux2Transformer2DModel, checkpoint, path, dtype, storage_dtype, label, str(config_dir)
        )


# BFL's FLUX.2 autoencoder keeps the (post-)quant convolutions inside encoder and decoder.
_VAE_RENAMES = (
    ("encoder.quant_conv.", "quant_conv."),
    ("decoder.post_quant_conv.", "post_quant_conv."),
)


def vae_to_diffusers(state: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    """A FLUX.2 VAE in BFL's layout (LDM names, batch-norm statistics) as
    AutoencoderKLFlux2's state dict; a file already in diffusers' layout passes as it is."""
    if any(k.startswith("encoder.down_blocks.") for k in state):
        return dict(state)
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for theirs, ours in _VAE_RENAMES:
            if key.startswith(theirs):
                key = ours + key.removeprefix(theirs)
        renamed[key] = value
    statistics = {k: renamed.pop(k) for k in list(renamed) if k.startswith("bn.")}
    converted = convert_ldm_vae_checkpoint(renamed, dict(config))
    return converted | statistics


def load_vae(path: Path, prefix: str, config_dir: Path, dtype: torch.dtype, label: str) -> object:
    """The FLUX.2 VAE from its own file (flux2-vae.safetensors)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLFlux2

    config = AutoencoderKLFlux2.load_config(config_dir, subfolder="vae", local_files_only=True)
    state = vae_to_diffusers(quantized.read_weights(path, prefix), config)
    with init_empty_weights():
        vae = AutoencoderKLFlux2.from_config(config)
    vae.load_state_dict(state, strict=False, assign=True)
    empty = [n for n, p in vae.named_parameters() if p.is_meta]
    if empty or "bn.running_mean" not in state:
        first = empty[0] if empty else "bn.running_mean"
        raise _error(
            f"{label} is not a FLUX.2 VAE: it lacks {max(len(empty), 1)} of its weights (first "
            f"{first}); klein needs flux2-vae.safetensors, not the FLUX.1 ae.safetensors."
        )
    return vae.to(dtype).eval()
