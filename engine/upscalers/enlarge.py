"""Enlarging pictures and latents: Lanczos and nearest (Pillow), upscaler models run tile
by tile, and A1111's latent upscalers (torch interpolation of the latents).

An upscaler model runs on SR_TILE-pixel pieces of the input that overlap by SR_OVERLAP
and are blended with feathered edges (engine/tiles.py), so its memory does not grow with
the picture, and cancel takes effect between pieces. A model's own factor (e.g. 4x) is
followed by a Lanczos resize to the size asked for, as A1111 does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.api import JobCancelled, ShouldCancel
from engine.tiles import Blender, grid
from engine.upscale_options import LANCZOS, LATENT_UPSCALERS, NEAREST, SR_OVERLAP, SR_TILE
from engine.upscalers.sr_loading import SRModel, load_upscaler

TileDone = Callable[[int, int], None]
"""tile_done(tiles done, tiles in all)"""


def resize(image: Image.Image, size: tuple[int, int], upscaler: str = LANCZOS) -> Image.Image:
    method = Image.Resampling.NEAREST if upscaler == NEAREST else Image.Resampling.LANCZOS
    return image.convert("RGB").resize(size, method)


def upscale_latents(latents: torch.Tensor, size: tuple[int, int], upscaler: str) -> torch.Tensor:
    """Latents (N x C x h x w) resized to the latent size of a size-pixel picture."""
    mode, antialias = LATENT_UPSCALERS[upscaler]
    width, height = size
    factor = 8  # every Stable Diffusion VAE downsamples by 8
    target = (height // factor, width // factor)
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(
            latents, size=target, mode=mode, antialias=antialias, align_corners=False
        )
    return F.interpolate(latents, size=target, mode=mode)


def run_model(
    model: SRModel,
    image: Image.Image,
    *,
    device: torch.device | str = "cpu",
    should_cancel: ShouldCancel = lambda: False,
    tile_done: TileDone = lambda done, total: None,
) -> Image.Image:
    """The model's enlargement of image (by its own factor), piece by piece."""
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    scale = model.scale
    tiles = grid(width, height, SR_TILE, SR_OVERLAP)
    blender = Blender(width * scale, height * scale, SR_OVERLAP * scale)
    module = model.module.to(device)
    dtype = next(module.parameters()).dtype
    with torch.inference_mode():
        for done, tile in enumerate(tiles, start=1):
            if should_cancel():
                raise JobCancelled()
            x0, y0, x1, y1 = tile.box
            piece = torch.from_numpy(np.array(rgb[y0:y1, x0:x1])).to(device)  # a writable copy
            batch = piece.permute(2, 0, 1)[None].to(dtype) / 255
            out = model.forward(batch).float().clamp_(0, 1)[0].permute(1, 2, 0) * 255
            blender.add(tile.scaled(scale), out.cpu().numpy())
            tile_done(done, len(tiles))
    return Image.fromarray(blender.result())


def enlarge(
    image: Image.Image,
    size: tuple[int, int],
    upscaler: str,
    *,
    model_folders: tuple[str, ...] = (),
    allow_pickle: bool = False,
    device: torch.device | str = "cpu",
    should_cancel: ShouldCancel = lambda: False,
    tile_done: TileDone = lambda done, total: None,
) -> Image.Image:
    """image enlarged to size with a pixel upscaler (Lanczos, Nearest) or a model."""
    if upscaler in (LANCZOS, NEAREST):
        out = resize(image, size, upscaler)
        tile_done(1, 1)
        return out
    model = load_upscaler(upscaler, model_folders, allow_pickle=allow_pickle)
    out = image.convert("RGB")
    # A 2x model asked for 4x runs twice; each run is followed by the size check.
    while out.width < size[0] or out.height < size[1]:
        out = run_model(model, out, device=device, should_cancel=should_cancel, tile_done=tile_done)
        if model.scale <= 1:
            break
    return out if out.size == size else resize(out, size)
