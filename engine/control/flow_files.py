"""SD 3 and FLUX.1 ControlNets from a single .safetensors file.

diffusers 0.42 reads neither SD3ControlNetModel nor FluxControlNetModel with
from_single_file (neither is among its single-file classes), so this module does what
from_single_file would: it tells the kind from the tensor names, builds the config from
the shipped defaults (engine/model_configs/controlnet/sd3, flux1) with every size read
from the tensors' shapes, and loads the weights strictly. The files people download for
these models (InstantX, Shakker-Labs, Alimama; and SD 3.5's) carry diffusers' own tensor
names, so no key conversion is needed. XLabs' FLUX ControlNets use Black Forest Labs'
names (double_blocks, img_in) and XLabs' own (pos_embed_input, an input_hint_block of
eight convolutions): `xlabs_to_diffusers` renames them onto FluxControlNetModel with a
conditioning embedding, the form diffusers runs XLabs' models in (its pipeline then feeds
the control picture itself, not its latents, and repeats the residuals over the
transformer's blocks, as XLabs does). What no tensor shows (the
rotary axes of a FLUX ControlNet, the sample size of an SD 3 one) is taken from the main
model's transformer, which the ControlNet must match anyway. Headers are read first, so
a file of the wrong kind is refused before its weights are read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from diffusers import FluxControlNetModel, SD3ControlNetModel
from safetensors import safe_open
from safetensors.torch import load_file

from engine.api import EngineError, ErrorKind
from engine.flow_layouts import flux_to_diffusers
from engine.resources import model_configs_dir

FLUX = "FluxControlNetModel"
SD3 = "SD3ControlNetModel"
_CLASSES = {FLUX: FluxControlNetModel, SD3: SD3ControlNetModel}
_CONFIG_FOLDERS = {FLUX: "flux1", SD3: "sd3"}


def kind_of(keys: list[str]) -> str | None:
    """FluxControlNetModel, SD3ControlNetModel (diffusers' names), or None: not one."""
    if "controlnet_blocks.0.weight" not in keys:
        return None
    if any(k.startswith(("single_transformer_blocks.", "controlnet_single_blocks.")) for k in keys):
        return FLUX
    if "controlnet_x_embedder.weight" in keys:
        return FLUX
    if any(k.startswith("pos_embed_input.") for k in keys):
        return SD3
    return None


def is_bfl_layout(keys: list[str]) -> bool:
    """XLabs' FLUX ControlNets: Black Forest Labs' names (double_blocks, img_in)."""
    return (
        any(k.startswith("double_blocks.") for k in keys) and "controlnet_blocks.0.weight" in keys
    )


# XLabs' input_hint_block: convolutions at the even places of an nn.Sequential (SiLUs
# between), as diffusers' ControlNetConditioningEmbedding names them.
_HINT = {0: "conv_in", 14: "conv_out", **{2 + 2 * i: f"blocks.{i}" for i in range(6)}}


def xlabs_to_diffusers(checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An XLabs FLUX ControlNet's state dict in FluxControlNetModel's names."""
    own: dict[str, torch.Tensor] = {}
    rest: dict[str, torch.Tensor] = {}
    for key, value in checkpoint.items():
        if key.startswith("controlnet_blocks."):
            own[key] = value
        elif key.startswith("pos_embed_input."):
            own["controlnet_x_embedder." + key.split(".", 1)[1]] = value
        elif key.startswith("input_hint_block."):
            _, index, part = key.split(".")
            if int(index) not in _HINT:
                raise KeyError(key)
            own[f"input_hint_block.{_HINT[int(index)]}.{part}"] = value
        else:
            rest[key] = value
    return flux_to_diffusers(rest) | own


def _count(keys: list[str], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def _shipped(kind: str) -> dict[str, Any]:
    path = model_configs_dir() / "controlnet" / _CONFIG_FOLDERS[kind] / "config.json"
    config: dict[str, Any] = json.loads(path.read_text())
    return {k: v for k, v in config.items() if not k.startswith("_")}


def flux_config(shapes: dict[str, tuple[int, ...]], like: Any = None) -> dict[str, Any]:
    """A FluxControlNetModel config from the tensors' shapes (like: the main model's
    transformer config, for the rotary axes no tensor shows)."""
    keys = list(shapes)
    config = _shipped(FLUX)
    inner, config["in_channels"] = shapes["x_embedder.weight"]
    head = shapes.get("transformer_blocks.0.attn.norm_q.weight", (config["attention_head_dim"],))[0]
    config.update(
        attention_head_dim=head,
        num_attention_heads=inner // head,
        num_layers=_count(keys, "transformer_blocks."),
        num_single_layers=_count(keys, "single_transformer_blocks."),
        joint_attention_dim=shapes["context_embedder.weight"][1],
        pooled_projection_dim=shapes["time_text_embed.text_embedder.linear_1.weight"][1],
        guidance_embeds="time_text_embed.guidance_embedder.linear_1.weight" in shapes,
        num_mode=shapes.get("controlnet_mode_embedder.weight", (None,))[0],
        conditioning_embedding_channels=shapes.get("input_hint_block.conv_out.weight", (None,))[0],
    )
    hint = config["conditioning_embedding_channels"]
    if hint:  # XLabs': the hint block's channels are packed in patches into in_channels
        config["patch_size"] = round((config["in_channels"] / hint) ** 0.5)
    axes = like.get("axes_dims_rope") if like is not None else None
    if axes is not None and sum(axes) == head:
        config["axes_dims_rope"] = list(axes)
    return config


def sd3_config(shapes: dict[str, tuple[int, ...]], like: Any = None) -> dict[str, Any]:
    """An SD3ControlNetModel config from the tensors' shapes (like: the main model's
    transformer config, for the sample size and head width where no tensor shows them)."""
    keys = list(shapes)
    config = _shipped(SD3)
    for name in ("sample_size", "attention_head_dim", "pos_embed_max_size"):
        if like is not None and name in like:
            config[name] = like[name]
    inner, channels, patch, _ = shapes["pos_embed_input.proj.weight"]
    head = shapes.get("transformer_blocks.0.attn.norm_q.weight", (config["attention_head_dim"],))[0]
    use_pos_embed = "pos_embed.proj.weight" in shapes
    in_channels = shapes["pos_embed.proj.weight"][1] if use_pos_embed else config["in_channels"]
    joint = "context_embedder.weight" in shapes
    config.update(
        patch_size=patch,
        in_channels=in_channels,
        out_channels=in_channels,
        extra_conditioning_channels=channels - in_channels,
        attention_head_dim=head,
        num_attention_heads=inner // head,
        num_layers=_count(keys, "transformer_blocks."),
        joint_attention_dim=shapes["context_embedder.weight"][1] if joint else None,
        caption_projection_dim=shapes["context_embedder.weight"][0] if joint else inner,
        pooled_projection_dim=shapes["time_text_embed.text_embedder.linear_1.weight"][1],
        qk_norm="rms_norm" if "transformer_blocks.0.attn.norm_q.weight" in shapes else None,
        dual_attention_layers=tuple(
            i
            for i in range(_count(keys, "transformer_blocks."))
            if f"transformer_blocks.{i}.attn2.to_q.weight" in shapes
        ),  # fmt: skip
        use_pos_embed=use_pos_embed,
        # SD 3.5's own ControlNets (no text stream of their own) take the real pooled
        # embedding; InstantX's zero it, as diffusers' default does.
        force_zeros_for_pooled_projection=joint,
    )
    if use_pos_embed and "pos_embed.pos_embed" in shapes:
        config["pos_embed_max_size"] = round(shapes["pos_embed.pos_embed"][1] ** 0.5)
    return config


def load(path: Path, dtype: torch.dtype, like: Any = None) -> Any:
    """The ControlNet in `path` (diffusers' or XLabs' tensor names), or EngineError(MODEL)."""
    state: dict[str, torch.Tensor] | None = None
    try:
        with safe_open(str(path), "pt") as f:
            names = list(f.keys())
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in names}
        if is_bfl_layout(names):
            state = xlabs_to_diffusers(load_file(str(path)))
            shapes = {k: tuple(v.shape) for k, v in state.items()}
    except Exception as exc:  # any reader or renaming failure: not a file we can read
        raise EngineError(
            ErrorKind.MODEL, f"{path.name} is not a readable ControlNet file: {exc}"
        ) from exc
    kind = kind_of(list(shapes))
    if kind is None:
        raise EngineError(ErrorKind.MODEL, f"{path.name} is not an SD 3 or FLUX.1 ControlNet.")
    try:
        config = (flux_config if kind == FLUX else sd3_config)(shapes, like)
        model = _CLASSES[kind].from_config(config)
        missing, unexpected = model.load_state_dict(
            state if state is not None else load_file(str(path)), strict=False
        )
    except (RuntimeError, KeyError, ValueError) as exc:
        raise EngineError(
            ErrorKind.MODEL, f"{path.name} does not fit a {kind} ({exc.__class__.__name__}: {exc})."
        ) from exc
    buffers = {name for name, _ in model.named_buffers()}
    missing = [k for k in missing if k not in buffers]
    if missing or unexpected:
        mismatched = ", ".join((missing + unexpected)[:3])
        raise EngineError(
            ErrorKind.MODEL, f"{path.name} does not fit a {kind}: {mismatched} do not match."
        )
    return model.to(dtype)
