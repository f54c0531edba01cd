"""Another pipeline class over a bfloat16 model leaves every component in its own dtype
(diffusers' from_pipe alone casts the shared components to float32)."""

from __future__ import annotations

import torch
from diffusers import (
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
)
from tiny_models import tiny_components

from engine import pipe_reuse


def bf16_pipeline(tmp_path) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(**tiny_components(tmp_path), requires_safety_checker=False)
    pipe.unet.to(torch.bfloat16)
    pipe.vae.to(torch.bfloat16)
    return pipe  # the text encoder stays float32: a model of mixed dtypes


def test_the_shared_components_keep_their_dtypes_and_values(tmp_path):
    pipe = bf16_pipeline(tmp_path)
    weight = pipe.unet.conv_in.weight.detach().clone()
    for cls in (StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline):
        new = pipe_reuse.from_pipe(cls, pipe, torch.bfloat16)
        assert new.unet is pipe.unet
    assert pipe.unet.dtype == pipe.vae.dtype == torch.bfloat16
    assert pipe.text_encoder.dtype == torch.float32
    assert torch.equal(pipe.unet.conv_in.weight, weight)


def test_diffusers_own_from_pipe_would_have_cast_them(tmp_path):
    pipe = bf16_pipeline(tmp_path)
    StableDiffusionImg2ImgPipeline.from_pipe(pipe)
    assert pipe.unet.dtype == torch.float32  # why engine/pipe_reuse.py exists
