"""Hires fix through the engine with tiny models: both passes run as one job, report as
one run, can be cancelled in either pass, and are recorded in A1111's fields."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from engine_helpers import TINY_SDXL, WAIT, picture, request
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine import metadata, wire
from engine.api import (
    Cancelled,
    Failed,
    Finished,
    GenerationRequest,
    HiresFix,
    ResumeFrom,
    Started,
    Step,
)
from engine.foreign_metadata import read_picture_settings
from engine.validation import problems


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (bicubic antialiased)", "Lanczos"])
def test_hires_fix_runs_both_passes_and_ends_at_the_larger_size(
    engine, recorder, one_torch_thread, upscaler
):
    hires = HiresFix(scale=2, upscaler=upscaler, steps=4, denoising_strength=0.5)
    result = engine.generate(request(steps=3, hires=hires), WAIT)
    assert isinstance(result, Finished), result
    assert result.images[0].size == (64, 64)
    # 3 first-pass steps, then int(4 * 0.5) = 2 second-pass steps, numbered as one run.
    steps = recorder.of(result.job_id, Step)
    assert [(s.step, s.total) for s in steps] == [(i, 5) for i in range(1, 6)]
    assert recorder.of(result.job_id, Started)[0].total_steps == 5
    assert len(result.step_previews) == len(result.noisy_step_previews) == 5
    # The first pass's previews are of the small picture, the second's of the large one.
    small, large = steps[0].preview.shape, steps[-1].preview.shape
    assert (large[0], large[1]) == (2 * small[0], 2 * small[1])
    assert result.request.hires == hires
    assert (result.request.width, result.request.height) == (32, 32)


def test_hires_second_pass_changes_the_enlarged_first_pass(engine, one_torch_thread):
    plain = engine.generate(request(steps=3), WAIT)
    hires = engine.generate(
        request(steps=3, hires=HiresFix(scale=2, upscaler="Lanczos", denoising_strength=1.0)),
        WAIT,
    )
    assert isinstance(plain, Finished) and isinstance(hires, Finished)
    enlarged = plain.images[0].resize((64, 64))
    assert (np.asarray(hires.images[0]) != np.asarray(enlarged)).any()


def test_hires_fix_runs_on_sdxl_with_a_latent_upscaler(engine, one_torch_thread):
    hires = HiresFix(scale=2, upscaler="Latent (bicubic)", denoising_strength=0.7)
    result = engine.generate(request(model=TINY_SDXL, steps=2, hires=hires), WAIT)
    assert isinstance(result, Finished), result
    assert result.images[0].size == (64, 64)


def test_hires_fix_with_a_batch_makes_every_picture_large(engine, one_torch_thread):
    hires = HiresFix(scale=1.5, upscaler="Latent (nearest)", denoising_strength=0.7)
    result = engine.generate(request(steps=2, batch_size=2, hires=hires), WAIT)
    assert isinstance(result, Finished), result
    assert [image.size for image in result.images] == [(48, 48), (48, 48)]


@pytest.mark.parametrize("cancel_at", [2, 4])  # step 2: first pass; step 4: second pass
def test_cancel_ends_a_hires_job_in_either_pass(engine, recorder, one_torch_thread, cancel_at):
    reached = threading.Event()

    def listener(event: object) -> None:
        if isinstance(event, Step) and event.step == cancel_at:
            engine.cancel(event.job_id)
            reached.set()

    engine.add_listener(listener)
    hires = HiresFix(scale=2, steps=6, denoising_strength=0.5)
    result = engine.generate(request(steps=3, hires=hires), WAIT)
    assert reached.is_set()
    assert isinstance(result, Cancelled), result
    assert result.step == cancel_at
    assert max(s.step for s in recorder.of(result.job_id, Step)) == cancel_at


def test_hires_fix_is_recorded_in_a1111_fields_and_read_back():
    hires = HiresFix(scale=1.5, upscaler="Latent (bicubic)", steps=7, denoising_strength=0.4,
                     prompt="a sharp cat")  # fmt: skip
    r = request(hires=hires)
    text = metadata.format_a1111(r, 1)
    for field in ("Hires upscale: 1.5", "Hires steps: 7", "Hires upscaler: Latent (bicubic)",
                  "Denoising strength: 0.4", "Hires prompt: a sharp cat"):  # fmt: skip
        assert field in text
    assert metadata.parse_a1111(text).hires == hires
    record = metadata.to_record(r, 1)
    assert metadata.from_record(json.dumps(record)).hires == hires
    assert wire.request_from_dict(wire.request_to_dict(r)).hires == hires


def test_an_a1111_hires_picture_reads_back_with_its_resize_and_upscaler():
    text = (
        "a dog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768, "
        "Denoising strength: 0.7, Hires resize: 1024x1536, Hires steps: 10, "
        "Hires upscaler: R-ESRGAN 4x+, Version: v1.10.1"
    )
    read = metadata.parse_a1111(text)
    assert read.hires == HiresFix(scale=2.0, upscaler="R-ESRGAN 4x+", steps=10,
                                  denoising_strength=0.7)  # fmt: skip
    # A1111's "Denoising strength" belongs to the hires pass: image-to-image keeps its own.
    assert read.strength == GenerationRequest(prompt="").strength


def test_bad_hires_settings_are_named_before_any_model_loads():
    found = problems(request(hires=HiresFix(scale=9, steps=-1, denoising_strength=0)))
    text = " ".join(found)
    assert "hires scale must be a number from 1 to 8" in text
    assert "hires steps must be a whole number" in text
    assert "hires denoising strength must be more than 0" in text
    found = problems(request(init_image=picture(), hires=HiresFix()))
    assert any("text-to-image only" in p for p in found)


def test_an_unknown_hires_upscaler_fails_the_job_with_a_sentence(engine, one_torch_thread):
    result = engine.generate(request(steps=2, hires=HiresFix(upscaler="4x-missing")), WAIT)
    assert isinstance(result, Failed)
    assert "There is no upscaler called '4x-missing'" in result.message


def test_a_hires_job_can_be_continued_from_a_first_pass_step(engine, recorder, one_torch_thread):
    hires = HiresFix(scale=2, steps=4, denoising_strength=0.5)
    first = engine.generate(request(steps=3, hires=hires), WAIT)
    assert isinstance(first, Finished), first
    again = engine.generate(request(steps=3, hires=hires, resume=ResumeFrom(first.job_id, 2)), WAIT)
    assert isinstance(again, Finished), again
    assert again.images[0].size == (64, 64)
    assert [s.step for s in recorder.of(again.job_id, Step)] == [3, 4, 5]
    past = engine.generate(request(steps=3, resume=ResumeFrom(first.job_id, 4)), WAIT)
    assert isinstance(past, Failed)
    assert "has steps 1 to 3" in past.message


def test_reuse_parameters_of_an_a1111_hires_picture_carries_its_hires_fix(tmp_path):
    info = PngInfo()
    info.add_text("parameters", "a dog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, "
                  "Size: 512x512, Denoising strength: 0.6, Hires upscale: 1.5, "
                  "Hires upscaler: Latent, Version: v1.10.1")  # fmt: skip
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png", pnginfo=info)
    with Image.open(tmp_path / "a.png") as picture:
        settings = read_picture_settings(picture)
    assert settings is not None
    assert settings.values["hires"] == HiresFix(scale=1.5, upscaler="Latent",
                                                denoising_strength=0.6)  # fmt: skip
