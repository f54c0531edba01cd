"""Tiny pipelines with the real CLIP tokenizer, for the add-on tests (prompts past 77
tokens, commas and weights need real tokens; the encoders stay tiny)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from tiny_models import tiny_components, tiny_sdxl_pipeline
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from engine.resources import model_configs_dir

TOKENIZER_DIR = model_configs_dir() / "clip_tokenizer"


@cache
def clip_tokenizer(pad: str = "<|endoftext|>") -> CLIPTokenizer:
    """The real CLIP tokenizer; pad "!" is SD 2.x's and SDXL's second tokenizer's."""
    return CLIPTokenizer(
        str(TOKENIZER_DIR / "vocab.json"),
        str(TOKENIZER_DIR / "merges.txt"),
        model_max_length=77,
        pad_token=pad,
    )


def _encoder(width: int, tokenizer: CLIPTokenizer, projection: bool = False, layers: int = 3):
    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=width,
        intermediate_size=2 * width,
        num_attention_heads=2,
        num_hidden_layers=layers,
        vocab_size=len(tokenizer),
        max_position_embeddings=77,
        projection_dim=width,
        hidden_act="gelu",
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def sd_pipeline(tmp: Path, pad: str = "<|endoftext|>") -> StableDiffusionPipeline:
    """A tiny SD 1.x pipeline (SD 2.x when pad is "!") with the real tokenizer."""
    components = tiny_components(tmp)
    torch.manual_seed(1)
    tokenizer = clip_tokenizer(pad)
    components["tokenizer"] = tokenizer
    components["text_encoder"] = _encoder(16, tokenizer)
    pipe = StableDiffusionPipeline(**components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sdxl_pipeline(tmp: Path) -> StableDiffusionXLPipeline:
    """A tiny SDXL pipeline with the real tokenizers (the second pads with "!")."""
    pipe = tiny_sdxl_pipeline(tmp)
    torch.manual_seed(2)
    pipe.tokenizer = clip_tokenizer()
    pipe.tokenizer_2 = clip_tokenizer("!")
    pipe.text_encoder = _encoder(16, pipe.tokenizer)
    pipe.text_encoder_2 = _encoder(24, pipe.tokenizer_2, projection=True)
    pipe.register_modules(
        tokenizer=pipe.tokenizer,
        tokenizer_2=pipe.tokenizer_2,
        text_encoder=pipe.text_encoder,
        text_encoder_2=pipe.text_encoder_2,
    )
    return pipe
