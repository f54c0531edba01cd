"""ControlNet units and regions carried into outpainting, "denoise from here" and continued
runs: placed on the new canvas, cut into pieces, and acting on the same steps."""

from __future__ import annotations

import numpy as np
import pytest
from control_helpers import pixels, spy_on_controlnets
from engine_helpers import WAIT, picture, request
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from engine import outpaint, unit_placement
from engine.api import (
    ControlUnit,
    Expand,
    Finished,
    ForwardProcess,
    GenerationRequest,
    RegionPrompt,
    ResumeFrom,
)
from engine.validation import problems


def edges(size: tuple[int, int] = (32, 32)) -> Image.Image:
    image = Image.new("RGB", size, "black")
    ImageDraw.Draw(image).rectangle((8, 8, size[0] - 9, size[1] - 9), outline="white", width=2)
    return image


def left_half(size: tuple[int, int] = (32, 32)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))
    return mask


def expanding(**changes: object) -> GenerationRequest:
    e = Expand(left=16, right=8)
    width, height = outpaint.expanded_size((32, 32), e)
    r = request(init_image=picture(), expand=e, width=width, height=height, strength=1.0)
    return r.with_changes(**changes)


# ----------------------------------------------------------------------------- placement


def test_a_picture_sized_control_image_lies_over_the_picture_and_the_new_area_is_free():
    r = expanding(controls=(ControlUnit("cn", edges(), preprocessor="canny"),))
    placed = unit_placement.expanded(r).controls[0]
    assert placed.image.size == (56, 32) and placed.preprocessor == "none"
    grey = np.asarray(placed.image.convert("L"))
    assert grey[:, :16].max() == 0 and grey[:, 48:].max() == 0  # no control in the new area
    assert grey[:, 16:48].max() == 255  # the canny map of the square


def test_a_control_image_of_another_size_covers_the_whole_expanded_canvas():
    r = expanding(controls=(ControlUnit("cn", Image.new("RGB", (10, 10), "white")),))
    placed = unit_placement.expanded(r).controls[0]
    assert placed.image.size == (56, 32)
    assert np.asarray(placed.image).min() == 255


def test_a_region_touching_a_side_goes_on_into_the_new_area():
    r = expanding(regions=(RegionPrompt("a cat", left_half()),))
    mask = np.asarray(unit_placement.expanded(r).regions[0].mask)
    assert mask.shape == (32, 56)
    assert mask[:, :32].min() == 255  # 16 new pixels plus the painted half
    assert mask[:, 32:].max() == 0  # the right half and the new strip beside it stay out


def test_a_piece_gets_its_crop_of_the_maps_and_only_the_regions_inside_it():
    r = unit_placement.expanded(
        expanding(
            controls=(ControlUnit("cn", edges()),),
            regions=(RegionPrompt("a cat", left_half()), RegionPrompt("a dog", left_half())),
        )
    )
    right = r.regions[1].mask.copy()
    right.paste(0, (0, 0, 48, 32))
    r = r.with_changes(regions=(r.regions[0], RegionPrompt("a dog", right)))
    controls, regions = unit_placement.cropped(r, (0, 0, 24, 32))
    assert controls[0].image.size == (24, 32)
    assert [g.prompt for g in regions] == ["a cat"]  # the dog's mask is empty in this crop


def test_regions_painted_on_the_picture_before_it_grows_pass_the_checks():
    r = expanding(regions=(RegionPrompt("a cat", left_half()),))
    assert problems(r) == []
    wrong = expanding(regions=(RegionPrompt("a cat", left_half((40, 40))),))
    assert any("40x40" in p for p in problems(wrong))


@given(
    total=st.integers(2, 30),
    data=st.data(),
)
def test_a_continued_unit_acts_on_exactly_the_steps_it_acted_on_before(total, data):
    done = data.draw(st.integers(1, total - 1))
    start = data.draw(st.floats(0, 0.99))
    end = data.draw(st.floats(min_value=start + 0.01, max_value=1.0))
    unit = ControlUnit("cn", edges(), weight=0.7, start=start, end=end)
    (moved,) = unit_placement.continued_units((unit,), done, total)
    left = total - done

    def kept(u: ControlUnit, n: int) -> list[bool]:  # diffusers' controlnet_keep rule
        return [not (i / n < u.start or (i + 1) / n > u.end) for i in range(n)]

    before = kept(unit, total)[done:]
    after = [on and moved.weight > 0 for on in kept(moved, left)]
    assert after == before
    assert 0 <= moved.start < moved.end <= 1


# ----------------------------------------------------------------------------- engine


def test_an_outpaint_with_a_unit_keeps_the_original_and_is_steered(engine, controlnets):
    plain = pixels(engine.generate(expanding(), WAIT))
    unit = ControlUnit(str(controlnets[0]), Image.new("RGB", (56, 32), "white"))
    steered = engine.generate(expanding(controls=(unit,)), WAIT)
    out = pixels(steered)
    np.testing.assert_array_equal(out[:, 16:48], np.asarray(picture(), dtype=np.int16))
    assert np.abs(out - plain).max() > 0
    zero = ControlUnit(str(controlnets[0]), edges(), weight=0.0)
    np.testing.assert_array_equal(pixels(engine.generate(expanding(controls=(zero,)), WAIT)), plain)
    # The record holds the units as they were given, the regions as placed.
    assert steered.request.controls[0] == unit


def test_an_outpaint_with_regions_runs_piece_by_piece(engine, controlnets):
    e = Expand(left=16, right=16, tile=32)
    r = request(
        init_image=picture(),
        expand=e,
        width=64,
        height=32,
        strength=1.0,
        inpaint_only_masked=True,
        inpaint_padding=8,
        regions=(RegionPrompt("a cat", left_half()),),
        controls=(ControlUnit(str(controlnets[0]), edges()),),
    )
    assert len(outpaint.pieces(r)) > 1
    result = engine.generate(r, WAIT)
    out = pixels(result)
    assert out.shape == (32, 64, 3)
    np.testing.assert_array_equal(out[:, 16:48], np.asarray(picture(), dtype=np.int16))
    plain = pixels(engine.generate(r.with_changes(regions=(), controls=()), WAIT))
    assert np.abs(out - plain).max() > 0


def denoising(**changes: object) -> GenerationRequest:
    r = request(init_image=picture(), forward=ForwardProcess(level=3, denoise=True), steps=4)
    return r.with_changes(**changes)


def test_denoise_from_here_takes_units_and_regions(engine, controlnets):
    plain = pixels(engine.generate(denoising(), WAIT))
    zero = ControlUnit(str(controlnets[0]), edges(), weight=0.0)
    np.testing.assert_array_equal(pixels(engine.generate(denoising(controls=(zero,)), WAIT)), plain)
    steered = pixels(
        engine.generate(denoising(controls=(ControlUnit(str(controlnets[0]), edges()),)), WAIT)
    )
    assert np.abs(steered - plain).max() > 0
    regional = denoising(regions=(RegionPrompt("a blue square", left_half()),))
    assert np.abs(pixels(engine.generate(regional, WAIT)) - plain).max() > 0


def test_a_continued_run_keeps_its_units_on_the_same_steps(engine, controlnets):
    units = (
        ControlUnit(str(controlnets[0]), edges(), weight=1.0, start=0.5, end=1.0),
        ControlUnit(str(controlnets[1]), edges(), weight=0.8, start=0.0, end=0.25),
    )
    source = engine.generate(request(steps=4, scheduler="Euler", controls=units), WAIT)
    calls = spy_on_controlnets(engine, 2)
    resumed = engine.generate(
        request(scheduler="Euler", controls=units, resume=ResumeFrom(source.job_id, 1)), WAIT
    )
    assert isinstance(resumed, Finished), resumed
    # Steps 2 to 4 of [[0, 0, 1, 1], [0.8, 0, 0, 0]], the conditional and unconditional half
    # in one call each.
    assert calls == [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    assert np.abs(pixels(resumed) - pixels(source)).max() <= 2


@pytest.mark.parametrize("mode", ["regions", "outpaint"])
def test_a_continued_regional_or_expanded_run_reproduces_its_picture(engine, controlnets, mode):
    if mode == "regions":
        r = request(steps=4, scheduler="Euler", regions=(RegionPrompt("a cat", left_half()),))
    else:
        r = expanding(
            steps=4, scheduler="Euler", regions=(RegionPrompt("a cat", left_half()),),
            controls=(ControlUnit(str(controlnets[0]), edges(), preprocessor="canny"),),
        )  # fmt: skip
    source = engine.generate(r, WAIT)
    assert isinstance(source, Finished), source
    again = source.request.with_changes(resume=ResumeFrom(source.job_id, 2))
    resumed = engine.generate(again, WAIT)
    assert np.abs(pixels(resumed) - pixels(source)).max() <= 2


def test_the_cli_expands_with_a_unit_and_a_region_and_records_them(
    tmp_path, capsys, control_models, controlnets
):
    from engine import cli, metadata

    init, mask, edge, out = (tmp_path / n for n in ("i.png", "m.png", "e.png", "o.png"))
    picture().save(init)
    left_half().save(mask)
    edges().save(edge)
    code = cli.main(
        ["generate", "--model", "tiny", "--steps", "2", "--prompt", "a beach", "--init",
         str(init), "--expand", "left=16", "--region", f"a cat={mask}", "--control",
         f"{controlnets[0]}:{edge}:0.5", "--preprocess", "canny", "--output", str(out)],
        models=control_models,
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    back = metadata.read_parameters_checked(out)
    assert back.request is not None and back.request.expand == Expand(left=16)
    # The record holds the regions as they ran, on the 48 px canvas, and the units as
    # given (with their preprocessor and image file, for Reuse parameters).
    assert back.request.regions[0].mask.size == (48, 32)
    assert np.asarray(back.request.regions[0].mask)[:, :32].min() == 255
    (unit,) = back.units
    assert (unit.weight, unit.preprocessor, unit.source) == (0.5, "canny", str(edge.resolve()))
