"""Requests the engine cannot run are bad input with one sentence, found before any heavy
work (no model loads); any Unicode prompt works or is refused with a sentence."""

from __future__ import annotations

import pytest
from engine_helpers import WAIT, box_mask, picture, request
from PIL import Image
from reliability_helpers import next_job_finishes, one_sentence

from engine import metadata
from engine.api import ErrorKind, Failed, Finished, ModelLoading, ResumeFrom


def refused_before_loading(engine, recorder, req, *words: str) -> str:
    result = engine.generate(req, WAIT)
    assert isinstance(result, Failed), result
    assert result.error == ErrorKind.BAD_INPUT
    one_sentence(result.message)
    for word in words:
        assert word.lower() in result.message.lower(), result.message
    assert not recorder.of(result.job_id, ModelLoading), "the model loaded before the check"
    next_job_finishes(engine)
    return result.message


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"scheduler": "LCM", "steps": 80}, ["between 1 and 50 for LCM", "got 80"]),
        ({"init_image": picture(), "strength": 0.0}, ["strength must be more than 0"]),
        ({"init_image": picture(), "strength": 0.01, "steps": 20}, ["leaves no step to run"]),
        ({"steps": 0}, ["steps must be between 1 and 1000"]),
        ({"steps": -5}, ["got -5"]),
        ({"steps": 10**5000}, ["a number of about 5001 digits"]),
        ({"seed": 10**5000}, ["seed must be a whole number", "about 5001 digits"]),
        ({"seed": -1}, ["seed must be a whole number from 0"]),
        ({"guidance_scale": float("inf")}, ["guidance scale must be a number"]),
        ({"guidance_scale": float("nan")}, ["guidance scale must be a number"]),
        ({"guidance_scale": 10**400}, ["guidance scale must be at most 100"]),
        ({"width": 513}, ["multiple of 8, got 513 (try 512 or 520)"]),
        ({"width": 10**30}, ["too large"]),
        ({"scheduler": "x" * 100_000}, ["unknown scheduler 'xxx"]),
        ({"prompt": None}, ["the prompt must be text"]),
        ({"prompt": "a cat " * 200_000}, ["1,200,000 characters long"]),
        ({"batch_size": 10**100}, ["batch size must be between 1 and 16"]),
        ({"resume": {"job_id": 1, "step": 2}}, ["resume must be a ResumeFrom"]),
        ({"resume": ResumeFrom(1, -3)}, ["resume step must be 1 or more"]),
        ({"init_image": "not a picture"}, ["the init image is not an image"]),
        ({"init_image": picture(), "mask": "white"}, ["the mask is not an image"]),
        ({"init_image": picture((40, 40))}, ["40x40 but the requested size is 32x32"]),
        ({"init_image": picture(), "mask": Image.new("L", (32, 32))}, ["the mask is empty"]),
        ({"mask": box_mask()}, ["a mask needs an init image"]),
        (
            {"init_image": picture(), "mask": box_mask(), "inpaint_padding": 10**9},
            ["inpaint padding must be between 0 and 4096"],
        ),
        ({"model": "   "}, ["no model given"]),
    ],
)
def test_requests_that_cannot_run_are_refused_before_the_model_loads(
    engine, recorder, changes, words
):
    refused_before_loading(engine, recorder, request(**changes), *words)


@pytest.mark.parametrize(
    "prompt",
    [
        "a red circle 🔴 on a 白い background",
        "שלום עולם a red circle",  # right to left
        "e\u0301\u0301\u0301 zalgo a\u0336 cat",
        "zero\u200bwidth\u200djoiner\ufeff",
        "nul \x00 byte and \x1b[31m escape",
        "",
    ],
)
def test_any_unicode_prompt_runs_and_its_png_saves(engine, tmp_path, prompt):
    result = engine.generate(request(prompt=prompt, negative_prompt=prompt[::-1]), WAIT)
    assert isinstance(result, Finished), result
    path = metadata.save_png(result.images[0], tmp_path / "a.png", result.request, 1)
    back = metadata.read_parameters(path)
    assert back is not None and back.prompt == prompt.strip()


def test_lone_surrogates_from_invalid_utf8_are_replaced_with_a_warning(engine, tmp_path):
    broken = b"a red \xff\xfe circle".decode("utf-8", "surrogateescape")
    result = engine.generate(request(prompt=broken, negative_prompt="x\ud800"), WAIT)
    assert isinstance(result, Finished), result
    assert result.request.prompt == "a red \ufffd\ufffd circle"
    assert result.request.negative_prompt == "x\ufffd"
    assert len(result.warnings) == 2 and "not valid text" in result.warnings[0]
    metadata.save_png(result.images[0], tmp_path / "a.png", result.request, 1)
    assert metadata.read_parameters(tmp_path / "a.png").prompt == result.request.prompt


def test_a_prompt_past_the_longest_the_encoder_reads_warns_without_quoting_it(engine):
    long_prompt = "a red circle " * 60 + "the square " * 1_500  # past 32 x 75 tokens
    result = engine.generate(request(prompt=long_prompt), WAIT)
    assert isinstance(result, Finished), result
    (warning,) = result.warnings
    one_sentence(warning)
    assert "ignored" in warning and len(warning) < 250


def test_the_truncation_warning_quotes_only_a_short_excerpt(tiny_models):
    from engine.addons.prompt_encoding import truncation_warnings

    pipe = tiny_models.get("tiny", lambda *_: None, lambda: False).pipe
    (warning,) = truncation_warnings(pipe, "a red circle " * 60 + "the square " * 1_500, "")
    one_sentence(warning)
    quoted = warning.split('"')[1]
    assert len(quoted) <= 61 and quoted.endswith("…")
    assert len(warning) < 250
    (short_cut,) = truncation_warnings(pipe, "a red circle " * 26 + "cat dog", "")
    assert short_cut.endswith('circle cat dog".') and "…" not in short_cut
