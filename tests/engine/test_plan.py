"""Plan, then run: what make_plan resolves before any pipeline runs."""

from __future__ import annotations

import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLInpaintPipeline,
)
from diffusers.image_processor import VaeImageProcessor
from engine_helpers import box_mask, picture, request

from engine.api import EngineError, ErrorKind, GenerationRequest, Mode, ModelFamily, ResumeFrom
from engine.compositing import pipeline_mask
from engine.models import LoadedModel
from engine.plan import Plan, check_inputs, make_plan, start_index
from engine.sampling import Trajectory


def model(family: ModelFamily = ModelFamily.SD1, inpaint_unet: bool = False) -> LoadedModel:
    """make_plan reads only the family and the UNet kind of a loaded model."""
    return LoadedModel(
        source="x",
        family=family,
        pipe=None,  # type: ignore[arg-type]
        latent_rgb=None,
        tiny_vae=None,
        is_inpaint_unet=inpaint_unet,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )


def plan_for(
    r: GenerationRequest,
    loaded: LoadedModel | None = None,
    stored: dict[int, Trajectory] | None = None,
) -> Plan:
    return make_plan(r, loaded or model(), check_inputs(r, stored or {}))


@pytest.mark.parametrize("steps", [1, 7, 20])
@pytest.mark.parametrize("strength", [0.05, 0.3, 0.75, 1.0])
def test_start_index_is_where_diffusers_image_to_image_starts(steps, strength):
    scheduler = DPMSolverMultistepScheduler()
    scheduler.set_timesteps(steps)
    stand_in = type("Pipe", (), {"scheduler": scheduler})()
    _, run = StableDiffusionImg2ImgPipeline.get_timesteps(stand_in, steps, strength, "cpu")
    assert start_index(steps, strength) == steps - run


def test_text_to_image_plan():
    plan = plan_for(request(steps=9, seed=41, batch_size=3))
    assert plan.mode is Mode.TXT2IMG and plan.pipeline_class is StableDiffusionPipeline
    assert (plan.steps, plan.start_index, plan.strength) == (9, 0, 1.0)
    assert plan.seeds == (41, 42, 43) and plan.inpaint is None and plan.resume is None


def test_image_to_image_plan_skips_the_first_steps():
    plan = plan_for(request(steps=10, init_image=picture(), strength=0.35))
    assert plan.mode is Mode.IMG2IMG and plan.pipeline_class is StableDiffusionImg2ImgPipeline
    assert plan.start_index == 7 and plan.strength == 0.35


def test_only_masked_plan_holds_the_pipelines_own_crop():
    init, mask = picture((64, 64)), box_mask((64, 64), (40, 36, 52, 50))
    r = request(
        width=64,
        height=64,
        init_image=init,
        mask=mask,
        inpaint_only_masked=True,
        inpaint_padding=4,
    )
    plan = plan_for(r)
    assert plan.mode is Mode.INPAINT and plan.pipeline_class is StableDiffusionInpaintPipeline
    expected = VaeImageProcessor.get_crop_region(pipeline_mask(mask), 64, 64, pad=4)
    assert plan.inpaint is not None and plan.inpaint.crop == expected and plan.inpaint.padding == 4
    sdxl = plan_for(r, model(ModelFamily.SDXL))
    assert sdxl.pipeline_class is StableDiffusionXLInpaintPipeline


def test_an_inpainting_unet_paints_the_whole_picture_for_text_to_image():
    plan = plan_for(request(), model(inpaint_unet=True))
    assert plan.mode is Mode.INPAINT and plan.inpaint is not None
    assert (plan.inpaint.alpha == 1).all() and plan.inpaint.crop is None


def test_a_resume_continues_the_sources_schedule():
    source = Trajectory("Euler", 10, 3, 32, 32, None)
    source.latents = [torch.zeros(2, 4, 4, 4)] * 4
    r = request(steps=99, scheduler="DDIM", seed=5, resume=ResumeFrom(8, 2))
    plan = plan_for(r, stored={8: source})
    assert plan.mode is Mode.TXT2IMG  # an image-to-image source continues from its latents
    assert (plan.scheduler, plan.steps, plan.start_index) == ("Euler", 10, 3)
    assert plan.resume is not None and plan.resume.offset == 5
    assert plan.seeds == (5, 6)  # the source's batch
    filled = plan.filled_request()
    assert (filled.steps, filled.scheduler, filled.batch_size) == (10, "Euler", 2)


def test_bad_input_is_refused_before_any_model():
    with pytest.raises(EngineError) as err:
        check_inputs(request(resume=ResumeFrom(3, 1)), {}, kept=8)
    assert err.value.kind == ErrorKind.BAD_INPUT and "keeps the last 8 jobs" in err.value.message
    with pytest.raises(EngineError) as err:
        check_inputs(request(steps=60, scheduler="LCM"), {})
    assert "between 1 and 50 for LCM" in err.value.message
