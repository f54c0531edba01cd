"""The forward process for flow-matching families (SD 3, FLUX.1, Z-Image, Qwen-Image,
FLUX.2 klein, SANA): x_t = (1 - sigma) x0 + sigma noise, on the schedule the family's own
text-to-image pipeline would run, in the latents' form the pipeline holds them.

Three things differ between the families, and each is answered here from what the model
and its pipeline are, not from the family's name:
- the schedule: every pipeline hands its scheduler sigmas and a shift mu its own way
  (SD 3 and SANA: the scheduler's own shift, mu from the resolution only where the config
  asks for dynamic shifting; FLUX.1 and Qwen-Image: sigmas 1 -> 1/n and mu from the
  resolution; Z-Image: the same sigmas from torch; klein: its empirical mu from size and
  steps). `pipeline_schedule` reproduces the call of the pipeline class that will run,
  with diffusers' own helpers, so "denoise from here" continues on exactly that schedule;
- the VAE's normalisation (`encode` / `decode`): shift and scale (AutoencoderKL), the
  per-channel mean and std of Qwen-Image's video VAE, klein's batch-norm statistics in
  its 2 x 2 patch space, the DC-AE's scale;
- the packing: FLUX.1, Qwen-Image and klein pipelines hold tokens; the family profile's
  `unpack` (engine/families/) says how, and `pack` is its inverse permutation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderDC, AutoencoderKLFlux2, AutoencoderKLQwenImage
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu
from diffusers.pipelines.z_image.pipeline_z_image import get_default_z_image_sigmas

from engine import families
from engine.api import EngineError, ErrorKind

# ----------------------------------------------------------------------------- schedule


def _seq_len(width: int, height: int, vae_scale: int, patch: int = 2) -> int:
    return (height // vae_scale // patch) * (width // vae_scale // patch)


def _mu(config: Any, seq_len: int, max_shift: float = 1.15) -> float:
    return float(
        calculate_shift(
            seq_len,
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", max_shift),
        )
    )


def _linspace(steps: int) -> np.ndarray:
    return np.linspace(1.0, 1 / steps, steps)


ScheduleRule = Callable[[Any, int, int, int, int], dict[str, Any]]
"""(scheduler, steps, width, height, vae scale) -> set_timesteps' keyword arguments."""


def _own_shift(scheduler: Any, steps: int, width: int, height: int, vae: int) -> dict[str, Any]:
    # StableDiffusion3Pipeline (patch size 2 in every SD 3 model), SanaPipeline.
    if scheduler.config.get("use_dynamic_shifting", None):
        return {
            "num_inference_steps": steps,
            "mu": _mu(scheduler.config, _seq_len(width, height, vae), 1.16),
        }
    return {"num_inference_steps": steps}


def _flux(scheduler: Any, steps: int, width: int, height: int, vae: int) -> dict[str, Any]:
    # FluxPipeline, FluxFillPipeline and klein drop the sigmas for a solver with flow sigmas.
    sigmas = None if scheduler.config.get("use_flow_sigmas", False) else _linspace(steps)
    mu = _mu(scheduler.config, _seq_len(width, height, vae))
    return _sigmas_or_steps(sigmas, steps) | {"mu": mu}


def _qwen(scheduler: Any, steps: int, width: int, height: int, vae: int) -> dict[str, Any]:
    return {"sigmas": _linspace(steps), "mu": _mu(scheduler.config, _seq_len(width, height, vae))}


def _zimage(scheduler: Any, steps: int, width: int, height: int, vae: int) -> dict[str, Any]:
    sigmas = get_default_z_image_sigmas(steps)
    return {"sigmas": sigmas, "mu": _mu(scheduler.config, _seq_len(width, height, vae))}


def _klein(scheduler: Any, steps: int, width: int, height: int, vae: int) -> dict[str, Any]:
    sigmas = None if scheduler.config.get("use_flow_sigmas", False) else _linspace(steps)
    mu = compute_empirical_mu(_seq_len(width, height, vae), steps)
    return _sigmas_or_steps(sigmas, steps) | {"mu": mu}


def _sigmas_or_steps(sigmas: np.ndarray | None, steps: int) -> dict[str, Any]:
    return {"num_inference_steps": steps} if sigmas is None else {"sigmas": sigmas}


# The text-to-image pipeline classes' way of setting the schedule (read from diffusers
# 0.42's __call__ of each); the tests compare with the sigmas the pipelines really use.
SCHEDULE_RULES: dict[str, ScheduleRule] = {
    "StableDiffusion3Pipeline": _own_shift,
    "SanaPipeline": _own_shift,
    "FluxPipeline": _flux,
    "FluxFillPipeline": _flux,
    "QwenImagePipeline": _qwen,
    "ZImagePipeline": _zimage,
    "Flux2KleinPipeline": _klein,
}


def pipeline_schedule(
    scheduler: Any, pipeline_name: str, steps: int, width: int, height: int, vae_scale: int
) -> None:
    """Set the scheduler's timesteps as pipeline `pipeline_name` would for this size."""
    rule = SCHEDULE_RULES.get(pipeline_name)
    if rule is None:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"The forward process does not know the schedule of {pipeline_name}; "
            "choose a text-to-image model of a supported family.",
        )
    kwargs = rule(scheduler, steps, width, height, vae_scale)
    if "sigmas" in kwargs:
        scheduler.set_timesteps(**kwargs)
    else:
        scheduler.set_timesteps(kwargs.pop("num_inference_steps"), **kwargs)


def noised(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_t = sigma noise + (1 - sigma) x0, in the order scale_noise computes it."""
    return sigma * noise + (1.0 - sigma) * x0


# ----------------------------------------------------------------------------- packing


@cache
def _permutation(
    unpack: Any, channels: int, width: int, height: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """Where each unpacked element sits in the packed tokens, and the tokens' shape."""
    tokens = (height // 16) * (width // 16)
    shape = (tokens, channels * 4)
    index = np.arange(tokens * channels * 4).reshape(shape)
    return unpack(index, width, height).reshape(-1), shape


def pack(
    profile: families.FamilyProfile, latents: torch.Tensor, width: int, height: int
) -> torch.Tensor:
    """B x C x h x w latents -> the pipeline's form (tokens for the families that pack)."""
    if profile.unpack is None:
        return latents
    where, shape = _permutation(profile.unpack, latents.shape[1], width, height)
    out = torch.empty((latents.shape[0], shape[0] * shape[1]), dtype=latents.dtype)
    out[:, torch.from_numpy(where)] = latents.reshape(latents.shape[0], -1)
    return out.reshape(latents.shape[0], *shape)


def unpack(
    profile: families.FamilyProfile, latents: torch.Tensor, width: int, height: int
) -> torch.Tensor:
    """The pipeline's form -> B x C x h x w."""
    if profile.unpack is None:
        return latents
    return torch.stack(
        [
            torch.from_numpy(np.ascontiguousarray(profile.unpack(x.numpy(), width, height)))
            for x in latents
        ]
    )


# ----------------------------------------------------------------------------- the VAE


def _patchify(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return (
        x.view(b, c, h // 2, 2, w // 2, 2)
        .permute(0, 1, 3, 5, 2, 4)
        .reshape(b, c * 4, h // 2, w // 2)
    )


def _unpatchify(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return (
        x.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, h * 2, w * 2)
    )


def _batch_norm(vae: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = vae.bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
    std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
    return mean, std.to(like.device, like.dtype)


def _channel_stats(vae: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, len(vae.config.latents_mean), 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(like.device, like.dtype)
    std = torch.tensor(vae.config.latents_std).view(shape).to(like.device, like.dtype)
    return mean, std


def encode(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1] (B x 3 x H x W) -> the normalised latents the transformer sees,
    B x C x h x w; the distribution's mean, so one picture always gives one x0."""
    pixels = pixels.to(vae.device, vae.dtype)
    with torch.inference_mode():
        if isinstance(vae, AutoencoderKLQwenImage):  # frames, and per-channel statistics
            latents = vae.encode(pixels[:, :, None]).latent_dist.mean
            mean, std = _channel_stats(vae, latents)
            return ((latents - mean) / std)[:, :, 0].float().cpu()
        if isinstance(vae, AutoencoderDC):  # SANA: a deterministic latent
            return (vae.encode(pixels).latent * vae.config.scaling_factor).float().cpu()
        latents = vae.encode(pixels).latent_dist.mean
        if isinstance(vae, AutoencoderKLFlux2):  # batch norm over the 2 x 2 patches
            patches = _patchify(latents)
            mean, std = _batch_norm(vae, patches)
            return _unpatchify((patches - mean) / std).float().cpu()
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return ((latents - shift) * vae.config.scaling_factor).float().cpu()


def decode(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """The inverse of encode's normalisation, then the VAE's decoder: pixels in [-1, 1]."""
    z = latents.to(vae.device, vae.dtype)
    with torch.inference_mode():
        if isinstance(vae, AutoencoderKLQwenImage):
            mean, std = _channel_stats(vae, z[:, :, None])
            return vae.decode(z[:, :, None] * std + mean).sample[:, :, 0].float().cpu()
        if isinstance(vae, AutoencoderDC):
            return vae.decode(z / vae.config.scaling_factor).sample.float().cpu()
        if isinstance(vae, AutoencoderKLFlux2):
            patches = _patchify(z)
            mean, std = _batch_norm(vae, patches)
            return vae.decode(_unpatchify(patches * std + mean)).sample.float().cpu()
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return vae.decode(z / vae.config.scaling_factor + shift).sample.float().cpu()
