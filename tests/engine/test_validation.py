"""Every bad input gets a message a person understands, and the engine keeps serving."""

from __future__ import annotations

import sys

import pytest
from engine_helpers import WAIT, box_mask, picture, request
from PIL import Image

from engine import validation
from engine.api import EngineError, ErrorKind, Failed, Finished, ResumeFrom


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 0}, "steps must be between 1 and 1000, got 0"),
        ({"steps": -3}, "steps must be between 1 and 1000, got -3"),
        ({"steps": 100000}, "steps must be between 1 and 1000, got 100000"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"guidance_scale": -1.0}, "guidance scale must be 0 or more, got -1.0"),
        ({"guidance_scale": float("nan")}, "guidance scale must be a number"),
        ({"width": 513}, "width must be a multiple of 8, got 513"),
        ({"height": 0}, "height must be a positive number of pixels, got 0"),
        ({"width": -64}, "width must be a positive number of pixels"),
        ({"width": 8192}, "width 8192 is too large"),
        ({"width": 4096, "height": 4096}, "too large for memory"),
        ({"width": 2048, "height": 2048, "batch_size": 4}, "too large for memory"),
        ({"batch_size": 0}, "batch size must be between 1 and 16"),
        ({"seed": -1}, "seed must be a whole number"),
        ({"scheduler": "Heun++"}, "unknown scheduler 'Heun++'; choose one of: Euler"),
        ({"model": ""}, "no model given"),
        ({"init_image": "photo.png"}, "the init image is not an image (got str)"),
        ({"init_image": Image.new("RGB", (64, 64))}, "the init image is 64x64 but"),
        ({"init_image": picture(), "strength": 0.0}, "strength must be more than 0"),
        ({"init_image": picture(), "strength": 1.5}, "strength must be more than 0"),
        ({"init_image": picture(), "strength": 0.1, "steps": 3}, "leaves no step to run"),
        ({"mask": box_mask()}, "a mask needs an init image"),
        (
            {"init_image": picture(), "mask": box_mask((40, 32))},
            "the mask is 40x32 but the image is 32x32",
        ),
        ({"init_image": picture(), "mask": Image.new("L", (32, 32))}, "the mask is empty"),
        ({"init_image": picture(), "mask": "mask.png"}, "the mask is not an image"),
        ({"init_image": picture(), "mask": box_mask(), "mask_blur": -2}, "mask blur must be"),
        ({"resume": ResumeFrom(1, 0)}, "resume step must be 1 or more"),
    ],
)
def test_bad_input_messages(changes, message):
    found = validation.problems(request(**changes))
    assert any(message in p for p in found), found


def test_good_requests_have_no_problems():
    assert validation.problems(request()) == []
    assert validation.problems(request(init_image=picture(), mask=box_mask())) == []
    validation.check_request(request())


def test_check_request_raises_bad_input_naming_everything():
    with pytest.raises(EngineError) as info:
        validation.check_request(request(width=513, steps=0))
    assert info.value.kind == ErrorKind.BAD_INPUT
    assert "width must be a multiple of 8, got 513" in info.value.message
    assert "Steps must be between 1 and 1000, got 0" in info.value.message


def test_validation_does_not_need_torch():
    import subprocess

    code = "import sys, engine.validation; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=".", check=False).returncode == 0


def test_engine_reports_bad_input_and_keeps_serving(engine):
    result = engine.generate(request(width=513), WAIT)
    assert isinstance(result, Failed) and result.error == ErrorKind.BAD_INPUT
    assert "multiple of 8, got 513" in result.message
    bad_mask = engine.generate(request(init_image=picture(), mask=box_mask((40, 32))), WAIT)
    assert isinstance(bad_mask, Failed) and "same size" in bad_mask.message
    assert isinstance(engine.generate(request(), WAIT), Finished)


def test_long_prompt_runs_whole_in_chunks_without_a_warning(engine):
    long_prompt = " ".join(["a red circle on a blue square"] * 15)
    result = engine.generate(request(prompt=long_prompt), WAIT)
    assert isinstance(result, Finished), result
    assert result.warnings == ()


def test_a_prompt_past_the_chunk_limit_runs_and_says_what_was_ignored(engine):
    huge = " ".join(["a red circle on a blue square"] * 400)
    result = engine.generate(request(prompt=huge), WAIT)
    assert isinstance(result, Finished), result
    assert len(result.warnings) == 1 and "2400 tokens" in result.warnings[0]


def test_clip_skip_outside_its_range_is_refused_before_the_model_loads():
    found = validation.problems(request(clip_skip=0))
    assert any("clip skip must be a whole number from 1 to 12" in p for p in found)
    assert validation.problems(request(clip_skip=2)) == []
