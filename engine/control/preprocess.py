"""Control-image preprocessors that need no model weights: canny, soft edge, line art, scribble.

Each takes any PIL picture and returns an RGB control map the size asked for, white
strokes on black, the form SD ControlNets were trained on. Pure numpy and Pillow (no
torch, no OpenCV), so the window can show a unit's map before it submits the job.
A depth or pose map comes from a file as it is (Preprocessor.NONE).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from engine.api import Preprocessor

CANNY_LOW = 100  # A1111's canny defaults, on a 0..255 gradient scale
CANNY_HIGH = 200


def _grey(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    picture = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    return np.asarray(picture.convert("L"), dtype=np.float32)


def _rgb(strokes: np.ndarray) -> Image.Image:
    """A boolean or 0..255 map as white-on-black RGB."""
    values = strokes.astype(np.uint8) * 255 if strokes.dtype == bool else strokes
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L").convert("RGB")


def sobel(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical Sobel gradients (edge pixels repeat the border)."""
    p = np.pad(grey, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return gx, gy


def _thin(magnitude: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Non-maximum suppression: keep a pixel only where it peaks across its edge."""
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    p = np.pad(magnitude, 1)
    h, w = magnitude.shape

    def at(dy: int, dx: int) -> np.ndarray:
        return p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    # Direction bins: 0° compares left/right, 45° the diagonal, 90° up/down, 135° the other.
    bins = ((angle + 22.5) // 45).astype(int) % 4
    pairs = {
        0: ((0, -1), (0, 1)),
        1: ((1, 1), (-1, -1)),
        2: ((-1, 0), (1, 0)),
        3: ((1, -1), (-1, 1)),
    }
    keep = np.zeros_like(magnitude, dtype=bool)
    for b, (a, c) in pairs.items():
        peak = (magnitude >= at(*a)) & (magnitude >= at(*c))
        keep |= (bins == b) & peak
    return np.where(keep, magnitude, 0.0)


def _grow(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Hysteresis: weak edge pixels joined (8-connected) to a strong one are kept."""
    edges = strong.copy()
    while True:
        p = np.pad(edges, 1)
        h, w = edges.shape
        near = np.zeros_like(edges)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near |= p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        grown = edges | (near & weak)
        if np.array_equal(grown, edges):
            return edges
        edges = grown


def canny(
    image: Image.Image, size: tuple[int, int], low: int = CANNY_LOW, high: int = CANNY_HIGH
) -> Image.Image:
    """Canny edges: Gaussian blur, Sobel, non-maximum suppression, hysteresis thresholds."""
    grey = _grey(image.convert("RGB").filter(ImageFilter.GaussianBlur(1.0)), size)
    gx, gy = sobel(grey)
    # The raw Sobel magnitude, as OpenCV's Canny compares with its thresholds.
    magnitude = _thin(np.hypot(gx, gy), gx, gy)
    return _rgb(_grow(magnitude >= high, magnitude >= low))


def soft_edge(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Soft edges (the HED/PiDiNet look without their weights): the gradient magnitude of a
    blurred picture, normalised to 0..255 and smoothed."""
    grey = _grey(image.convert("RGB").filter(ImageFilter.GaussianBlur(2.0)), size)
    gx, gy = sobel(grey)
    magnitude = np.hypot(gx, gy)
    top = float(magnitude.max())
    scaled = magnitude / top * 255.0 if top > 0 else magnitude
    return _rgb(scaled).filter(ImageFilter.GaussianBlur(1.0))


def lineart(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Line art: the picture's dark strokes (darker than its own local surroundings by a
    margin), white on black."""
    grey = _grey(image, size)
    local = np.asarray(
        Image.fromarray(grey.astype(np.uint8)).filter(ImageFilter.BoxBlur(4)), dtype=np.float32
    )
    return _rgb(grey < local - 12.0)


def scribble(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A drawing's strokes as a scribble map: whatever differs from the drawing's
    background (its most common shade), thickened to a few pixels, white on black."""
    grey = _grey(image, size)
    values, counts = np.unique(grey.astype(np.uint8), return_counts=True)
    background = float(values[np.argmax(counts)])
    strokes = np.abs(grey - background) > 32.0
    width = max(3, round(min(size) / 128) * 2 + 1)
    return _rgb(strokes).filter(ImageFilter.MaxFilter(width))


_RUN = {
    Preprocessor.CANNY: canny,
    Preprocessor.SOFT_EDGE: soft_edge,
    Preprocessor.LINEART: lineart,
    Preprocessor.SCRIBBLE: scribble,
}


def control_map(image: Image.Image, preprocessor: str, size: tuple[int, int]) -> Image.Image:
    """The control map a unit's picture gives at size (width, height)."""
    kind = Preprocessor(preprocessor)
    if kind is Preprocessor.NONE:
        return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    return _RUN[kind](image, size)
