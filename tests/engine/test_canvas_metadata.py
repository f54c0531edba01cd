"""Outpaint, forward-process, upscale, ControlNet and region fields: written into a picture's
A1111 text and our JSON record, and read back from either."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest
from PIL import Image

from engine import metadata
from engine.api import (
    ControlUnit,
    Expand,
    ForwardProcess,
    GenerationRequest,
    RegionPrompt,
    Upscale,
)
from engine.control.metadata import UnitSetting, decode_mask, encode_mask


def base(**changes: object) -> GenerationRequest:
    r = GenerationRequest(prompt="a red circle", steps=20, width=64, height=48, seed=3)
    return r.with_changes(**changes)


def a1111_round_trip(r: GenerationRequest) -> metadata.ParametersReading:
    return metadata.parse_a1111_checked(metadata.format_a1111(r, 3))


def record_round_trip(r: GenerationRequest) -> metadata.ParametersReading:
    import json

    return metadata.from_record_checked(json.dumps(metadata.to_record(r, 3)))


def left_half(size=(64, 48)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))
    return mask


PICTURE = Image.new("RGB", (48, 32))


@pytest.mark.parametrize(
    "changes",
    [
        {"expand": Expand(left=16, right=8, fill="blur", band=16), "init_image": PICTURE},
        {"expand": Expand(top=64, tile=256), "init_image": PICTURE, "inpaint_only_masked": True},
        {"forward": ForwardProcess(level=7, denoise=True), "init_image": PICTURE},
        {"forward": ForwardProcess(level=0), "init_image": PICTURE},
        {"upscale": Upscale(scale=3.0, upscaler="4x-esrgan.safetensors")},
        {"upscale": Upscale(scale=2.0, sd_tiles=True, tile=384, overlap=48), "init_image": PICTURE},
    ],
    ids=["outpaint", "outpaint-pieces", "denoise-from-here", "forward-view", "upscale", "tiled"],
)
def test_canvas_fields_come_back_from_the_a1111_text(changes):
    r = base(strength=0.6, **changes)
    back = a1111_round_trip(r)
    assert back.left_out == ()
    assert back.request is not None
    for name in ("expand", "forward", "upscale", "steps", "inpaint_only_masked"):
        assert getattr(back.request, name) == getattr(r, name), name


def test_outpaint_text_reads_as_written():
    text = metadata.format_a1111(base(expand=Expand(left=64, right=64), init_image=PICTURE), 3)
    assert "Outpaint: left 64 right 64; fill edge; band 32" in text


@pytest.mark.parametrize(
    ("field", "words"),
    [
        ("Outpaint: left 13; fill edge; band 32", "multiples of 8"),
        ("Outpaint: left 16; fill glitter", "a fill"),
        ("Forward process: denoised from step 30 of 20", "L at most S"),
        ("Forward process: sideways", "noised to step"),
        ('ControlNet 0: "Module: canny, Model: cn, Weight: 9"', "out of range"),
        ('ControlNet 0: "Module: canny, Weight: 1"', "names no model"),
        ("Region 1: a cat, Region 1 mask: 4x4:!!!", "base64"),
        ("Region 1: a cat", "no mask"),
    ],
)
def test_a_bad_field_is_left_out_in_words_and_the_rest_is_kept(field, words):
    text = f"a red circle\nSteps: 12, Sampler: Euler, Seed: 5, Size: 64x48, {field}"
    back = metadata.parse_a1111_checked(text)
    assert back.request is not None and back.request.steps == 12 and back.request.seed == 5
    assert any(words in note for note in back.left_out), back.left_out


def units() -> tuple[ControlUnit, ...]:
    image = Image.new("RGB", (64, 48))
    return (
        ControlUnit("/models/cn/canny-v11.safetensors", image, 0.6, 0.1, 0.8, "canny",
                    "/pictures/edges, final.png"),
        ControlUnit("scribble", image, 1.0, 0.0, 1.0, "scribble", "sketch"),
        ControlUnit("depth", image, 1.2, 0.0, 0.5, "none", "canvas"),
    )  # fmt: skip


@pytest.mark.parametrize("route", ["a1111", "record"])
def test_units_and_regions_come_back_from_text_and_record(route):
    right = Image.new("L", (64, 48), 0)
    right.paste(255, (40, 8, 64, 40))
    regions = (RegionPrompt("a cat, sitting", left_half()), RegionPrompt("a dog", right))
    r = base(controls=units(), regions=regions)
    back = (a1111_round_trip if route == "a1111" else record_round_trip)(r)
    assert back.left_out == ()
    expected = [
        UnitSetting(u.model, u.weight, u.start, u.end, u.preprocessor, u.source) for u in units()
    ]
    if route == "a1111":  # the A1111 field names the model as A1111 does: its file's stem
        expected[0] = UnitSetting("canny-v11", 0.6, 0.1, 0.8, "canny", "/pictures/edges, final.png")
    assert list(back.units) == expected
    assert back.request is not None
    assert [g.prompt for g in back.request.regions] == ["a cat, sitting", "a dog"]
    for got, made in zip(back.request.regions, regions, strict=True):
        np.testing.assert_array_equal(np.asarray(got.mask), np.asarray(made.mask))


def test_a_saved_picture_gives_its_units_and_regions_back(tmp_path):
    r = base(controls=units()[:1], regions=(RegionPrompt("a cat", left_half()),))
    path = metadata.save_png(Image.new("RGB", (64, 48)), tmp_path / "p.png", r, 3)
    back = metadata.read_parameters_checked(path)
    assert back.units[0].source == "/pictures/edges, final.png"
    assert back.request is not None and back.request.regions[0].prompt == "a cat"


def test_an_sd_webui_controlnet_unit_is_read():
    text = (
        "a house\nSteps: 20, Sampler: Euler a, Seed: 1, Size: 512x512, ControlNet 0: "
        '"Module: depth_midas, Model: control_v11f1p_sd15_depth [cfd03158], Weight: 0.8, '
        "Resize Mode: Crop and Resize, Processor Res: 512, Guidance Start: 0.1, "
        'Guidance End: 0.9, Pixel Perfect: False, Control Mode: Balanced", '
        'ControlNet 1: "Module: softedge_pidinet, Model: control_v11p_sd15_softedge, '
        'Weight: 1, Guidance Start: 0, Guidance End: 1"'
    )
    back = metadata.parse_a1111_checked(text)
    assert back.units == (
        UnitSetting("control_v11f1p_sd15_depth", 0.8, 0.1, 0.9, "none"),
        UnitSetting("control_v11p_sd15_softedge", 1.0, 0.0, 1.0, "softedge"),
    )


def test_a_mask_is_kept_cell_for_cell_and_a_hostile_one_is_refused():
    mask = left_half((100, 36))
    text = encode_mask(mask)
    assert len(text) < 100
    back = np.asarray(decode_mask(text, (100, 36))) > 0
    assert back[:, :48].all() and not back[:, 56:].any()
    bomb = base64.b64encode(zlib.compress(b"\xff" * 10_000_000)).decode()
    with pytest.raises(ValueError, match="cells"):
        decode_mask(f"8x8:{bomb}", (64, 64))
    with pytest.raises(ValueError, match="at most"):
        decode_mask("99999x99999:", (64, 64))


def test_every_controlnet_key_is_a_unit_as_sd_webui_controlnet_reads_them():
    # sd-webui-controlnet parses each field whose key starts with "ControlNet" as a unit.
    text = metadata.format_a1111(base(controls=units()), 3)
    _, _, fields = metadata.parse_a1111_fields(text)
    keys = [k for k in fields if k.startswith("ControlNet")]
    assert keys == ["ControlNet 0", "ControlNet 1", "ControlNet 2"]
    for key in keys:  # "Key: value" pairs split at ", " and ": " as it splits them
        pairs = [item.strip().split(": ") for item in fields[key].split(",")]
        assert all(len(pair) == 2 for pair in pairs)
    assert fields["Control image 0"] == "/pictures/edges, final.png"
