"""Jobs that take more than one plain pipeline run: outpainting (one run over the expanded
canvas, or piece by piece with "only masked area") and the forward process (a noised
picture shown, or the reverse process run from it). Worker thread only.

The worker hands in a JobContext: how to run one plan (accelerator session included), how
to report, and how to keep a trajectory. Each function returns the job's Finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from engine import families, forward, outpaint, unit_placement
from engine.api import (
    EngineError,
    ErrorKind,
    Event,
    Finished,
    GenerationRequest,
    JobCancelled,
    Mode,
    Started,
    Step,
)
from engine.compositing import fit, hard
from engine.plan import Inputs, Plan, make_plan, steps_to_run
from engine.preview import MAX_PREVIEW_SIDE
from engine.sampling import RunResult, StepReport, Trajectory

if TYPE_CHECKING:
    from engine.models import LoadedModel


@dataclass
class JobContext:
    job_id: int
    model: LoadedModel
    device: str
    started_at: float  # perf_counter at the job's start
    loaded_at: float  # perf_counter once the model was ready
    emit: Callable[[Event], None]
    run_plan: Callable[[Plan, StepReport, Callable[[Trajectory], None]], RunResult]
    keep: Callable[[Trajectory], None]
    should_cancel: Callable[[], bool]
    set_steps_done: Callable[[int], None]
    latent_cache: forward.LatentCache


def _timings(ctx: JobContext, sampling: float, decode: float, previews: float) -> dict[str, float]:
    return {
        "load": ctx.loaded_at - ctx.started_at,
        "sampling": sampling,
        "decode": decode,
        "previews": previews,
        "total": time.perf_counter() - ctx.started_at,
    }


def _filled(r: GenerationRequest, plan: Plan, seeds: tuple[int, ...]) -> GenerationRequest:
    return r.with_changes(
        seed=seeds[0], batch_size=len(seeds), steps=plan.steps, scheduler=plan.scheduler
    )


# ----------------------------------------------------------------------------- outpaint


class _PiecePlacer:
    """Puts a piece's previews (of its crop) into a preview of the whole canvas."""

    def __init__(self, canvas: Image.Image, crop: tuple[int, int, int, int]) -> None:
        size = fit(canvas.size, MAX_PREVIEW_SIDE)
        self.base = np.asarray(canvas.convert("RGB").resize(size, Image.Resampling.BOX))
        sx, sy = size[0] / canvas.width, size[1] / canvas.height
        x1, y1 = round(crop[0] * sx), round(crop[1] * sy)
        self.box = (x1, y1, max(x1 + 1, round(crop[2] * sx)), max(y1 + 1, round(crop[3] * sy)))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = self.box
        out = self.base.copy()
        out[y1:y2, x1:x2] = np.asarray(
            Image.fromarray(rgb).resize((x2 - x1, y2 - y1), Image.Resampling.BILINEAR)
        )
        return out


def run_expand(ctx: JobContext, r: GenerationRequest, inputs: Inputs) -> Finished:
    """Outpaint: the new area of the expanded canvas painted in one run or in pieces;
    every piece is an inpaint plan whose composite keeps all other pixels exactly."""
    assert r.expand is not None and r.init_image is not None
    profile = families.profile(ctx.model.family)
    if Mode.INPAINT not in profile.modes(ctx.model.variant):
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"{ctx.model.label} models cannot expand a picture: outpainting inpaints the "
            "new area, and diffusers has no inpaint pipeline for them (choose another model).",
        )
    # Families whose sides go in multiples of 16 (or 32) paint a canvas grown onto their
    # grid; the extra strip is new area, painted and then cropped off.
    picture, asked, given = r.init_image, r.expand, r
    e = outpaint.on_grid(picture.size, asked, profile.size_multiple)
    grown = e != asked
    width, height = outpaint.expanded_size(picture.size, e)
    # Units and regions on the expanded canvas (engine/unit_placement.py). The job's record
    # keeps the units as given (preprocessor, source) and the regions as they ran, on the
    # asked canvas.
    r = unit_placement.expanded(r.with_changes(expand=e, width=width, height=height))
    record = given.with_changes(regions=r.regions)
    if grown:
        box = outpaint.asked_box(picture.size, asked, e)
        record = given.with_changes(regions=unit_placement.cropped(r, box)[1])
    canvas = outpaint.canvas(picture, e, inputs.seeds[0])
    pieces = outpaint.pieces(r, profile.size_multiple)
    whole_mask = outpaint.new_area_mask(picture.size, e)
    per_piece = steps_to_run(r, profile.flow)  # an expansion is an inpaint: the strength decides
    total = per_piece * len(pieces)
    ctx.emit(Started(ctx.job_id, total, r.model, ctx.device, inputs.seeds))
    canvases = [canvas] * len(inputs.seeds)
    previews: list[np.ndarray] = []
    noisy_previews: list[np.ndarray] = []
    warnings: list[str] = []
    sampling = decode = spent = 0.0
    plan: Plan | None = None
    for n, piece in enumerate(pieces):
        crop = canvases[0].crop(piece.crop)
        seeds = inputs.seeds if len(pieces) == 1 else (inputs.seeds[0] + n,)
        controls, regions = unit_placement.cropped(r, piece.crop)
        sub = r.with_changes(
            controls=controls,
            regions=regions,
            init_image=crop,
            mask=whole_mask if len(pieces) == 1 else piece.mask(),
            mask_blur=0,
            width=crop.width,
            height=crop.height,
            expand=None,
            inpaint_only_masked=False,
            seed=seeds[0],
        )
        plan = make_plan(sub, ctx.model, Inputs(sub, seeds, None))
        assert plan.inpaint is not None
        # The pipeline paints exactly the new area (on the latent grid, as the sides
        # are multiples of 8): the picture's latents stay fixed through every step, so
        # the model continues them instead of painting over cells that are put back.
        assert sub.mask is not None
        exact = replace(plan.inpaint, seam_band=e.band, pipe_mask=hard(sub.mask))
        plan = replace(plan, inpaint=exact)
        place = _PiecePlacer(canvases[0], piece.crop) if len(pieces) > 1 else None
        done = n * per_piece

        def on_step(
            step: int,
            of: int,
            elapsed: float,
            x0: np.ndarray,
            noisy: np.ndarray,
            done: int = done,
            place: _PiecePlacer | None = place,
        ) -> None:
            if place is not None:
                x0, noisy = place(x0), place(noisy)
            ctx.set_steps_done(done + step)
            ctx.emit(Step(ctx.job_id, done + step, total, elapsed, x0, noisy))
            previews.append(x0)
            noisy_previews.append(noisy)

        # Only a one-run expansion on the asked canvas can be continued from a step: a
        # piece's trajectory covers its crop, a grown canvas's more than the picture.
        keep = ctx.keep if len(pieces) == 1 and not grown else (lambda _: None)
        result = ctx.run_plan(plan, on_step, keep)
        if ctx.should_cancel():
            raise JobCancelled()
        sampling += result.sampling_seconds
        decode += result.decode_seconds
        spent += result.callback_seconds
        warnings += [w for w in result.warnings if w not in warnings]
        if len(pieces) == 1:
            canvases = result.images
        else:
            canvases[0] = canvases[0].copy()
            canvases[0].paste(result.images[0], piece.crop[:2])
    assert plan is not None
    if grown:
        canvases = [image.crop(box) for image in canvases]
    return Finished(
        job_id=ctx.job_id,
        images=tuple(canvases),
        seeds=inputs.seeds,
        request=_filled(record, plan, inputs.seeds),
        timings=_timings(ctx, sampling, decode, spent),
        step_previews=tuple(previews),
        noisy_step_previews=tuple(noisy_previews),
        warnings=tuple(warnings),
    )


# ----------------------------------------------------------------------------- forward


def run_forward(ctx: JobContext, r: GenerationRequest, inputs: Inputs) -> Finished:
    """Show the init image noised to the request's level, or denoise from exactly there."""
    assert r.forward is not None
    seed = inputs.seeds[0]
    start, _ = forward.forward_latents(ctx.model, r, ctx.latent_cache, seed)
    if not r.forward.denoise:
        ctx.emit(Started(ctx.job_id, 0, r.model, ctx.device, inputs.seeds))
        began = time.perf_counter()
        image = forward.decode(ctx.model, start.vp)
        spent = time.perf_counter() - began
        return Finished(
            job_id=ctx.job_id,
            images=(image,),
            seeds=inputs.seeds,
            request=r.with_changes(seed=seed),
            timings=_timings(ctx, 0.0, spent, 0.0),
            facts=_facts(start),
        )
    plan = forward.denoise_plan(r, ctx.model, inputs, start)
    ctx.emit(Started(ctx.job_id, plan.total, r.model, ctx.device, inputs.seeds))

    def on_step(step: int, of: int, elapsed: float, x0: np.ndarray, noisy: np.ndarray) -> None:
        ctx.set_steps_done(step)
        ctx.emit(Step(ctx.job_id, step, of, elapsed, x0, noisy))

    result = ctx.run_plan(plan, on_step, ctx.keep)
    return Finished(
        job_id=ctx.job_id,
        images=tuple(result.images),
        seeds=inputs.seeds,
        request=_filled(r, plan, inputs.seeds),
        timings=_timings(
            ctx, result.sampling_seconds, result.decode_seconds, result.callback_seconds
        ),
        step_previews=tuple(result.trajectory.previews),
        noisy_step_previews=tuple(result.trajectory.noisy_previews),
        warnings=tuple(result.warnings),
        facts=_facts(start),
    )


def _facts(start: forward.Noised) -> dict[str, float]:
    facts = {"alpha_bar": start.alpha_bar, "index": float(start.index)}
    if start.timestep is not None:
        facts["t"] = start.timestep
    if start.sigma is not None:
        facts["sigma"] = start.sigma
    return facts
