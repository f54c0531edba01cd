"""Which run a plan takes: a plain pipeline run, a hires fix (two passes), a tiled SD
upscale, or an upscale that only enlarges pixels and needs no diffusion model.

The worker calls run() for every job with a loaded model (but outpainting and the forward
process, which engine/canvas_jobs.py runs) and pixel_upscale() for an upscale with no SD
pass; both return sampling's RunResult, so the worker reports all of
them the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from engine.api import GenerationRequest, ShouldCancel
from engine.compositing import fit
from engine.hires import run_hires
from engine.preview import MAX_PREVIEW_SIDE
from engine.sampling import PipelineRunner, RunResult, StepReport, Trajectory
from engine.tiled_upscale import run_tiled
from engine.upscale_options import total_steps, upscale_size
from engine.upscalers.enlarge import enlarge

if TYPE_CHECKING:
    from engine.models import LoadedModel
    from engine.plan import Plan


def enlarge_options(
    request: GenerationRequest, *, allow_pickle: bool, device: Any = "cpu"
) -> dict[str, Any]:
    return {"model_folders": request.model_folders, "allow_pickle": allow_pickle, "device": device}


def run(
    runner: PipelineRunner,
    plan: Plan,
    model: LoadedModel,
    *,
    on_step: StepReport,
    should_cancel: ShouldCancel,
    keep: Callable[[Trajectory], None],
    allow_pickle: bool,
) -> RunResult:
    r = plan.request
    options = enlarge_options(r, allow_pickle=allow_pickle, device=model.device)
    if r.hires is not None:
        return run_hires(
            runner,
            plan,
            model,
            on_step=on_step,
            should_cancel=should_cancel,
            keep=keep,
            enlarge_options=options,
        )
    if r.upscale is not None:
        return run_tiled(
            runner,
            plan,
            model,
            on_step=on_step,
            should_cancel=should_cancel,
            enlarge_options=options,
        )
    return runner.run(plan, model, on_step=on_step, should_cancel=should_cancel, keep=keep)


def _thumbnail(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize(fit(image.size, MAX_PREVIEW_SIDE)))


def pixel_upscale(
    request: GenerationRequest,
    *,
    on_step: StepReport,
    should_cancel: ShouldCancel,
    allow_pickle: bool,
    device: Any = "cpu",
) -> RunResult:
    """Enlarge the request's init image with Lanczos or an upscaler model, no SD pass.
    Each piece an upscaler model finishes counts as a step."""
    r = request
    assert r.upscale is not None and r.init_image is not None
    total = total_steps(r, 1)
    start = time.perf_counter()
    before = _thumbnail(r.init_image)
    reported = [0]

    def tile_done(done: int, _: int) -> None:
        reported[0] = min(reported[0] + 1, total)
        on_step(reported[0], total, time.perf_counter() - start, before, before)

    image = enlarge(
        r.init_image,
        upscale_size(r),
        r.upscale.upscaler,
        model_folders=r.model_folders,
        allow_pickle=allow_pickle,
        device=device,
        should_cancel=should_cancel,
        tile_done=tile_done,
    )
    after = _thumbnail(image)
    seconds = time.perf_counter() - start
    trajectory = Trajectory("", 0, 0, image.width, image.height, None, [], [after], [after])
    return RunResult([image], trajectory, [], seconds, 0.0, 0.0)
