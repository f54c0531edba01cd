"""Text-to-image, image-to-image and inpainting through the engine with tiny models."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import TINY, TINY_INPAINT, TINY_SDXL, WAIT, box_mask, picture, request

from engine.api import (
    EventKind,
    Finished,
    ModelLoading,
    Queued,
    Started,
    Step,
)
from engine.families.sd1 import SD_SAMPLERS


def test_text_to_image_events_in_order(engine, recorder):
    job = engine.submit(request(steps=3))
    result = engine.wait(job, WAIT)
    assert isinstance(result, Finished), result
    kinds = [e.kind for e in recorder.of(job)]
    assert kinds[0] == EventKind.QUEUED
    assert EventKind.MODEL_LOADING in kinds
    started = kinds.index(EventKind.STARTED)
    assert kinds[started + 1 : started + 4] == [EventKind.STEP] * 3
    assert kinds[-1] == EventKind.FINISHED
    assert recorder.of(job, Queued)[0].position == 0
    assert all(0 <= e.progress <= 1 for e in recorder.of(job, ModelLoading))
    assert recorder.of(job, Started)[0].seeds == (1,)
    assert result.images[0].size == (32, 32)
    assert result.seeds == (1,)
    assert result.request.seed == 1
    assert set(result.timings) == {"load", "sampling", "decode", "previews", "total"}
    assert len(result.step_previews) == len(result.noisy_step_previews) == 3


def test_image_to_image_runs_strength_share_of_steps(engine, recorder):
    init = picture()
    result = engine.generate(request(steps=4, init_image=init, strength=0.5), WAIT)
    assert isinstance(result, Finished), result
    steps = recorder.of(result.job_id, Step)
    assert [s.step for s in steps] == [1, 2]
    assert all(s.total == 2 for s in steps)
    assert result.images[0].size == init.size


@pytest.mark.parametrize("name", [s.value for s in SD_SAMPLERS])
def test_every_scheduler_runs(engine, name):
    result = engine.generate(request(scheduler=name, steps=2), WAIT)
    assert isinstance(result, Finished), result
    assert np.asarray(result.images[0]).std() > 0


@pytest.mark.parametrize("model", [TINY, TINY_INPAINT])
@pytest.mark.parametrize("only_masked", [False, True])
def test_inpaint_keeps_outside_pixels_exactly(engine, model, only_masked):
    size = (64, 48)
    init, mask = picture(size), box_mask(size, (37, 9, 50, 22))
    r = request(
        model=model,
        width=size[0],
        height=size[1],
        init_image=init,
        mask=mask,
        strength=1.0,
        inpaint_only_masked=only_masked,
        inpaint_padding=4,
    )
    result = engine.generate(r, WAIT)
    assert isinstance(result, Finished), result
    out, orig = np.asarray(result.images[0]), np.asarray(init)
    inside = np.asarray(mask) > 127
    assert out.shape == orig.shape
    np.testing.assert_array_equal(out[~inside], orig[~inside])
    assert np.abs(out[inside].astype(int) - orig[inside]).mean() > 5  # it did repaint
    preview = result.step_previews[-1]
    assert preview.dtype == np.uint8 and preview.ndim == 3 and preview.shape[2] == 3


def test_text_to_image_with_an_inpainting_unet(engine):
    result = engine.generate(request(model=TINY_INPAINT), WAIT)
    assert isinstance(result, Finished), result
    assert result.images[0].size == (32, 32)


def test_model_is_loaded_once_and_reused(engine, tiny_models):
    before = len(tiny_models.loads)
    for _ in range(2):
        assert isinstance(engine.generate(request(steps=1), WAIT), Finished)
    assert tiny_models.loads[before:] == [TINY, TINY]  # the stand-in counts get() calls
    assert engine._runner._base is tiny_models._built[TINY].pipe


def test_sdxl_text_image_and_inpaint(engine):
    first = engine.generate(request(model=TINY_SDXL, steps=2), WAIT)
    assert isinstance(first, Finished), first
    assert first.images[0].size == (32, 32)
    init, mask = picture(), box_mask()
    img2img = engine.generate(request(model=TINY_SDXL, init_image=init, steps=2), WAIT)
    assert isinstance(img2img, Finished), img2img
    r = request(model=TINY_SDXL, init_image=init, mask=mask, steps=2, strength=1.0)
    inpaint = engine.generate(r, WAIT)
    assert isinstance(inpaint, Finished), inpaint
    outside = np.asarray(mask) <= 127
    out = np.asarray(inpaint.images[0])
    np.testing.assert_array_equal(out[outside], np.asarray(init)[outside])
