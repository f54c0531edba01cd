"""Sizes of the starter model's parts: ordinary diffusers / transformers classes."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from starter.captions import BACKGROUND_PHRASES, POSITION_PHRASES, PREFIXES, RELATIONS, SIZE_WORDS
from starter.shapes import COLOURS, SHAPES

MAX_TOKENS = 40
TEXT_WIDTH = 128


def caption_words() -> list[str]:
    """Every word the captions use, in a fixed order."""
    text = " ".join(
        [*COLOURS, *SHAPES, *(w for ws in SIZE_WORDS.values() for w in ws)]
        + [p for ps in POSITION_PHRASES.values() for p in ps]
        + list(RELATIONS.values())
        + [p.format(c="") for p in BACKGROUND_PHRASES]
        + list(PREFIXES)
        + ["a an and the with picture photo of shape shapes colour color centre center"]
    )
    words: list[str] = []
    for w in text.replace(",", " , ").split():
        if w not in words:
            words.append(w)
    return words


def byte_characters() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for the bytes 0..255."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def bpe(pieces: list[str], merges: list[tuple[str, str]]) -> list[str]:
    """Apply BPE merges by rank, as the tokenizer does."""
    rank = {pair: i for i, pair in enumerate(merges)}
    while len(pieces) > 1:
        pairs = [
            (rank.get((a, b), len(rank)), i)
            for i, (a, b) in enumerate(zip(pieces, pieces[1:], strict=False))
        ]
        best, i = min(pairs)
        if best == len(rank):
            break
        pieces = [*pieces[:i], pieces[i] + pieces[i + 1], *pieces[i + 2 :]]
    return pieces


def build_tokenizer(folder: Path) -> CLIPTokenizer:
    """A genuine CLIPTokenizer with a small BPE vocabulary: every byte-level character
    (so any text tokenizes) plus one merge chain per caption word (so each known word is
    a single token). A 49,408-token CLIP table would be most of the 50 MB budget."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for ch in byte_characters():
        vocab.setdefault(ch, len(vocab))
    for ch in byte_characters():
        vocab.setdefault(ch + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in caption_words():
        # Extend, never reorder: earlier words keep their tokenization, and this word
        # becomes one token by chaining whatever pieces the existing merges leave.
        pieces = bpe(list(word[:-1]) + [word[-1] + "</w>"], merges)
        while len(pieces) > 1:
            merges.append((pieces[0], pieces[1]))
            vocab.setdefault(pieces[0] + pieces[1], len(vocab))
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n"
    )
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_TOKENS
    )


def token_ids(tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
    """Padded token ids, as the Stable Diffusion pipelines feed the text encoder."""
    return tokenizer(
        texts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_WIDTH,
            intermediate_size=4 * TEXT_WIDTH,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


# 128 channels at the 16x16 level (64 before) give the encoder room for small shapes'
# corners: with 64, reconstruction alone named the shape of only 0.84 of small objects.
# The decoder's full-resolution levels stay narrow, so decoding stays cheap.
VAE_CHANNELS = (16, 32, 64, 128)


def build_vae(channels: tuple[int, ...] = VAE_CHANNELS) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=channels,
        layers_per_block=1,
        latent_channels=4,
        # One group: with several, GroupNorm wipes out the absolute colour of a flat
        # picture (each group of a few channels is normalised on its own).
        norm_num_groups=1,
        sample_size=128,
    )


def build_unet() -> UNet2DConditionModel:
    """Cross-attention at 8x8, 4x4 and in the middle, plain ResNet blocks at 16x16:
    self- and cross-attention over 256 positions cost most of a training step and a
    fifth of sampling time for little gain at this size. Widths (48, 96, 128) rather
    than (64, 128, 128) make sampling 14% and a training step 37% faster. The "text"
    addition embedding pools the prompt into the timestep embedding, so global facts
    (background and object colour) reach every block, including the 16x16 ones."""
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(48, 96, 128),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


def build_scheduler() -> DDPMScheduler:
    """The training noise schedule: Stable Diffusion's, so every SD sampler applies."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        clip_sample=False,
        prediction_type="epsilon",
    )
