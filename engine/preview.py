"""Cheap step previews: the model's estimate of the final image (x0), and the noisy x_t.

diffusers' step callback hands over only the noisy latents (diffusers issue 3579), so
X0Tap wraps the scheduler's step() to catch the x0 estimate the scheduler computes
anyway. Latents become RGB through a linear map per model family (microseconds), or
through a tiny autoencoder (TAESD) when its weights are present, within a time budget.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine import families
from engine.api import ModelFamily
from engine.compositing import fit
from engine.families.profile import Factors
from engine.protocols import Scheduler

TAESD_BUDGET = 0.01  # share of sampling time the tiny autoencoder may take
MAX_PREVIEW_SIDE = 512  # the long side of every step preview, at most


def family_factors(family: ModelFamily) -> Factors:
    """The family's published (or fitted) linear latent-to-RGB map."""
    return families.profile(family).latent_rgb


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 array in [-1, 1] -> uint8."""
    return np.clip((rgb + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def to_numpy(latents: torch.Tensor) -> np.ndarray:
    """The first image's latents as a float32 C x H x W array on the CPU."""
    return latents[0].detach().to("cpu", torch.float32).numpy()


class LatentRGB:
    """latents (B x C x H x W tensor, or C x H x W array) -> uint8 H x W x 3 of the first image.

    Plain numpy on the CPU: tiny torch ops wake the intra-op thread pool, which costs
    milliseconds on a busy machine, while this takes microseconds. One matrix product
    (3 x C by C x HW): numpy's einsum does not reach BLAS for this contraction and took
    about 3 ms on a 128 x 128 latent against 0.05 ms here (bench/engine_overhead.py
    reports the cost per step at each family's default size).
    """

    def __init__(self, factors: Factors) -> None:
        self._factors_t = np.ascontiguousarray(np.asarray(factors[0], dtype=np.float32).T)
        self._bias = np.asarray(factors[1], dtype=np.float32).reshape(3, 1)

    def __call__(self, latents: torch.Tensor | np.ndarray) -> np.ndarray:
        lat = latents if isinstance(latents, np.ndarray) else to_numpy(latents)
        channels = min(lat.shape[0], self._factors_t.shape[1])
        height, width = lat.shape[-2:]
        flat = lat[:channels].reshape(channels, height * width).astype(np.float32, copy=False)
        rgb = self._factors_t[:, :channels] @ flat + self._bias  # 3 x HW
        return _to_uint8(rgb.reshape(3, height, width).transpose(1, 2, 0))


class PackedLatentRGB:
    """Packed latents (tokens x 4C, each token a 2 x 2 patch of C channels, as FLUX,
    Qwen-Image and FLUX.2 hold them) -> uint8 h x w x 3, colours mapped before unpacking.

    The linear map acts on each channel at each of a token's four positions alike, so it
    is one (4C x 12) matrix on the tokens, giving each token its 2 x 2 patch of colours;
    the family's unpack rule then moves 3 channels instead of C. Unpacking all C channels
    first copied the whole latent (1 MB a preview for FLUX at 1024 px, about 0.5 ms, two
    previews a step) before the map threw most of it away.
    """

    def __init__(self, factors: Factors, unpack: Callable[[np.ndarray], np.ndarray]) -> None:
        self._factors = np.asarray(factors[0], dtype=np.float32)  # C x 3
        self._bias = np.asarray(factors[1], dtype=np.float32).reshape(3, 1, 1)
        self._unpack = unpack
        self._maps: dict[int, np.ndarray] = {}  # token width -> its matrix

    def _map(self, width: int) -> np.ndarray:
        matrix = self._maps.get(width)
        if matrix is None:
            channels = width // 4
            used = min(channels, self._factors.shape[0])  # as LatentRGB: the first ones
            blocks = np.zeros((channels, 4, 3, 4), np.float32)  # (c, position) -> (rgb, position)
            for position in range(4):
                blocks[:used, position, :, position] = self._factors[:used]
            matrix = self._maps[width] = blocks.reshape(4 * channels, 12)
        return matrix

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        """tokens: one image's, tokens x 4C float32."""
        patches = tokens.astype(np.float32, copy=False) @ self._map(tokens.shape[-1])
        rgb = self._unpack(patches) + self._bias  # the unpack rule takes any channel count
        return _to_uint8(rgb.transpose(1, 2, 0))


def _x0_from_sigma(scheduler: Scheduler, model_output: torch.Tensor, sample: torch.Tensor) -> Any:
    """x0 from the scheduler's noise level, for schedulers that do not return it."""
    step_index = getattr(scheduler, "step_index", None)
    sigmas = getattr(scheduler, "sigmas", None)
    if step_index is None or sigmas is None:
        return None
    # step() has already advanced the index: the sample belonged to the previous one.
    sigma = sigmas[max(step_index - 1, 0)].to(sample.device, sample.dtype)
    prediction = scheduler.config.prediction_type
    if k_space(scheduler):  # k-diffusion space: x = x0 + sigma * eps
        alpha, sig = 1.0, sigma
        sample_vp = sample / (sigma**2 + 1) ** 0.5
    else:  # variance-preserving space: x = alpha * x0 + sigma_vp * eps
        alpha = 1.0 / (sigma**2 + 1) ** 0.5
        sig = sigma * alpha
        sample_vp = sample
    if prediction == "epsilon":
        return (sample - sig * model_output) / alpha
    if prediction == "v_prediction":
        a = 1.0 / (sigma**2 + 1) ** 0.5
        return a * sample_vp - sigma * a * model_output
    return model_output  # "sample": the model predicts x0 itself


def k_space(scheduler: Scheduler) -> bool:
    """True for k-diffusion style schedulers whose samples are x0 + sigma * eps."""
    return float(getattr(scheduler, "init_noise_sigma", 1.0)) > 1.0


def vp_scale(scheduler: Scheduler, in_k_space: bool) -> float:
    """Factor that brings the scheduler's current sample to variance-preserving form,
    as scale_model_input would, without a torch op."""
    sigmas = getattr(scheduler, "sigmas", None)
    index = getattr(scheduler, "step_index", None)
    if not in_k_space or sigmas is None or index is None:
        return 1.0
    sigma = float(sigmas[min(index, len(sigmas) - 1)])
    return 1.0 / (sigma**2 + 1) ** 0.5


def x0_from_velocity(scheduler: Scheduler, velocity: torch.Tensor, sample: torch.Tensor) -> Any:
    """x0 of a flow-matching model, for the batch's first image: x_t = (1 - sigma) x0 +
    sigma noise and the model predicts v = noise - x0, so x0 = x_t - sigma v."""
    step_index = getattr(scheduler, "step_index", None)
    sigmas = getattr(scheduler, "sigmas", None)
    if step_index is None or sigmas is None:
        return None
    # step() has already advanced the index: the sample belonged to the previous one.
    sigma = sigmas[max(step_index - 1, 0)].to(sample.device, torch.float32)
    # Previews show the first image only: the rest of a batch is not worth the work.
    return (sample[:1].float() - sigma * velocity[:1].float()).to(sample.dtype)


class X0Tap:
    """Wraps scheduler.step() on one scheduler instance and keeps its latest x0 estimate.

    functools.wraps keeps step()'s signature visible, so pipelines still hand over
    their generator (ancestral samplers) and eta. flow: the model predicts a flow
    velocity (engine/families/, profile.flow).
    """

    def __init__(self, scheduler: Scheduler, *, flow: bool = False) -> None:
        self.scheduler = scheduler
        self.x0: torch.Tensor | None = None
        self.before_first_step: Callable[[], None] | None = None
        config = scheduler.config
        x0_in_history = hasattr(scheduler, "model_outputs") and (
            getattr(config, "algorithm_type", "") in ("dpmsolver++", "sde-dpmsolver++")
            or bool(getattr(config, "predict_x0", False))
        )
        sigma_data = getattr(config, "sigma_data", None)
        step = scheduler.step

        @functools.wraps(step)
        def tapped_step(
            model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *a: Any, **kw: Any
        ) -> Any:
            if self.before_first_step is not None:
                hook, self.before_first_step = self.before_first_step, None
                hook()
            out = step(model_output, timestep, sample, *a, **kw)
            pred = getattr(out, "pred_original_sample", None)
            if pred is None and isinstance(out, tuple) and len(out) > 1:
                pred = out[1]
            if pred is None and x0_in_history:
                pred = getattr(scheduler, "model_outputs", [None])[-1]
            if pred is None and flow:
                pred = x0_from_velocity(scheduler, model_output, sample)
            if pred is None:
                pred = _x0_from_sigma(scheduler, model_output, sample)
            elif sigma_data:  # sCM (SANA-Sprint) works on latents scaled by sigma_data
                pred = pred / sigma_data
            self.x0 = pred
            return out

        scheduler.step = tapped_step


class Previewer:
    """Decodes a step's latents into a small RGB picture; it never blends (compositing.py
    places previews in the whole picture).

    unpack: for families whose pipelines pack latents into tokens (FLUX), one image's
    latents as the pipeline holds them -> C x h x w (the profile's unpack, bound to the
    picture's size). The linear map runs on the packed tokens (PackedLatentRGB); only the
    tiny autoencoder needs the latents unpacked."""

    def __init__(
        self,
        factors: Factors,
        tiny_vae: Any = None,
        unpack: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.linear = LatentRGB(factors)
        self.packed = None if unpack is None else PackedLatentRGB(factors, unpack)
        self.tiny_vae = tiny_vae
        self.unpack = unpack
        self._taesd_seconds = 0.0

    def _first(self, latents: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """The first image's latents as the pipeline holds them (packed: tokens x 4C)."""
        if isinstance(latents, np.ndarray):  # one image's, as the step hook hands them
            return latents if self.unpack is None or latents.ndim == 2 else latents[0]
        return latents if self.unpack is None else to_numpy(latents)

    def _rgb(self, latents: torch.Tensor | np.ndarray) -> np.ndarray:
        """The linear map's picture of the first image."""
        first = self._first(latents)
        if self.packed is not None:
            assert isinstance(first, np.ndarray)
            return self._sized(self.packed(first))
        return self._sized(self.linear(first))

    def noisy(self, latents_vp: torch.Tensor | np.ndarray) -> np.ndarray:
        return self._rgb(latents_vp)

    def x0(self, x0: torch.Tensor, sampling_elapsed: float) -> np.ndarray:
        if self.tiny_vae is not None and self._taesd_seconds <= TAESD_BUDGET * sampling_elapsed:
            start = time.perf_counter()
            first = self._first(x0)
            spatial = first if self.unpack is None else self.unpack(first)  # type: ignore[arg-type]
            rgb = self._taesd(spatial)
            self._taesd_seconds += time.perf_counter() - start
            return rgb
        return self._rgb(x0)

    @torch.no_grad()
    def _taesd(self, x0: torch.Tensor | np.ndarray) -> np.ndarray:
        vae = self.tiny_vae
        first = torch.from_numpy(x0)[None] if isinstance(x0, np.ndarray) else x0[:1]
        # The tiny autoencoder takes what the pipeline would hand it: for TAESD (scale
        # 1) the model's latents, for taesd3/taef1 the unscaled, unshifted ones.
        config = vae.config
        shift = float(getattr(config, "shift_factor", None) or 0.0)
        latents = first.float() / float(getattr(config, "scaling_factor", 1.0) or 1.0) + shift
        decoded = vae.decode(latents.to(vae.device, vae.dtype)).sample[0]
        rgb = _to_uint8(decoded.permute(1, 2, 0).float().cpu().numpy())
        size = fit((rgb.shape[1], rgb.shape[0]), MAX_PREVIEW_SIDE)
        if size != (rgb.shape[1], rgb.shape[0]):
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        return rgb

    def _sized(self, rgb: np.ndarray) -> np.ndarray:
        """With a tiny autoencoder, linear previews (one pixel a latent cell) are scaled
        up to its size."""
        if self.tiny_vae is None:
            return rgb
        size = fit((rgb.shape[1] * 8, rgb.shape[0] * 8), MAX_PREVIEW_SIDE)
        return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
