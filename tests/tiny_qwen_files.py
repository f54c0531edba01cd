"""A tiny random-weight Qwen-Image written as the files people download.

`write_qwen_files` saves the transformer as ComfyUI's qwen_image_*.safetensors (diffusers'
names, optionally under `model.diffusion_model.`, optionally float8_e4m3fn), the text
encoder as ComfyUI's qwen_2.5_vl_7b*.safetensors (Qwen2.5-VL's original checkpoint names,
with or without the vision tower and lm_head, optionally in ComfyUI's scaled fp8) and the
VAE as qwen_image_vae.safetensors in Wan 2.1's original layout, in a ComfyUI `models/`
tree; and a config root with the tiny model's configs under engine/model_configs' names.

The tiny model keeps the real one's shapes where the file layouts depend on them: 64-wide
packed latents of a 16-channel VAE with two residual blocks per level (diffusers' Wan
converter counts on that), attention 64 wide so GGUF's Q8_0 blocks of 32 fit.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLQwenImage, QwenImagePipeline, QwenImageTransformer2DModel

from engine.models import ModelManager
from tests.single_file_cases import cpu_manager
from tests.tiny_flow_files import FlowFiles, _state, _write_configs, saved
from tests.tiny_new_families import qwen_image_components, qwen_image_transformer, qwen_image_vae

DIFFUSION_PREFIX = "model.diffusion_model."
# The published Qwen-Image VAE statistics (engine/model_configs/qwen_image/vae).
_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508]
_MEAN += [0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743]
_STD += [3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.916]


def tiny_qwen_image_pipeline() -> QwenImagePipeline:
    """tests/tiny_new_families.py's Qwen-Image with the real latent and VAE layout."""
    parts = qwen_image_components()
    parts["transformer"] = qwen_image_transformer(16, heads=2, head_dim=32, layers=2)
    parts["vae"] = qwen_image_vae(16, [1, 2, 4, 4], 2, _MEAN, _STD)
    pipe = QwenImagePipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


# ---------------------------------------------------------------------------- layouts

_RESNET = (  # diffusers' resnet names -> Wan's `residual` sequence
    ("norm1.gamma", "residual.0.gamma"),
    ("conv1.", "residual.2."),
    ("norm2.gamma", "residual.3.gamma"),
    ("conv2.", "residual.6."),
    ("conv_shortcut.", "shortcut."),
)


def _resnet(rest: str) -> str:
    for ours, theirs in _RESNET:
        if rest.startswith(ours):
            return theirs + rest[len(ours) :]
    return rest


def wan_vae_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKLQwenImage state dict in Wan 2.1's original layout (what
    diffusers' convert_wan_vae_to_diffusers reads)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        side, _, rest = key.partition(".")
        if m := re.fullmatch(r"(quant_conv|post_quant_conv)\.(\w+)", key):
            new = {"quant_conv": "conv1", "post_quant_conv": "conv2"}[m[1]] + "." + m[2]
        elif rest.startswith("conv_in."):
            new = f"{side}.conv1.{rest[len('conv_in.') :]}"
        elif rest.startswith("norm_out."):
            new = f"{side}.head.0.{rest[len('norm_out.') :]}"
        elif rest.startswith("conv_out."):
            new = f"{side}.head.2.{rest[len('conv_out.') :]}"
        elif m := re.fullmatch(r"mid_block\.resnets\.(\d)\.(.+)", rest):
            new = f"{side}.middle.{2 * int(m[1])}.{_resnet(m[2])}"
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest):
            new = f"{side}.middle.1.{m[1]}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.(.+)", rest):
            new = f"encoder.downsamples.{m[1]}.{_resnet(m[2])}"
        elif m := re.fullmatch(r"up_blocks\.(\d)\.resnets\.(\d)\.(.+)", rest):
            new = f"decoder.upsamples.{4 * int(m[1]) + int(m[2])}.{_resnet(m[3])}"
        elif m := re.fullmatch(r"up_blocks\.(\d)\.upsamplers\.0\.(.+)", rest):
            new = f"decoder.upsamples.{4 * int(m[1]) + 3}.{m[2]}"
        else:
            raise AssertionError(f"no Wan name for {key}")
        out[new] = value
    return out


def text_encoder_to_original(
    state: dict[str, torch.Tensor], *, vision: bool = True, lm_head: bool = True
) -> dict[str, torch.Tensor]:
    """Qwen2_5_VLForConditionalGeneration's tensors under the original checkpoint names
    ComfyUI's qwen_2.5_vl_7b files keep (`model.layers.*`, `visual.*`, `lm_head.*`)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("model.visual."):
            if vision:
                out["visual." + key[len("model.visual.") :]] = value
        elif key.startswith("model.language_model."):
            out["model." + key[len("model.language_model.") :]] = value
        elif key.startswith("lm_head.") and lm_head:
            out[key] = value
    return out


def scaled_fp8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ComfyUI's scaled fp8: each matrix as float8_e4m3fn over a per-tensor scale, the
    rest in bf16, and the `scaled_fp8` marker."""
    out: dict[str, torch.Tensor] = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for key, value in state.items():
        if value.ndim == 2 and key.endswith(".weight"):
            scale = value.abs().max().float().clamp(min=1e-8) / 448.0
            out[key] = (value.float() / scale).to(torch.float8_e4m3fn)
            out[key.removesuffix(".weight") + ".scale_weight"] = scale.reshape(())
        else:
            out[key] = value.to(torch.bfloat16) if value.is_floating_point() else value
    return out


# ---------------------------------------------------------------------------- files


def write_qwen_files(
    tmp: Path,
    *,
    prefix: str = "",
    dtype: torch.dtype | None = None,
    vision: bool = True,
    lm_head: bool = True,
    scaled_encoder: bool = False,
    name: str = "qwen_image_tiny.safetensors",
) -> tuple[FlowFiles, QwenImagePipeline]:
    """Write the tiny Qwen-Image as ComfyUI's three files and as a diffusers folder; return
    where and the pipeline they came from. dtype: the transformer's storage
    (torch.float8_e4m3fn for an fp8 file)."""
    pipe = tiny_qwen_image_pipeline()
    config_root = tmp / "configs"
    _write_configs(pipe, config_root / "qwen_image")
    folder = tmp / "diffusers" / "qwen-image-tiny"
    pipe.save_pretrained(folder)
    models = tmp / "ComfyUI" / "models"
    transformer = saved(
        models / "diffusion_models" / name,
        {prefix + k: v for k, v in _state(pipe.transformer, dtype).items()},
    )
    encoder_state = text_encoder_to_original(
        _state(pipe.text_encoder), vision=vision, lm_head=lm_head
    )
    suffix = "_fp8_scaled" if scaled_encoder else ""
    encoder = saved(
        models / "text_encoders" / f"qwen_2.5_vl_7b_tiny{suffix}.safetensors",
        scaled_fp8(encoder_state) if scaled_encoder else encoder_state,
    )
    vae = saved(
        models / "vae" / "qwen_image_vae.safetensors", wan_vae_to_original(_state(pipe.vae))
    )
    files = FlowFiles(config_root, models, transformer, {"qwen2.5-vl": encoder}, vae, folder)
    return files, pipe


# ---------------------------------------------------------------------------- in tests


def picture_of(pipe: object) -> np.ndarray:
    """The pipeline's picture for one fixed prompt, seed and true CFG, as floats."""
    from tests.single_file_cases import CASES

    return CASES["qwen_image"].picture(pipe)


def manager_for(files: FlowFiles, dtype: str = "float32") -> ModelManager:
    """A CPU model manager reading the tiny model's configs."""
    return cpu_manager(files.config_root, dtype)


def folder_image(files: FlowFiles) -> np.ndarray:
    """picture_of the same tiny model loaded from its diffusers folder."""
    model = manager_for(files).get(str(files.diffusers_folder), lambda *a: None, lambda: False)
    return picture_of(model.pipe)


# ---------------------------------------------------------------------------- full size


def _header_only(path: Path, shapes: dict[str, list[int]], dtype_of: dict[str, str]) -> Path:
    """A .safetensors file with these tensor names, shapes and dtypes and no data: enough
    for everything that reads headers only (detection, finding files, memory planning)."""
    import json
    import struct

    header = {
        k: {"dtype": dtype_of[k], "shape": s, "data_offsets": [0, 0]} for k, s in shapes.items()
    }
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def shipped_qwen_image() -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """Qwen-Image's transformer, VAE and text encoder at full size on the meta device, from
    the configs in engine/model_configs/qwen_image."""
    from accelerate import init_empty_weights
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from engine.resources import model_configs_dir

    folder = model_configs_dir() / "qwen_image"
    with init_empty_weights():
        transformer = QwenImageTransformer2DModel.from_config(
            QwenImageTransformer2DModel.load_config(folder / "transformer")
        )
        vae = AutoencoderKLQwenImage.from_config(AutoencoderKLQwenImage.load_config(folder / "vae"))
        encoder = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig.from_pretrained(folder / "text_encoder")
        )
    return transformer, vae, encoder


def write_full_size_headers(
    models: Path, *, fp8_transformer: bool = False, scaled_encoder: bool = False
) -> tuple[Path, Path, Path]:
    """Qwen-Image's three files at full size, headers only, in the real names and shapes
    (from the configs in engine/model_configs/qwen_image, built on the meta device)."""
    transformer, vae, encoder = shipped_qwen_image()

    def shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
        return {k: list(v.shape) for k, v in state.items()}

    def stored(names: dict[str, list[int]], fp8: bool) -> dict[str, str]:
        return {k: "F8_E4M3" if fp8 and len(s) == 2 else "BF16" for k, s in names.items()}

    t_names = shapes(transformer.state_dict())
    name = "qwen_image_fp8_e4m3fn" if fp8_transformer else "qwen_image_bf16"
    t_path = _header_only(
        models / "diffusion_models" / f"{name}.safetensors",
        t_names,
        stored(t_names, fp8_transformer),
    )
    e_names = shapes(text_encoder_to_original(encoder.state_dict()))
    e_types = stored(e_names, scaled_encoder)
    if scaled_encoder:
        for key in [k for k, t in e_types.items() if t == "F8_E4M3"]:
            scale = key.removesuffix(".weight") + ".scale_weight"
            e_names[scale], e_types[scale] = [], "F32"
    suffix = "_fp8_scaled" if scaled_encoder else ""
    e_path = _header_only(
        models / "text_encoders" / f"qwen_2.5_vl_7b{suffix}.safetensors", e_names, e_types
    )
    v_names = shapes(wan_vae_to_original(vae.state_dict()))
    v_path = _header_only(
        models / "vae" / "qwen_image_vae.safetensors", v_names, stored(v_names, False)
    )
    return t_path, e_path, v_path
