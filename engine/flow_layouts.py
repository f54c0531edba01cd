"""FLUX.1 transformer weights in Black Forest Labs' layout, renamed to diffusers' layout.

diffusers' own converter (single_file_utils.convert_flux_transformer_checkpoint_to_diffusers)
fixes the model width at FLUX.1's 3072, so it cannot read a file of any other width
(pruned or distilled variants, and the tiny models our tests write). This is the same
mapping with the width read from the file. It works on plain tensors and on GGUF
quantized ones alike: splits are along output rows, which GGUF keeps whole.
"""

from __future__ import annotations

import torch

_PREFIX = "model.diffusion_model."


def _rows(tensor: torch.Tensor) -> int:
    # A GGUF tensor's shape counts bytes; quant_shape is the logical (out, in) shape.
    return int(getattr(tensor, "quant_shape", tensor.shape)[0])


def _swap_halves(weight: torch.Tensor) -> torch.Tensor:
    # BFL's final norm splits its modulation into (shift, scale); diffusers' into (scale, shift).
    shift, scale = weight.chunk(2, dim=0)
    return torch.cat([scale, shift], dim=0)


def is_flux_layout(keys: list[str]) -> bool:
    return any(k.startswith(("double_blocks.", _PREFIX + "double_blocks.")) for k in keys)


def flux_to_diffusers(checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The diffusers FluxTransformer2DModel state dict for a BFL-layout checkpoint; one
    already in diffusers' layout (no double_blocks) passes as it is."""
    if not is_flux_layout(list(checkpoint)):
        return checkpoint
    src = {k.removeprefix(_PREFIX): v for k, v in checkpoint.items()}
    out: dict[str, torch.Tensor] = {}

    def move(dst: str, name: str) -> None:
        for part in ("weight", "bias"):
            if f"{name}.{part}" in src:
                out[f"{dst}.{part}"] = src.pop(f"{name}.{part}")

    def split(dsts: list[str], name: str, sizes: list[int]) -> None:
        for part in ("weight", "bias"):
            for dst, piece in zip(dsts, torch.split(src.pop(f"{name}.{part}"), sizes), strict=True):
                out[f"{dst}.{part}"] = piece

    emb = "time_text_embed."
    for theirs, ours in (
        ("time_in", "timestep_embedder"),
        ("vector_in", "text_embedder"),
        ("guidance_in", "guidance_embedder"),
    ):
        if f"{theirs}.in_layer.weight" in src:
            move(f"{emb}{ours}.linear_1", f"{theirs}.in_layer")
            move(f"{emb}{ours}.linear_2", f"{theirs}.out_layer")
    move("context_embedder", "txt_in")
    move("x_embedder", "img_in")
    width = _rows(out["x_embedder.weight"])

    doubles = sorted({int(k.split(".")[1]) for k in src if k.startswith("double_blocks.")})
    for i in doubles:
        d, b = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        move(b + "norm1.linear", d + "img_mod.lin")
        move(b + "norm1_context.linear", d + "txt_mod.lin")
        split([b + "attn.to_q", b + "attn.to_k", b + "attn.to_v"], d + "img_attn.qkv", [width] * 3)
        split(
            [b + "attn.add_q_proj", b + "attn.add_k_proj", b + "attn.add_v_proj"],
            d + "txt_attn.qkv",
            [width] * 3,
        )
        out[b + "attn.norm_q.weight"] = src.pop(d + "img_attn.norm.query_norm.scale")
        out[b + "attn.norm_k.weight"] = src.pop(d + "img_attn.norm.key_norm.scale")
        out[b + "attn.norm_added_q.weight"] = src.pop(d + "txt_attn.norm.query_norm.scale")
        out[b + "attn.norm_added_k.weight"] = src.pop(d + "txt_attn.norm.key_norm.scale")
        move(b + "ff.net.0.proj", d + "img_mlp.0")
        move(b + "ff.net.2", d + "img_mlp.2")
        move(b + "ff_context.net.0.proj", d + "txt_mlp.0")
        move(b + "ff_context.net.2", d + "txt_mlp.2")
        move(b + "attn.to_out.0", d + "img_attn.proj")
        move(b + "attn.to_add_out", d + "txt_attn.proj")

    singles = sorted({int(k.split(".")[1]) for k in src if k.startswith("single_blocks.")})
    for i in singles:
        d, b = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        move(b + "norm.linear", d + "modulation.lin")
        fused = _rows(src[d + "linear1.weight"])
        split(
            [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v", b + "proj_mlp"],
            d + "linear1",
            [width, width, width, fused - 3 * width],
        )
        out[b + "attn.norm_q.weight"] = src.pop(d + "norm.query_norm.scale")
        out[b + "attn.norm_k.weight"] = src.pop(d + "norm.key_norm.scale")
        move(b + "proj_out", d + "linear2")

    move("proj_out", "final_layer.linear")
    if "final_layer.adaLN_modulation.1.weight" in src:  # XLabs' ControlNets have no last layer
        for part in ("weight", "bias"):
            out[f"norm_out.linear.{part}"] = _swap_halves(
                src.pop(f"final_layer.adaLN_modulation.1.{part}")
            )
    return out
