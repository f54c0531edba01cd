"""Overlapping tiles over a picture and their feathered blend, in numpy (no torch).

Both tiled jobs use it: an upscaler model run over a large input piece by piece, and
the SD upscale that repaints an enlarged picture tile by tile. Each tile's weight ramps
linearly from near 0 to 1 across the overlap on every side that meets another tile (and
stays 1 at the picture's border), so where tiles overlap the result fades from one to the
other and no edge of a tile shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.upscale_options import axis_starts


@dataclass(frozen=True)
class Tile:
    x: int
    y: int
    width: int
    height: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom), as PIL's crop takes it."""
        return (self.x, self.y, self.x + self.width, self.y + self.height)

    def scaled(self, factor: int) -> Tile:
        return Tile(self.x * factor, self.y * factor, self.width * factor, self.height * factor)


def grid(width: int, height: int, tile: int, overlap: int, multiple: int = 1) -> list[Tile]:
    """Tiles of at most tile x tile pixels covering width x height, row by row."""
    tile_w, tile_h = min(tile, width), min(tile, height)
    return [
        Tile(x, y, tile_w, tile_h)
        for y in axis_starts(height, tile_h, overlap, multiple)
        for x in axis_starts(width, tile_w, overlap, multiple)
    ]


def _ramp(length: int, overlap: int, rise: bool, fall: bool) -> np.ndarray:
    weights = np.ones(length, np.float32)
    if overlap <= 0:
        return weights
    n = min(overlap, length)
    edge = (np.arange(n, dtype=np.float32) + 0.5) / n
    if rise:
        weights[:n] = np.minimum(weights[:n], edge)
    if fall:
        weights[length - n :] = np.minimum(weights[length - n :], edge[::-1])
    return weights


def feather(tile: Tile, width: int, height: int, overlap: int) -> np.ndarray:
    """The tile's blending weight, height x width float32: ramps on the sides inside the
    picture, 1 elsewhere."""
    across = _ramp(tile.width, overlap, tile.x > 0, tile.x + tile.width < width)
    down = _ramp(tile.height, overlap, tile.y > 0, tile.y + tile.height < height)
    return down[:, None] * across[None, :]


class Blender:
    """Accumulates tiles into a width x height picture with feathered weights.

    Holds one float32 sum (3 channels) and one float32 weight per pixel: 16 bytes a pixel,
    and result() adds the uint8 picture (3 more). result() may be called once.
    """

    BYTES_PER_PIXEL = 19

    def __init__(self, width: int, height: int, overlap: int, channels: int = 3) -> None:
        self.width, self.height, self.overlap = width, height, overlap
        self._sum = np.zeros((height, width, channels), np.float32)
        self._weight = np.zeros((height, width), np.float32)

    def add(self, tile: Tile, pixels: np.ndarray) -> None:
        """pixels: tile.height x tile.width x channels (any numeric dtype)."""
        weight = feather(tile, self.width, self.height, self.overlap)
        x0, y0, x1, y1 = tile.box
        self._sum[y0:y1, x0:x1] += pixels.astype(np.float32) * weight[:, :, None]
        self._weight[y0:y1, x0:x1] += weight

    def result(self) -> np.ndarray:
        """The blended picture as uint8 (pixels no tile covered stay black)."""
        # In place: the sum is not needed afterwards, and a second full-size float
        # picture would break the memory bound tiled_upscale states.
        np.maximum(self._weight, 1e-6, out=self._weight)
        out = self._sum
        np.divide(out, self._weight[:, :, None], out=out)
        np.add(out, 0.5, out=out)
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8)
