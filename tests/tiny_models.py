"""Tiny random-weight Stable Diffusion components built from configs (no download).

The way diffusers tests itself: every path runs in well under a second on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

_WORDS = [
    "a",
    "an",
    "the",
    "red",
    "green",
    "blue",
    "yellow",
    "circle",
    "square",
    "star",
    "on",
    "background",
    "of",
    "photo",
    "cat",
    "dog",
    "small",
    "large",
]


def tiny_tokenizer(folder: Path, max_length: int = 77) -> CLIPTokenizer:
    """A genuine CLIPTokenizer over a tiny word-level BPE vocabulary."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for w in _WORDS for c in w})
    vocab: dict[str, int] = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges: list[str] = []
    for word in _WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            line = f"{pieces[0]} {pieces[1]}"
            if line not in merges:
                merges.append(line)
            vocab.setdefault(merged, len(vocab))
            pieces = [merged, *pieces[2:]]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length
    )


def tiny_components(
    tmp: Path, *, inpaint_unet: bool = False, seed: int = 0, width: int = 8
) -> dict:
    """Random-weight SD 1.x components; `width` scales every part (8: tests, 32: bench)."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(width, 2 * width),
        layers_per_block=1,
        sample_size=8,
        in_channels=9 if inpaint_unet else 4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * width,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(width,) * 4,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )
    tokenizer = tiny_tokenizer(tmp / "tokenizer_src")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=2 * width,
            intermediate_size=4 * width,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
        )
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
    }


def tiny_pipeline(tmp: Path, *, inpaint_unet: bool = False) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(
        **tiny_components(tmp, inpaint_unet=inpaint_unet), requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_model(folder: Path, *, inpaint_unet: bool = False) -> Path:
    """Write a tiny diffusers folder (safetensors) and return its path."""
    pipe = tiny_pipeline(folder.parent / (folder.name + "_build"), inpaint_unet=inpaint_unet)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_sdxl_pipeline(
    tmp: Path, *, single_file_layout: bool = False, unet_width: int = 8
) -> StableDiffusionXLPipeline:
    """A tiny SDXL pipeline, the way diffusers' own SDXL tests build one.

    single_file_layout: two transformer layers at the lower level and a two-level VAE,
    the shape of the configs the single-file tests convert checkpoints against;
    unet_width: the UNet's first level (8: tests, larger for benchmarks)."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(unet_width, 2 * unet_width),
        layers_per_block=1,
        sample_size=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2) if single_file_layout else 1,
        projection_class_embeddings_input_dim=6 * 8 + 24,  # time ids + pooled text
        cross_attention_dim=16 + 24,
        norm_num_groups=4,
    )
    levels = 2 if single_file_layout else 4
    vae = AutoencoderKL(
        block_out_channels=(8,) * levels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16 if single_file_layout else 32,
    )
    tokenizer = tiny_tokenizer(tmp / "tok")
    # The two encoders must differ in width, as in SDXL (768 and 1280): diffusers tells
    # them apart by it.
    configs = [
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=width,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            projection_dim=width,
            hidden_act="gelu",
        )
        for width in (16, 24)
    ]
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(configs[0]),
        text_encoder_2=CLIPTextModelWithProjection(configs[1]),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
