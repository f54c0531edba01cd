"""Outpainting with the flow-matching families that have an inpaint pipeline (SD 3, FLUX.1
dev / schnell / Fill, Z-Image, Qwen-Image, FLUX.2 klein): the original pixels come back
exactly and the new area is painted, through the engine and through the CLI's --expand;
SANA, which diffusers gives no inpaint pipeline, is refused in one sentence."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from engine_helpers import WAIT, picture
from flow_canvas_helpers import FLOW_MODELS, FlowModel, flow_request, module_engine, serve_flow
from PIL import Image

from engine import cli, metadata, outpaint
from engine.api import Expand, Failed, Finished, GenerationRequest, Mode
from engine.worker import Engine

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engine(tiny_models) -> Iterator[Engine]:
    yield from module_engine(tiny_models)


INPAINTING = [m for m in FLOW_MODELS if Mode.INPAINT in m.modes]
NO_INPAINT = [m for m in FLOW_MODELS if Mode.INPAINT not in m.modes]


@pytest.fixture(autouse=True)
def _served(tiny_models) -> None:
    serve_flow(tiny_models)


def expanding(model: FlowModel, image, **sides: int) -> GenerationRequest:
    e = Expand(**sides)
    width, height = outpaint.expanded_size(image.size, e)
    return flow_request(model, init_image=image, expand=e, width=width, height=height, strength=1.0)


def test_the_families_with_an_inpaint_pipeline_are_the_expected_ones():
    assert {m.name for m in NO_INPAINT} == {"sana", "sana-sprint"}


@pytest.mark.parametrize("model", INPAINTING, ids=str)
def test_expanding_keeps_the_original_exactly_and_paints_the_new_area(engine, model):
    image = picture((64, 48))
    r = expanding(model, image, left=16, bottom=16)
    result = engine.generate(r, WAIT)
    assert isinstance(result, Finished), result
    out = np.asarray(result.images[0].convert("RGB"))
    assert result.images[0].size == (80, 64)
    assert np.array_equal(out[0:48, 16:80], np.asarray(image))
    fill = np.asarray(outpaint.canvas(image, r.expand, result.seeds[0]))
    new = np.asarray(outpaint.new_area_mask(image.size, r.expand)) > 0
    assert (out[new] != fill[new]).any(axis=1).mean() > 0.9  # painted, not the fill


@pytest.mark.parametrize("model", NO_INPAINT, ids=str)
def test_a_family_without_an_inpaint_pipeline_is_refused_in_one_sentence(engine, model):
    result = engine.generate(expanding(model, picture((64, 64)), right=16), WAIT)
    assert isinstance(result, Failed), result
    assert "inpaint" in result.message.lower() and result.message.count(". ") == 0


@pytest.mark.parametrize("model", INPAINTING, ids=str)
def test_a_canvas_off_the_16_pixel_grid_is_painted_on_it_and_cropped_back(engine, model):
    image = picture((72, 56))  # an SD-sized picture: sides in multiples of 8 only
    r = expanding(model, image, left=8, top=16)
    result = engine.generate(r, WAIT)
    assert isinstance(result, Finished), result
    assert result.images[0].size == (80, 72)
    out = np.asarray(result.images[0].convert("RGB"))
    assert np.array_equal(out[16:72, 8:80], np.asarray(image))
    assert result.request.width == 80 and result.request.expand == r.expand


@pytest.mark.parametrize("model", INPAINTING, ids=str)
def test_piece_by_piece_keeps_the_original_with_crops_on_the_grid(engine, model):
    image = picture((96, 64))
    r = expanding(model, image, left=16, right=24, top=16).with_changes(
        inpaint_only_masked=True, inpaint_padding=8, expand=Expand(16, 24, 16, 0, tile=56)
    )
    grid = model.profile.size_multiple
    grown = outpaint.on_grid(image.size, r.expand, grid)
    size = outpaint.expanded_size(image.size, grown)
    pieces = outpaint.pieces(r.with_changes(expand=grown, width=size[0], height=size[1]), grid)
    assert len(pieces) > 2
    for piece in pieces:
        x1, y1, x2, y2 = piece.crop
        assert (x2 - x1) % grid == 0 and (y2 - y1) % grid == 0
    result = engine.generate(r, WAIT)
    assert isinstance(result, Finished), result
    assert result.images[0].size == (136, 80)
    out = np.asarray(result.images[0].convert("RGB"))
    assert np.array_equal(out[16:80, 16:112], np.asarray(image))


@pytest.mark.parametrize("model", INPAINTING, ids=str)
def test_the_cli_expand_keeps_the_original_pixels(tmp_path, capsys, tiny_models, model):
    init, out = tmp_path / "init.png", tmp_path / "wide.png"
    image = picture((64, 48))
    image.save(init)
    sampler = model.profile.variant(model.variant).scheduler.value  # the stand-in has no files
    args = ["generate", "--model", model.source, "--steps", "2", "--prompt", "a beach",
            "--scheduler", sampler, "--init", str(init), "--expand", "left=16,right=16",
            "--output", str(out)]  # fmt: skip
    code = cli.main(args, models=tiny_models)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    with Image.open(out) as saved:
        assert saved.size == (96, 48)
        kept = np.asarray(saved.convert("RGB"))[:, 16:80]
    assert np.array_equal(kept, np.asarray(image))
    back = metadata.read_parameters(out)
    assert back is not None and back.expand == Expand(left=16, right=16)
