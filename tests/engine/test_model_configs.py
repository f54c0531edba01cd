"""The model configs shipped in engine/model_configs/ describe the real models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


PUBLISHED_SIZES = {
    "sd1": (859_520_964, 83_653_863, 123_060_480, None),
    "sd2": (865_910_724, 83_653_863, 340_387_840, None),
    "sdxl": (2_567_463_684, 83_653_863, 123_060_480, 694_659_840),
}


DIFFUSERS_MODEL_TYPE = {"sd1": "v1", "sd2": "v2", "sdxl": "xl_base"}


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_shipped_configs_describe_the_real_models(family: str) -> None:
    """Full-size models built on the meta device (no memory) from engine/model_configs:
    their sizes are the published ones, and their original-layout keys are recognised
    both by diffusers' own detector and by ours."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from ldm_checkpoint import clip_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.resources import model_configs_dir
    from engine.single_file import inspect_checkpoint

    folder = model_configs_dir() / family
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        text_2 = (
            CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
            if family == "sdxl"
            else None
        )

    def size(module: torch.nn.Module | None) -> int | None:
        return None if module is None else sum(p.numel() for p in module.parameters())

    assert (size(unet), size(vae), size(text), size(text_2)) == PUBLISHED_SIZES[family]

    state = unet_to_ldm(unet.state_dict(), dict(unet.config))
    state.update(vae_to_ldm(vae.state_dict(), dict(vae.config)))
    if family == "sd1":
        state.update(clip_to_ldm(text.state_dict(), "cond_stage_model.transformer."))
    elif family == "sd2":
        state.update(open_clip_to_ldm(text.state_dict(), "cond_stage_model.model."))
    else:
        state.update(clip_to_ldm(text.state_dict(), "conditioner.embedders.0.transformer."))
        state.update(open_clip_to_ldm(text_2.state_dict(), "conditioner.embedders.1.model."))
    assert infer_diffusers_model_type(state) == DIFFUSERS_MODEL_TYPE[family]
    spec = inspect_checkpoint(state, Path("model.safetensors"))
    assert (spec.family, spec.in_channels) == (family, 4)


@pytest.mark.parametrize(("family", "pad_id"), [("sd1", 49407), ("sd2", 0), ("sdxl", 49407)])
def test_shipped_clip_tokenizer(family: str, pad_id: int) -> None:
    from engine.resources import model_configs_dir
    from engine.single_file import _tokenizer

    tokenizer = _tokenizer(model_configs_dir() / family, "tokenizer")
    assert len(tokenizer) == 49408
    ids = tokenizer("a photo of an astronaut riding a horse", padding="max_length").input_ids
    # The ids CLIP itself gives this sentence.
    assert ids[:10] == [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert len(ids) == 77 and ids[-1] == pad_id
    if family == "sdxl":
        assert _tokenizer(model_configs_dir() / family, "tokenizer_2").pad_token_id == 0
