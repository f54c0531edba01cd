"""Tiny random-weight Z-Image, Qwen-Image, SANA, SANA-Sprint and FLUX.2 klein models.

Built from configs the way diffusers' own tests build them (their get_dummy_components),
with one difference: no tokenizer is downloaded. Each family's tokenizer is trained here
with the `tokenizers` library on a few captions and the family's prompt templates, then
wrapped in the transformers class the pipeline expects (Qwen2 byte-level BPE for the Qwen
text encoders, Gemma BPE with byte fallback for SANA), and the text encoders' vocabularies
are sized to it, so every model stays a few hundred kilobytes and a step takes
milliseconds on a CPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderDC,
    AutoencoderKL,
    AutoencoderKLFlux2,
    AutoencoderKLQwenImage,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Transformer2DModel,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
    SanaPipeline,
    SanaSprintPipeline,
    SanaTransformer2DModel,
    SCMScheduler,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import (
    Gemma2Config,
    Gemma2Model,
    GemmaTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3Model,
)

_CAPTIONS = [
    f"{size} {colour} {shape} on a {back} background"
    for size in ("a small", "a large", "the", "an old")
    for colour in ("red", "green", "blue", "yellow", "white")
    for shape in ("circle", "square", "star", "cat", "dog", "house")
    for back in ("white", "black", "grey")
]
# What the pipelines wrap prompts in: Qwen-Image's system template, the Qwen3 chat turns
# (Z-Image and FLUX.2 klein), SANA's default "complex human instruction".
_QWEN_IMAGE_SYSTEM = (
    "Describe the image by detailing the color, shape, size, texture, quantity, text, "
    "spatial relationships of the objects and background:"
)
_QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# A chat template of our own in the Qwen3 form: user turn, assistant turn, and an empty
# thinking block when thinking is off (what FLUX.2 klein asks for).
QWEN3_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)
# Qwen2's pre-tokenizer pattern (digits, letters, punctuation runs, spaces).
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _sana_instruction() -> list[str]:
    import inspect

    default = inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"]
    return list(default.default or [])


def _corpus() -> list[str]:
    return [*_CAPTIONS, _QWEN_IMAGE_SYSTEM, *_sana_instruction(), "user assistant system"] * 2


def _vocab_and_merges(tok: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


@cache
def _qwen_vocab() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=_QWEN_SPECIAL,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    vocab, merges = _vocab_and_merges(tok)
    return tuple(vocab.items()), tuple(merges)


def tiny_qwen_tokenizer() -> Qwen2Tokenizer:
    """A genuine Qwen2 tokenizer (byte-level BPE, Qwen's split pattern, chat template)."""
    vocab, merges = _qwen_vocab()
    tokenizer = Qwen2Tokenizer(vocab=dict(vocab), merges=list(merges))
    tokenizer.add_special_tokens({"additional_special_tokens": _QWEN_SPECIAL[1:]})
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    return tokenizer


@cache
def _gemma_vocab() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tok.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=[*specials, *(f"<0x{b:02X}>" for b in range(256))],
            show_progress=False,
        ),
    )
    vocab, merges = _vocab_and_merges(tok)
    return tuple(vocab.items()), tuple(merges)


def tiny_gemma_tokenizer() -> GemmaTokenizer:
    """A genuine Gemma tokenizer (BPE over "▁"-joined words with byte fallback)."""
    vocab, merges = _gemma_vocab()
    return GemmaTokenizer(vocab=dict(vocab), merges=list(merges))


def _vocab_size(tokenizer: Any) -> int:
    return len(tokenizer)


# bench=True: the transformer mid-sized (4 heads of 64, 4 layers), so that a step costs
# what the engine's per-step work is measured against in bench/engine_overhead.py.
BENCH_HEADS, BENCH_HEAD_DIM, BENCH_LAYERS = 4, 64, 4


# ----------------------------------------------------------------------------- families


def zimage_components(*, bench: bool = False) -> dict[str, Any]:
    """Z-Image: a single-stream DiT on 16-channel FLUX.1-style VAE latents, Qwen3 text."""
    heads, head_dim, layers = (BENCH_HEADS, BENCH_HEAD_DIM, BENCH_LAYERS) if bench else (2, 16, 2)
    torch.manual_seed(0)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=heads * head_dim,
        n_layers=layers,
        n_refiner_layers=1,
        n_heads=heads,
        n_kv_heads=heads,
        norm_eps=1e-5,
        qk_norm=True,
        cap_feat_dim=16,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[head_dim // 2, head_dim // 4, head_dim // 4],
        axes_lens=[256, 32, 32],
    )
    with torch.no_grad():  # created with torch.empty: fix them, as diffusers' tests do
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 8, 8],  # four levels: 8x down, as the real VAE
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )
    tokenizer = tiny_qwen_tokenizer()
    torch.manual_seed(0)
    text_encoder = Qwen3Model(
        Qwen3Config(
            hidden_size=16,
            intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
            vocab_size=_vocab_size(tokenizer),
            max_position_embeddings=1024,
        )
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
    }


def qwen_image_transformer(
    channels: int, heads: int, head_dim: int, layers: int
) -> QwenImageTransformer2DModel:
    """A tiny Qwen-Image MMDiT on `channels` VAE channels (packed 2 x 2), seeded."""
    torch.manual_seed(0)
    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=channels * 4,
        out_channels=channels,
        num_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(head_dim // 2, head_dim // 4, head_dim // 4),
    )


def qwen_image_vae(
    z_dim: int,
    dim_mult: list[int],
    blocks: int,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> AutoencoderKLQwenImage:
    """A tiny Wan 2.1 style video VAE, 8x down as the real one, seeded; mean and std: the
    latent statistics (0 and 1 when not given)."""
    torch.manual_seed(0)
    return AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=z_dim,
        dim_mult=dim_mult,
        num_res_blocks=blocks,
        temperal_downsample=[False, True, True],
        latents_mean=mean or [0.0] * z_dim,
        latents_std=std or [1.0] * z_dim,
    )


def qwen_image_components(*, bench: bool = False) -> dict[str, Any]:
    """Qwen-Image: an MMDiT on the 16-channel (here 4) video VAE latents, Qwen2.5-VL text."""
    heads, head_dim, layers = (BENCH_HEADS, BENCH_HEAD_DIM, BENCH_LAYERS) if bench else (3, 16, 2)
    transformer = qwen_image_transformer(4, heads, head_dim, layers)
    vae = qwen_image_vae(4, [1, 2, 2, 2], 1)
    tokenizer = tiny_qwen_tokenizer()
    torch.manual_seed(0)
    text_encoder = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(
            text_config={
                "hidden_size": 16,
                "intermediate_size": 16,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "rope_scaling": {
                    "mrope_section": [1, 1, 2],
                    "rope_type": "default",
                    "type": "default",
                },
                "rope_theta": 1000000.0,
                "vocab_size": _vocab_size(tokenizer),
                "bos_token_id": tokenizer.eos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
            },
            vision_config={
                "depth": 1,
                "hidden_size": 16,
                "intermediate_size": 16,
                "num_heads": 2,
                "out_hidden_size": 16,
            },
            hidden_size=16,
            vocab_size=_vocab_size(tokenizer),
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    ).eval()
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": FlowMatchEulerDiscreteScheduler(
            shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9
        ),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
    }


def _sana_parts(*, sprint: bool, bench: bool) -> dict[str, Any]:
    heads, head_dim, layers = (BENCH_HEADS, BENCH_HEAD_DIM, BENCH_LAYERS) if bench else (2, 4, 2)
    torch.manual_seed(0)
    transformer = SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=layers,  # at least two, so a cancel can land between them
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        num_cross_attention_heads=heads,
        cross_attention_head_dim=head_dim,
        cross_attention_dim=heads * head_dim,
        caption_channels=8,
        sample_size=32,
        qk_norm="rms_norm_across_heads" if sprint else None,
        guidance_embeds=sprint,
    )
    torch.manual_seed(0)
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        # Six stages, five of them halving: 32x down, as the real DC-AE f32c32.
        encoder_block_types=("ResBlock",) * 5 + ("EfficientViTBlock",),
        decoder_block_types=("ResBlock",) * 5 + ("EfficientViTBlock",),
        encoder_block_out_channels=(8,) * 6,
        decoder_block_out_channels=(8,) * 6,
        encoder_qkv_multiscales=((),) * 5 + ((5,),),
        decoder_qkv_multiscales=((),) * 5 + ((5,),),
        encoder_layers_per_block=(1,) * 6,
        decoder_layers_per_block=[1] * 6,
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    tokenizer = tiny_gemma_tokenizer()
    torch.manual_seed(0)
    text_encoder = Gemma2Model(
        Gemma2Config(
            head_dim=16,
            hidden_size=8,
            initializer_range=0.02,
            intermediate_size=16,
            max_position_embeddings=2048,
            num_attention_heads=2,
            num_hidden_layers=1,
            num_key_value_heads=2,
            vocab_size=_vocab_size(tokenizer),
            attn_implementation="eager",
        )
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
    }


def sana_components(*, bench: bool = False) -> dict[str, Any]:
    """SANA: a linear-attention DiT on the deep-compression autoencoder's latents, Gemma2 text."""
    # The released SANA models ship DPM-Solver++ in its flow-matching form.
    scheduler = DPMSolverMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    return _sana_parts(sprint=False, bench=bench) | {"scheduler": scheduler}


def sana_sprint_components(*, bench: bool = False) -> dict[str, Any]:
    """SANA-Sprint: SANA distilled to one to four steps with the sCM scheduler."""
    return _sana_parts(sprint=True, bench=bench) | {"scheduler": SCMScheduler()}


# klein reads the hidden states of layers 9, 18 and 27; a 28-layer encoder 16 wide is
# still tiny and needs no argument the real model does not.
FLUX2_TEXT_LAYERS = 28


def flux2_klein_components(*, distilled: bool = True, bench: bool = False) -> dict[str, Any]:
    """FLUX.2 klein: FLUX.2's transformer on its 2x2-packed latents, Qwen3 text."""
    heads, head_dim, layers = (BENCH_HEADS, BENCH_HEAD_DIM, 2) if bench else (2, 16, 1)
    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels x 2 x 2 (128 = 32 x 2 x 2 in the real model)
        num_layers=layers,
        num_single_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=16 * 3,
        timestep_guidance_channels=256,
        axes_dims_rope=[head_dim // 4] * 4,
        guidance_embeds=False,
    )
    tokenizer = tiny_qwen_tokenizer()
    torch.manual_seed(0)
    text_encoder = Qwen3ForCausalLM(
        Qwen3Config(
            hidden_size=16,
            intermediate_size=16,
            num_hidden_layers=FLUX2_TEXT_LAYERS,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
            vocab_size=_vocab_size(tokenizer),
            max_position_embeddings=1024,
        )
    )
    torch.manual_seed(0)
    vae = AutoencoderKLFlux2(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),  # 8x down, as the real VAE
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "transformer": transformer,
        "vae": vae,
        "is_distilled": distilled,
    }


# The text-to-image pipeline and components of each tiny family, by name.
FAMILIES: dict[str, tuple[type[DiffusionPipeline], Callable[..., dict[str, Any]]]] = {
    "zimage": (ZImagePipeline, zimage_components),
    "qwen-image": (QwenImagePipeline, qwen_image_components),
    "sana": (SanaPipeline, sana_components),
    "sana-sprint": (SanaSprintPipeline, sana_sprint_components),
    "flux2-klein": (Flux2KleinPipeline, flux2_klein_components),
    "flux2-klein-base": (
        Flux2KleinPipeline,
        lambda bench=False: flux2_klein_components(distilled=False, bench=bench),
    ),
}


def tiny_family_pipeline(name: str, *, bench: bool = False) -> DiffusionPipeline:
    """The tiny text-to-image pipeline of a family (see FAMILIES); bench: mid-sized."""
    cls, components = FAMILIES[name]
    pipe = cls(**components(bench=bench))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_family(name: str, folder: Path) -> Path:
    """Write a tiny family's diffusers folder (model_index.json, safetensors) to folder."""
    tiny_family_pipeline(name).save_pretrained(folder, safe_serialization=True)
    return folder
