"""Hires fix as A1111 has it: one job of two passes through the same loaded model.

1. The plan runs as it is (text-to-image at the base size).
2. Its result is enlarged: the final latents with a latent upscaler ("Latent (bicubic)"…),
   or the decoded pictures with Lanczos or an upscaler model.
3. Image-to-image at the larger size runs with the hires steps, denoising strength and
   (optionally) its own prompts, starting from the enlarged result.

Both passes report their steps as one run: step numbers and the total count across both,
so the progress bar, the previews and the scrubber cover the whole job, and cancel acts in
either pass. The job keeps the first pass's trajectory for "continue from here" (the two
schedules are not one trajectory, so only the first pass's steps can be continued); its
Finished request is the first pass's with the HiresFix record, which the metadata writes
in A1111's fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from engine import canvas_fits, families
from engine.api import EngineError, ErrorKind, ShouldCancel
from engine.plan import Inputs, Plan, make_plan
from engine.sampling import PipelineRunner, RunResult, StepReport, Trajectory
from engine.upscale_options import hires_size, hires_steps, is_latent, total_steps
from engine.upscalers.enlarge import enlarge, resize, upscale_latents

if TYPE_CHECKING:
    from engine.models import LoadedModel


def second_pass_plan(plan: Plan, model: LoadedModel, enlarged: Image.Image) -> Plan:
    """The image-to-image plan of pass 2 from pass 1's plan and its enlarged (first)
    picture; a latent upscale then sets the plan's image_input."""
    r = plan.request
    hires = r.hires
    assert hires is not None
    width, height = enlarged.size
    request = r.with_changes(
        prompt=hires.prompt or r.prompt,
        negative_prompt=hires.negative_prompt or r.negative_prompt,
        steps=hires_steps(hires, r.steps),
        strength=hires.denoising_strength,
        width=width,
        height=height,
        hires=None,
        init_image=enlarged,
    )
    return make_plan(request, model, Inputs(request, plan.seeds, None))


def run_hires(
    runner: PipelineRunner,
    plan: Plan,
    model: LoadedModel,
    *,
    on_step: StepReport,
    should_cancel: ShouldCancel,
    keep: Callable[[Trajectory], None],
    enlarge_options: dict,
) -> RunResult:
    """Both passes of a hires fix plan; keep() gets the first pass's trajectory (for
    "continue from here"); enlarge_options go to upscalers.enlarge()."""
    r = plan.request
    hires = r.hires
    assert hires is not None
    grand_total = total_steps(r, plan.total, families.profile(model.family).flow)

    def first_step(step: int, _: int, elapsed: float, x0: np.ndarray, noisy: np.ndarray) -> None:
        on_step(step, grand_total, elapsed, x0, noisy)

    # 1. The first pass, as planned (once the family is known to allow the second).
    canvas_fits.check_hires(r, model)
    first = runner.run(plan, model, on_step=first_step, should_cancel=should_cancel, keep=keep)

    # 2. Enlarge its result: the latents, or the pictures.
    size = hires_size(r)
    if is_latent(hires.upscaler):
        if model.is_inpaint_unet:
            raise EngineError(
                ErrorKind.BAD_INPUT,
                f"{hires.upscaler} needs a model that is not an inpainting model; choose "
                "the Lanczos hires upscaler or an upscaler model.",
            )
        latents = first.trajectory.latents[-1]
        # The decoded first pass, enlarged, only tells the plan its mode and size.
        second = second_pass_plan(plan, model, resize(first.images[0], size))
        second = replace(
            second,
            image_input=upscale_latents(latents, size, hires.upscaler).to(
                model.device, model.dtype
            ),
        )
    else:
        pictures = [
            enlarge(image, size, hires.upscaler, should_cancel=should_cancel, **enlarge_options)
            for image in first.images
        ]
        second = second_pass_plan(plan, model, pictures[0])
        if second.inpaint is None:  # (a 9-channel inpainting UNet repaints the first only)
            second = replace(second, image_input=pictures)

    # 3. The second pass, its steps numbered after the first's.
    done = len(first.trajectory.latents)
    first_seconds = first.sampling_seconds

    def second_step(step: int, _: int, elapsed: float, x0: np.ndarray, noisy: np.ndarray) -> None:
        on_step(done + step, grand_total, first_seconds + elapsed, x0, noisy)

    result = runner.run(second, model, on_step=second_step, should_cancel=should_cancel)
    return combined(first, result)


def combined(first: RunResult, second: RunResult) -> RunResult:
    """One result for both passes: the second's pictures, both passes' previews."""
    t = second.trajectory
    trajectory = Trajectory(
        t.scheduler,
        t.steps,
        t.start_index,
        t.width,
        t.height,
        t.inpaint,
        latents=[],
        previews=first.trajectory.previews + t.previews,
        noisy_previews=first.trajectory.noisy_previews + t.noisy_previews,
    )
    return RunResult(
        images=second.images,
        trajectory=trajectory,
        warnings=_unique(first.warnings + second.warnings),
        sampling_seconds=first.sampling_seconds + second.sampling_seconds,
        decode_seconds=first.decode_seconds + second.decode_seconds,
        callback_seconds=first.callback_seconds + second.callback_seconds,
    )


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
