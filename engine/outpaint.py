"""Outpainting without torch: the expansion spec, the grown canvas and its fill, the mask of
the new area, the pieces a large expansion is painted in, and the checks.

How the seam is hidden while the original stays exact: the mask is exactly the new area,
so the composite keeps every original pixel (alpha 0 there, no blur reaching inward), and
so is the pipeline's mask (the sides are multiples of 8, so it lies on the latent grid):
the original's latents are held through every step and the model continues them. The
transition band lies in the new area: over `band` pixels next to the original the
painting is shifted toward the original's colours at the seam, where the pipeline's
decode of the original differs from it (compositing.seam_corrected), fading out. The
request's mask blur is not used: a blur would either reach into the original or blend the
painting with the fill.

With "only masked area", the new area is cut into cells of at most `tile - 2 * padding`
pixels a side, painted nearest-first; each cell is inpainted on a crop holding it and
`padding` pixels of context around it (the original and the cells painted before), so the
crops overlap along the new strip and each runs at the model's own size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageFilter

from engine.api import Expand, GenerationRequest, OutpaintFill
from engine.compositing import LATENT_CELL, Box

SIDES = ("left", "right", "top", "bottom")
_ALIASES = {"up": "top", "down": "bottom"}
MAX_BAND = 256
MIN_CELL = 16  # the smallest piece (two latent cells) a run paints


def parse_expand(text: str) -> dict[str, int]:
    """Sides from the CLI's --expand: "128" (all around), "left=128,right=64", "all=64",
    "up=64" / "down=64" for top and bottom. Raises ValueError with a sentence."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return dict.fromkeys(SIDES, int(text))
    sides = dict.fromkeys(SIDES, 0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        name = _ALIASES.get(name.strip().lower(), name.strip().lower())
        if not eq or not value.strip().isdigit() or name not in (*SIDES, "all"):
            raise ValueError(
                f"--expand {text!r} is not understood; write a number of pixels for all "
                "sides (128) or sides with pixels (left=128,right=64; sides: left, right, "
                "top/up, bottom/down, all)"
            )
        for side in SIDES if name == "all" else (name,):
            sides[side] = int(value)
    return sides


def expanded_size(size: tuple[int, int], e: Expand) -> tuple[int, int]:
    return size[0] + e.left + e.right, size[1] + e.top + e.bottom


def on_grid(size: tuple[int, int], e: Expand, grid: int) -> Expand:
    """The expansion grown so that the canvas's sides are multiples of the model's `grid`
    (16 for the flow families: the VAE's 8 times the transformer's 2 x 2 patches): the
    extra pixels go to the far side that is expanded (right, bottom), else the near one,
    else the far side all the same; the job crops them off again (`asked_box`)."""
    sides = {side: getattr(e, side) for side in SIDES}
    for near, far, length in (("left", "right", size[0]), ("top", "bottom", size[1])):
        extra = -(length + sides[near] + sides[far]) % grid
        side = near if sides[near] and not sides[far] else far
        sides[side] += extra
    return replace(e, **sides)


def asked_box(size: tuple[int, int], asked: Expand, grown: Expand) -> Box:
    """Where the asked canvas lies on the canvas grown by on_grid."""
    x, y = grown.left - asked.left, grown.top - asked.top
    width, height = expanded_size(size, asked)
    return x, y, x + width, y + height


def original_box(size: tuple[int, int], e: Expand) -> Box:
    """Where the original picture lies on the expanded canvas."""
    return e.left, e.top, e.left + size[0], e.top + size[1]


def problems(r: GenerationRequest) -> list[str]:
    """Every problem with an expanding request, each as a sentence (validation.py calls it)."""
    e = r.expand
    found: list[str] = []
    if not isinstance(e, Expand):
        return [f"expand must be an Expand, got {type(e).__name__}"]
    values = [getattr(e, side) for side in SIDES]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return ["the pixels to expand by must be whole numbers"]
    for side, v in zip(SIDES, values, strict=True):
        if v < 0 or v % LATENT_CELL:
            lower = max(0, v - v % LATENT_CELL)
            found.append(
                f"expand {side} must be 0 or more and a multiple of 8, got {v} "
                f"(try {lower} or {lower + 8})"
            )
    if not any(values):
        found.append("expand by at least 8 pixels on one side")
    if e.fill not in {f.value for f in OutpaintFill}:
        found.append(
            f"unknown fill {e.fill!r}; choose one of: {', '.join(f.value for f in OutpaintFill)}"
        )
    if not isinstance(e.band, int) or not 0 <= e.band <= MAX_BAND:
        found.append(f"the seam band must be 0 to {MAX_BAND} pixels, got {e.band!r}")
    if r.mask is not None:
        found.append("expanding paints the new area by itself: clear the mask")
    if r.init_image is None:
        found.append("expanding needs the picture to extend (an init image)")
    elif isinstance(r.init_image, Image.Image) and not found:
        size = expanded_size(r.init_image.size, e)
        if size != (r.width, r.height):
            found.append(
                f"the expanded picture is {size[0]}x{size[1]} but the requested size is "
                f"{r.width}x{r.height}; set width and height to the expanded size"
            )
    if r.inpaint_only_masked and not found:
        padding = _padding(r.inpaint_padding)
        if not isinstance(e.tile, int) or e.tile - 2 * padding < MIN_CELL:
            found.append(
                f"a piece of {e.tile!r} pixels leaves no room to paint inside "
                f"{padding} pixels of padding on each side; make the piece at least "
                f"{2 * padding + MIN_CELL} or the padding smaller"
            )
        elif r.batch_size != 1 and len(pieces(r)) > 1:
            found.append(
                "expanding piece by piece makes one picture at a time; set the batch size to 1"
            )
    return found


# ----------------------------------------------------------------------------- canvas


def new_area_mask(size: tuple[int, int], e: Expand) -> Image.Image:
    """White over the new area of a canvas of `size`, black over the original."""
    mask = Image.new("L", expanded_size(size, e), 255)
    mask.paste(0, original_box(size, e))
    return mask


def canvas(picture: Image.Image, e: Expand, seed: int) -> Image.Image:
    """The expanded canvas: the picture in its place, the new area filled for the model."""
    rgb = np.asarray(picture.convert("RGB"))
    pad = ((e.top, e.bottom), (e.left, e.right), (0, 0))
    stretched = np.pad(rgb, pad, mode="edge")
    if e.fill == OutpaintFill.EDGE:
        filled = Image.fromarray(stretched)
    elif e.fill == OutpaintFill.BLUR:
        radius = max(8, max(e.left, e.right, e.top, e.bottom) // 4)
        filled = Image.fromarray(stretched).filter(ImageFilter.GaussianBlur(radius))
    else:
        rng = np.random.default_rng(seed)
        mean = rgb.reshape(-1, 3).mean(axis=0)
        spread = max(8.0, float(rgb.std()))
        noise = rng.normal(mean, spread, stretched.shape)
        filled = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))
    filled.paste(picture.convert("RGB"), original_box(picture.size, e))
    return filled


# ----------------------------------------------------------------------------- pieces


@dataclass(frozen=True)
class Piece:
    """One model run of a piecewise expansion: paint `cell` on the crop `crop` (canvas px)."""

    cell: Box
    crop: Box

    def mask(self) -> Image.Image:
        """The cell, white, in the crop's coordinates."""
        x1, y1, x2, y2 = self.crop
        mask = Image.new("L", (x2 - x1, y2 - y1), 0)
        c = self.cell
        mask.paste(255, (c[0] - x1, c[1] - y1, c[2] - x1, c[3] - y1))
        return mask


def _padding(padding: int) -> int:
    return math.ceil(max(0, padding) / LATENT_CELL) * LATENT_CELL


def _cuts(start: int, end: int, most: int) -> list[tuple[int, int]]:
    """[start, end) in equal parts of at most `most` pixels, on the latent grid."""
    count = math.ceil((end - start) / most)
    edges = [start + round((end - start) * i / count / LATENT_CELL) * LATENT_CELL for i in
             range(count)] + [end]  # fmt: skip
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def _distance(box: Box, to: Box) -> int:
    dx = max(to[0] - box[2], box[0] - to[2], 0)
    dy = max(to[1] - box[3], box[1] - to[3], 0)
    return max(dx, dy)


def pieces(r: GenerationRequest, grid: int = LATENT_CELL) -> list[Piece]:
    """The runs an expanding request takes: one over the whole canvas, or with "only
    masked area" the cells of the new area nearest-first, each on its overlapping crop
    (crops on the model's size grid)."""
    assert r.expand is not None and r.init_image is not None
    e = r.expand
    width, height = expanded_size(r.init_image.size, e)
    whole = (0, 0, width, height)
    if not r.inpaint_only_masked:
        return [Piece(whole, whole)]
    inner = original_box(r.init_image.size, e)
    strips = [
        (0, 0, e.left, height),
        (width - e.right, 0, width, height),
        (e.left, 0, width - e.right, e.top),
        (e.left, height - e.bottom, width - e.right, height),
    ]
    padding = _padding(r.inpaint_padding)
    most = e.tile - 2 * padding
    cells = [
        (x1, y1, x2, y2)
        for sx1, sy1, sx2, sy2 in strips
        if sx2 > sx1 and sy2 > sy1
        for x1, x2 in _cuts(sx1, sx2, most)
        for y1, y2 in _cuts(sy1, sy2, most)
    ]
    cells.sort(key=lambda c: (_distance(c, inner), c[1], c[0]))
    return [Piece(c, _crop_around(c, e.tile, width, height, grid)) for c in cells]


def _crop_around(cell: Box, tile: int, width: int, height: int, grid: int) -> Box:
    """A tile-sized crop (smaller where the canvas is) centred on the cell, inside the
    canvas and on the model's size grid: as much context as the model's size allows."""
    box: list[int] = []
    for lo, hi, limit in ((cell[0], cell[2], width), (cell[1], cell[3], height)):
        length = min(tile - tile % grid, limit - limit % grid)
        start = (lo + hi - length) // 2
        start = min(max(0, start - start % LATENT_CELL), limit - length)
        box += [start, start + length]
    return box[0], box[2], box[1], box[3]
