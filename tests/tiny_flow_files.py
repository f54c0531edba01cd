"""Tiny random-weight SD3 and FLUX.1 models written as the files people download.

`write_flow_files` saves one family's transformer as a single file in the original
(BFL / Stability) layout, its text encoders as ComfyUI's separate files (clip_l, clip_g,
t5xxl) and its VAE as an ae.safetensors-style file, in a ComfyUI `models/` tree; and a
config root holding the tiny models' configurations under the names of
engine/model_configs/ (so ModelManager(config_root=...) loads them with no network).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

from tests.flow_checkpoint import DIFFUSION_PREFIX, flux_to_original, sd3_to_original
from tests.ldm_checkpoint import VAE, vae_to_ldm
from tests.tiny_models import _WORDS, tiny_tokenizer

CAPTIONS = [" ".join(_WORDS[i : i + 5]) for i in range(len(_WORDS))] * 4


def tiny_t5_tokenizer(folder: Path) -> T5TokenizerFast:
    """A genuine T5TokenizerFast over a unigram vocabulary trained on a few captions."""
    model = Tokenizer(models.Unigram())
    model.normalizer = normalizers.NFKC()
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=64, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    model.train_from_iterator(CAPTIONS, trainer)
    tokenizer = T5TokenizerFast(tokenizer_object=model, extra_ids=0, model_max_length=512)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def _clip(tokenizer_len: int, width: int, projection: bool, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=width,
        intermediate_size=2 * width,
        num_attention_heads=2,
        num_hidden_layers=2,
        vocab_size=tokenizer_len,
        max_position_embeddings=77,
        projection_dim=width,
        hidden_act="gelu",
    )
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(config).eval()


def _t5(vocab: int, seed: int) -> T5EncoderModel:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab,
        d_model=32,
        d_ff=37,
        d_kv=8,
        num_heads=4,
        num_layers=2,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config).eval()


def _vae(seed: int, shift: float, scale: float) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=shift,
        scaling_factor=scale,
    ).eval()


def tiny_flux_pipeline(tmp: Path, *, guidance: bool = True) -> FluxPipeline:
    tokenizer = tiny_tokenizer(tmp / "clip_tokenizer")
    t5_tokenizer = tiny_t5_tokenizer(tmp / "t5_tokenizer")
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=guidance,
        axes_dims_rope=(4, 4, 8),
    ).eval()
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(1, 0.1159, 0.3611),
        text_encoder=_clip(len(tokenizer), 32, False, 2),
        tokenizer=tokenizer,
        text_encoder_2=_t5(len(t5_tokenizer), 3),
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sd3_pipeline(tmp: Path) -> StableDiffusion3Pipeline:
    tokenizer = tiny_tokenizer(tmp / "clip_tokenizer")
    t5_tokenizer = tiny_t5_tokenizer(tmp / "t5_tokenizer")
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=4,
        qk_norm="rms_norm",
    ).eval()
    pipe = StableDiffusion3Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(1, 0.0609, 1.5305),
        text_encoder=_clip(len(tokenizer), 32, True, 2),
        tokenizer=tokenizer,
        text_encoder_2=_clip(len(tokenizer), 32, True, 4),
        tokenizer_2=tokenizer,
        text_encoder_3=_t5(len(t5_tokenizer), 3),
        tokenizer_3=t5_tokenizer,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class FlowFiles:
    """Where write_flow_files put things."""

    config_root: Path  # pass as ModelManager(config_root=...)
    models: Path  # the ComfyUI `models/` folder
    transformer: Path
    text_encoders: dict[str, Path]  # clip_l / clip_g / t5xxl -> file
    vae: Path


def _state(module: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    return {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
        .detach()
        .clone()
        .contiguous()
        for k, v in module.state_dict().items()
    }


def _comfy_encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP weights as ComfyUI's clip_l / clip_g files hold them: under `text_model.`."""
    if not any(k.startswith("embeddings.") for k in state):
        return state
    return {
        k if k.startswith("text_projection") else "text_model." + k: v for k, v in state.items()
    }


def _write_configs(pipe: object, folder: Path) -> None:
    """The pipeline's configs (no weights) as a diffusers folder would hold them."""
    folder.mkdir(parents=True, exist_ok=True)
    index = {"_class_name": type(pipe).__name__, "_diffusers_version": "0.42.0"}
    for name, component in pipe.components.items():  # type: ignore[attr-defined]
        if component is None:
            index[name] = [None, None]
            continue
        index[name] = [component.__module__.split(".")[0], type(component).__name__]
        sub = folder / name
        if name.startswith("tokenizer"):
            component.save_pretrained(sub)
        elif hasattr(component, "save_config"):
            component.save_config(sub)
        else:
            sub.mkdir(parents=True, exist_ok=True)
            component.config.to_json_file(sub / "config.json")
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))


def write_flow_files(
    tmp: Path,
    family: str,
    *,
    variant: str | None = None,
    prefix: str = "",
    dtype: torch.dtype | None = None,
) -> tuple[FlowFiles, object]:
    """Write `family` ("flux1" or "sd3") as separate files in a ComfyUI tree; return the
    files and the tiny diffusers pipeline they came from."""
    if family == "flux1":
        pipe: object = tiny_flux_pipeline(tmp / "src", guidance=variant != "flux1-schnell")
        variant = variant or "flux1-dev"
        original = flux_to_original(_state(pipe.transformer, dtype), prefix)  # type: ignore[attr-defined]
        encoders = {"clip_l": pipe.text_encoder, "t5xxl": pipe.text_encoder_2}  # type: ignore[attr-defined]
    else:
        pipe = tiny_sd3_pipeline(tmp / "src")
        variant = variant or "sd3-medium"
        original = sd3_to_original(_state(pipe.transformer, dtype), prefix)  # type: ignore[attr-defined]
        encoders = {
            "clip_l": pipe.text_encoder,  # type: ignore[attr-defined]
            "clip_g": pipe.text_encoder_2,  # type: ignore[attr-defined]
            "t5xxl": pipe.text_encoder_3,  # type: ignore[attr-defined]
        }
    config_root = tmp / "configs"
    _write_configs(pipe, config_root / family)
    if variant not in (family, "flux1-dev"):  # a variant folder, as engine/model_configs has
        _write_configs(pipe, config_root / variant)
    models = tmp / "ComfyUI" / "models"
    transformer = models / "diffusion_models" / f"tiny-{variant}.safetensors"
    transformer.parent.mkdir(parents=True)
    save_file(original, transformer)
    written: dict[str, Path] = {}
    (models / "text_encoders").mkdir(parents=True)
    for name, encoder in encoders.items():
        written[name] = models / "text_encoders" / f"{name}_tiny.safetensors"
        save_file(_comfy_encoder(_state(encoder)), written[name])
    vae_state = vae_to_ldm(_state(pipe.vae), dict(pipe.vae.config))  # type: ignore[attr-defined]
    vae = models / "vae" / f"{family}_ae.safetensors"
    vae.parent.mkdir(parents=True)
    save_file({k.removeprefix(VAE): v for k, v in vae_state.items()}, vae)
    return FlowFiles(config_root, models, transformer, written, vae), pipe


__all__ = ["DIFFUSION_PREFIX", "FlowFiles", "write_flow_files"]
