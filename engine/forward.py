"""The forward process made visible: a picture's latents noised to a chosen depth of the
model's own schedule, decoded, and the reverse process run from exactly that latent.

x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise, with a_t the scheduler's alphas_cumprod at the
schedule's timestep t, in the VAE's (scaled) latent space. The noise comes from the seed
alone, so one seed gives the same noise at every depth and in "denoise from here". What
the pipeline holds at that point of the schedule is x_t itself for variance-preserving
schedulers (DDIM, DDPM, PNDM) and x_t / sqrt(a_t) = x0 + sigma_t noise for k-diffusion
ones (Euler, DPM++): exactly diffusers' scheduler.add_noise, which the tests compare with.

Flow-matching families (SD 3, FLUX.1, Z-Image, Qwen-Image, FLUX.2 klein, SANA) noise as
x_t = (1 - sigma) x0 + sigma noise on the schedule their pipeline runs (engine/flow_forward.py:
its sigmas and shift, the VAE's normalisation, packed latents): their scheduler's scale_noise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from engine import families, flow_forward
from engine.api import EngineError, ErrorKind, GenerationRequest, Mode
from engine.plan import Inputs, Plan, make_plan
from engine.preview import k_space
from engine.protocols import Scheduler
from engine.schedulers import make_scheduler

if TYPE_CHECKING:
    from engine.models import LoadedModel


@dataclass(frozen=True)
class Noised:
    """A picture's latents `level` steps deep into the forward process."""

    vp: torch.Tensor  # x_t in variance-preserving form (what is decoded and shown)
    pipeline: torch.Tensor  # the pipeline's latents at schedule index `index`
    index: int  # schedule index of the first reverse step (steps - level)
    timestep: float | None  # t (None at level 0: the picture itself)
    alpha_bar: float  # a_t (1.0 at level 0; a flow model's: (1 - sigma)^2, the signal's share)
    sigma: float | None = None  # a flow model's sigma (x_t = (1 - sigma) x0 + sigma noise)


def noised(x0: torch.Tensor, noise: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise."""
    return alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise


def seeded_noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """The seed's noise (float32, CPU): the same for every depth and for the reverse run."""
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))


def alpha_bar_at(scheduler: Any, index: int) -> float:
    """a_t at schedule index `index`: alphas_cumprod at the timestep, or for k-diffusion
    schedulers (whose timesteps may fall between the table's entries) from their sigma,
    a_t = 1 / (1 + sigma^2), which equals the table's value at whole timesteps."""
    if k_space(scheduler):
        sigma = float(scheduler.sigmas[index])
        return 1.0 / (1.0 + sigma**2)
    t = int(scheduler.timesteps[index])
    return float(scheduler.alphas_cumprod[t])


def noise_to(scheduler: Scheduler, x0: torch.Tensor, noise: torch.Tensor, level: int) -> Noised:
    """x0 noised `level` steps of the scheduler's schedule (set_timesteps already called)."""
    steps = len(scheduler.timesteps)
    index = steps - level
    if level == 0:
        return Noised(x0, x0, index, None, 1.0)
    a = alpha_bar_at(scheduler, index)
    vp = noised(x0.float(), noise.float(), a)
    pipeline = vp / a**0.5 if k_space(scheduler) else vp
    return Noised(vp, pipeline, index, float(scheduler.timesteps[index]), a)


class LatentCache:
    """The last picture's latents, so that dragging the slider encodes it only once."""

    def __init__(self) -> None:
        self._key: tuple[int, str] | None = None
        self._latents: torch.Tensor | None = None

    def encode(self, model: LoadedModel, image: Image.Image) -> torch.Tensor:
        rgb = image.convert("RGB")
        digest = hashlib.blake2b(rgb.tobytes(), digest_size=16).hexdigest()
        key = (id(model.pipe), f"{rgb.size}{digest}")
        if key != self._key or self._latents is None:
            self._latents = encode(model, rgb)
            self._key = key
        return self._latents

    def clear(self) -> None:
        self._key = self._latents = None


def _vae(model: LoadedModel) -> Any:
    return model.pipe.vae


def encode(model: LoadedModel, image: Image.Image) -> torch.Tensor:
    """The picture's latents x0 (scaled as the UNet sees them), float32 on the CPU; the
    distribution's mean, so that the same picture always gives the same x0."""
    vae = _vae(model)
    processor: Any = getattr(model.pipe, "image_processor")  # noqa: B009  # not in the Protocol
    pixels = processor.preprocess(image)
    if families.profile(model.family).flow:  # unpacked, as the transformer's VAE space
        return flow_forward.encode(vae, pixels)
    with torch.inference_mode():
        dist = vae.encode(pixels.to(model.device, vae.dtype)).latent_dist
        latents = dist.mean.float().cpu()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def decode(model: LoadedModel, latents: torch.Tensor) -> Image.Image:
    """Latents in variance-preserving form (a flow model's: unpacked), decoded by the
    model's VAE."""
    vae = _vae(model)
    if families.profile(model.family).flow:
        pixels = flow_forward.decode(vae, latents)
    else:
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        z = latents / vae.config.scaling_factor + shift
        with torch.inference_mode():
            pixels = vae.decode(z.to(model.device, vae.dtype)).sample.float().cpu()
    processor: Any = getattr(model.pipe, "image_processor")  # noqa: B009  # not in the Protocol
    image: Image.Image = processor.postprocess(pixels, output_type="pil")[0]
    return image


def forward_latents(
    model: LoadedModel, request: GenerationRequest, cache: LatentCache, seed: int
) -> tuple[Noised, Scheduler]:
    """The request's init image noised to its forward level, with the request's scheduler."""
    assert request.forward is not None and request.init_image is not None
    if families.profile(model.family).flow:
        return flow_latents(model, request, cache, seed)
    base = model.pipe.scheduler.config
    if getattr(model.pipe.scheduler, "alphas_cumprod", None) is None:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            "The forward-process view needs a model with a diffusion noise schedule "
            "(alphas_cumprod: SD 1.x, 2.x, SDXL); this model uses flow matching.",
        )
    scheduler = make_scheduler(request.scheduler, base)
    scheduler.set_timesteps(request.steps)
    x0 = cache.encode(model, request.init_image)
    noise = seeded_noise(tuple(x0.shape), seed)
    return noise_to(scheduler, x0, noise, request.forward.level), scheduler


def flow_latents(
    model: LoadedModel, request: GenerationRequest, cache: LatentCache, seed: int
) -> tuple[Noised, Scheduler]:
    """A flow model's forward process: x_t = (1 - sigma) x0 + sigma noise at the sigma of
    the schedule its own text-to-image pipeline runs for this size, packed as it holds it."""
    assert request.forward is not None and request.init_image is not None
    profile = families.profile(model.family)
    name = profile.pipeline_name(Mode.TXT2IMG, model.variant) or profile.pipeline_name(
        Mode.INPAINT, model.variant
    )
    if name not in flow_forward.SCHEDULE_RULES:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"The forward process does not cover {model.label} models: their sampler "
            "draws fresh noise at every step, so no single noise level leads back; "
            "choose another model.",
        )
    scheduler = make_scheduler(
        request.scheduler,
        model.pipe.scheduler.config,
        flow=True,
        offered=profile.samplers_for(model.variant),
        family_label=model.label,
    )
    width, height = request.init_image.size
    grid = profile.size_multiple
    if width % grid or height % grid:
        w, h = max(grid, width - width % grid), max(grid, height - height % grid)
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"{model.label} models need the picture's sides in multiples of {grid}; this "
            f"one is {width}x{height}, so crop or resize it (to {w}x{h}, for example).",
        )
    vae_scale = int(getattr(model.pipe, "vae_scale_factor", 8))
    flow_forward.pipeline_schedule(scheduler, name, request.steps, width, height, vae_scale)
    x0 = cache.encode(model, request.init_image)
    noise = seeded_noise(tuple(x0.shape), seed)
    level = request.forward.level
    index = len(scheduler.timesteps) - level
    if level == 0:
        packed = flow_forward.pack(profile, x0, width, height)
        return Noised(x0, packed, index, None, 1.0, 0.0), scheduler
    sigmas: Any = scheduler.sigmas  # type: ignore[attr-defined]  # every flow scheduler has them
    sigma = sigmas[index].to(torch.float32)
    x_t = flow_forward.noised(x0, noise, sigma)
    packed = flow_forward.pack(profile, x_t, width, height)
    timestep = float(scheduler.timesteps[index])
    s = float(sigma)
    return Noised(x_t, packed, index, timestep, (1 - s) ** 2, s), scheduler


def denoise_plan(
    request: GenerationRequest, model: LoadedModel, inputs: Inputs, start: Noised
) -> Plan:
    """A text-to-image plan that starts at schedule index start.index from start's latents."""
    assert request.init_image is not None
    width, height = request.init_image.size  # the latents' size, whatever the form says
    plain = request.with_changes(init_image=None, forward=None, width=width, height=height)
    plan = make_plan(plain, model, replace(inputs, request=plain))
    if plan.mode is not Mode.TXT2IMG:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            "Denoise from here needs a text-to-image model; this one is an inpainting model.",
        )
    return replace(plan, start_index=start.index, start_latents=start.pipeline)
