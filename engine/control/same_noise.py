"""FLUX.1 ControlNet runs start from the noise the plain FLUX.1 pipeline would draw, and
what pipelines draw from torch's global generator comes from the job's seed.

Why a zero-weight FLUX ControlNet did not give the picture of no ControlNet: diffusers'
FluxControlNet pipelines (text to image, image to image, inpaint) encode the control image
with the VAE *before* preparing the latents, sampling that encoding with the job's own
generators (`retrieve_latents(vae.encode(control_image), generator=generator)`). That
advances every generator, so the initial noise (and for image to image and inpaint the
picture's encoding) came from a later point of the seed's stream than in FluxPipeline,
FluxImg2ImgPipeline and FluxInpaintPipeline. Everything else on the path is the same:
a zero-scaled residual adds exact zeros, and the schedule, guidance and timesteps match.

The fix keeps diffusers' pipelines as they are: for one call, the pipeline's latent
preparation (prepare_latents, and prepare_mask_latents for inpaint) takes generators of
its own, seeded from the job's seeds, so it draws exactly what the plain pipeline draws;
the control image's encoding still takes the job's generators, as in diffusers. FLUX's
sampler takes no generator during the steps, so nothing later reads them.

Some draws take no generator at all and use torch's global one: SD 3's ControlNet pipeline
samples the control image's encoding so (`latent_dist.sample()`), and the flow families'
"Euler a" (FlowMatchEuler's stochastic sampling) its per-step noise. Left alone, the same
seed gave a different picture on every run; `seeded_global_rng` seeds the global
generator from the job's seed for the call and puts its state back afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from typing import Any

import torch

# The per-job pipeline's methods that draw the starting point from the generators.
_PREPARERS = ("prepare_latents", "prepare_mask_latents")
# diffusers' pipelines that sample the control image's encoding from the job's generators.
ENCODE_CONTROL_FIRST = frozenset(
    {"FluxControlNetPipeline", "FluxControlNetImg2ImgPipeline", "FluxControlNetInpaintPipeline"}
)


def draw_as_plain(pipe: Any, seeds: tuple[int, ...]) -> None:
    """Let pipe's latent preparation draw from fresh generators of `seeds` (CPU, as the
    job's) where pipe encodes the control image first; pipe must be the job's own
    pipeline (it keeps the change)."""
    if type(pipe).__name__ not in ENCODE_CONTROL_FIRST:
        return
    fresh = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    for name in _PREPARERS:
        method = getattr(pipe, name, None)
        if method is None or "generator" not in inspect.signature(method).parameters:
            continue
        setattr(pipe, name, _with_generator(method, fresh))


def _with_generator(method: Any, generator: list[torch.Generator]) -> Any:
    signature = inspect.signature(method)

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.arguments["generator"] = generator
        return method(*bound.args, **bound.kwargs)

    return call


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """For one pipeline call: torch's global generators seeded with the job's seed, their
    state before the call restored after it.

    Every job runs under it, as it costs microseconds on the CPU: there it seeds and puts
    back the CPU generator alone. torch.manual_seed also seeds each accelerator torch was
    built for, and where one is not initialised it queues that call with a formatted
    stack trace (a file stat per frame): about 3 ms a job from the worker's deep stack,
    for generators a CPU job never draws from."""
    if device.type != "cpu":
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            yield
        return
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)
