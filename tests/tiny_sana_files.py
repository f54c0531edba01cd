"""Tiny random-weight SANA and SANA-Sprint models written as the files people download.

`sana_to_original` puts a diffusers SanaTransformer2DModel's weights in NVIDIA's layout
(what `Sana_1600M_1024px*.pth` / `.safetensors` and `Sana_Sprint_*.pth` hold, checked
against diffusers' own converter in the tests); `dc_ae_to_original` does the same for the
DC-AE autoencoder (MIT Han Lab's `model.safetensors`). `write_sana_files` saves a tiny
model (tests/tiny_new_families.py) as a ComfyUI tree — the transformer in
`diffusion_models/`, Gemma 2 as a causal LM's `model.` weights in `text_encoders/`, DC-AE
in `vae/` — with a config root holding the tiny configs under the names of
engine/model_configs/, and its diffusers folder to compare with.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from tests.tiny_flow_files import FlowFiles, _state, _write_configs, saved

_BLOCK = re.compile(r"transformer_blocks\.(\d+)\.(.+)")
_BLOCK_RENAMES = (
    ("attn1.to_out.0.", "attn.proj."),
    ("attn1.norm_q.", "attn.q_norm."),
    ("attn1.norm_k.", "attn.k_norm."),
    ("attn2.to_q.", "cross_attn.q_linear."),
    ("attn2.norm_q.", "cross_attn.q_norm."),
    ("attn2.norm_k.", "cross_attn.k_norm."),
    ("attn2.to_out.0.", "cross_attn.proj."),
    ("ff.conv_inverted.", "mlp.inverted_conv.conv."),
    ("ff.conv_depth.", "mlp.depth_conv.conv."),
    ("ff.conv_point.", "mlp.point_conv.conv."),
    ("scale_shift_table", "scale_shift_table"),
)
_TOP_RENAMES = {
    "patch_embed.proj.": "x_embedder.proj.",
    "time_embed.emb.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
    "time_embed.emb.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
    "time_embed.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
    "time_embed.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
    "time_embed.guidance_embedder.linear_1.": "cfg_embedder.mlp.0.",
    "time_embed.guidance_embedder.linear_2.": "cfg_embedder.mlp.2.",
    "time_embed.linear.": "t_block.1.",
    "caption_projection.linear_1.": "y_embedder.y_proj.fc1.",
    "caption_projection.linear_2.": "y_embedder.y_proj.fc2.",
    "caption_norm.": "attention_y_norm.",
    "proj_out.": "final_layer.linear.",
    "scale_shift_table": "final_layer.scale_shift_table",
}


def sana_to_original(
    state: dict[str, torch.Tensor], prefix: str = "", *, sample_size: int = 32
) -> dict[str, torch.Tensor]:
    """A diffusers SanaTransformer2DModel state dict in NVIDIA's layout: fused self-attention
    qkv and cross-attention kv, `t_embedder` / `cfg_embedder`, `final_layer`, plus the
    buffers and heads the original model saves (`pos_embed`, the null caption
    `y_embedding`, Sprint's `logvar_linear`)."""
    out: dict[str, torch.Tensor] = {}
    width = state["patch_embed.proj.weight"].shape[0]
    caption_channels = state["caption_projection.linear_1.weight"].shape[1]
    for key, value in state.items():
        block = _BLOCK.fullmatch(key)
        if block:
            i, rest = block.groups()
            if rest.startswith(("attn1.to_k.", "attn1.to_v.", "attn2.to_v.")):
                continue
            if rest.startswith("attn1.to_q."):
                qkv = [state[f"transformer_blocks.{i}.attn1.to_{n}.weight"] for n in "qkv"]
                out[f"blocks.{i}.attn.qkv.weight"] = torch.cat(qkv)
                continue
            if rest.startswith("attn2.to_k."):
                part = rest.rsplit(".", 1)[1]
                kv = [state[f"transformer_blocks.{i}.attn2.to_{n}.{part}"] for n in "kv"]
                out[f"blocks.{i}.cross_attn.kv_linear.{part}"] = torch.cat(kv)
                continue
            for old, new in _BLOCK_RENAMES:
                if rest.startswith(old):
                    out[f"blocks.{i}.{new}{rest[len(old) :]}"] = value
                    break
            else:
                raise AssertionError(f"sana key left unconverted: {key}")
            continue
        for old, new in _TOP_RENAMES.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            raise AssertionError(f"sana key left unconverted: {key}")
    device = state["patch_embed.proj.weight"].device  # "meta" for real-size headers
    out["pos_embed"] = torch.zeros(1, sample_size * sample_size, width, device=device)
    out["y_embedder.y_embedding"] = torch.randn(300, caption_channels, device=device)
    if "cfg_embedder.mlp.0.weight" in out:
        out["logvar_linear.weight"] = torch.zeros(1, width, device=device)
        out["logvar_linear.bias"] = torch.zeros(1, device=device)
    return {prefix + k: v for k, v in out.items()}


_DC_TOP = (
    ("encoder.conv_in.", "encoder.project_in.conv."),
    ("encoder.conv_out.", "encoder.project_out.0.conv."),
    ("decoder.conv_in.", "decoder.project_in.main.conv."),
    ("decoder.norm_out.", "decoder.project_out.0."),
    ("decoder.conv_out.", "decoder.project_out.2.conv."),
)
_DC_STAGE = re.compile(r"(encoder|decoder)\.(?:down|up)_blocks\.(\d+)\.(\d+)\.(.+)")
_DC_RENAMES = (
    ("conv1.", "main.conv1.conv."),
    ("conv2.", "main.conv2.conv."),
    ("norm.", "main.conv2.norm."),
    ("conv.", "main.conv.conv."),
    ("attn.to_qkv_multiscale.0.proj_in.", "context_module.main.aggreg.0.0."),
    ("attn.to_qkv_multiscale.0.proj_out.", "context_module.main.aggreg.0.1."),
    ("attn.norm_out.", "context_module.main.proj.norm."),
    ("conv_out.conv_inverted.", "local_module.main.inverted_conv.conv."),
    ("conv_out.conv_depth.", "local_module.main.depth_conv.conv."),
    ("conv_out.conv_point.", "local_module.main.point_conv.conv."),
    ("conv_out.norm.", "local_module.main.point_conv.norm."),
)


def dc_ae_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderDC state dict in MIT Han Lab's layout: `stages.N.op_list.M`,
    `main.` blocks, attention as 1x1 convolutions with fused qkv."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        top = next((new + key[len(old) :] for old, new in _DC_TOP if key.startswith(old)), None)
        if top is not None:
            out[top] = value
            continue
        stage = _DC_STAGE.fullmatch(key)
        if stage is None:
            raise AssertionError(f"dc-ae key left unconverted: {key}")
        half, i, j, rest = stage.groups()
        head = f"{half}.stages.{i}.op_list.{j}."
        if rest in ("attn.to_k.weight", "attn.to_v.weight"):
            continue
        if rest == "attn.to_q.weight":
            qkv = [state[key.replace(".to_q.", f".to_{n}.")] for n in "qkv"]
            out[head + "context_module.main.qkv.conv.weight"] = torch.cat(qkv)[..., None, None]
            continue
        if rest == "attn.to_out.weight":
            out[head + "context_module.main.proj.conv.weight"] = value[..., None, None]
            continue
        new = next((n + rest[len(o) :] for o, n in _DC_RENAMES if rest.startswith(o)), None)
        if new is None:
            raise AssertionError(f"dc-ae key left unconverted: {key}")
        out[head + new] = value
    return out


def write_sana_files(
    tmp: Path,
    *,
    sprint: bool = False,
    prefix: str = "",
    suffix: str = ".safetensors",
    name: str | None = None,
    bench: bool = False,
    dtype: torch.dtype | None = None,
) -> tuple[FlowFiles, object]:
    """A tiny SANA (or SANA-Sprint) as separate files in NVIDIA's and MIT Han Lab's layouts;
    suffix ".pth" writes the transformer as NVIDIA's pickle ({"state_dict": ...}).
    bench: the mid-sized transformer (rows of 256, which GGUF can quantize); dtype: the
    transformer's storage (torch.float8_e4m3fn for an fp8 file).
    Returns the files and the tiny pipeline they came from."""
    from tests.tiny_new_families import tiny_family_pipeline

    pipe = tiny_family_pipeline("sana-sprint" if sprint else "sana", bench=bench)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    config_root = tmp / "configs"
    _write_configs(pipe, config_root / ("sana-sprint" if sprint else "sana"))
    if sprint:  # the family folder holds what Sprint shares with SANA (encoder, VAE)
        _write_configs(pipe, config_root / "sana")
    folder = tmp / "diffusers"
    pipe.save_pretrained(folder, safe_serialization=True)
    models = tmp / "ComfyUI" / "models"
    kind = "Sana_Sprint_tiny" if sprint else "Sana_tiny"
    transformer = models / "diffusion_models" / (name or f"{kind}_1024px{suffix}")
    transformer.parent.mkdir(parents=True)
    original = sana_to_original(_state(pipe.transformer, dtype), prefix)
    if suffix == ".pth":
        torch.save({"state_dict": original}, transformer)
    else:
        save_file(original, transformer)
    encoder = saved(
        models / "text_encoders" / "gemma_2_2b_it_tiny.safetensors",
        {f"model.{k}": v for k, v in _state(pipe.text_encoder).items()},
    )
    vae = saved(
        models / "vae" / "dc-ae-f32c32-sana-1.1_tiny.safetensors",
        dc_ae_to_original(_state(pipe.vae)),
    )
    files = FlowFiles(config_root, models, transformer, {"gemma": encoder}, vae, folder)
    return files, pipe


def sana_image(pipe: object) -> np.ndarray:
    """The pipeline's picture for one fixed prompt and seed, as floats."""
    from tests.single_file_cases import CASES

    return CASES["sana"].picture(pipe)
