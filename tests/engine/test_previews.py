"""Step previews: the x0 estimate, not the noisy latent, and it approaches the result."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from engine_helpers import WAIT, request, tiny_autoencoder

from engine.api import Finished, Step
from engine.families.sd1 import SD_FACTORS
from engine.preview import LatentRGB, X0Tap


def test_step_events_carry_uint8_previews(engine, recorder):
    result = engine.generate(request(steps=4, width=64, height=32), WAIT)
    assert isinstance(result, Finished), result
    steps = recorder.of(result.job_id, Step)
    assert [s.step for s in steps] == [1, 2, 3, 4]
    assert all(s.total == 4 for s in steps)
    assert [s.elapsed for s in steps] == sorted(s.elapsed for s in steps)
    for s in steps:
        for image in (s.preview, s.noisy_preview):
            assert image.dtype == np.uint8 and image.shape == (4, 8, 3)  # latent resolution
    for kept, sent in zip(result.step_previews, [s.preview for s in steps], strict=True):
        assert (kept == sent).all()


def test_x0_preview_differs_from_noisy_and_approaches_the_result(engine):
    result = engine.generate(request(steps=6, scheduler="Euler", width=64, height=64), WAIT)
    assert isinstance(result, Finished), result
    latents = engine.trajectory(result.job_id).latents
    final = LatentRGB(SD_FACTORS)(latents[-1]).astype(float)
    x0 = [p.astype(float) for p in result.step_previews]
    noisy = [p.astype(float) for p in result.noisy_step_previews]
    assert np.abs(x0[0] - noisy[0]).mean() > 10  # early on, x_t is mostly noise
    distances = [np.abs(p - final).mean() for p in x0]
    noisy_distances = [np.abs(p - final).mean() for p in noisy]
    assert distances[0] < noisy_distances[0]
    assert distances[-1] < 1.0 < distances[0]
    assert distances[-1] <= distances[len(distances) // 2] <= distances[0]


def test_x0_tap_matches_scheduler_for_every_kind():
    """The tap's estimate for DPM++ (read from its history) is x_t - sigma * eps in VP form."""
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    for cls in (EulerDiscreteScheduler, DPMSolverMultistepScheduler):
        scheduler = cls(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        scheduler.set_timesteps(5)
        tap = X0Tap(scheduler)
        torch.manual_seed(0)
        x0_true = torch.randn(1, 4, 4, 4)
        eps = torch.randn(1, 4, 4, 4)
        t = scheduler.timesteps[0]
        sigma = scheduler.sigmas[0]
        if scheduler.init_noise_sigma > 1:
            sample = x0_true + sigma * eps
        else:
            alpha = 1 / (sigma**2 + 1) ** 0.5
            sample = alpha * x0_true + sigma * alpha * eps
        scheduler.step(eps, t, sample)
        torch.testing.assert_close(tap.x0, x0_true, atol=1e-4, rtol=1e-4)


def test_model_shipped_latent_rgb_factors_are_used(engine, tiny_models):
    base = tiny_models.get("tiny", lambda *_: None, lambda: False)
    factors = ([[0.0, 0.0, 0.0]] * 4, [1.0, -1.0, 0.0])
    tiny_models.variants["shipped"] = dataclasses.replace(base, latent_rgb=factors)
    result = engine.generate(request(model="shipped", steps=2), WAIT)
    assert isinstance(result, Finished), result
    for preview in result.step_previews:
        assert (preview == np.array([255, 0, 128], np.uint8)).all()


def test_tiny_autoencoder_previews_at_image_size(engine, tiny_models):
    taesd = tiny_autoencoder()
    calls = []
    taesd.decoder.register_forward_hook(lambda *_: calls.append(1))
    base = tiny_models.get("tiny", lambda *_: None, lambda: False)
    tiny_models.variants["taesd"] = dataclasses.replace(base, tiny_vae=taesd)
    result = engine.generate(request(model="taesd", steps=3, width=64, height=32), WAIT)
    assert isinstance(result, Finished), result
    assert calls  # decoded with the tiny autoencoder at least once
    for preview in (*result.step_previews, *result.noisy_step_previews):
        assert preview.shape == (32, 64, 3) and preview.dtype == np.uint8
