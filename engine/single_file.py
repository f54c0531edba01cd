"""Single-file checkpoints (original Stable Diffusion layout) loaded with no network.

diffusers' from_single_file converts the weights; the configs it would otherwise fetch
from the hub ship under engine/model_configs/<family>/ and are passed as local folders.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from engine.api import EngineError, ErrorKind, ModelFamily
from engine.checkpoint_keys import (  # the one key-prefix table, shared with the library scan
    SD1_CLIP,
    SD2_OPEN_CLIP,
    SDXL_CLIP_L,
    SDXL_OPEN_CLIP,
    SDXL_REFINER_OPEN_CLIP,
    UNET_PREFIX,
    VAE_PREFIXES,
)
from engine.model_code import load_pickle_weights
from engine.model_files import SAFETENSORS_SUFFIX
from engine.protocols import Pipeline
from engine.resources import model_configs_dir

CLIP_TOKENIZER = model_configs_dir() / "clip_tokenizer"

# ComfyUI's test for SD 2.x v-prediction weights: this norm's bias spreads wider in them.
_SD2_V_PROBE = UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
_V_PARAMETERIZATION = re.compile(r"parameterization:\s*[\"']?v[\"']?\s*$", re.MULTILINE)


def _error(message: str) -> EngineError:
    return EngineError(ErrorKind.MODEL, message)


@dataclass(frozen=True)
class CheckpointSpec:
    family: ModelFamily
    in_channels: int  # 4, or 9 for inpainting UNets
    v_prediction: bool
    zero_snr: bool
    name: str


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's flat state dict; MODEL errors for unreadable files."""
    state: Any
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        try:
            state = load_file(path)
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise _error(
                f"{path.name} is not a readable .safetensors file ({exc}); it may be "
                "truncated or damaged: download it again."
            ) from exc
    else:
        # Only reached when the person allowed pickles; even then, weights only.
        state = load_pickle_weights(path)
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise _error(f"{path.name} holds no model weights.")
    return state


def _has_prefix(keys: list[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def inspect_checkpoint(checkpoint: dict[str, torch.Tensor], path: Path) -> CheckpointSpec:
    """Find the model family from the state-dict keys, or explain why it is unsupported."""
    keys = list(checkpoint)
    supported = (
        "DiffusionDesk opens Stable Diffusion 1.x, 2.x and SDXL checkpoints "
        "(and diffusers model folders)."
    )
    if not _has_prefix(keys, UNET_PREFIX):
        if any("lora_" in k or ".lora." in k for k in keys[:200]):
            raise _error(
                f"{path.name} is a LoRA, an add-on for a model, not a model itself. {supported}"
            )
        sample = ", ".join(keys[:3])
        raise _error(
            f"{path.name} is not a Stable Diffusion checkpoint (it has no UNet weights; "
            f"its first keys are {sample}). {supported}"
        )
    if "edm_mean" in checkpoint:
        raise _error(
            f"{path.name} is a Playground v2.5 model, whose EDM sampling DiffusionDesk does "
            f"not support. {supported}"
        )
    if _has_prefix(keys, SDXL_OPEN_CLIP) or _has_prefix(keys, SDXL_CLIP_L):
        family = ModelFamily.SDXL
    elif _has_prefix(keys, SDXL_REFINER_OPEN_CLIP):
        raise _error(
            f"{path.name} is an SDXL refiner, which only refines another model's images. "
            f"{supported}"
        )
    elif _has_prefix(keys, SD2_OPEN_CLIP):
        family = ModelFamily.SD2
    elif _has_prefix(keys, SD1_CLIP):
        family = ModelFamily.SD1
    else:
        raise _error(
            f"{path.name} has a UNet but no text encoder DiffusionDesk recognises "
            f"(it may be an SD3, Flux or other architecture). {supported}"
        )
    if not any(_has_prefix(keys, p) for p in VAE_PREFIXES):
        raise _error(f"{path.name} has no VAE weights; use a checkpoint that includes its VAE.")
    conv_in = checkpoint.get(UNET_PREFIX + "input_blocks.0.0.weight")
    in_channels = int(conv_in.shape[1]) if conv_in is not None and conv_in.ndim == 4 else 0
    if in_channels not in (4, 9):
        raise _error(
            f"{path.name}'s UNet takes {in_channels} input channels, so it is not a "
            f"text-to-image or inpainting model (an upscaler or pix2pix model?). {supported}"
        )
    return CheckpointSpec(
        family=family,
        in_channels=in_channels,
        v_prediction=_is_v_prediction(checkpoint, path, family, in_channels),
        zero_snr="ztsnr" in checkpoint,
        name=path.name,
    )


def _is_v_prediction(
    checkpoint: dict[str, torch.Tensor], path: Path, family: ModelFamily, in_channels: int
) -> bool:
    # The A1111 convention: an original-config YAML next to the file.
    sidecar = path.with_suffix(".yaml")
    if sidecar.is_file():
        try:
            return bool(_V_PARAMETERIZATION.search(sidecar.read_text(errors="replace")))
        except OSError:
            pass
    if "v_pred" in checkpoint:  # marker key some trainers (and ComfyUI) write
        return True
    if family == ModelFamily.SD2 and in_channels == 4:
        probe = checkpoint.get(_SD2_V_PROBE)
        if probe is None or probe.is_meta:
            return False
        return float(torch.std(probe.float(), unbiased=False)) > 0.09
    return False


def _tokenizer(config_dir: Path, name: str) -> CLIPTokenizer:
    folder = config_dir / name
    if (folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file():
        return CLIPTokenizer.from_pretrained(config_dir, subfolder=name, local_files_only=True)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    settings.pop("tokenizer_class", None)
    return CLIPTokenizer(
        str(CLIP_TOKENIZER / "vocab.json"), str(CLIP_TOKENIZER / "merges.txt"), **settings
    )


def _text_encoder(
    cls: type, checkpoint: dict, config_dir: Path, name: str, dtype: torch.dtype
) -> torch.nn.Module:
    try:
        model = create_diffusers_clip_model_from_ldm(
            cls,
            checkpoint,
            subfolder=name,
            config=str(config_dir),
            torch_dtype=dtype,
            local_files_only=True,
        )
    except ValueError as exc:
        raise _error(f"The checkpoint's text encoder could not be read: {exc}") from exc
    return _complete(model, "text encoder")


def _incomplete(part: str) -> EngineError:
    return _error(
        f"The checkpoint's {part} is incomplete (some weights are missing or shaped "
        "differently from a standard model); the file may be damaged, or it is a pruned "
        "or distilled variant DiffusionDesk does not support."
    )


def _complete(model: torch.nn.Module, part: str) -> torch.nn.Module:
    # Weights the checkpoint lacks (or holds in another shape) stay on the meta device.
    if any(p.is_meta for p in model.parameters()):
        raise _incomplete(part)
    return model


def _from_single_file(cls: Any, checkpoint: dict, part: str, **kwargs: object) -> object:
    try:
        model = cls.from_single_file(checkpoint, **kwargs)
    except (RuntimeError, ValueError) as exc:
        if "meta" in str(exc):  # diffusers moves a half-filled model and fails
            raise _incomplete(part) from exc
        raise
    return _complete(model, part)


def component_loaders(
    spec: CheckpointSpec, checkpoint: dict, config_dir: Path, dtype: torch.dtype
) -> list[tuple[str, Callable[[], object]]]:
    """The loading stages, in order, each a (component name, loader) pair."""
    if not (config_dir / "model_index.json").is_file():
        raise _error(f"The bundled configuration for {spec.family} is missing from {config_dir}.")
    unet_overrides: dict[str, object] = {"in_channels": spec.in_channels}
    if spec.family == ModelFamily.SD2 and not spec.v_prediction:
        unet_overrides["sample_size"] = 64  # SD 2.x base models are 512 px, epsilon
    common = {"config": str(config_dir), "local_files_only": True, "torch_dtype": dtype}

    stages: list[tuple[str, Callable[[], object]]] = [
        ("tokenizer", lambda: _tokenizer(config_dir, "tokenizer")),
        ("scheduler", lambda: _scheduler(spec, config_dir)),
        (
            "text_encoder",
            lambda: _text_encoder(CLIPTextModel, checkpoint, config_dir, "text_encoder", dtype),
        ),
    ]
    if spec.family == ModelFamily.SDXL:
        stages += [
            ("tokenizer_2", lambda: _tokenizer(config_dir, "tokenizer_2")),
            (
                "text_encoder_2",
                lambda: _text_encoder(
                    CLIPTextModelWithProjection, checkpoint, config_dir, "text_encoder_2", dtype
                ),
            ),
        ]
    stages += [
        (
            "unet",
            lambda: _from_single_file(
                UNet2DConditionModel,
                checkpoint,
                "UNet",
                subfolder="unet",
                **common,
                **unet_overrides,
            ),
        ),
        (
            "vae",
            lambda: _from_single_file(AutoencoderKL, checkpoint, "VAE", subfolder="vae", **common),
        ),
    ]
    return stages


def _scheduler(spec: CheckpointSpec, config_dir: Path) -> object:
    index = DiffusionPipeline.load_config(config_dir)
    cls = getattr(diffusers, index["scheduler"][1])
    overrides: dict[str, object] = {
        "prediction_type": "v_prediction" if spec.v_prediction else "epsilon"
    }
    if spec.zero_snr:
        overrides.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    return cls.from_pretrained(
        config_dir, subfolder="scheduler", local_files_only=True, **overrides
    )


def assemble(spec: CheckpointSpec, components: dict, config_dir: Path) -> Pipeline:
    if spec.family == ModelFamily.SDXL:
        index = DiffusionPipeline.load_config(config_dir)
        return StableDiffusionXLPipeline(
            **components,
            force_zeros_for_empty_prompt=bool(index.get("force_zeros_for_empty_prompt", True)),
            add_watermarker=False,
        )
    return StableDiffusionPipeline(
        **components,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
