"""The tiny Z-Image, Qwen-Image, SANA, SANA-Sprint and FLUX.2 klein models run in plain
diffusers, in every mode diffusers has a pipeline for, and survive a save and load."""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image
from tiny_new_families import (
    FAMILIES,
    save_tiny_family,
    tiny_family_pipeline,
    tiny_gemma_tokenizer,
    tiny_qwen_tokenizer,
)

# Each family's pipelines besides text-to-image, as diffusers 0.42 has them.
OTHER_MODES = {
    "zimage": ["ZImageImg2ImgPipeline", "ZImageInpaintPipeline"],
    "qwen-image": ["QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline"],
    "sana": [],
    "sana-sprint": ["SanaSprintImg2ImgPipeline"],
    "flux2-klein": ["Flux2KleinInpaintPipeline"],
    "flux2-klein-base": ["Flux2KleinInpaintPipeline"],
}


def _call(pipe: diffusers.DiffusionPipeline, name: str, **kwargs: object) -> np.ndarray:
    if name.startswith("sana"):
        kwargs["use_resolution_binning"] = False
    return pipe(
        prompt="a red circle on a white background",
        num_inference_steps=2,
        width=64,
        height=64,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        **kwargs,
    ).images


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_tiny_family_makes_a_picture_in_every_mode_diffusers_offers(name: str) -> None:
    pipe = tiny_family_pipeline(name)
    image = _call(pipe, name)
    assert image.shape == (1, 64, 64, 3)
    assert np.isfinite(image).all() and image.std() > 0.01
    init = Image.fromarray((image[0] * 255).astype(np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    for cls_name in OTHER_MODES[name]:
        other = getattr(diffusers, cls_name).from_pipe(pipe)
        extra: dict[str, object] = {"image": init, "strength": 0.6}
        if "Inpaint" in cls_name:
            extra["mask_image"] = mask
        out = _call(other, name, **extra)
        assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all(), cls_name


@pytest.mark.parametrize("name", ["zimage", "sana", "flux2-klein"])
def test_a_saved_tiny_family_loads_back_and_makes_the_same_picture(
    name: str, tmp_path: Path
) -> None:
    folder = save_tiny_family(name, tmp_path / name)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == FAMILIES[name][0].__name__
    loaded = diffusers.DiffusionPipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is FAMILIES[name][0]
    np.testing.assert_array_equal(_call(loaded, name), _call(tiny_family_pipeline(name), name))


def test_the_tiny_qwen_tokenizer_splits_the_chat_template_into_its_special_tokens() -> None:
    tokenizer = tiny_qwen_tokenizer()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a red circle"}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    ids = tokenizer(text).input_ids
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") in ids
    assert tokenizer.decode(ids) == text
    assert len(tokenizer) < 512


def test_the_tiny_gemma_tokenizer_round_trips_text_it_never_saw() -> None:
    tokenizer = tiny_gemma_tokenizer()
    text = "a purple Zebra, 42 ü"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id not in ids  # byte fallback, never <unk>
