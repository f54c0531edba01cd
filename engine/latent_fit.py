"""Fits a linear latent-to-RGB preview map on a VAE, for families with no published one.

The map previews use (engine/preview.py) turns each latent pixel's C channels into an
RGB colour: rgb = latent @ factors + bias. Where nobody has published factors for a
family's autoencoder (SANA's DC-AE), they are fitted on the loaded autoencoder itself:
two synthetic pictures of flat colour cells, each cell the area one latent pixel covers,
are encoded, and least squares maps each latent pixel to its cell's colour. The latents
are put in the pipeline's own space first (the VAE's scaling and shift factors), which
is the space the step previews see.

The real DC-AE encoder is large (360M parameters; on a CPU the two 256-pixel pictures
take seconds), so the result is kept in DiffusionDesk's data folder, keyed by the
model's location and its VAE's config and weight files, and a model pays for it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.asset_folders import data_dir
from engine.atomic_file import atomic_write_bytes
from engine.families.profile import Factors

CELLS = 8  # latent pixels per side of each synthetic picture
PICTURES = 2
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
    """PICTURES x 3 x S x S pictures in [-1, 1] of CELLS x CELLS flat random colours, each
    cell the area of one latent pixel."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(-1.0, 1.0, (PICTURES, 3, CELLS, CELLS)).astype(np.float32)
    return colours.repeat(vae_scale, axis=2).repeat(vae_scale, axis=3)


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


def cache_key(vae: Any, folder: Path | None) -> str:
    """What identifies a VAE's fit: the model's folder and its VAE files' sizes and
    times (a changed file is fitted again), and the VAE's config."""
    parts = [json.dumps(dict(vae.config), sort_keys=True, default=str)]
    if folder is not None:
        parts.append(str(folder.resolve()))
        for path in sorted((folder / "vae").glob("*")):
            stat = path.stat()
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def cached_fit(vae: Any, vae_scale: int, folder: Path | None) -> Factors:
    """fit_latent_rgb, kept in the data folder for the next load of the same model."""
    path = data_dir() / "latent_rgb" / f"{cache_key(vae, folder)}.json"
    try:
        data = json.loads(path.read_text())
        return [[float(v) for v in row] for row in data["factors"]], [
            float(v) for v in data["bias"]
        ]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not fitted yet, or unreadable: fit again
    factors = fit_latent_rgb(vae, vae_scale)
    # SaveError is an OSError: a read-only data folder only costs the fit next time.
    with contextlib.suppress(OSError):
        atomic_write_bytes(path, json.dumps({"factors": factors[0], "bias": factors[1]}).encode())
    return factors
