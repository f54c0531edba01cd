"""Z-Image, Qwen-Image, SANA / SANA-Sprint and FLUX.2 klein through the engine, in every
mode diffusers has for them: previews every step, the same pixels as plain diffusers,
pixels outside an inpaint mask kept exactly, cancel within a step, scrub and continue,
and the settings read back from the saved PNG making the same picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from engine_helpers import WAIT, box_mask, picture
from new_family_helpers import (
    FAMILY_MODES,
    TINY_FAMILIES,
    TinyFamily,
    family_request,
    loaded,
    plain_diffusers,
    serve,
)

from engine import metadata
from engine.api import (
    Cancelled,
    Failed,
    Finished,
    GuidanceKind,
    Mode,
    ModelFamily,
    ResumeFrom,
    Started,
    Step,
)

SIZE = (64, 64)


@pytest.fixture(autouse=True)
def _families(tiny_models, one_torch_thread):
    serve(tiny_models)


def _ids(value: object) -> str:
    if isinstance(value, TinyFamily):
        return value.name
    return str(value)


def _mode_changes(mode: Mode) -> dict[str, object]:
    if mode is Mode.IMG2IMG:
        return {"init_image": picture(SIZE), "strength": 0.7}
    if mode is Mode.INPAINT:
        return {
            "init_image": picture(SIZE),
            "mask": box_mask(SIZE, (16, 16, 48, 40)),
            "strength": 0.9,
            "mask_blur": 0,
        }
    return {}


@pytest.mark.parametrize(("family", "mode"), FAMILY_MODES, ids=_ids)
def test_every_mode_streams_a_preview_each_step_and_equals_plain_diffusers(
    engine, recorder, family: TinyFamily, mode: Mode
) -> None:
    r = family_request(family, **_mode_changes(mode))
    result = engine.generate(r, WAIT)
    assert isinstance(result, Finished), result
    steps = recorder.of(result.job_id, Step)
    assert [s.step for s in steps] == list(range(1, len(steps) + 1)) and steps
    assert len(result.step_previews) == len(steps)
    for preview in result.step_previews:
        assert preview.ndim == 3 and preview.shape[2] == 3 and preview.std() > 0
    started = recorder.of(result.job_id, Started)[0]
    assert started.family == family.family.value and started.variant == family.variant
    plain = np.asarray(plain_diffusers(family, r).convert("RGB"))
    out = np.asarray(result.images[0].convert("RGB"))
    assert out.shape == (*SIZE[::-1], 3)
    if mode is Mode.INPAINT:
        inside = np.asarray(r.mask) > 127
        np.testing.assert_array_equal(out[inside], plain[inside])
        np.testing.assert_array_equal(out[~inside], np.asarray(r.init_image)[~inside])
    else:
        np.testing.assert_array_equal(out, plain)


@pytest.mark.parametrize("family", TINY_FAMILIES, ids=_ids)
def test_the_first_preview_is_the_estimate_of_the_final_picture_not_the_noise(
    engine, family: TinyFamily
) -> None:
    result = engine.generate(family_request(family), WAIT)
    assert isinstance(result, Finished), result
    x0, noisy = result.step_previews[0], result.noisy_step_previews[0]
    assert x0.shape == noisy.shape
    assert not np.array_equal(x0, noisy)


@pytest.mark.parametrize("family", TINY_FAMILIES, ids=_ids)
def test_cancel_stops_inside_the_step_it_arrives_in(engine, recorder, family: TinyFamily) -> None:
    job: int | None = None
    first_block, calls_per_step = _first_block(family)
    calls = {"n": 0}

    def cancel_in_step_two(*_: object) -> None:
        calls["n"] += 1
        if calls["n"] == calls_per_step + 1:  # step two's first block has just run
            assert job is not None
            engine.cancel(job)

    handle = first_block.register_forward_hook(cancel_in_step_two)
    try:
        job = engine.submit(family_request(family, steps=4))
        result = engine.wait(job, WAIT)
    finally:
        handle.remove()
    assert isinstance(result, Cancelled), result
    assert result.step == 1  # step two never finished: its next block was not run
    assert [s.step for s in recorder.of(job, Step)] == [1]
    assert isinstance(engine.generate(family_request(family), WAIT), Finished)


def _first_block(family: TinyFamily) -> tuple[torch.nn.Module, int]:
    """The denoiser's first block, and how often it runs in one step (Qwen-Image and klein
    base run the negative prompt as a second forward pass; SANA batches it)."""
    transformer = loaded(family).pipe.transformer
    blocks = getattr(transformer, "transformer_blocks", None) or transformer.layers
    guided = family.profile.variant(family.variant).guidance is GuidanceKind.CFG
    separate = family.family in (ModelFamily.QWEN_IMAGE, ModelFamily.FLUX2)
    return blocks[0], 2 if guided and separate else 1


@pytest.mark.parametrize("family", TINY_FAMILIES, ids=_ids)
def test_continuing_from_a_step_with_the_same_settings_gives_the_same_picture(
    engine, recorder, family: TinyFamily
) -> None:
    steps = 4
    # sCM draws fresh noise at every step but the last, so a continued SANA-Sprint run
    # repeats the original only from the last step on; the other samplers are
    # deterministic from any step.
    # (Multistep solvers such as SANA's DPM++ keep a history a resume does not have.)
    after = 3 if family.variant == "sprint" else 2
    sampler = {} if family.variant == "sprint" else {"scheduler": "Euler"}
    source = engine.generate(family_request(family, steps=steps, **sampler), WAIT)
    assert isinstance(source, Finished), source
    resume = ResumeFrom(source.job_id, after)
    resumed = engine.generate(family_request(family, resume=resume, **sampler), WAIT)
    assert isinstance(resumed, Finished), resumed
    assert [s.step for s in recorder.of(resumed.job_id, Step)] == list(range(after + 1, 5))
    assert len(resumed.step_previews) == steps
    a = np.asarray(source.images[0]).astype(int)
    b = np.asarray(resumed.images[0]).astype(int)
    assert np.abs(a - b).max() <= 2


@pytest.mark.parametrize("family", TINY_FAMILIES, ids=_ids)
def test_settings_read_back_from_the_saved_png_make_the_same_picture(
    engine, family: TinyFamily, tmp_path: Path
) -> None:
    first = engine.generate(family_request(family), WAIT)
    assert isinstance(first, Finished), first
    path = metadata.save_png(first.images[0], tmp_path / "a.png", first.request, first.seeds[0])
    back = metadata.read_parameters(path)
    assert back is not None
    assert back == first.request.with_changes(init_image=None, mask=None)
    again = engine.generate(back, WAIT)
    assert isinstance(again, Finished), again
    np.testing.assert_array_equal(np.asarray(again.images[0]), np.asarray(first.images[0]))


def test_a_mode_diffusers_lacks_for_the_family_fails_with_a_sentence(engine) -> None:
    sana = next(f for f in TINY_FAMILIES if f.name == "sana")
    result = engine.generate(family_request(sana, **_mode_changes(Mode.INPAINT)), WAIT)
    assert isinstance(result, Failed), result
    assert result.message == "SANA models cannot do inpainting; choose another mode or model."
    klein = next(f for f in TINY_FAMILIES if f.name == "flux2-klein")
    result = engine.generate(family_request(klein, **_mode_changes(Mode.IMG2IMG)), WAIT)
    assert isinstance(result, Failed), result
    assert "cannot do image to image" in result.message


@pytest.mark.parametrize("family", [f for f in TINY_FAMILIES if Mode.INPAINT in f.modes], ids=_ids)
def test_inpainting_only_the_masked_area_keeps_every_pixel_outside_or_says_it_cannot(
    engine, family: TinyFamily
) -> None:
    changes = _mode_changes(Mode.INPAINT) | {"inpaint_only_masked": True, "mask_blur": 4}
    r = family_request(family, **changes)
    result = engine.generate(r, WAIT)
    pipeline = family.profile.pipeline_name(Mode.INPAINT, family.variant)
    if family.family is ModelFamily.ZIMAGE:  # ZImageInpaintPipeline has no crop
        assert isinstance(result, Failed), result
        assert result.message == (
            "Z-Image Turbo models cannot inpaint only the masked area; turn that option off."
        ), pipeline
        return
    assert isinstance(result, Finished), result
    outside = np.asarray(r.mask) <= 127
    out = np.asarray(result.images[0].convert("RGB"))
    np.testing.assert_array_equal(out[outside], np.asarray(r.init_image)[outside])
    assert not np.array_equal(out[~outside], np.asarray(r.init_image)[~outside])


@pytest.mark.parametrize("family", TINY_FAMILIES, ids=_ids)
def test_an_empty_negative_prompt_runs_and_equals_plain_diffusers(
    engine, family: TinyFamily
) -> None:
    r = family_request(family, negative_prompt="")
    result = engine.generate(r, WAIT)
    assert isinstance(result, Finished), result
    plain = np.asarray(plain_diffusers(family, r).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(result.images[0].convert("RGB")), plain)
