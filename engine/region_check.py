"""The regional-prompt check of issue 16 as a function: "a red circle" in the left half
and "a blue square" in the right half land left and right, judged by colour centroids.

Shared by the slow starter-model test and bench/regions.py. No torch here: it builds
requests and reads pictures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.api import STARTER_MODEL, GenerationRequest, RegionPrompt

SIZE = 128
MIN_PIXELS = 40  # fewer red (or blue) pixels than this: the object was not drawn


def halves(size: int = SIZE) -> tuple[Image.Image, Image.Image]:
    left = Image.new("L", (size, size), 0)
    left.paste(255, (0, 0, size // 2, size))
    right = Image.new("L", (size, size), 0)
    right.paste(255, (size // 2, 0, size, size))
    return left, right


BASE = "on a white background"


def request(
    seed: int, base: str = BASE, *, regional: bool = True, steps: int = 20
) -> GenerationRequest:
    """The check's request for one seed; without regions, one prompt names both objects."""
    left, right = halves()
    regions = (RegionPrompt("a red circle", left), RegionPrompt("a blue square", right))
    return GenerationRequest(
        prompt=base if regional else f"a red circle and a blue square {base}",
        seed=seed,
        steps=steps,
        width=SIZE,
        height=SIZE,
        model=STARTER_MODEL,
        regions=regions if regional else (),
    )


def colour_masks(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Pixels that read as red, and as blue (HSV hue bands, saturated and not dark)."""
    hsv = np.asarray(image.convert("RGB").convert("HSV"), dtype=np.int16)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    vivid = (sat > 110) & (val > 90)
    red = vivid & ((hue < 12) | (hue > 242))  # Pillow's hue runs 0..255
    blue = vivid & (hue > 145) & (hue < 185)
    return red, blue


@dataclass(frozen=True)
class Placement:
    red_x: float | None  # centroid column as a fraction of the width; None: not drawn
    blue_x: float | None

    @property
    def correct(self) -> bool:
        return (
            self.red_x is not None
            and self.blue_x is not None
            and self.red_x < 0.5
            and self.blue_x > 0.5
        )


def placement(image: Image.Image) -> Placement:
    red, blue = colour_masks(image)

    def centroid(mask: np.ndarray) -> float | None:
        if mask.sum() < MIN_PIXELS:
            return None
        return float(np.nonzero(mask)[1].mean() + 0.5) / mask.shape[1]

    return Placement(centroid(red), centroid(blue))
