"""Regional prompts: each region's tokens are read only inside its mask, at every layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from engine_helpers import TINY_SDXL, WAIT, box_mask, picture, request
from PIL import Image, ImageDraw

from engine import region_check
from engine.api import ErrorKind, Failed, Finished, RegionPrompt, Step
from engine.regions import REGION_BIAS, RegionalAttention, _grid, latent_masks


def left_half(size: int = 32) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (0, 0, size // 2, size))
    return mask


def test_a_region_is_found_at_every_resolution_of_the_unet():
    assert [_grid((16, 12), n) for n in (192, 48, 12, 4)] == [(16, 12), (8, 6), (4, 3), (2, 2)]
    assert _grid((9, 7), 20) == (5, 4)  # odd sizes round up, as strided convolutions do


def test_region_tokens_are_open_inside_the_mask_and_shut_outside():
    masks = latent_masks((RegionPrompt("a", left_half()),), (4, 4))
    processor = RegionalAttention(masks, [(3, 5)], tokens=5)
    bias = processor.bias(16, torch.float32, torch.device("cpu")).reshape(4, 4, 5)
    assert (bias[..., :3] == 0).all()  # the base prompt: everywhere
    assert (bias[:, :2, 3:] == REGION_BIAS).all()
    assert torch.isinf(bias[:, 2:, 3:]).all()
    coarse = processor.bias(1, torch.float32, torch.device("cpu"))  # 1 cell: its best cell
    assert (coarse[0, 3:] == REGION_BIAS).all()


def test_outside_its_region_a_layer_gives_exactly_the_base_prompts_attention():
    torch.manual_seed(0)
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4)
    hidden = torch.randn(2, 16, 8)  # a 4x4 layer
    base, region = torch.randn(2, 3, 6), torch.randn(2, 2, 6)
    masks = latent_masks((RegionPrompt("a", left_half()),), (4, 4))
    regional = RegionalAttention(masks, [(3, 5)], tokens=5)
    out = regional(attn, hidden, torch.cat([base, region], dim=1)).reshape(2, 4, 4, 8)
    plain = AttnProcessor2_0()(attn, hidden, base).reshape(2, 4, 4, 8)
    torch.testing.assert_close(out[:, :, 2:], plain[:, :, 2:])
    assert not torch.allclose(out[:, :, :2], plain[:, :, :2])


def test_regions_run_through_the_pipeline_with_previews(engine, recorder):
    regions = (RegionPrompt("a red circle", left_half()),)
    result = engine.generate(request(steps=3, prompt="a photo", regions=regions), WAIT)
    assert isinstance(result, Finished), result
    assert len(recorder.of(result.job_id, Step)) == 3
    plain = engine.generate(request(steps=3, prompt="a photo"), WAIT)
    a, b = (np.asarray(x.images[0], dtype=np.int16) for x in (result, plain))
    assert np.abs(a - b).max() > 0


def test_the_model_is_unchanged_after_a_regional_job(engine, control_models):
    before = engine.generate(request(steps=2), WAIT)
    regions = (RegionPrompt("a blue square", left_half()),)
    assert isinstance(engine.generate(request(steps=2, regions=regions), WAIT), Finished)
    after = engine.generate(request(steps=2), WAIT)
    np.testing.assert_array_equal(np.asarray(before.images[0]), np.asarray(after.images[0]))
    unet = engine._runner._base.unet
    assert not any(isinstance(p, RegionalAttention) for p in unet.attn_processors.values())


@pytest.mark.parametrize("mode", ["sdxl", "inpaint-only-masked"])
def test_regions_work_for_sdxl_and_a_masked_crop(engine, mode):
    regions = (RegionPrompt("a red circle", left_half()),)
    if mode == "sdxl":
        r = request(model=TINY_SDXL, steps=2, regions=regions)
    else:
        r = request(steps=4, init_image=picture(), mask=box_mask(), inpaint_only_masked=True,
                    inpaint_padding=4, regions=regions)  # fmt: skip
    assert isinstance(engine.generate(r, WAIT), Finished)


def test_bad_regions_are_named(engine):
    regions = (
        RegionPrompt("", left_half()),
        RegionPrompt("a cat", Image.new("L", (32, 32), 0)),
        RegionPrompt("a dog", left_half(64)),
    )
    result = engine.generate(request(regions=regions), WAIT)
    assert isinstance(result, Failed) and result.error is ErrorKind.BAD_INPUT
    for words in ("Region 1 has no prompt", "region 2's mask is empty", "region 3's mask is 64x64"):
        assert words in result.message


def test_the_detector_reads_colour_centroids():
    picture = Image.new("RGB", (128, 128), "white")
    draw = ImageDraw.Draw(picture)
    draw.ellipse((10, 40, 50, 80), fill=(220, 30, 30))
    draw.rectangle((80, 40, 120, 80), fill=(30, 60, 220))
    found = region_check.placement(picture)
    assert found.correct and found.red_x < 0.3 and found.blue_x > 0.7
    swapped = region_check.placement(picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert not swapped.correct
    assert region_check.placement(Image.new("RGB", (128, 128), "white")).red_x is None
