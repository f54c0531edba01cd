"""A deterministic analyser of shape pictures: background colour, and for each object
its colour, shape class and position, read with simple geometry.

Colours: each pixel is named by its nearest palette colour. Background: the commonest
name on the border. Objects: connected regions of pixels clearly unlike the
background. Shape: the region's mask, cropped to its bounding box and resized, is
compared by intersection-over-union (plus aspect ratio) with each shape drawn the same
way. Position: the region's centroid in a 3x3 grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from starter.captions import grid_cell
from starter.shapes import COLOURS, SHAPES, draw_shape

_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[n] for n in _NAMES], dtype=np.float32)
_TEMPLATE = 32
_GRID_NAMES = {
    grid_cell(p): p
    for p in (
        "top left",
        "top",
        "top right",
        "left",
        "centre",
        "right",
        "bottom left",
        "bottom",
        "bottom right",
    )
}


@dataclass(frozen=True)
class FoundObject:
    colour: str
    shape: str
    position: str
    centre: tuple[float, float]  # (x, y) in pixels
    area: int


@dataclass(frozen=True)
class Analysis:
    background: str
    objects: tuple[FoundObject, ...]  # largest first


def colour_labels(rgb: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour for every pixel."""
    d = ((rgb[..., None, :].astype(np.float32) - _PALETTE) ** 2).sum(-1)
    return d.argmin(-1)


@cache
def _templates() -> dict[str, tuple[np.ndarray, float]]:
    out = {}
    for shape in SHAPES:
        image = Image.new("L", (256, 256), 0)
        draw_shape(ImageDraw.Draw(image), shape, 128, 128, 200, 255, 0)
        mask = np.asarray(image) > 127
        out[shape] = (_normalise(mask), _aspect(mask))
    return out


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


def _aspect(mask: np.ndarray) -> float:
    y0, y1, x0, x1 = _bbox(mask)
    return float(np.log((x1 - x0) / (y1 - y0)))


def _normalise(mask: np.ndarray) -> np.ndarray:
    y0, y1, x0, x1 = _bbox(mask)
    crop = Image.fromarray((mask[y0:y1, x0:x1] * 255).astype(np.uint8))
    return np.asarray(crop.resize((_TEMPLATE, _TEMPLATE), Image.Resampling.BILINEAR)) > 127


def classify_shape(mask: np.ndarray) -> str:
    """The shape whose drawing best overlaps the region's mask (holes included)."""
    norm, aspect = _normalise(mask), _aspect(mask)
    best, best_score = SHAPES[0], -1e9
    for shape, (template, t_aspect) in _templates().items():
        iou = (norm & template).sum() / max(1, (norm | template).sum())
        score = iou - 0.5 * abs(aspect - t_aspect)
        if score > best_score:
            best, best_score = shape, score
    return best


def position_name(x: float, y: float, size: int) -> str:
    col = 0 if x < size * 0.36 else 2 if x > size * 0.64 else 1
    row = 0 if y < size * 0.36 else 2 if y > size * 0.64 else 1
    return _GRID_NAMES[(row, col)]


def analyse(image: Image.Image, max_objects: int = 3, min_area: int = 40) -> Analysis:
    rgb = np.asarray(image.convert("RGB"))
    size = rgb.shape[0]
    labels = colour_labels(rgb)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    bg_index = int(np.bincount(border, minlength=len(_NAMES)).argmax())
    bg_rgb = _PALETTE[bg_index]
    # "Clearly unlike the background": by distance, so anti-aliased edges that happen to
    # be nearest another palette colour do not form objects of their own.
    distance = np.sqrt(((rgb.astype(np.float32) - bg_rgb) ** 2).sum(-1))
    foreground = distance > 60
    regions, count = ndimage.label(foreground)
    if count == 0:
        return Analysis(_NAMES[bg_index], ())
    areas = ndimage.sum(foreground, regions, index=np.arange(1, count + 1))
    order = np.argsort(-areas)
    objects = []
    for k in order[:max_objects]:
        if areas[k] < min_area:
            break
        region = regions == (k + 1)
        # Fill the region's holes with the region's own pixels only for colour naming.
        interior = ndimage.binary_erosion(region, iterations=2)
        pool = labels[interior] if interior.sum() >= 10 else labels[region]
        pool = pool[pool != bg_index] if (pool != bg_index).any() else pool
        colour = _NAMES[int(np.bincount(pool, minlength=len(_NAMES)).argmax())]
        y0, y1, x0, x1 = _bbox(region)
        ys, xs = np.nonzero(region)
        # The bounding-box centre, not the centroid: a triangle's centroid sits low.
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        objects.append(
            FoundObject(
                colour=colour,
                shape=classify_shape(region),
                position=position_name(cx, cy, size),
                centre=(float(xs.mean()), float(ys.mean())),
                area=int(areas[k]),
            )
        )
    return Analysis(_NAMES[bg_index], tuple(objects))
