"""Tiny random-weight SD 3 and FLUX.1 (dev, schnell, Fill) pipelines built from configs.

The way diffusers' own tests build them (tests/pipelines/flux, stable_diffusion_3), with
two changes so the engine's real paths run: the VAE has four levels (scale factor 8) and
16 latent channels, as the real families do, and the T5 tokenizer is trained here on a
few words (no download). Every pipeline runs a step in milliseconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxFillPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from tiny_models import _WORDS, tiny_tokenizer
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

LATENT_CHANNELS = 16


def tiny_t5_tokenizer() -> T5TokenizerFast:
    """A genuine T5TokenizerFast: a Unigram model (as T5's sentencepiece one) over the
    test words and their letters, with T5's special tokens and "▁" word starts."""
    pieces: dict[str, float] = {"<pad>": 0.0, "</s>": 0.0, "<unk>": 0.0}
    for word in _WORDS:
        pieces.setdefault("\u2581" + word, -1.0)
        for letter in word:
            pieces.setdefault(letter, -5.0)
    pieces.setdefault("\u2581", -3.0)
    backend = Tokenizer(models.Unigram(list(pieces.items()), unk_id=2))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    return T5TokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_t5(tokenizer: T5TokenizerFast, width: int = 32) -> T5EncoderModel:
    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=width,
            d_kv=8,
            d_ff=2 * width,
            num_layers=2,
            num_heads=2,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=0,
        )
    )


def tiny_clip(tokenizer: object, width: int, *, projection: bool) -> torch.nn.Module:
    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        hidden_size=width,
        intermediate_size=2 * width,
        num_attention_heads=2,
        num_hidden_layers=2,
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        max_position_embeddings=77,
        projection_dim=width,
        hidden_act="gelu",
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def tiny_flow_vae(shift: float = 0.0609, scale: float = 1.5035) -> AutoencoderKL:
    """A four-level (scale factor 8) VAE with 16 latent channels, as SD 3 and FLUX have."""
    return AutoencoderKL(
        block_out_channels=(4,) * 4,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=shift,
        scaling_factor=scale,
        sample_size=32,
    )


def tiny_sd3_transformer(
    layers: int = 1, heads: int = 2, head_dim: int = 8, dual_attention_layers: tuple = ()
) -> SD3Transformer2DModel:
    """A tiny SD 3 MMDiT; dual_attention_layers: the blocks with SD 3.5 Medium's second
    attention."""
    return SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        caption_projection_dim=heads * head_dim,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        pos_embed_max_size=32,
        dual_attention_layers=dual_attention_layers,
    )


def tiny_sd3_pipeline(
    tmp: Path, *, seed: int = 0, layers: int = 1, heads: int = 2, head_dim: int = 8
) -> StableDiffusion3Pipeline:
    """layers, heads, head_dim: the transformer's size (larger for benchmarks)."""
    torch.manual_seed(seed)
    transformer = tiny_sd3_transformer(layers, heads, head_dim)
    tokenizer = tiny_tokenizer(tmp / "clip_tokenizer")
    t5_tokenizer = tiny_t5_tokenizer()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_flow_vae(),
        # Two CLIP encoders of 16 (their 32 together pad to the T5's 32, the joint width).
        text_encoder=tiny_clip(tokenizer, 16, projection=True),
        tokenizer=tokenizer,
        text_encoder_2=tiny_clip(tokenizer, 16, projection=True),
        tokenizer_2=tokenizer,
        text_encoder_3=tiny_t5(t5_tokenizer),
        tokenizer_3=t5_tokenizer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_flux_pipeline(
    tmp: Path,
    *,
    variant: str = "dev",
    seed: int = 0,
    layers: int = 1,
    heads: int = 2,
    head_dim: int = 16,
) -> FluxPipeline | FluxFillPipeline:
    """variant: "dev" (guidance embedding), "schnell" (none) or "fill" (384 inputs);
    layers, heads, head_dim: the transformer's size (larger for benchmarks)."""
    torch.manual_seed(seed)
    packed = LATENT_CHANNELS * 4
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=packed * 6 if variant == "fill" else packed,  # + picture 64 + mask 256
        out_channels=LATENT_CHANNELS * 4,
        num_layers=layers,
        num_single_layers=2 * layers - 1,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=32,
        pooled_projection_dim=16,
        guidance_embeds=variant != "schnell",
        axes_dims_rope=(head_dim // 4, head_dim // 4, head_dim // 2),
    )
    tokenizer = tiny_tokenizer(tmp / "clip_tokenizer")
    t5_tokenizer = tiny_t5_tokenizer()
    cls = FluxFillPipeline if variant == "fill" else FluxPipeline
    pipe = cls(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=variant != "schnell", base_shift=0.5, max_shift=1.15
        ),
        vae=tiny_flow_vae(shift=0.1159, scale=0.3611),
        text_encoder=tiny_clip(tokenizer, 16, projection=False),
        tokenizer=tokenizer,
        text_encoder_2=tiny_t5(t5_tokenizer),
        tokenizer_2=t5_tokenizer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_flow_model(folder: Path, family: str, variant: str = "dev") -> Path:
    """Write a tiny SD 3 ("sd3") or FLUX.1 ("flux1") diffusers folder; return its path."""
    build = folder.parent / (folder.name + "_build")
    if family == "sd3":
        pipe = tiny_sd3_pipeline(build)
    else:
        pipe = tiny_flux_pipeline(build, variant=variant)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
