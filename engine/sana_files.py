"""SANA and SANA-Sprint transformer files as NVIDIA publishes them, told apart and converted.

What people download is one transformer file: `Sana_1600M_1024px*.pth` / `.safetensors`
in the original (NVlabs/Sana) layout — `x_embedder`, `t_embedder`, `y_embedder`,
`blocks.N.attn.qkv`, `blocks.N.cross_attn.kv_linear`, `final_layer` — possibly under
ComfyUI's `model.diffusion_model.` prefix, as bf16, fp8 or GGUF, or the diffusers
transformer's own weights as one file. Beside it go the Gemma 2 2B text encoder
(`gemma_2_2b*.safetensors`) and the DC-AE autoencoder, found like every other family's
files (engine/component_files.py, engine/flow_single_file.py).

The file's keys and shapes say which model it is: SANA-Sprint carries a guidance embedder
(`cfg_embedder`), SANA 1.5 and Sprint q/k norms, and the width and number of blocks give
the size (600M: 28 blocks of 1152, 1.6B: 20 of 2240, 4.8B: 60 of 2240). The 2K and 4K
models differ only in their positional embedding, which the file name (or the
`pos_embed` buffer) tells. Each of these has a config folder in engine/model_configs/.

The conversion is diffusers' own `convert_sana_transformer_to_diffusers`; what it does not
know (Sprint's guidance embedder and time-embedding names, the q/k norms of SANA 1.5 and
Sprint, files without `pos_embed`) is mapped here around it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine import component_files as cf

PREFIX = "model.diffusion_model."
_ORIGINAL_MARK = "blocks.0.cross_attn.q_linear.weight"
_DIFFUSERS_MARKS = (
    "caption_projection.linear_1.weight",
    "transformer_blocks.0.ff.conv_inverted.weight",
)
_ORIGINAL_SPRINT = "cfg_embedder.mlp.0.weight"
_DIFFUSERS_SPRINT = "time_embed.guidance_embedder.linear_1.weight"
_ORIGINAL_QK = "blocks.0.attn.q_norm.weight"
_DIFFUSERS_QK = "transformer_blocks.0.attn1.norm_q.weight"

GEMMA = cf.Slot(
    "text_encoder",
    cf.GEMMA2,
    "gemma",
    "the Gemma 2 2B text encoder (gemma_2_2b_it.safetensors, or ComfyUI's "
    "gemma_2_2b_fp16.safetensors)",
)
DC_AE = cf.Slot(
    "vae",
    cf.VAE,
    "dc",
    "its DC-AE autoencoder (dc-ae-f32c32-sana-1.1.safetensors: the model.safetensors of "
    "mit-han-lab/dc-ae-f32c32-sana-1.1)",
)
SLOTS = (GEMMA, DC_AE)

# Sizes DiffusionDesk has configurations for: (blocks, width) -> words for messages.
KNOWN_SIZES = {(28, 1152): "600M", (20, 2240): "1.6B", (60, 2240): "4.8B"}
_SIZE_SUFFIX = {28: "-600m", 60: "-4.8b"}
# Picture size the model was trained at -> config folder of the SANA 1.0 1.6B model.
_RESOLUTION_FOLDERS = {2048: "sana-2k", 4096: "sana-4k"}


def _bare(keys: Sequence[str]) -> set[str]:
    return {k.removeprefix(PREFIX) for k in keys}


def is_sana(keys: Sequence[str]) -> bool:
    """Whether a state dict's (or file header's) names are a SANA transformer's."""
    bare = _bare(keys)
    return _ORIGINAL_MARK in bare or all(m in bare for m in _DIFFUSERS_MARKS)


@dataclass(frozen=True)
class SanaShape:
    """What a SANA transformer file is, from its names and shapes."""

    sprint: bool  # SANA-Sprint: a guidance embedder
    qk_norm: bool  # SANA 1.5 and Sprint
    width: int
    blocks: int
    resolution: int  # the picture size it was trained at (1024 unless told otherwise)

    @property
    def label(self) -> str:
        kind = "SANA-Sprint" if self.sprint else "SANA 1.5" if self.qk_norm else "SANA"
        return f"{kind} {KNOWN_SIZES.get((self.blocks, self.width), '')}".strip()


def _resolution(shapes: dict[str, list[int]], name: str) -> int:
    """From the name (Sana_1600M_2Kpx, ..._512px) or the stored positional embedding."""
    lowered = name.lower()
    for words, size in (("4kpx", 4096), ("2kpx", 2048)):
        if words in lowered:
            return size
    found = re.search(r"(\d{3,4})px", lowered)
    if found and int(found.group(1)) in (512, 1024, 2048, 4096):
        return int(found.group(1))
    pos = shapes.get("pos_embed") or shapes.get(PREFIX + "pos_embed")
    if pos and len(pos) == 3:
        side = math.isqrt(int(pos[1]))
        if side * side == int(pos[1]) and side * 32 in (512, 1024, 2048, 4096):
            return side * 32
    return 1024


def describe(shapes: dict[str, list[int]], name: str) -> SanaShape:
    """The kind, size and training resolution of a SANA transformer file."""
    bare = {k.removeprefix(PREFIX): v for k, v in shapes.items()}
    original = _ORIGINAL_MARK in bare
    embed = bare.get("x_embedder.proj.weight" if original else "patch_embed.proj.weight")
    block_prefix = "blocks." if original else "transformer_blocks."
    blocks = {int(k.split(".")[1]) for k in bare if k.startswith(block_prefix)}
    return SanaShape(
        sprint=(_ORIGINAL_SPRINT if original else _DIFFUSERS_SPRINT) in bare,
        qk_norm=(_ORIGINAL_QK if original else _DIFFUSERS_QK) in bare,
        width=int(embed[0]) if embed else 0,
        blocks=len(blocks),
        resolution=_resolution(shapes, name),
    )


def profile_variant(shapes: dict[str, list[int]], file_name: str) -> str:
    """The family profile's variant (engine/families/sana.py) a file's header and name
    say, for the form before the file loads: "sprint", "2k", "4k" or ""."""
    shape = describe(shapes, file_name)
    if shape.sprint:
        return "sprint"
    return {2048: "2k", 4096: "4k"}.get(shape.resolution, "")


def config_folder(shape: SanaShape) -> str:
    """The engine/model_configs folder of the model: sana, sana-600m, sana-2k, sana-4k,
    sana15, sana15-4.8b, sana-sprint, sana-sprint-600m."""
    base = "sana-sprint" if shape.sprint else "sana15" if shape.qk_norm else "sana"
    if base == "sana" and shape.resolution in _RESOLUTION_FOLDERS:
        return _RESOLUTION_FOLDERS[shape.resolution]
    return base + _SIZE_SUFFIX.get(shape.blocks, "")


def mismatch(shape: SanaShape, config: dict[str, Any], file_name: str) -> str | None:
    """A sentence saying why the transformer config cannot hold this file, or None."""
    width = int(config.get("num_attention_heads", 0)) * int(config.get("attention_head_dim", 0))
    fits = (
        width == shape.width
        and int(config.get("num_layers", 0)) == shape.blocks
        and bool(config.get("qk_norm")) == shape.qk_norm
        and bool(config.get("guidance_embeds", False)) == shape.sprint
    )
    if fits:
        return None
    return (
        f"{file_name} is a {shape.label} transformer with {shape.blocks} blocks of width "
        f"{shape.width}, a size DiffusionDesk has no configuration for (it knows SANA 600M and "
        "1.6B (also 2K and 4K), SANA 1.5 1.6B and 4.8B, SANA-Sprint 600M and 1.6B)."
    )


# ---------------------------------------------------------------------------- conversion


_QK_NORM = re.compile(r"blocks\.(\d+)\.(attn|cross_attn)\.(q|k)_norm\.(weight|bias)")


def _pop_pair(state: dict, src: str, dst: str, out: dict) -> None:
    for part in ("weight", "bias"):
        if f"{src}.{part}" in state:
            out[f"{dst}.{part}"] = state.pop(f"{src}.{part}")


def to_diffusers(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The diffusers SanaTransformer2DModel state dict for a file in NVIDIA's layout (a
    file already in diffusers' layout is returned as it is, without its prefix)."""
    from diffusers.loaders.single_file_utils import convert_sana_transformer_to_diffusers

    state = {k.removeprefix(PREFIX): v for k, v in checkpoint.items()}
    checkpoint.clear()  # the tensors move: never two copies of a large model
    if _ORIGINAL_MARK not in state:
        return state
    extra: dict[str, Any] = {}
    sprint = _ORIGINAL_SPRINT in state
    if sprint:
        _pop_pair(state, "cfg_embedder.mlp.0", "time_embed.guidance_embedder.linear_1", extra)
        _pop_pair(state, "cfg_embedder.mlp.2", "time_embed.guidance_embedder.linear_2", extra)
    for key in list(state):
        norm = _QK_NORM.fullmatch(key)
        if norm:
            block, attention, which, part = norm.groups()
            name = {"attn": "attn1", "cross_attn": "attn2"}[attention]
            extra[f"transformer_blocks.{block}.{name}.norm_{which}.{part}"] = state.pop(key)
    for unused in ("logvar_linear.weight", "logvar_linear.bias"):  # Sprint's training head
        state.pop(unused, None)
    state.setdefault("pos_embed", None)  # diffusers' converter drops it; files may lack it
    state.setdefault("y_embedder.y_embedding", None)
    out: dict[str, Any] = convert_sana_transformer_to_diffusers(state)
    if state:
        raise KeyError(f"weights left unconverted: {', '.join(sorted(state)[:3])}")
    if sprint:  # Sprint's time embedding sits one level higher than SANA's
        emb = "time_embed.emb.timestep_embedder."
        out = {k.replace(emb, "time_embed.timestep_embedder."): v for k, v in out.items()}
    return out | extra
