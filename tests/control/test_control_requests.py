"""Control units and regions in requests: the CLI's arguments, the wire, the metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
from engine_helpers import WAIT, request
from PIL import Image, ImageDraw

from engine import cli, metadata, wire
from engine.api import ControlUnit, Finished, RegionPrompt
from engine.control.cli_args import parse_control


def edges(path):
    image = Image.new("RGB", (48, 48), "black")
    ImageDraw.Draw(image).ellipse((8, 8, 40, 40), outline="white")
    image.save(path)
    return path


def test_a_control_spec_splits_into_model_image_and_numbers(tmp_path):
    image = edges(tmp_path / "a:b.png")  # a colon inside a path
    model, path, numbers = parse_control(f"cn.safetensors:{image}:0.5:0.1:0.9")
    assert (model, path, numbers) == ("cn.safetensors", image, [0.5, 0.1, 0.9])
    assert parse_control("m:e.png") == ("m", __import__("pathlib").Path("e.png"), [])


def test_the_cli_runs_two_units_and_records_them(tmp_path, capsys, control_models, controlnets):
    image, out = edges(tmp_path / "edges.png"), tmp_path / "out.png"
    code = cli.main(
        ["generate", "--prompt", "a red circle", "--model", "tiny", "--steps", "2",
         "--width", "32", "--height", "32", "--output", str(out),
         "--control", f"{controlnets[0]}:{image}:0.6", "--control",
         f"{controlnets[1]}:{image}:1:0.2:0.8", "--preprocess", "canny"],
        models=control_models,
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    text = metadata.read_texts(out)["parameters"]
    assert 'ControlNet 0: "Module: canny, Model: cn-a, Weight: 0.6' in text
    assert "Guidance Start: 0.2, Guidance End: 0.8" in text
    assert metadata.read_parameters(out).prompt == "a red circle"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--control", "only-a-model"], "give MODEL:IMAGE"),
        (["--preprocess", "canny"], "--preprocess needs a --control"),
        (["--region", "no mask given"], "give PROMPT=MASK"),
    ],
)
def test_bad_control_arguments_get_one_sentence(tmp_path, capsys, control_models, args, words):
    code = cli.main(["generate", "--prompt", "x", "--model", "tiny", "--output",
                     str(tmp_path / "o.png"), *args], models=control_models)  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and words in err and "Traceback" not in err


def test_units_and_regions_cross_the_wire_with_their_pictures():
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (0, 0, 16, 32))
    r = request(
        controls=(ControlUnit("cn", Image.new("RGB", (40, 24), "red"), 0.7, 0.1, 0.9, "canny"),),
        regions=(RegionPrompt("a blue square", mask),),
    )
    back = wire.request_from_dict(json.loads(json.dumps(wire.request_to_dict(r))))
    unit = back.controls[0]
    assert (unit.model, unit.weight, unit.start, unit.end, unit.preprocessor) == (
        "cn",
        0.7,
        0.1,
        0.9,
        "canny",
    )
    assert unit.image.size == (40, 24) and unit.image.getpixel((0, 0)) == (255, 0, 0)
    assert back.regions[0].prompt == "a blue square"
    assert (np.asarray(back.regions[0].mask) == np.asarray(mask)).all()


def test_a_finished_event_crosses_the_wire_without_unit_pictures(engine, controlnets):
    unit = ControlUnit(str(controlnets[0]), Image.new("RGB", (32, 32)), 0.0)
    result = engine.generate(request(steps=1, controls=(unit,)), WAIT)
    assert isinstance(result, Finished), result
    sent = json.dumps(wire.event_to_dict(result, 1))
    assert "controls" not in json.loads(sent)["request"]
