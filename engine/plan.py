"""Plan, then run: a request resolved into everything the runner needs, before it runs.

`check_inputs()` runs before any model loads, so bad input fails at once: the request's
own checks (validation.py), the resume source and its step, and the seeds. `make_plan()`
then resolves the checked inputs against the loaded model into a frozen `Plan`: the mode
and the diffusers pipeline class that serves it (from the family's profile in
engine/families/), the scheduler, the schedule's length and the index its first step
runs at (diffusers' get_timesteps rule for image-to-image and inpaint; the stored step for
a resume), the size, the inpaint setup and its crop, and the seeds.
sampling.PipelineRunner runs a Plan.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from diffusers.image_processor import VaeImageProcessor
from PIL import Image

from engine import compositing, families, validation
from engine.api import EngineError, ErrorKind, GenerationRequest, GuidanceKind, Mode
from engine.compositing import InpaintSetup
from engine.control.units import (
    ADAPTER_FAMILIES,
    ADAPTER_FAMILIES_MESSAGE,
    CONTROLNET_PIPELINES,
    is_adapter,
)
from engine.families.profile import accepts
from engine.protocols import PipelineClass

if TYPE_CHECKING:
    from engine.models import LoadedModel
    from engine.sampling import Trajectory

SEED_RANGE = 2**32  # a seed the engine picks is below this
# The grey an inpaint-only model (a 9-channel inpainting UNet, FLUX.1 Fill) paints over
# when it runs text-to-image.
_BLANK_GREY = (127, 127, 127)


def start_index(steps: int, strength: float, flow: bool = False) -> int:
    """Schedule index of the first step run: diffusers' get_timesteps rule, by which
    image-to-image and inpaint skip the first steps - int(steps * strength); the flow
    families' pipelines skip int(steps - steps * strength), which runs one step more
    where steps * strength is not whole (3 steps at 0.7: 3, not 2)."""
    if flow:
        return int(max(steps - min(steps * strength, steps), 0))
    return steps - min(int(steps * strength), steps)


def steps_to_run(request: GenerationRequest, flow: bool = False) -> int:
    """How many denoising steps a fresh (not resumed) job runs (flow: a flow family's)."""
    strength = 1.0 if request.mode is Mode.TXT2IMG else request.strength
    return request.steps - start_index(request.steps, strength, flow)


@dataclass(frozen=True)
class ResumePoint:
    """Continue `source` (a stored trajectory) after its `step`-th step (1-based)."""

    source: Trajectory
    step: int

    @property
    def offset(self) -> int:
        """Schedule index of the first step the resumed run takes."""
        return self.source.start_index + self.step


@dataclass(frozen=True)
class Inputs:
    """A request that passed every check that needs no model."""

    request: GenerationRequest
    seeds: tuple[int, ...]
    resume: ResumePoint | None

    @property
    def total(self) -> int:
        """Steps the job reports: the whole trajectory, resumed steps included."""
        return self.resume.source.total if self.resume else steps_to_run(self.request)


@dataclass(frozen=True)
class Plan:
    """Everything one run needs, resolved; PipelineRunner.run() reads nothing else."""

    request: GenerationRequest
    mode: Mode  # what the pipeline does (a resumed image-to-image continues as text-to-image)
    pipeline_class: PipelineClass
    scheduler: str
    steps: int  # length of the full schedule
    start_index: int  # schedule index of the trajectory's first step
    strength: float  # the pipeline's strength argument (1.0: from pure noise)
    width: int
    height: int
    inpaint: InpaintSetup | None
    seeds: tuple[int, ...]
    resume: ResumePoint | None
    # The pipeline's image argument in place of the request's init image: latents (a
    # hires fix's latent upscale) or one picture per batch image (engine/hires.py).
    image_input: Any = None
    # Denoise from here (engine/forward.py): the pipeline's latents at schedule index
    # start_index, from which the run starts instead of from fresh noise.
    start_latents: torch.Tensor | None = None
    guidance: GuidanceKind = GuidanceKind.CFG  # the loaded variant's (engine/families/)

    @property
    def total(self) -> int:
        """Steps in the trajectory (the resumed part included)."""
        return self.steps - self.start_index

    def filled_request(self) -> GenerationRequest:
        """The request as it ran: seed, batch, and for a resume the source's schedule and size."""
        return self.request.with_changes(
            seed=self.seeds[0],
            batch_size=len(self.seeds),
            steps=self.steps,
            scheduler=self.scheduler,
            width=self.width,
            height=self.height,
        )


def check_inputs(
    request: GenerationRequest,
    stored: Mapping[int, Trajectory],
    *,
    max_pixels: int = validation.MAX_PIXELS,
    kept: int = 0,
) -> Inputs:
    """Check what can be checked without a model; raise EngineError(BAD_INPUT) if not.

    stored: the trajectories of recent jobs (for a resume); kept: how many are stored,
    for the message when the source is gone."""
    validation.check_request(request, max_pixels=max_pixels)
    resume = None
    batch = request.batch_size
    if request.resume is not None:
        resume = ResumePoint(_resume_source(request, stored, kept), request.resume.step)
        batch = resume.source.latents[0].shape[0]
    seed = request.seed if request.seed is not None else random.randrange(SEED_RANGE)
    return Inputs(request, tuple(seed + i for i in range(batch)), resume)


def _resume_source(r: GenerationRequest, stored: Mapping[int, Trajectory], kept: int) -> Trajectory:
    assert r.resume is not None
    job_id, step = r.resume.job_id, r.resume.step
    source = stored.get(job_id)
    if source is None:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"Job {job_id} has no stored steps to continue from (the engine keeps the "
            f"last {kept} jobs).",
        )
    done = len(source.latents)
    if not 1 <= step <= done:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"Job {job_id} has steps 1 to {done}; choose one of those to continue from.",
        )
    if step >= source.total:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"Step {step} is job {job_id}'s last step: nothing is left to run.",
        )
    return source


def make_plan(request: GenerationRequest, model: LoadedModel, inputs: Inputs) -> Plan:
    """Resolve checked inputs against the loaded model."""
    r = request
    if inputs.resume is not None:
        # The source's schedule, size and inpaint setup; a resumed image-to-image run has
        # its init image inside the latents already, so it continues as text-to-image.
        source = inputs.resume.source
        setup, strength, start = source.inpaint, 1.0, source.start_index
        scheduler, steps, width, height = (
            source.scheduler,
            source.steps,
            source.width,
            source.height,
        )
        mode = Mode.INPAINT if setup is not None else Mode.TXT2IMG
    else:
        setup = _inpaint_setup(r, model.is_inpaint_unet)
        strength = r.strength if r.init_image is not None else 1.0
        start = start_index(r.steps, strength, families.profile(model.family).flow)
        scheduler, steps, width, height = r.scheduler, r.steps, r.width, r.height
        mode = Mode.INPAINT if setup is not None else r.mode
    profile = families.profile(model.family)
    pipeline_class = _pipeline_class(r, model, mode)
    _check_fits(profile, model.variant, scheduler, width, height, setup, pipeline_class)
    return Plan(
        request=r,
        mode=mode,
        pipeline_class=pipeline_class,
        scheduler=scheduler,
        steps=steps,
        start_index=start,
        strength=strength,
        width=width,
        height=height,
        inpaint=setup,
        seeds=inputs.seeds,
        resume=inputs.resume,
        guidance=profile.variant(model.variant).guidance,
    )


def _check_fits(
    profile: families.FamilyProfile,
    variant: str,
    scheduler: str,
    width: int,
    height: int,
    setup: InpaintSetup | None,
    pipeline_class: PipelineClass,
) -> None:
    """What the loaded family allows: its samplers, its size grid, its inpaint options."""
    label = profile.variant(variant).label
    found = []
    samplers = profile.samplers_for(variant)
    if scheduler not in {s.value for s in samplers}:
        names = ", ".join(s.value for s in samplers)
        found.append(f"the sampler {scheduler} does not fit {label} models (choose {names})")
    grid = profile.size_multiple
    for name, value in (("width", width), ("height", height)):
        if value % grid:
            low = value - value % grid
            tries = f"{low} or {low + grid}" if low else str(grid)
            found.append(
                f"{label} needs the {name} in multiples of {grid}, got {value} (try {tries})"
            )
    crops = setup is not None and setup.padding is not None
    if crops and not accepts(pipeline_class, "padding_mask_crop"):
        found.append(f"{label} models cannot inpaint only the masked area; turn that option off")
    if found:
        message = "; ".join(found)
        raise EngineError(ErrorKind.BAD_INPUT, message[0].upper() + message[1:] + ".")


def _inpaint_setup(r: GenerationRequest, inpaint_unet: bool) -> InpaintSetup | None:
    if r.mask is not None and r.init_image is not None:
        setup = compositing.inpaint_setup(r.init_image, r.mask, r.mask_blur)
        if not r.inpaint_only_masked:
            return setup
        # The same box the pipeline's padding_mask_crop computes from the same mask.
        crop = VaeImageProcessor.get_crop_region(
            setup.pipe_mask, r.width, r.height, pad=r.inpaint_padding
        )
        return replace(setup, crop=crop, padding=r.inpaint_padding)
    if not inpaint_unet:
        return None
    # A 9-channel inpainting UNet only runs inside the inpaint pipeline: paint it all.
    base = r.init_image or Image.new("RGB", (r.width, r.height), _BLANK_GREY)
    return compositing.whole_picture_setup(base)


def _pipeline_class(r: GenerationRequest, model: LoadedModel, mode: Mode) -> PipelineClass:
    """The family's pipeline for the mode, or its ControlNet pipeline for a job with
    ControlNet units (T2I adapters feed the UNet of either: engine/control/adapters.py)."""
    adapters = [is_adapter(u, r.model_folders) for u in r.controls]
    if any(adapters) and model.family not in ADAPTER_FAMILIES:
        raise EngineError(ErrorKind.BAD_INPUT, ADAPTER_FAMILIES_MESSAGE)
    if all(adapters):
        return families.profile(model.family).pipeline_class(mode, model.variant)
    by_mode = CONTROLNET_PIPELINES.get(model.family)
    if by_mode is None:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            "ControlNet units run with SD 1.x, SD 2.x, SDXL, SD 3 and FLUX.1 models; "
            f"{families.profile(model.family).label} ControlNets are not supported yet.",
        )
    if mode not in by_mode:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"{families.profile(model.family).label} ControlNets run for text to image only "
            "(diffusers has no other pipeline for them); remove the init image or the units.",
        )
    return by_mode[mode]
