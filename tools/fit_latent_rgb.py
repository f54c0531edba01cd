"""Fit a family's linear latent-to-RGB preview factors on its VAE.

Encodes pictures with the VAE, brings the latents into the space the family's pipelines
denoise in ((z - shift_factor) * scaling_factor), shrinks each picture to the latent grid
and solves, by least squares, rgb = latents @ factors + bias for RGB in [-1, 1]. Prints
(or writes) {"factors": [[r, g, b] per channel], "bias": [r, g, b]}: the format of the
latent_rgb.json a model folder may carry (engine/models.py reads it), and of the
latent_rgb field of a FamilyProfile (engine/families/).

    python tools/fit_latent_rgb.py --vae MODEL_FOLDER_OR_VAE_FOLDER [--images FOLDER]
        [--size 256] [--out latent_rgb.json]

Without --images it fits on generated pictures (colour fields, gradients, stripes and
noise), which span the colours a preview must show.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def generated_pictures(size: int, count: int = 48, seed: int = 0) -> list[np.ndarray]:
    """H x W x 3 float arrays in [-1, 1]: flat colours, two-colour gradients, stripes and
    coloured noise, so every channel's response to every hue is in the data."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    pictures = []
    for i in range(count):
        a, b = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
        kind = i % 4
        if kind == 0:
            picture = np.broadcast_to(a, (size, size, 3))
        elif kind == 1:
            t = ramp[None, :, None] if i % 8 == 1 else ramp[:, None, None]
            picture = a * (1 - t) + b * t
        elif kind == 2:
            stripes = ((np.arange(size) // max(size // 8, 1)) % 2).astype(np.float32)
            picture = np.where(stripes[:, None, None] > 0, a, b) * np.ones((1, size, 1))
        else:
            picture = np.clip(a + rng.normal(0, 0.3, (size, size, 3)), -1, 1)
        pictures.append(np.broadcast_to(picture, (size, size, 3)).astype(np.float32))
    return pictures


def read_pictures(folder: Path, size: int) -> list[np.ndarray]:
    pictures = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in SUFFIXES:
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
            pictures.append(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0)
    return pictures


def load_vae(path: Path) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
    vae = AutoencoderKL.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    return vae.eval()


@torch.no_grad()
def fit_factors(
    vae: torch.nn.Module, pictures: Iterable[np.ndarray]
) -> tuple[list[list[float]], list[float], float]:
    """(factors, bias, r2): the least-squares map and the share of the RGB variance at
    the latent grid that it explains."""
    config = vae.config
    scale = float(config.scaling_factor)
    shift = float(getattr(config, "shift_factor", None) or 0.0)
    latent_rows, rgb_rows = [], []
    for picture in pictures:
        x = torch.from_numpy(np.ascontiguousarray(picture)).permute(2, 0, 1)[None]
        z = vae.encode(x).latent_dist.mean
        latents = (z - shift) * scale
        h, w = latents.shape[-2:]
        target = torch.nn.functional.adaptive_avg_pool2d(x, (h, w))
        latent_rows.append(latents[0].reshape(latents.shape[1], -1).T.numpy())
        rgb_rows.append(target[0].reshape(3, -1).T.numpy())
    a = np.concatenate(latent_rows).astype(np.float64)
    y = np.concatenate(rgb_rows).astype(np.float64)
    design = np.concatenate([a, np.ones((a.shape[0], 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ solution
    r2 = 1.0 - float(residual.var() / max(y.var(), 1e-12))
    factors = [[round(float(v), 4) for v in row] for row in solution[:-1]]
    bias = [round(float(v), 4) for v in solution[-1]]
    return factors, bias, r2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", type=Path, required=True, help="a model folder or its vae/")
    parser.add_argument("--images", type=Path, default=None, help="pictures to fit on")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="write latent_rgb.json here")
    args = parser.parse_args(argv)
    if args.size % 8:
        print("--size must be a multiple of 8", file=sys.stderr)
        return 1
    pictures = (
        read_pictures(args.images, args.size) if args.images else generated_pictures(args.size)
    )
    if not pictures:
        print(f"no .png, .jpg or .webp pictures in {args.images}", file=sys.stderr)
        return 1
    factors, bias, r2 = fit_factors(load_vae(args.vae), pictures)
    text = json.dumps({"factors": factors, "bias": bias})
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(json.dumps({"tool": "fit_latent_rgb", "pictures": len(pictures), "r2": round(r2, 4)}))
    if args.out is None:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
