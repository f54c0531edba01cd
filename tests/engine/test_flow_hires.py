"""Hires fix and the tiled SD upscale with the flow-matching families: both run (Lanczos
enlarges the first pass, image to image repaints it; FLUX.1 Fill repaints as an inpaint
of the whole picture) wherever diffusers has the pipeline, and what cannot finish is
refused in one sentence before any step runs (a latent upscaler, SANA and FLUX.2 klein,
which have no image-to-image pipeline, sizes off the 16 px grid)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_helpers import WAIT, picture
from flow_canvas_helpers import FLOW_MODELS, flow_request, module_engine, serve_flow

from engine.api import Failed, Finished, HiresFix, Mode, Step, Upscale
from engine.worker import Engine

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engine(tiny_models) -> Iterator[Engine]:
    yield from module_engine(tiny_models)


REPAINTING = [m for m in FLOW_MODELS if Mode.IMG2IMG in m.modes or m.modes == (Mode.INPAINT,)]
NOT_REPAINTING = [m for m in FLOW_MODELS if m not in REPAINTING]


@pytest.fixture(autouse=True)
def _served(tiny_models) -> None:
    serve_flow(tiny_models)


def _hires(model, **changes):
    hires = HiresFix(scale=2.0, upscaler="Lanczos", steps=2, denoising_strength=0.6)
    return flow_request(model, width=32, height=32, hires=hires).with_changes(**changes)


def test_the_families_without_image_to_image_are_sana_and_klein():
    assert {m.name for m in NOT_REPAINTING} == {"sana", "flux2-klein", "flux2-klein-base"}


@pytest.mark.parametrize("model", REPAINTING, ids=str)
def test_a_hires_fix_runs_both_passes_at_the_larger_size(engine, recorder, model):
    job = engine.submit(_hires(model))
    result = engine.wait(job, WAIT)
    assert isinstance(result, Finished), result
    assert result.images[0].size == (64, 64)
    steps = recorder.of(job, Step)
    assert steps[-1].step == steps[-1].total > steps[0].total // 2
    assert result.request.hires == _hires(model).hires


@pytest.mark.parametrize("model", REPAINTING, ids=str)
def test_a_tiled_sd_upscale_repaints_every_tile(engine, recorder, model):
    up = Upscale(scale=2.0, sd_tiles=True, tile=64, overlap=16)
    r = flow_request(model, width=64, height=64, init_image=picture((64, 64)), upscale=up,
                     strength=0.75, steps=4)  # fmt: skip
    job = engine.submit(r)
    result = engine.wait(job, WAIT)
    assert isinstance(result, Finished), result
    assert result.images[0].size == (128, 128)
    assert len(recorder.of(job, Step)) >= 9  # 3 x 3 tiles of 64 over 128, at least a step each


@pytest.mark.parametrize("model", [m for m in REPAINTING if m.name in ("sd3", "flux-dev")], ids=str)
@pytest.mark.parametrize("upscaler", ["Latent", "Latent (bicubic)"])
def test_a_latent_upscaler_is_refused_before_any_step(engine, recorder, model, upscaler):
    r = _hires(model)
    job = engine.submit(r.with_changes(hires=HiresFix(upscaler=upscaler, steps=2)))
    result = engine.wait(job, WAIT)
    assert isinstance(result, Failed) and "Lanczos" in result.message, result
    assert not recorder.of(job, Step)


@pytest.mark.parametrize("model", NOT_REPAINTING, ids=str)
def test_families_without_image_to_image_refuse_hires_fix_in_one_sentence(engine, recorder, model):
    job = engine.submit(_hires(model))
    result = engine.wait(job, WAIT)
    assert isinstance(result, Failed), result
    assert "image to image" in result.message and result.message.count(". ") == 0
    assert not recorder.of(job, Step)


def test_a_hires_size_off_the_16_pixel_grid_is_refused_before_any_step(engine, recorder):
    flux = next(m for m in FLOW_MODELS if m.name == "flux-dev")
    job = engine.submit(
        _hires(flux, width=48, height=48, hires=HiresFix(scale=1.5, upscaler="Lanczos"))
    )
    result = engine.wait(job, WAIT)
    assert isinstance(result, Failed) and "72x72" in result.message, result
    assert not recorder.of(job, Step)


@pytest.mark.parametrize("model", [m for m in REPAINTING if Mode.IMG2IMG in m.modes], ids=str)
def test_image_to_image_reports_the_steps_the_flow_pipeline_runs(engine, recorder, model):
    # The flow pipelines skip int(steps - steps * strength): 3 steps at 0.7 run 3, not 2.
    r = flow_request(model, init_image=picture((64, 64)), strength=0.7, steps=3)
    job = engine.submit(r)
    result = engine.wait(job, WAIT)
    assert isinstance(result, Finished), result
    steps = recorder.of(job, Step)
    assert [s.step for s in steps] == [1, 2, 3] and {s.total for s in steps} == {3}
