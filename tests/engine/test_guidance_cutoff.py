"""Guidance cut-off: guidance stops after a fraction of the steps, inside the engine's
step callback, for batches, SDXL, inpainting UNets and resumed runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from diffusers.callbacks import SDCFGCutoffCallback
from engine_helpers import TINY, TINY_INPAINT, TINY_SDXL, WAIT, box_mask, picture, request

from engine import metadata, validation
from engine.api import EngineError, Failed, Finished, ResumeFrom, Step
from engine.guidance_cutoff import GuidanceCutoff, last_guided_step
from engine.schedulers import make_scheduler


@contextmanager
def unet_batches(tiny_models, source: str) -> Iterator[list[int]]:
    """The batch of every UNet call while the block runs."""
    unet = tiny_models.get(source, lambda *_: None, lambda: False).pipe.unet
    seen: list[int] = []
    handle = unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    try:
        yield seen
    finally:
        handle.remove()


def as_int(image) -> np.ndarray:
    return np.asarray(image).astype(int)


def test_the_cut_off_step_follows_diffusers_rule() -> None:
    assert last_guided_step(20, 0.4) == 8  # steps 0..8 guided, 9..19 not
    assert last_guided_step(10, 0.0) == 0
    assert last_guided_step(10, 1.0) == 10  # never reached: guided throughout
    assert GuidanceCutoff(None, 10).tensor_inputs(object()) == []
    assert GuidanceCutoff(1.0, 10).last_guided is None  # the window's "off"
    assert not GuidanceCutoff(0.5, 10, done=6).guided_from_start
    assert GuidanceCutoff(0.5, 10, done=5).guided_from_start


def test_guidance_stops_after_the_fraction_for_every_image_of_a_batch(engine, tiny_models):
    with unet_batches(tiny_models, TINY) as batches:
        cut = engine.generate(request(steps=10, batch_size=2, guidance_cutoff=0.5), WAIT)
    assert isinstance(cut, Finished), cut
    assert batches == [4] * 6 + [2] * 4  # steps 0..5 guided (2 x 2 images), then 2 images
    assert len(cut.images) == 2 and len(cut.step_previews) == 10
    assert cut.request.guidance_cutoff == 0.5
    full = engine.generate(request(steps=10, batch_size=2), WAIT)
    # Each image of the batch is the image its seed makes alone with the same cut-off.
    for i in range(2):
        alone = engine.generate(request(steps=10, seed=1 + i, guidance_cutoff=0.5), WAIT)
        assert np.abs(as_int(alone.images[0]) - as_int(cut.images[i])).max() <= 2
    assert any(
        not np.array_equal(as_int(a), as_int(b))
        for a, b in zip(full.images, cut.images, strict=True)
    )


def test_matches_diffusers_own_cutoff_callback(tiny_models, engine):
    ours = engine.generate(request(steps=6, scheduler="Euler", guidance_cutoff=0.5, seed=5), WAIT)
    pipe = tiny_models.get(TINY, lambda *_: None, lambda: False).pipe
    pipe.scheduler = make_scheduler("Euler", pipe.scheduler.config)
    theirs = pipe(
        "a red circle",
        num_inference_steps=6,
        guidance_scale=3.0,
        width=32,
        height=32,
        generator=[torch.Generator("cpu").manual_seed(5)],
        callback_on_step_end=SDCFGCutoffCallback(cutoff_step_ratio=0.5),
        callback_on_step_end_tensor_inputs=["prompt_embeds"],
    ).images[0]
    assert np.abs(as_int(ours.images[0]) - as_int(theirs)).max() <= 2


@pytest.mark.parametrize(
    "source, extra",
    [
        (TINY_SDXL, {}),
        (TINY_INPAINT, {}),
        (TINY, {"init_image": "picture", "mask": "mask", "strength": 1.0}),
        (TINY_SDXL, {"init_image": "picture", "mask": "mask", "strength": 1.0}),
        (TINY, {"init_image": "picture", "strength": 0.6}),
    ],
    ids=["sdxl", "9-channel-inpaint", "inpaint", "sdxl-inpaint", "img2img"],
)
def test_cut_off_works_for_sdxl_inpainting_and_image_to_image(engine, tiny_models, source, extra):
    values = {"picture": picture(), "mask": box_mask()}
    changes = {k: values.get(v, v) if isinstance(v, str) else v for k, v in extra.items()}
    job = request(model=source, steps=6, batch_size=2, guidance_cutoff=0.3, **changes)
    with unet_batches(tiny_models, source) as batches:
        result = engine.generate(job, WAIT)
    assert isinstance(result, Finished), result
    run = len(result.step_previews)  # image-to-image runs fewer steps
    guided = last_guided_step(run, 0.3) + 1
    assert batches == [4] * guided + [2] * (run - guided)
    if "mask" in changes:
        outside = np.asarray(changes["mask"]) <= 127
        for image in result.images:
            np.testing.assert_array_equal(
                np.asarray(image)[outside], np.asarray(changes["init_image"])[outside]
            )


def test_resume_past_the_cut_off_reproduces_the_run_unguided(engine, tiny_models, recorder):
    source = engine.generate(request(steps=8, scheduler="Euler", guidance_cutoff=0.25), WAIT)
    assert isinstance(source, Finished), source
    for k in (1, 5):  # before and after the cut-off (steps 0..2 guided)
        with unet_batches(tiny_models, TINY) as batches:
            resumed = engine.generate(
                request(guidance_cutoff=0.25, resume=ResumeFrom(source.job_id, k)), WAIT
            )
        assert isinstance(resumed, Finished), resumed
        assert [s.step for s in recorder.of(resumed.job_id, Step)] == list(range(k + 1, 9))
        assert batches == [2 if i <= 2 else 1 for i in range(k, 8)]
        assert np.abs(as_int(source.images[0]) - as_int(resumed.images[0])).max() <= 2


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "half", True])
def test_a_cut_off_outside_0_to_1_is_refused_with_a_sentence(engine, bad):
    problems = validation.problems(request(guidance_cutoff=bad))
    assert len(problems) == 1 and "guidance cut-off" in problems[0]
    failed = engine.generate(request(guidance_cutoff=bad), WAIT)
    assert isinstance(failed, Failed) and "from 0 to 1" in failed.message
    with pytest.raises(EngineError):
        validation.check_request(request(guidance_cutoff=bad))


def test_the_cut_off_is_written_into_png_metadata_and_read_back(tmp_path):
    job = request(guidance_cutoff=0.4)
    text = metadata.format_a1111(job, 7)
    assert "Guidance cutoff: 0.4" in text
    assert metadata.parse_a1111(text).guidance_cutoff == 0.4
    path = metadata.save_png(picture(), tmp_path / "a.png", job, 7)
    assert metadata.read_parameters(path).guidance_cutoff == 0.4
    assert "Guidance cutoff" not in metadata.format_a1111(request(), 7)
    assert "Guidance cutoff" not in metadata.format_a1111(request(guidance_cutoff=1.0), 7)
    assert (
        metadata.from_record('{"prompt": "x", "guidance_cutoff": "junk"}').guidance_cutoff is None
    )
