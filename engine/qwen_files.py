"""Qwen-Image from the single files people download (ComfyUI's split files, city96's GGUF).

What a person has is three files:
- the transformer, `models/diffusion_models/qwen_image_*.safetensors` (bf16 or
  float8_e4m3fn) or a `qwen-image-*.gguf`. ComfyUI keeps diffusers' own tensor names, so
  diffusers' single-file map for QwenImageTransformer2DModel is the identity; only a
  `model.diffusion_model.` prefix (files saved from a ComfyUI workflow) is taken off;
- the text encoder, `models/text_encoders/qwen_2.5_vl_7b*.safetensors`: Qwen2.5-VL-7B in
  its original checkpoint names (`model.layers.*`, `visual.*`, maybe `lm_head.*`), bf16 or
  ComfyUI's scaled fp8 (multiplied out as it is read, engine/quantized.py), with or without
  the vision tower;
- the VAE, `models/vae/qwen_image_vae.safetensors`: Wan 2.1's video VAE in the original
  Wan layout. AutoencoderKLQwenImage has the same tensors as diffusers' AutoencoderKLWan,
  so diffusers' own Wan converter (single_file_utils.convert_wan_vae_to_diffusers) maps
  it; nothing of ours.

Text to image, image to image and inpainting never show the text encoder a picture and
never read its next-token logits: the vision tower (0.68B weights) and the vocabulary
projection (0.55B) are left unread, which saves 2.4 GB at bfloat16. Edit, Layered and 2.1
transformers are refused by name or keys: they are other models (engine/families/qwen_image.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from engine import component_files as cf
from engine import quantized
from engine.api import EngineError, ErrorKind
from engine.file_family import is_qwen_image

__all__ = [
    "TEXT_ENCODER",
    "UNREAD",
    "VAE",
    "check_transformer",
    "is_qwen_image",
    "load_text_encoder",
    "load_vae",
    "text_encoder_state",
    "to_diffusers",
    "vae_state",
]

_DIFFUSION = "model.diffusion_model."
_QWEN21 = "txt_in.text_norm.weight"  # Qwen-Image 2.1, a different transformer
_OTHER_MODELS = {
    "edit": "Qwen-Image-Edit, an editing model",
    "layered": "Qwen-Image-Layered, a layer-decomposition model",
}

TEXT_ENCODER = cf.Slot(
    "text_encoder",
    cf.QWEN25_VL,
    "qwen",
    "the Qwen2.5-VL text encoder (qwen_2.5_vl_7b_fp8_scaled.safetensors)",
)
VAE = cf.Slot("vae", cf.WAN_VAE, "qwen", "its VAE (qwen_image_vae.safetensors)")

# Where the text encoder's tensors go in transformers' Qwen2_5_VLForConditionalGeneration:
# (prefix in the file, prefix in the model), first match wins.
_TEXT_PREFIXES = (
    ("model.language_model.", "model.language_model."),  # saved by transformers 5
    ("model.", "model.language_model."),  # the original checkpoint names (ComfyUI's)
)
UNREAD = ("visual.", "model.visual.", "lm_head.")


def _error(message: str) -> EngineError:
    return EngineError(ErrorKind.MODEL, message)


def check_transformer(path: Path, keys: Sequence[str]) -> None:
    """Refuse, in one sentence, a Qwen transformer that is not text-to-image Qwen-Image."""
    if _QWEN21 in keys or _DIFFUSION + _QWEN21 in keys:
        raise _error(
            f"{path.name} is a Qwen-Image 2.1 transformer, which DiffusionDesk does not run "
            "yet; use Qwen-Image itself (qwen_image_*.safetensors or qwen-image-*.gguf)."
        )
    lowered = path.name.lower()
    for word, what in _OTHER_MODELS.items():
        if word in lowered:
            raise _error(
                f"{path.name} is {what} (its name says so) that DiffusionDesk does not run; "
                "use Qwen-Image itself (qwen_image_*.safetensors or qwen-image-*.gguf)."
            )


def to_diffusers(checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The transformer's tensors under diffusers' names: ComfyUI's names without the
    prefix a ComfyUI-saved file puts before them."""
    return {k.removeprefix(_DIFFUSION): v for k, v in checkpoint.items()}


# ---------------------------------------------------------------------------- text encoder


def text_encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The language model's tensors under transformers' Qwen2_5_VLForConditionalGeneration
    names; the vision tower and lm_head are left out (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(UNREAD):
            continue
        for theirs, ours in _TEXT_PREFIXES:
            if key.startswith(theirs):
                out[ours + key[len(theirs) :]] = value
                break
    return out


def load_text_encoder(
    cls_name: str, config_dir: Path, part: cf.WeightFile, dtype: torch.dtype
) -> torch.nn.Module:
    """Qwen2.5-VL's language model from one file, in `dtype`, ready for the pipelines."""
    import transformers
    from accelerate import init_empty_weights

    cls = getattr(transformers, cls_name)
    config = cls.config_class.from_pretrained(config_dir, local_files_only=True)
    skip = tuple(part.prefix + p for p in UNREAD)
    state = text_encoder_state(quantized.read_weights(part.path, part.prefix, skip=skip))
    with init_empty_weights():  # the weights come from the file: no random init of 7B
        model = cls(config)
    # The pipelines read hidden states only: no vision tower, and no 152064-wide logits.
    model.model.visual = None
    model.lm_head = torch.nn.Identity()
    model.load_state_dict(state, strict=False, assign=True)
    empty = [n for n, p in model.named_parameters() if p.is_meta]
    if empty:
        raise _error(cf.misfit_message(part, "Qwen-Image's text encoder", empty))
    return model.to(dtype).eval()


# ---------------------------------------------------------------------------- VAE


def vae_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The VAE's tensors under diffusers' names: Wan's original layout through diffusers'
    own converter; a file already in diffusers' layout as it is."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    if "encoder.conv1.weight" in state:
        return dict(convert_wan_vae_to_diffusers(state))
    return state


def load_vae(
    config: Path | Mapping[str, Any], part: cf.WeightFile, dtype: torch.dtype
) -> torch.nn.Module:
    """AutoencoderKLQwenImage from one file, in `dtype`; config: a config folder, or the
    config of the VAE it is to stand in for (the VAE override)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLQwenImage

    settings = dict(
        AutoencoderKLQwenImage.load_config(config) if isinstance(config, Path) else config
    )
    state = vae_state(quantized.read_weights(part.path, part.prefix))
    with init_empty_weights():
        vae = AutoencoderKLQwenImage.from_config(settings)
    try:
        vae.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise _error(
            f"{cf.label_of(part)} could not be read as Qwen-Image's VAE ({first[0].strip()}); "
            "use qwen_image_vae.safetensors (or Wan 2.1's VAE)."
        ) from exc
    return vae.to(dtype).eval()
