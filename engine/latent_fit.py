"""Fits a linear latent-to-RGB preview map on a VAE, for families with no published one.

The map previews use (engine/preview.py) turns each latent pixel's C channels into an
RGB colour: rgb = latent @ factors + bias. Where nobody has published factors for a
family's autoencoder (SANA's DC-AE), they are fitted on the loaded autoencoder itself:
a few synthetic pictures of flat colour blocks, each block as large as the area one
latent pixel covers, are encoded, and least squares maps each latent pixel to the mean
colour of its block. The latents are put in the pipeline's own space first (the VAE's
scaling and shift factors), which is the space the step previews see.

It costs one encoder pass over a few small pictures at load time (CPU: well under a
second for the real DC-AE at the sizes used here).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from engine.families.profile import Factors

BLOCKS = 6  # blocks per side of each synthetic picture
PICTURES = 6
_RIDGE = 1e-4  # keeps the solve stable when channels are nearly collinear


def _encode(vae: Any, pictures: torch.Tensor) -> torch.Tensor:
    out = vae.encode(pictures)
    if hasattr(out, "latent_dist"):
        return out.latent_dist.mode()
    return out.latent if hasattr(out, "latent") else out[0]


def _pipeline_space(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    scale = getattr(vae.config, "scaling_factor", None) or 1.0
    return (latents - shift) * scale


def synthetic_pictures(vae_scale: int, seed: int = 0) -> np.ndarray:
    """PICTURES x 3 x S x S pictures in [-1, 1] of BLOCKS x BLOCKS flat random colours,
    each block 2 x 2 latent pixels, so most latent pixels see one colour."""
    rng = np.random.default_rng(seed)
    block = 2 * vae_scale
    colours = rng.uniform(-1.0, 1.0, (PICTURES, 3, BLOCKS, BLOCKS)).astype(np.float32)
    return colours.repeat(block, axis=2).repeat(block, axis=3)


@torch.no_grad()
def fit_latent_rgb(vae: Any, vae_scale: int) -> Factors:
    """Least-squares factors and bias mapping the VAE's pipeline-space latents to RGB."""
    pictures = synthetic_pictures(vae_scale)
    param = next(vae.parameters())
    latents = _encode(vae, torch.from_numpy(pictures).to(param.device, param.dtype))
    lat = _pipeline_space(vae, latents).float().cpu().numpy()  # N x C x h x w
    n, c, h, w = lat.shape
    # Each latent pixel's target: the mean colour of the picture area it covers.
    target = pictures.reshape(n, 3, h, pictures.shape[2] // h, w, pictures.shape[3] // w)
    target = target.mean(axis=(3, 5))
    x = np.concatenate([lat.transpose(0, 2, 3, 1).reshape(-1, c), np.ones((n * h * w, 1))], 1)
    y = target.transpose(0, 2, 3, 1).reshape(-1, 3)
    solution = np.linalg.solve(x.T @ x + _RIDGE * np.eye(c + 1), x.T @ y)
    factors = [[float(v) for v in row] for row in solution[:c]]
    return factors, [float(v) for v in solution[c]]
