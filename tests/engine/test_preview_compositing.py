"""The fast paths of step previews give the pixels of the plain formulas: the linear
latent-to-RGB map (one matrix product), the map on packed latents before unpacking, and
the inpaint preview compositor (only the pixels the mask reaches are scaled and written)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine import compositing, families
from engine.api import ModelFamily
from engine.preview import LatentRGB, PackedLatentRGB, Previewer


def _reference_rgb(latents: np.ndarray, factors: np.ndarray, bias: np.ndarray) -> np.ndarray:
    rgb = np.einsum("chw,cr->hwr", latents, factors) + bias
    return np.clip((rgb + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("channels", "height", "width"), [(4, 8, 8), (16, 24, 40), (32, 5, 7)])
def test_the_linear_map_equals_the_per_pixel_sum_over_channels(
    channels: int, height: int, width: int
) -> None:
    rng = np.random.default_rng(channels)
    factors = rng.normal(0, 0.3, (channels, 3)).astype(np.float32)
    bias = rng.normal(0, 0.1, 3).astype(np.float32)
    latents = rng.normal(0, 1, (channels, height, width)).astype(np.float32)
    rgb = LatentRGB((factors.tolist(), bias.tolist()))(latents)
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
    # Float sums in another order may round a value across a grey level, no further.
    assert np.abs(rgb.astype(int) - _reference_rgb(latents, factors, bias)).max() <= 1


def test_the_linear_map_uses_only_the_channels_it_has_factors_for() -> None:
    factors = [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]
    latents = np.zeros((3, 2, 2), np.float32)
    latents[2] = 100.0  # a channel beyond the factors changes nothing
    assert (LatentRGB((factors, [0.0, 0.0, 0.0]))(latents) == 128).all()


@pytest.mark.parametrize(
    ("family", "channels", "factor_rows", "width", "height"),
    [
        (ModelFamily.FLUX1, 16, 16, 96, 64),  # FLUX.1's 2 x 2 patches of 16 channels
        (ModelFamily.QWEN_IMAGE, 16, 16, 48, 80),
        (ModelFamily.FLUX2, 32, 32, 64, 32),  # klein: 128-wide tokens on the 1/16 grid
        (ModelFamily.FLUX1, 16, 12, 32, 32),  # fewer factors than channels: the first ones
        (ModelFamily.FLUX1, 8, 16, 32, 48),  # more factors than channels
    ],
)
def test_colours_mapped_before_unpacking_equal_the_map_on_the_unpacked_latents(
    family: ModelFamily, channels: int, factor_rows: int, width: int, height: int
) -> None:
    unpack = families.profile(family).unpack
    assert unpack is not None
    rng = np.random.default_rng(channels + factor_rows)
    factors = (rng.normal(0, 0.3, (factor_rows, 3)).tolist(), rng.normal(0, 0.1, 3).tolist())
    tokens = rng.normal(0, 1, ((height // 16) * (width // 16), 4 * channels)).astype(np.float32)

    def bound(latents: np.ndarray) -> np.ndarray:
        return unpack(latents, width, height)

    rgb = PackedLatentRGB(factors, bound)(tokens)
    expected = LatentRGB(factors)(bound(tokens))
    assert rgb.shape == expected.shape == (height // 8, width // 8, 3)
    assert np.abs(rgb.astype(int) - expected.astype(int)).max() <= 1  # float sums' order


def test_previews_of_packed_latents_are_those_of_the_unpacked_latents() -> None:
    import torch

    unpack = families.profile(ModelFamily.FLUX1).unpack
    assert unpack is not None
    width, height = 64, 96
    previewer = Previewer(families.profile(ModelFamily.FLUX1).latent_rgb, None,
                          lambda latents: unpack(latents, width, height))  # fmt: skip
    packed = torch.randn(
        2, (width // 16) * (height // 16), 64, generator=torch.Generator().manual_seed(3)
    )
    linear = previewer.linear
    first = unpack(packed[0].numpy(), width, height)
    for rgb in (previewer.noisy(packed[0].numpy()), previewer.x0(packed, 1.0)):
        assert rgb.shape == (height // 8, width // 8, 3)
        assert np.abs(rgb.astype(int) - linear(first).astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("size", "blur", "crop", "preview"),
    [
        ((96, 64), 6, None, (12, 8)),
        ((640, 640), 12, None, (80, 80)),
        ((640, 384), 0, (256, 64, 512, 320), (32, 32)),
        ((640, 384), 5, (200, 64, 456, 320), (256, 256)),
        ((200, 120), 3, None, (200, 120)),  # a preview at the picture's size: no scaling
        ((512, 512), 0, None, (64, 64)),  # a hard-edged box: the reach painted outright
    ],
)
def test_inpaint_previews_equal_blending_the_whole_box_through_the_alpha(
    size: tuple[int, int], blur: int, crop: tuple[int, int, int, int] | None,
    preview: tuple[int, int],
) -> None:  # fmt: skip
    rng = np.random.default_rng(blur)
    original = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    mask = Image.new("L", size, 0)
    mask.paste(255, (size[0] // 3, size[1] // 4, 2 * size[0] // 3 + 5, 3 * size[1] // 4))
    _check_inpaint_preview(original, mask, blur, crop, preview, rng)


@pytest.mark.parametrize(("blur", "preview"), [(0, (32, 32)), (8, (64, 64)), (3, (512, 512))])
def test_inpaint_previews_of_a_round_mask_keep_every_pixel_outside_it(
    blur: int, preview: tuple[int, int]
) -> None:
    """A disc leaves a fifth of its bounding box unpainted: those pixels are put back."""
    rng = np.random.default_rng(blur + 1)
    size = (512, 512)
    original = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse((100, 140, 420, 400), fill=255)
    _check_inpaint_preview(original, mask, blur, None, preview, rng)


def _check_inpaint_preview(
    original: Image.Image, mask: Image.Image, blur: int,
    crop: tuple[int, int, int, int] | None, preview: tuple[int, int], rng: np.random.Generator,
) -> None:  # fmt: skip
    size = original.size
    setup = compositing.inpaint_setup(original, mask, blur)
    if crop is not None:
        setup = dataclasses.replace(setup, crop=crop)
    compositor = compositing.PreviewCompositor(setup, max_side=512)
    rgb = rng.integers(0, 256, (preview[1], preview[0], 3), dtype=np.uint8)
    out = compositor(rgb)

    # The plain formula: the scaled original, with the whole box blended in floats.
    width, height = compositor.canvas_size(preview)
    kept = np.asarray(original.resize((width, height), Image.Resampling.BOX))
    alpha_image = Image.fromarray(setup.alpha.astype(np.float32), mode="F")
    alpha = np.asarray(alpha_image.resize((width, height), Image.Resampling.BOX), np.float32)
    x1, y1, x2, y2 = crop or (0, 0, *size)
    sx, sy = width / size[0], height / size[1]
    box = (round(x1 * sx), round(y1 * sy), max(1, round(x2 * sx)), max(1, round(y2 * sy)))
    painted = np.asarray(
        Image.fromarray(rgb).resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.BILINEAR)
    ) if (box[2] - box[0], box[3] - box[1]) != preview else rgb  # fmt: skip
    expected = kept.copy()
    region = (slice(box[1], box[3]), slice(box[0], box[2]))
    expected[region] = compositing.blend(kept[region], painted, alpha[region])
    outside = alpha == 0
    np.testing.assert_array_equal(out[outside], kept[outside])  # the original, exactly
    # Scaling only the part the mask reaches may round a pixel across a grey level.
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= (0 if painted is rgb else 1)
    assert 0 < (alpha > 0).mean() < 1
    if blur:  # the feathered ring is there, and was blended
        assert ((alpha > 0) & (alpha < 1)).any()
