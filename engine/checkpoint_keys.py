"""What a weight file is, told from its tensor names alone: the key-prefix table.

Single-file loading (engine/single_file.py) and the model library's scan
(engine/library.py) both ask "which family is this checkpoint, is it a LoRA?". The scan
sees only the names in a safetensors header, never a tensor, so everything here works
on key names (and, where a header gives them, shapes). No torch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from engine import diffusers_layout
from engine.api import ModelFamily
from engine.control import adapter_keys
from engine.file_family import is_qwen_image

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIXES = ("first_stage_model.", "vae.")
SD1_CLIP = "cond_stage_model.transformer."
SD2_OPEN_CLIP = "cond_stage_model.model."
SDXL_CLIP_L = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP = "conditioner.embedders.1.model."
SDXL_REFINER_OPEN_CLIP = "conditioner.embedders.0.model."

# Families DiffusionDesk cannot run but the library still names, so a person sees what a
# file is. Checked on the UNet/transformer key names after UNET_PREFIX (or bare, for
# files that hold only the diffusion model).
SD3 = "sd3"
FLUX = "flux"
SDXL_REFINER = "sdxl-refiner"
SANA = "sana"
FLUX2 = "flux2"
QWEN_IMAGE = "qwen_image"
ZIMAGE = "zimage"
_TRANSFORMER_MARKERS = (
    ("single_stream_modulation.", FLUX2),  # before FLUX.1: klein has double_blocks too
    ("joint_blocks.", SD3),
    ("double_blocks.", FLUX),
    ("blocks.0.cross_attn.kv_linear.", SANA),  # NVIDIA's layout (engine/sana_files.py)
    ("transformer_blocks.0.ff.conv_inverted.", SANA),  # diffusers' layout
    ("context_refiner.", ZIMAGE),  # Z-Image's caption refiner blocks
)

# Kind words, as AssetKind values (engine/asset_folders.py) spells them.
CHECKPOINT, LORA, EMBEDDING, VAE, CONTROLNET = (
    "checkpoint",
    "lora",
    "embedding",
    "vae",
    "controlnet",
)
_LORA_MARKERS = ("lora_unet_", "lora_te", ".lora_down.", ".lora_up.", ".lora_A.", ".lora_B.")
_EMBEDDING_KEYS = ("emb_params", "string_to_param", "clip_l", "clip_g")
_CONTROLNET_MARKERS = ("control_model.", "input_hint_block.", "controlnet_cond_embedding.")
_BARE_VAE = (
    "encoder.down.",
    "decoder.up.",
    "encoder.down_blocks.",
    "decoder.up_blocks.",
    "decoder.stages.",  # DC-AE in MIT Han Lab's layout
    "encoder.downsamples.",  # Wan 2.1's video VAE, Qwen-Image's
)


def has_prefix(keys: Collection[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def checkpoint_family(keys: Collection[str]) -> str | None:
    """The family of a full checkpoint (UNet + text encoders in the original layout):
    a ModelFamily value, SDXL_REFINER, SD3, FLUX, or None when the keys do not say."""
    if has_prefix(keys, SDXL_OPEN_CLIP) or has_prefix(keys, SDXL_CLIP_L):
        return ModelFamily.SDXL.value
    if has_prefix(keys, SDXL_REFINER_OPEN_CLIP):
        return SDXL_REFINER
    for marker, family in _TRANSFORMER_MARKERS:
        if has_prefix(keys, UNET_PREFIX + marker) or has_prefix(keys, marker):
            return family
    if has_prefix(keys, SD2_OPEN_CLIP):
        return ModelFamily.SD2.value
    if has_prefix(keys, SD1_CLIP):
        return ModelFamily.SD1.value
    return None


def _width(shapes: Mapping[str, Sequence[int]], keys: Sequence[str], suffix: str) -> int | None:
    for key in keys:
        shape = shapes.get(key)
        if key.endswith(suffix) and shape and len(shape) >= 2:
            return int(shape[-1])
    return None


def lora_family(
    keys: Sequence[str], shapes: Mapping[str, Sequence[int]], metadata: Mapping[str, Any]
) -> str | None:
    """The base family a LoRA was trained for: kohya's `ss_base_model_version` when the
    trainer wrote it, else SDXL's two text encoders, else the text encoder's width
    (768 for SD 1.x, 1024 for SD 2.x)."""
    base = str(metadata.get("ss_base_model_version", "")).lower()
    if base.startswith("sdxl"):
        return ModelFamily.SDXL.value
    if base.startswith("sd_v2") or base.startswith("sd_2"):
        return ModelFamily.SD2.value
    if base.startswith("sd_v1") or base.startswith("sd_1"):
        return ModelFamily.SD1.value
    if base.startswith("flux"):
        return FLUX
    if has_prefix(keys, "lora_te1_") or has_prefix(keys, "lora_te2_"):
        return ModelFamily.SDXL.value
    if any("double_blocks" in k for k in keys):
        return FLUX
    te = [k for k in keys if k.startswith("lora_te_")]
    width = _width(shapes, te, "lora_down.weight")
    if width == 768:
        return ModelFamily.SD1.value
    if width == 1024:
        return ModelFamily.SD2.value
    return None


def embedding_family(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """Textual-inversion embeddings: SDXL ones hold clip_l and clip_g vectors; SD ones one
    vector per token, 768 wide for SD 1.x and 1024 for SD 2.x."""
    if "clip_g" in shapes:
        return ModelFamily.SDXL.value
    for key in ("emb_params", "string_to_param"):
        shape = shapes.get(key)
        if shape:
            return {768: ModelFamily.SD1.value, 1024: ModelFamily.SD2.value}.get(int(shape[-1]))
    return None


def classify(
    keys: Sequence[str], shapes: Mapping[str, Sequence[int]], metadata: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    """(kind, family) of a weight file from its tensor names, shapes and metadata; either
    is None when the keys do not tell (a file the folder's name must then describe)."""
    if any(marker in k for k in keys[:400] for marker in _LORA_MARKERS):
        return LORA, lora_family(keys, shapes, metadata)
    if keys and all(k in _EMBEDDING_KEYS or k.startswith("string_to_") for k in keys):
        return EMBEDDING, embedding_family(shapes)
    if any(k.startswith(m) or f".{m}" in k for k in keys[:400] for m in _CONTROLNET_MARKERS):
        return CONTROLNET, checkpoint_family(keys)
    if adapter_keys.is_adapter(keys):  # T2I adapters run as control units too
        return CONTROLNET, adapter_keys.family(keys, shapes)
    if is_qwen_image(keys):  # its marker tensors may sit anywhere in a header
        return CHECKPOINT, QWEN_IMAGE
    in_diffusers_layout = diffusers_layout.family(keys)  # save_pretrained's transformer file
    if in_diffusers_layout is not None:
        return CHECKPOINT, FLUX if in_diffusers_layout == ModelFamily.FLUX1 else in_diffusers_layout
    if has_prefix(keys, UNET_PREFIX):
        return CHECKPOINT, checkpoint_family(keys)
    if any(marker in k for k in keys[:400] for marker, _ in _TRANSFORMER_MARKERS):
        return CHECKPOINT, checkpoint_family(keys)
    if any(has_prefix(keys, p) for p in _BARE_VAE):
        # A VAE on its own: SDXL's and SD's share the layout; only metadata may say.
        return VAE, None
    return None, None
