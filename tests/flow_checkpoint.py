"""Write tiny SD3 / FLUX.1 transformers in the layouts people download (BFL / Stability
single files, as ComfyUI and model sites share them), and text encoders as ComfyUI's
separate files.

The inverse of what engine/flow_layouts.py and diffusers' single_file_utils convert,
written from the original module names, so tests can make such files from tiny random
models. Round trips are checked in tests/engine/test_flow_layouts.py.
"""

from __future__ import annotations

import torch

DIFFUSION_PREFIX = "model.diffusion_model."


def _swap_halves(weight: torch.Tensor) -> torch.Tensor:
    # diffusers' AdaLayerNormContinuous splits (scale, shift); the originals (shift, scale).
    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _linear(out: dict, src: dict, dst: str, name: str) -> None:
    out[f"{dst}.weight"] = src.pop(f"{name}.weight")
    if f"{name}.bias" in src:
        out[f"{dst}.bias"] = src.pop(f"{name}.bias")


def _fused(out: dict, src: dict, dst: str, names: list[str]) -> None:
    for part in ("weight", "bias"):
        out[f"{dst}.{part}"] = torch.cat([src.pop(f"{n}.{part}") for n in names], dim=0)


def flux_to_original(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers FluxTransformer2DModel state dict in BFL's flux layout."""
    src = dict(state)
    out: dict[str, torch.Tensor] = {}
    emb = "time_text_embed."
    for ours, theirs in (
        ("timestep_embedder", "time_in"),
        ("text_embedder", "vector_in"),
        ("guidance_embedder", "guidance_in"),
    ):
        if f"{emb}{ours}.linear_1.weight" in src:
            _linear(out, src, f"{theirs}.in_layer", f"{emb}{ours}.linear_1")
            _linear(out, src, f"{theirs}.out_layer", f"{emb}{ours}.linear_2")
    _linear(out, src, "txt_in", "context_embedder")
    _linear(out, src, "img_in", "x_embedder")
    doubles = sorted({int(k.split(".")[1]) for k in src if k.startswith("transformer_blocks.")})
    for i in doubles:
        b, d = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        _linear(out, src, d + "img_mod.lin", b + "norm1.linear")
        _linear(out, src, d + "txt_mod.lin", b + "norm1_context.linear")
        _fused(out, src, d + "img_attn.qkv", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v"])
        _fused(
            out,
            src,
            d + "txt_attn.qkv",
            [b + "attn.add_q_proj", b + "attn.add_k_proj", b + "attn.add_v_proj"],
        )
        out[d + "img_attn.norm.query_norm.scale"] = src.pop(b + "attn.norm_q.weight")
        out[d + "img_attn.norm.key_norm.scale"] = src.pop(b + "attn.norm_k.weight")
        out[d + "txt_attn.norm.query_norm.scale"] = src.pop(b + "attn.norm_added_q.weight")
        out[d + "txt_attn.norm.key_norm.scale"] = src.pop(b + "attn.norm_added_k.weight")
        _linear(out, src, d + "img_mlp.0", b + "ff.net.0.proj")
        _linear(out, src, d + "img_mlp.2", b + "ff.net.2")
        _linear(out, src, d + "txt_mlp.0", b + "ff_context.net.0.proj")
        _linear(out, src, d + "txt_mlp.2", b + "ff_context.net.2")
        _linear(out, src, d + "img_attn.proj", b + "attn.to_out.0")
        _linear(out, src, d + "txt_attn.proj", b + "attn.to_add_out")
    singles = sorted(
        {int(k.split(".")[1]) for k in src if k.startswith("single_transformer_blocks.")}
    )
    for i in singles:
        b, d = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        _linear(out, src, d + "modulation.lin", b + "norm.linear")
        _fused(
            out,
            src,
            d + "linear1",
            [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v", b + "proj_mlp"],
        )
        out[d + "norm.query_norm.scale"] = src.pop(b + "attn.norm_q.weight")
        out[d + "norm.key_norm.scale"] = src.pop(b + "attn.norm_k.weight")
        _linear(out, src, d + "linear2", b + "proj_out")
    _linear(out, src, "final_layer.linear", "proj_out")
    out["final_layer.adaLN_modulation.1.weight"] = _swap_halves(src.pop("norm_out.linear.weight"))
    out["final_layer.adaLN_modulation.1.bias"] = _swap_halves(src.pop("norm_out.linear.bias"))
    if src:
        raise AssertionError(f"flux keys left unconverted: {sorted(src)[:5]}")
    return {prefix + k: v for k, v in out.items()}


def sd3_to_original(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers SD3Transformer2DModel state dict in Stability's MMDiT layout."""
    src = dict(state)
    out: dict[str, torch.Tensor] = {"pos_embed": src.pop("pos_embed.pos_embed")}
    _linear(out, src, "x_embedder.proj", "pos_embed.proj")
    _linear(out, src, "t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1")
    _linear(out, src, "t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2")
    _linear(out, src, "context_embedder", "context_embedder")
    _linear(out, src, "y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1")
    _linear(out, src, "y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2")
    blocks = sorted({int(k.split(".")[1]) for k in src if k.startswith("transformer_blocks.")})
    last = blocks[-1]
    for i in blocks:
        b, x, c = (
            f"transformer_blocks.{i}.",
            f"joint_blocks.{i}.x_block.",
            f"joint_blocks.{i}.context_block.",
        )
        _fused(out, src, x + "attn.qkv", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v"])
        _fused(
            out,
            src,
            c + "attn.qkv",
            [b + "attn.add_q_proj", b + "attn.add_k_proj", b + "attn.add_v_proj"],
        )
        for ours, theirs in (
            ("attn.norm_q", x + "attn.ln_q"),
            ("attn.norm_k", x + "attn.ln_k"),
            ("attn.norm_added_q", c + "attn.ln_q"),
            ("attn.norm_added_k", c + "attn.ln_k"),
            ("attn2.norm_q", x + "attn2.ln_q"),
            ("attn2.norm_k", x + "attn2.ln_k"),
        ):
            if f"{b}{ours}.weight" in src:
                out[f"{theirs}.weight"] = src.pop(f"{b}{ours}.weight")
        _linear(out, src, x + "attn.proj", b + "attn.to_out.0")
        if f"{b}attn2.to_q.weight" in src:
            _fused(
                out, src, x + "attn2.qkv", [b + "attn2.to_q", b + "attn2.to_k", b + "attn2.to_v"]
            )
            _linear(out, src, x + "attn2.proj", b + "attn2.to_out.0")
        _linear(out, src, x + "adaLN_modulation.1", b + "norm1.linear")
        _linear(out, src, x + "mlp.fc1", b + "ff.net.0.proj")
        _linear(out, src, x + "mlp.fc2", b + "ff.net.2")
        if i != last:
            _linear(out, src, c + "attn.proj", b + "attn.to_add_out")
            _linear(out, src, c + "adaLN_modulation.1", b + "norm1_context.linear")
            _linear(out, src, c + "mlp.fc1", b + "ff_context.net.0.proj")
            _linear(out, src, c + "mlp.fc2", b + "ff_context.net.2")
        else:
            for part in ("weight", "bias"):
                out[f"{c}adaLN_modulation.1.{part}"] = _swap_halves(
                    src.pop(f"{b}norm1_context.linear.{part}")
                )
    _linear(out, src, "final_layer.linear", "proj_out")
    out["final_layer.adaLN_modulation.1.weight"] = _swap_halves(src.pop("norm_out.linear.weight"))
    out["final_layer.adaLN_modulation.1.bias"] = _swap_halves(src.pop("norm_out.linear.bias"))
    if src:
        raise AssertionError(f"sd3 keys left unconverted: {sorted(src)[:5]}")
    return {prefix + k: v for k, v in out.items()}


def zimage_to_original(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers ZImageTransformer2DModel state dict in Tongyi's (ComfyUI's) layout:
    fused qkv, `out`, `q_norm` / `k_norm`, single-resolution embedder and final layer."""
    renames = (
        ("all_final_layer.2-1.", "final_layer."),
        ("all_x_embedder.2-1.", "x_embedder."),
        (".attention.to_out.0.", ".attention.out."),
        (".attention.norm_q.", ".attention.q_norm."),
        (".attention.norm_k.", ".attention.k_norm."),
    )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q." in key:
            parts = [state[key.replace(".to_q.", f".to_{n}.")] for n in "qkv"]
            out[prefix + key.replace(".to_q.", ".qkv.")] = torch.cat(parts, dim=0)
            continue
        for old, new in renames:
            key = key.replace(old, new)
        out[prefix + key] = value
    return out
