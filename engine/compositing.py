"""The one owner of inpaint compositing: the setup, the feathered alpha, the final composite
and the step previews placed in the whole picture.

Everything is in image coordinates. The final image and every step preview are blended
over the original with the same alpha, which is exactly 0 outside the user's mask, so a
preview changes only the pixels the final image may change. With "only masked area" the
pipeline works on a crop; its previews are pasted back at the crop's box. No torch here:
this is plain Pillow and numpy, and the window never blends anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

Box = tuple[int, int, int, int]
"""(x1, y1, x2, y2) in image pixels, x2 and y2 exclusive."""

LATENT_CELL = 8  # image pixels per latent cell in the SD-family VAEs


@dataclass(frozen=True, eq=False)
class InpaintSetup:
    """What an inpaint job paints into and how its result is put back."""

    original: Image.Image  # the init image, RGB, whole picture
    pipe_mask: Image.Image  # hard mask handed to the pipeline, grown to the latent grid
    alpha: np.ndarray  # H x W float32 in [0, 1], exactly 0 outside the user's mask
    crop: Box | None  # the box the pipeline works on, for "only masked area"
    padding: int | None  # the pipeline's padding_mask_crop (None: whole picture)
    # Outpainting: pixels of the painted area next to the kept one over which the painting
    # is shifted toward the kept pixels' colours (seam_corrected); 0: none.
    seam_band: int = 0


def feathered_alpha(mask: Image.Image, blur: int) -> np.ndarray:
    """Feather inward only: 1 deep inside the mask, falling to exactly 0 at its edge.

    Blurring the mask and keeping the upper half keeps the feather inside the painted
    area, and multiplying by the hard mask guarantees untouched pixels outside it.
    """
    hard_mask = hard(mask)
    inside = np.asarray(hard_mask) > 127
    if blur <= 0:
        return inside.astype(np.float32)
    soft = np.asarray(hard_mask.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32) / 255
    return np.clip(2 * soft - 1, 0, 1) * inside


def hard(mask: Image.Image) -> Image.Image:
    """The mask as pure black and white (grey above the middle counts as painted)."""
    return mask.convert("L").point(lambda v: 255 if v > 127 else 0)


def pipeline_mask(mask: Image.Image) -> Image.Image:
    """The hard mask grown by one latent cell, so every touched cell is repainted."""
    return hard(mask).filter(ImageFilter.MaxFilter(2 * LATENT_CELL + 1))


def inpaint_setup(image: Image.Image, mask: Image.Image, blur: int) -> InpaintSetup:
    """Repaint the white of `mask` in `image`, on the whole picture (plan.py adds the
    crop for "only masked area", where the pipeline decides the box)."""
    return InpaintSetup(
        original=image.convert("RGB"),
        pipe_mask=pipeline_mask(mask),
        alpha=feathered_alpha(mask, blur),
        crop=None,
        padding=None,
    )


def whole_picture_setup(image: Image.Image) -> InpaintSetup:
    """Everything repainted: how a 9-channel inpainting UNet runs text-to-image."""
    width, height = image.size
    return InpaintSetup(
        original=image.convert("RGB"),
        pipe_mask=Image.new("L", image.size, 255),
        alpha=np.ones((height, width), np.float32),
        crop=None,
        padding=None,
    )


def blend(original: np.ndarray, generated: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """original * (1 - alpha) + generated * alpha, rounded to uint8 (alpha H x W)."""
    a = alpha[..., None]
    mixed = original.astype(np.float32) * (1 - a) + generated.astype(np.float32) * a
    return mixed.round().astype(np.uint8)


def final_composite(setup: InpaintSetup, generated: Image.Image) -> Image.Image:
    """The pipeline's whole-picture result over the original: outside the mask the
    original's pixels come back exactly."""
    original = np.asarray(setup.original)
    image = generated.convert("RGB")
    if image.size != setup.original.size:
        image = image.resize(setup.original.size, Image.Resampling.BICUBIC)
    painted = np.asarray(image)
    mixed = blend(original, painted, setup.alpha)
    if setup.seam_band > 0:
        mixed = seam_corrected(original, painted, mixed, setup.alpha == 0, setup.seam_band)
    return Image.fromarray(mixed)


def _box_sum(a: np.ndarray, radius: int) -> np.ndarray:
    """Sum over a (2r+1)-square window around each pixel (zeros beyond the border)."""
    for axis in (0, 1):
        padded = np.pad(a, [(radius + 1, radius) if i == axis else (0, 0) for i in
                            range(a.ndim)])  # fmt: skip
        c = np.cumsum(padded, axis=axis, dtype=np.float64)
        n = a.shape[axis]
        a = np.take(c, range(2 * radius + 1, 2 * radius + 1 + n), axis=axis) - np.take(
            c, range(n), axis=axis
        )
    return a.astype(np.float32)


def seam_corrected(
    original: np.ndarray,
    generated: np.ndarray,
    composite: np.ndarray,
    kept: np.ndarray,
    band: int,
) -> np.ndarray:
    """composite with its painted pixels near the kept ones shifted toward the kept
    pixels' colours. Where the pipeline's picture covers kept pixels it differs from them
    (its decode, and the cell it repainted across the seam); that difference, averaged
    over the kept side near the seam, is spread into the painted side and fades out over
    `band` pixels, so the painting meets the original without a step. Kept pixels stay
    exact."""
    if kept.all() or not kept.any():
        return composite
    k = kept.astype(np.float32)
    diff = (original.astype(np.float32) - generated.astype(np.float32)) * k[..., None]
    weight_sum = _box_sum(k, band)
    spread = _box_sum(diff, band) / np.maximum(weight_sum, 1e-6)[..., None]
    fade = np.clip(2 * weight_sum / (2 * band + 1) ** 2, 0, 1) * (1 - k)
    out = composite.astype(np.float32) + spread * fade[..., None]
    out[kept] = original[kept]
    return np.clip(out, 0, 255).round().astype(np.uint8)


def fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """size scaled down (never up) so that its long side is at most max_side."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


_PIXEL = np.dtype((np.void, 3))


@dataclass(frozen=True, eq=False)
class _Layout:
    """The whole picture at one preview size: the original, the alpha and the painted box.

    Each step scales only the part of the preview the mask reaches (`reach`, inside the
    box) and writes only those pixels: the ones painted outright (alpha 1) are copied,
    those in the feathered ring (0 < alpha < 1) blended as blend() does, with the
    original's share computed once. Scaling the whole preview and blending the whole box
    in floats took about 25 ms a preview at 512 x 512, two previews a step, in every
    inpaint job. Where the reach is mostly painted, the reach is copied as a block and
    the few pixels of it outside the mask (alpha 0: the corners of a rounded or feathered
    mask) are put back from the original: a block copy and a short scatter cost about a
    tenth of scattering every painted pixel (0.4 ms at 1024 px, two previews a step)."""

    original: np.ndarray  # h x w x 3 uint8
    box: Box  # where the pipeline's picture goes, in the whole picture
    reach: Box  # the part of the box the mask reaches (alpha > 0), in box coordinates
    # Flat pixel indices: in the whole picture, and in the reach-sized painted part.
    full: tuple[np.ndarray, np.ndarray]
    feathered: tuple[np.ndarray, np.ndarray]
    feathered_alpha: np.ndarray  # n x 1 float32
    feathered_kept: np.ndarray  # n x 3 float32: original * (1 - alpha)
    # The reach's pixels outside the mask (whole-picture indices, their original pixels),
    # when there are fewer of them than painted ones; None: scatter the painted ones.
    outside: tuple[np.ndarray, np.ndarray] | None

    @classmethod
    def make(cls, original: np.ndarray, alpha: np.ndarray, box: Box) -> _Layout:
        x1, y1, x2, y2 = box
        a = alpha[y1:y2, x1:x2]
        rows, cols = np.nonzero(a > 0)
        if not len(rows):
            rows, cols = np.zeros(1, np.intp), np.zeros(1, np.intp)
        reach = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
        rx1, ry1, rx2, ry2 = reach
        part = a[ry1:ry2, rx1:rx2]

        def indices(where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            r, c = np.nonzero(where)
            whole = (r + y1 + ry1) * original.shape[1] + c + x1 + rx1
            return whole, r * (rx2 - rx1) + c

        feathered = indices((part > 0) & (part < 1))
        weight = part.reshape(-1)[feathered[1]][:, None].astype(np.float32)
        kept = original.reshape(-1, 3)[feathered[0]].astype(np.float32) * (1 - weight)
        full, (zero, _) = indices(part >= 1), indices(part <= 0)
        outside = None
        if len(zero) < len(full[0]):
            pixels = np.ascontiguousarray(original).reshape(-1, 3).view(_PIXEL)
            outside = (zero, pixels[zero].copy())
        return cls(original, box, reach, full, feathered, weight, kept, outside)

    def painted(self, rgb: np.ndarray) -> np.ndarray:
        """The reach's pixels of the preview scaled to the box (bilinear, as a scaling of
        the whole preview would give them, within a grey level)."""
        x1, y1, x2, y2 = self.box
        rx1, ry1, rx2, ry2 = self.reach
        height, width = rgb.shape[:2]
        if (width, height) == (x2 - x1, y2 - y1):
            return rgb[ry1:ry2, rx1:rx2]
        sx, sy = width / (x2 - x1), height / (y2 - y1)
        source = (rx1 * sx, ry1 * sy, rx2 * sx, ry2 * sy)
        image = Image.fromarray(np.ascontiguousarray(rgb))
        return np.asarray(
            image.resize((rx2 - rx1, ry2 - ry1), Image.Resampling.BILINEAR, box=source)
        )

    def paint(self, rgb: np.ndarray) -> np.ndarray:
        """The whole picture with the preview `rgb` put in through the alpha."""
        out = self.original.copy()
        flat = out.reshape(-1, 3)
        source = np.ascontiguousarray(self.painted(rgb)).reshape(-1, 3)
        if self.outside is not None:  # the whole reach, then its unpainted pixels back
            x1, y1 = self.box[:2]
            rx1, ry1, rx2, ry2 = self.reach
            out[y1 + ry1 : y1 + ry2, x1 + rx1 : x1 + rx2] = source.reshape(ry2 - ry1, -1, 3)
            where, pixels = self.outside
            if len(where):
                flat.view(_PIXEL)[where] = pixels
        else:  # one 3-byte item per pixel: numpy copies those faster than rows of 3
            flat.view(_PIXEL)[self.full[0]] = source.view(_PIXEL)[self.full[1]]
        to, of = self.feathered
        mixed = self.feathered_kept + source[of].astype(np.float32) * self.feathered_alpha
        flat[to] = mixed.round().astype(np.uint8)
        return out


class PreviewCompositor:
    """Turns a step preview of what the pipeline paints (the whole picture, or the crop)
    into a whole-picture preview over the original, with the final composite's alpha.

    The whole picture is drawn at its own size, at most max_side on the long side,
    whatever the preview's detail: a coarse (latent-sized) preview drawn small would show
    the kept pixels blurred once the window scales it up, and outside the mask the
    preview must show the original as the final image will. The original and the alpha
    are scaled once; each step blends only the pixels the mask reaches.
    """

    def __init__(self, setup: InpaintSetup, max_side: int) -> None:
        self._setup = setup
        self._max_side = max_side
        self._layouts: dict[tuple[int, int], _Layout] = {}

    def canvas_size(self, preview_size: tuple[int, int]) -> tuple[int, int]:
        """The whole picture's size for a preview of preview_size (width, height)."""
        del preview_size  # the kept pixels decide the size, not the painted ones
        return fit(self._setup.original.size, self._max_side)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """rgb: H x W x 3 uint8 preview of the pipeline's picture -> whole-picture preview."""
        return self._layout((rgb.shape[1], rgb.shape[0])).paint(rgb)

    def _layout(self, preview_size: tuple[int, int]) -> _Layout:
        layout = self._layouts.get(preview_size)
        if layout is None:
            setup = self._setup
            size = self.canvas_size(preview_size)
            width, height = setup.original.size
            original = np.asarray(setup.original.resize(size, Image.Resampling.BOX))
            alpha = Image.fromarray(setup.alpha.astype(np.float32), mode="F")
            small_alpha = np.asarray(alpha.resize(size, Image.Resampling.BOX), np.float32)
            crop = setup.crop or (0, 0, width, height)
            sx, sy = size[0] / width, size[1] / height
            x1, y1 = round(crop[0] * sx), round(crop[1] * sy)
            x2 = max(x1 + 1, round(crop[2] * sx))
            y2 = max(y1 + 1, round(crop[3] * sy))
            layout = _Layout.make(original, small_alpha, (x1, y1, x2, y2))
            self._layouts[preview_size] = layout
        return layout
