"""ControlNet units through the engine with tiny models: weight, several units, start/end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from control_helpers import (
    cancel_at_first_step,
    outline,
    pixels,
    save_tiny_controlnet,
    spy_on_controlnets,
)
from engine_helpers import TINY_SDXL, WAIT, box_mask, picture, request
from model_helpers import never
from PIL import Image

from engine.api import ControlUnit, ErrorKind, Failed, Finished


def edges() -> Image.Image:
    return outline("rectangle")


def unit(model, **changes) -> ControlUnit:
    return ControlUnit(model=str(model), image=edges(), **changes)


def test_zero_weight_gives_the_same_pixels_as_no_controlnet(engine, controlnets):
    plain = pixels(engine.generate(request(steps=3), WAIT))
    zero = pixels(
        engine.generate(request(steps=3, controls=(unit(controlnets[0], weight=0.0),)), WAIT)
    )
    np.testing.assert_array_equal(zero, plain)


def test_full_weight_steers_the_picture(engine, controlnets):
    plain = pixels(engine.generate(request(steps=3), WAIT))
    steered = pixels(engine.generate(request(steps=3, controls=(unit(controlnets[0]),)), WAIT))
    assert np.abs(steered - plain).mean() > 1.0


def test_two_units_run_together_each_with_its_weight(engine, controlnets):
    units = (unit(controlnets[0], weight=0.5), unit(controlnets[1], weight=1.5))
    first = engine.generate(request(steps=2, controls=units), WAIT)
    assert isinstance(first, Finished), first
    calls = spy_on_controlnets(engine, 2)
    again = engine.generate(request(steps=2, controls=units), WAIT)
    np.testing.assert_array_equal(pixels(again), pixels(first))
    # Guidance batches the conditional and unconditional halves into one call per step.
    assert calls == [[0.5, 0.5], [1.5, 1.5]]
    one = pixels(engine.generate(request(steps=2, controls=units[:1]), WAIT))
    assert np.abs(one - pixels(first)).mean() > 0.5


def test_start_and_end_limit_the_steps_a_unit_acts_on(engine, controlnets):
    units = (
        unit(controlnets[0], weight=1.0, start=0.5, end=1.0),
        unit(controlnets[1], weight=0.8, start=0.0, end=0.25),
    )
    engine.generate(request(steps=4, controls=units), WAIT)
    calls = spy_on_controlnets(engine, 2)
    result = engine.generate(request(steps=4, controls=units), WAIT)
    assert isinstance(result, Finished), result
    assert calls == [[0.0, 0.0, 1.0, 1.0], [0.8, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_a_unit_steers_image_to_image_and_inpaint(engine, controlnets, mode):
    changes: dict = {"init_image": picture(), "strength": 0.75, "steps": 4}
    if mode == "inpaint":
        changes["mask"] = box_mask()
    plain = pixels(engine.generate(request(**changes), WAIT))
    steered = pixels(engine.generate(request(controls=(unit(controlnets[0]),), **changes), WAIT))
    assert steered.shape == plain.shape
    assert np.abs(steered - plain).max() > 0
    if mode == "inpaint":  # outside the mask the original stays
        outside = np.asarray(box_mask()) == 0
        original = np.asarray(picture(), dtype=np.int16)
        np.testing.assert_array_equal(steered[outside][:, :3], original[outside])


def test_a_preprocessed_unit_uses_the_map_not_the_photo(engine, controlnets):
    photo = picture()
    canny = ControlUnit(str(controlnets[0]), photo, preprocessor="canny")
    plain = ControlUnit(str(controlnets[0]), photo)
    a = pixels(engine.generate(request(controls=(canny,)), WAIT))
    b = pixels(engine.generate(request(controls=(plain,)), WAIT))
    assert np.abs(a - b).max() > 0


def test_sdxl_model_runs_an_sdxl_controlnet(engine, control_models, tmp_path):
    sdxl = control_models.get(TINY_SDXL, lambda *_: None, never)
    folder = save_tiny_controlnet(tmp_path / "cn-xl", unet=sdxl.pipe.unet)
    r = request(model=TINY_SDXL, steps=2, controls=(unit(folder, weight=0.0),))
    zero = pixels(engine.generate(r, WAIT))
    plain = pixels(engine.generate(request(model=TINY_SDXL, steps=2), WAIT))
    np.testing.assert_array_equal(zero, plain)


def test_a_missing_controlnet_fails_the_job_with_a_model_error(engine, tmp_path):
    result = engine.generate(request(controls=(unit(tmp_path / "nowhere"),)), WAIT)
    assert isinstance(result, Failed) and result.error is ErrorKind.MODEL
    assert "not found" in result.message
    assert isinstance(engine.generate(request(steps=1), WAIT), Finished)


def test_a_pickled_controlnet_file_is_refused(engine, tmp_path):
    pth = tmp_path / "control_canny.pth"
    torch.save({"x": torch.zeros(1)}, pth)
    result = engine.generate(request(controls=(unit(pth),)), WAIT)
    assert isinstance(result, Failed) and result.error is ErrorKind.MODEL
    assert ".safetensors" in result.message


def test_an_sd_controlnet_on_an_sdxl_model_is_refused_in_words(engine, controlnets):
    result = engine.generate(request(model=TINY_SDXL, controls=(unit(controlnets[0]),)), WAIT)
    assert isinstance(result, Failed) and result.error is ErrorKind.BAD_INPUT
    assert "family" in result.message


def test_bad_units_are_named_before_anything_loads(engine, controlnets):
    units = (
        unit(controlnets[0], weight=3.0),
        unit(controlnets[1], start=0.8, end=0.2, preprocessor="hed"),
    )
    result = engine.generate(request(controls=units), WAIT)
    assert isinstance(result, Failed) and result.error is ErrorKind.BAD_INPUT
    for words in ("unit 1's weight", "unit 2's start and end", "unknown preprocessor 'hed'"):
        assert words in result.message


def test_a_single_file_controlnet_loads_with_the_shipped_config_layout(
    engine, controlnets, tmp_path, monkeypatch
):
    """A .safetensors ControlNet (here in diffusers' key layout, as many are shared) is
    read with the config folder its keys point to (controlnet/sd15), never the network."""
    import json

    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    from engine.control import units

    net = ControlNetModel.from_pretrained(str(controlnets[0]))
    single = tmp_path / "control_tiny_canny.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(single))
    configs = tmp_path / "configs"
    (configs / "controlnet" / "sd15").mkdir(parents=True)
    (configs / "controlnet" / "sd15" / "config.json").write_text(json.dumps(dict(net.config)))
    monkeypatch.setattr(units, "model_configs_dir", lambda: configs)
    assert units.single_file_config(single) == configs / "controlnet" / "sd15"
    from_folder = pixels(engine.generate(request(steps=2, controls=(unit(controlnets[0]),)), WAIT))
    from_file = pixels(engine.generate(request(steps=2, controls=(unit(single),)), WAIT))
    np.testing.assert_array_equal(from_file, from_folder)


def test_a_file_that_is_no_controlnet_is_named(engine, tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "some_lora.safetensors"
    save_file({"lora_unet_down.weight": torch.zeros(2, 2)}, str(other))
    result = engine.generate(request(controls=(unit(other),)), WAIT)
    assert isinstance(result, Failed) and result.error is ErrorKind.MODEL
    assert "is not a ControlNet checkpoint" in result.message


def test_cancel_stops_a_controlnet_job_within_a_step(engine, recorder, controlnets):
    from engine.api import Cancelled

    result = cancel_at_first_step(engine, request(steps=30, controls=(unit(controlnets[0]),)))
    assert isinstance(result, Cancelled), result
    assert result.step <= 2
