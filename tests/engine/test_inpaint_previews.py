"""Inpaint previews are whole pictures in image coordinates, composited by the engine.

The window only shows them, so the engine must place an "only masked area" crop back at
its box, over the original, with the final composite's feathered alpha: the preview's
changed pixels lie inside the mask, and the final image keeps every pixel outside it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from engine_helpers import WAIT, box_mask, picture, request, tiny_autoencoder
from PIL import Image

from engine.api import Finished, Step
from engine.compositing import PreviewCompositor, final_composite, inpaint_setup

MASK_BOX = (44, 36, 58, 50)  # x1, y1, x2, y2: a small patch in the lower right


def changed(preview: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Where the preview differs from the original (H x W booleans)."""
    return (preview.astype(int) != original.astype(int)).any(axis=2)


def inside(box: tuple[int, int, int, int], image: Image.Image, preview: np.ndarray) -> np.ndarray:
    """Where `box` (image pixels) lies in the preview: every preview pixel it touches."""
    sx, sy = preview.shape[1] / image.width, preview.shape[0] / image.height
    x1, y1 = math.floor(box[0] * sx), math.floor(box[1] * sy)
    x2, y2 = math.ceil(box[2] * sx), math.ceil(box[3] * sy)
    where = np.zeros(preview.shape[:2], bool)
    where[y1:y2, x1:x2] = True
    return where


def original_at(image: Image.Image, preview: np.ndarray) -> np.ndarray:
    size = (preview.shape[1], preview.shape[0])
    return np.asarray(image.resize(size, Image.Resampling.BOX))


def check_whole_picture(preview: np.ndarray, image: Image.Image) -> None:
    """The request's aspect ratio, at most the cap, never larger than the picture."""
    height, width = preview.shape[:2]
    assert preview.dtype == np.uint8 and preview.shape[2] == 3
    assert width <= image.width and height <= image.height and max(width, height) <= 512
    assert abs(width / height - image.width / image.height) < 0.2


@pytest.fixture
def with_taesd(tiny_models):
    base = tiny_models.get("tiny", lambda *_: None, lambda: False)
    tiny_models.variants["tiny-taesd"] = dataclasses.replace(base, tiny_vae=tiny_autoencoder())
    return "tiny-taesd"


@pytest.mark.parametrize("size", [(64, 64), (96, 64)])
@pytest.mark.parametrize("decoder", ["linear", "tiny autoencoder"])
def test_only_masked_previews_change_only_the_masked_area(
    engine, recorder, with_taesd, decoder, size
):
    init, mask = picture(size), box_mask(size, MASK_BOX)
    r = request(
        model=with_taesd if decoder == "tiny autoencoder" else "tiny",
        steps=3,
        width=size[0],
        height=size[1],
        init_image=init,
        mask=mask,
        mask_blur=2,
        strength=1.0,
        inpaint_only_masked=True,
        inpaint_padding=4,
    )
    result = engine.generate(r, WAIT)
    assert isinstance(result, Finished), result
    steps = recorder.of(result.job_id, Step)
    previews = [*result.step_previews, *result.noisy_step_previews]
    previews += [s.preview for s in steps] + [s.noisy_preview for s in steps]
    assert len(previews) == 12
    for preview in previews:
        check_whole_picture(preview, init)
        moved = changed(preview, original_at(init, preview))
        assert moved.any(), "the preview shows what is painted"
        assert not (moved & ~inside(MASK_BOX, init, preview)).any(), (
            "a preview pixel outside the mask's bounding box changed"
        )
    if decoder == "tiny autoencoder":  # decoded at the crop's full size: the picture's
        assert all(p.shape == (size[1], size[0], 3) for p in previews)
    original = np.asarray(init)
    final = np.asarray(result.images[0])
    outside = np.asarray(mask) <= 127
    np.testing.assert_array_equal(final[outside], original[outside])


def test_whole_picture_inpaint_previews_keep_the_original_outside_the_mask(engine):
    init, mask = picture((64, 64)), box_mask((64, 64), MASK_BOX)
    r = request(steps=2, width=64, height=64, init_image=init, mask=mask, strength=1.0)
    result = engine.generate(r, WAIT)
    assert isinstance(result, Finished), result
    for preview in (*result.step_previews, *result.noisy_step_previews):
        assert preview.shape == (8, 8, 3)  # a linear preview of the whole picture: latent size
        moved = changed(preview, original_at(init, preview))
        assert not (moved & ~inside(MASK_BOX, init, preview)).any()


def test_previews_use_the_final_composites_feathered_alpha():
    """A preview that equals the generated image composites exactly as the final image."""
    size = (64, 48)
    init, mask = picture(size), box_mask(size, (10, 8, 40, 30))
    setup = inpaint_setup(init, mask, blur=4)
    generated = np.full((size[1], size[0], 3), 255, np.uint8)
    preview = PreviewCompositor(setup, max_side=512)(generated)
    final = final_composite(setup, Image.fromarray(generated))
    np.testing.assert_array_equal(preview, np.asarray(final))
    alpha = setup.alpha
    assert 0 < alpha[19, 25] <= 1 and alpha[8, 10] < alpha[19, 25]  # feathered inward
    assert (alpha[np.asarray(mask) <= 127] == 0).all()


def test_a_crop_preview_is_pasted_at_its_box_and_scaled_to_the_cap():
    size = (1024, 512)
    init = Image.new("RGB", size, (10, 20, 30))
    mask = box_mask(size, (600, 200, 700, 300))
    setup = dataclasses.replace(inpaint_setup(init, mask, blur=0), crop=(512, 128, 768, 384))
    compositor = PreviewCompositor(setup, max_side=512)
    # A latent-sized preview of the 256-pixel crop: the picture at an eighth of its size.
    assert compositor.canvas_size((32, 32)) == (128, 64)
    assert compositor(np.zeros((32, 32, 3), np.uint8)).shape == (64, 128, 3)
    crop_preview = np.full((256, 256, 3), 200, np.uint8)  # the crop at full detail
    assert compositor.canvas_size((256, 256)) == (512, 256)  # capped
    out = compositor(crop_preview)
    assert out.shape == (256, 512, 3)
    moved = changed(out, np.asarray(init.resize((512, 256))))
    ys, xs = np.nonzero(moved)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (300, 100, 350, 150)
    assert (out[120, 320] == 200).all()  # deep inside the mask: the painted colour
