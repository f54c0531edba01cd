"""A tiny random-weight FLUX.2 klein written as the files people download.

`write_klein_files` saves the tiny klein of tests/tiny_new_families.py as Black Forest
Labs' transformer file (BFL key names, optionally under ComfyUI's `model.diffusion_model.`
prefix, optionally fp8), ComfyUI's Qwen3 text-encoder file (a causal LM's `model.` weights
without the output head, as ComfyUI keeps them) and BFL's flux2-vae.safetensors layout, in
a ComfyUI `models/` tree; and a config root holding the tiny configs under the names of
engine/model_configs/flux2 (so ModelManager(config_root=...) loads them with no network).

The renames are the inverse of diffusers' convert_flux2_transformer_checkpoint_to_diffusers
and of engine/flux2_files.py's VAE map, written from BFL's module names.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import Flux2KleinPipeline
from safetensors.torch import save_file

from tests.ldm_checkpoint import VAE, vae_to_ldm
from tests.tiny_flow_files import FlowFiles, _state, _write_configs, saved
from tests.tiny_new_families import flux2_klein_components

_RENAMES = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
    "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
    "single_stream_modulation.linear": "single_stream_modulation.lin",
    "proj_out": "final_layer.linear",
}
_DOUBLE = {
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "ff.linear_in": "img_mlp.0",
    "ff.linear_out": "img_mlp.2",
    "ff_context.linear_in": "txt_mlp.0",
    "ff_context.linear_out": "txt_mlp.2",
}
_DOUBLE_NORMS = {
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
}
_SINGLE = {"attn.to_qkv_mlp_proj": "linear1", "attn.to_out": "linear2"}
_SINGLE_NORMS = {"attn.norm_q": "norm.query_norm", "attn.norm_k": "norm.key_norm"}


def flux2_to_original(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers Flux2Transformer2DModel state dict in BFL's FLUX.2 layout."""
    src = dict(state)
    out: dict[str, torch.Tensor] = {}
    for ours, theirs in _RENAMES.items():
        if f"{ours}.weight" in src:
            out[f"{theirs}.weight"] = src.pop(f"{ours}.weight")
    shift_scale = src.pop("norm_out.linear.weight").chunk(2, dim=0)  # ours: (scale, shift)
    out["final_layer.adaLN_modulation.1.weight"] = torch.cat(shift_scale[::-1], dim=0)
    doubles = {int(k.split(".")[1]) for k in src if k.startswith("transformer_blocks.")}
    for i in sorted(doubles):
        b, d = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for names, fused in (
            (("to_q", "to_k", "to_v"), "img_attn.qkv"),
            (("add_q_proj", "add_k_proj", "add_v_proj"), "txt_attn.qkv"),
        ):
            parts = [src.pop(f"{b}attn.{n}.weight") for n in names]
            out[f"{d}{fused}.weight"] = torch.cat(parts, dim=0)
        for ours, theirs in _DOUBLE.items():
            out[f"{d}{theirs}.weight"] = src.pop(f"{b}{ours}.weight")
        for ours, theirs in _DOUBLE_NORMS.items():
            out[f"{d}{theirs}.scale"] = src.pop(f"{b}{ours}.weight")
    singles = {int(k.split(".")[1]) for k in src if k.startswith("single_transformer_blocks.")}
    for i in sorted(singles):
        b, d = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for ours, theirs in _SINGLE.items():
            out[f"{d}{theirs}.weight"] = src.pop(f"{b}{ours}.weight")
        for ours, theirs in _SINGLE_NORMS.items():
            out[f"{d}{theirs}.scale"] = src.pop(f"{b}{ours}.weight")
    assert not src, f"unmapped: {sorted(src)[:5]}"
    return {prefix + k: v for k, v in out.items()}


def flux2_vae_to_original(vae: torch.nn.Module) -> dict[str, torch.Tensor]:
    """AutoencoderKLFlux2's weights as BFL's flux2-vae.safetensors holds them."""
    state = _state(vae)
    statistics = {k: state.pop(k) for k in list(state) if k.startswith("bn.running_")}
    state.pop("bn.num_batches_tracked", None)
    ldm = {k.removeprefix(VAE): v for k, v in vae_to_ldm(state, dict(vae.config)).items()}
    moved = {"quant_conv.": "encoder.quant_conv.", "post_quant_conv.": "decoder.post_quant_conv."}
    out = {}
    for key, value in ldm.items():
        for ours, theirs in moved.items():
            if key.startswith(ours):
                key = theirs + key.removeprefix(ours)
        out[key] = value
    return out | statistics


def klein_pipeline(*, distilled: bool = True) -> Flux2KleinPipeline:
    pipe = Flux2KleinPipeline(**flux2_klein_components(distilled=distilled))
    pipe.set_progress_bar_config(disable=True)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


def write_klein_files(
    tmp: Path,
    *,
    distilled: bool = True,
    prefix: str = "",
    dtype: torch.dtype | None = None,
    name: str | None = None,
) -> tuple[FlowFiles, Flux2KleinPipeline]:
    """Write a tiny klein as separate files in a ComfyUI tree; return the files and the
    pipeline they came from. prefix: the transformer keys' prefix; dtype: the
    transformer's storage (torch.float8_e4m3fn for an fp8 file); name: the transformer
    file's name (BFL's, by default)."""
    pipe = klein_pipeline(distilled=distilled)
    config_root = tmp / "configs"
    _write_configs(pipe, config_root / "flux2")
    index_file = config_root / "flux2" / "model_index.json"
    index = json.loads(index_file.read_text())
    index["is_distilled"] = distilled  # as the hub's klein folders say it
    index_file.write_text(json.dumps(index, indent=1))
    models = tmp / "ComfyUI" / "models"
    name = name or (
        "flux-2-klein-4b.safetensors" if distilled else "flux-2-klein-base-4b.safetensors"
    )
    transformer = saved(
        models / "diffusion_models" / name,
        flux2_to_original(_state(pipe.transformer, dtype), prefix),
    )
    encoder = models / "text_encoders" / "qwen_3_4b.safetensors"
    encoder.parent.mkdir(parents=True)
    text = _state(pipe.text_encoder)
    save_file({k: v for k, v in text.items() if not k.startswith("lm_head.")}, encoder)
    vae = saved(models / "vae" / "flux2-vae.safetensors", flux2_vae_to_original(pipe.vae))
    return FlowFiles(config_root, models, transformer, {"qwen3": encoder}, vae), pipe
