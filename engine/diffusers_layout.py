"""Transformer files in diffusers' own layout: the names that tell their family.

People also share a transformer as the one file diffusers' `save_pretrained` writes
(`diffusion_pytorch_model.safetensors`, renamed `flux-2-klein-4b-diffusers.safetensors`
and the like). Z-Image, Qwen-Image and SANA are told the same way in either layout; FLUX.1,
SD 3 / 3.5 and FLUX.2 klein are told by names only their original layouts (Black Forest
Labs', Stability's) use. `telling_shapes` puts the few tensors that tell a family, variant
and size under those original names, so one set of rules (engine/file_family.py,
engine/flow_single_file.py, engine/families/flux2.py) reads both layouts; the weights
themselves load under their own names (diffusers' from_single_file passes a state dict
whose names are already the model's). No torch here: the window reads this.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from engine.api import ModelFamily

# A name in each layout that no other family's file holds.
_MARKS = {
    # FLUX.2 has one modulation for all single blocks (diffusers: .linear, BFL: .lin).
    ModelFamily.FLUX2: ("single_stream_modulation.linear.weight",),
    # FLUX.1's single blocks keep their MLP input apart from attention.
    ModelFamily.FLUX1: ("single_transformer_blocks.0.proj_mlp.weight",),
    # SD 3's MMDiT: a patch embedding and a context branch in every joint block.
    ModelFamily.SD3: ("pos_embed.proj.weight", "transformer_blocks.0.norm1_context.linear.weight"),
}
# (pattern, original name) per family, first match wins; \1 carries a block number.
_RENAMES: dict[ModelFamily, tuple[tuple[str, str], ...]] = {
    ModelFamily.FLUX1: (
        (r"x_embedder\.", "img_in."),
        (r"context_embedder\.", "txt_in."),
        (r"time_text_embed\.guidance_embedder\.linear_1\.", "guidance_in.in_layer."),
        (r"time_text_embed\.timestep_embedder\.linear_1\.", "time_in.in_layer."),
        (r"single_transformer_blocks\.(\d+)\.", r"single_blocks.\1."),
        (r"transformer_blocks\.(\d+)\.", r"double_blocks.\1."),
    ),
    ModelFamily.FLUX2: (
        (r"x_embedder\.", "img_in."),
        (r"context_embedder\.", "txt_in."),
        (r"time_guidance_embed\.timestep_embedder\.linear_1\.", "time_in.in_layer."),
        (r"time_guidance_embed\.guidance_embedder\.linear_1\.", "guidance_in.in_layer."),
        (r"single_stream_modulation\.linear\.", "single_stream_modulation.lin."),
        (r"proj_out\.", "final_layer.linear."),
        (
            r"transformer_blocks\.(\d+)\.attn\.norm_q\.weight",
            r"double_blocks.\1.img_attn.norm.query_norm.scale",
        ),
        (r"transformer_blocks\.(\d+)\.ff\.linear_in\.", r"double_blocks.\1.img_mlp.0."),
        (r"single_transformer_blocks\.(\d+)\.", r"single_blocks.\1."),
        (r"transformer_blocks\.(\d+)\.", r"double_blocks.\1."),
    ),
    ModelFamily.SD3: (
        (r"transformer_blocks\.(\d+)\.attn2\.", r"joint_blocks.\1.x_block.attn2."),
        (r"transformer_blocks\.(\d+)\.", r"joint_blocks.\1."),
    ),
}


def family(keys: Sequence[str] | Mapping[str, object]) -> ModelFamily | None:
    """The family of a FLUX.1, SD 3 or FLUX.2 klein transformer in diffusers' layout, else
    None (another layout, another family, or no transformer)."""
    names = set(keys)
    for found, marks in _MARKS.items():
        if all(m in names for m in marks):
            return found
    return None


def telling_shapes(shapes: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """A diffusers-layout FLUX.1 / SD 3 / klein file's shapes with the tensors that tell
    family, variant and size under the original layout's names; any other file's as given."""
    found = family(shapes)
    out = {k: [int(n) for n in v] for k, v in shapes.items()}
    if found is None:
        return out
    rules = [(re.compile(p), name) for p, name in _RENAMES[found]]
    renamed: dict[str, list[int]] = {}
    for key, shape in out.items():
        for pattern, name in rules:
            if pattern.match(key):
                key = pattern.sub(name, key, count=1)
                break
        renamed[key] = shape
    return renamed


def is_diffusers_layout(keys: Sequence[str] | Mapping[str, object]) -> bool:
    return family(keys) is not None
