"""Opening pictures the way an image viewer shows them, safely, for the CLI and the window.

`open_image` turns any file or bytes a person hands us into an RGB picture plus, where
the picture has transparency, a mask (transparent = repaint). It honours EXIF
orientation, scales 16-bit and float samples instead of clipping them, converts
palette, grayscale, CMYK (through its ICC profile) and other colour spaces to sRGB,
refuses decompression bombs from the header alone (before any pixel is decoded) and
scales a huge photo down to a size the engine can work at. Every failure is an
`ImageError`: one sentence, never a traceback. No torch and no Qt here.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from engine.api import EngineError, ErrorKind

# Decoding more than this is refused from the header: 100 MP of RGBA is 400 MB of pixels.
MAX_DECODE_PIXELS = 100_000_000
# Bigger pictures are scaled down (the engine's own ceiling for one image, 2048 x 2048).
MAX_WORK_PIXELS = 2048 * 2048
MAX_WORK_SIDE = 4096
GRID = 8  # the latent grid: working sizes are multiples of it

Source = str | os.PathLike[str] | bytes


class ImageError(EngineError):
    """A picture that cannot be used, with a sentence saying why and what to do."""

    def __init__(self, message: str) -> None:
        # A sentence starts with the file's path as given, or with "This file".
        if message.startswith("this file"):
            message = "T" + message[1:]
        super().__init__(ErrorKind.BAD_INPUT, message)


class OpenedImage(NamedTuple):
    image: Image.Image  # RGB, sRGB
    mask: Image.Image | None  # L, white where the picture was transparent (repaint)
    notes: tuple[str, ...]  # what was done to it that a person should know


def _name(source: Source) -> str:
    return "this file" if isinstance(source, bytes | bytearray) else str(Path(source))


def _bytes_per_pixel(mode: str) -> int:
    try:
        bands = Image.getmodebands(mode)
    except (KeyError, ValueError):
        bands = 4
    depth = 4 if mode in ("I", "F") else 2 if ";16" in mode else 1
    return max(bands, 1) * depth


def _too_large(name: str, width: int, height: int, mode: str) -> ImageError:
    needed = width * height * max(_bytes_per_pixel(mode), 4)
    return ImageError(
        f"{name} is {width}x{height} pixels ({width * height / 1e6:,.0f} megapixels) and "
        f"would need about {needed / 1e9:,.1f} GB of memory to open; the most DiffusionDesk "
        f"opens is {MAX_DECODE_PIXELS / 1e6:.0f} megapixels: scale it down in an image editor "
        "first."
    )


def _bomb_size(exc: Exception) -> int | None:
    """The pixel count Pillow names in its DecompressionBombError message."""
    text = str(exc)
    start = text.find("(")
    end = text.find(" pixels)", start)
    digits = text[start + 1 : end] if 0 <= start < end else ""
    return int(digits) if digits.isdigit() and len(digits) < 30 else None


def _open(source: Source, name: str) -> Image.Image:
    fp = io.BytesIO(bytes(source)) if isinstance(source, bytes | bytearray) else source
    try:
        # Our own limit, checked from the header, decides; Pillow's DecompressionBombError
        # (twice its 89 MP warning) arrives first for the largest.
        return Image.open(fp)
    except FileNotFoundError:
        raise ImageError(f"{name} does not exist; check the path.") from None
    except IsADirectoryError:
        raise ImageError(f"{name} is a folder, not a picture.") from None
    except PermissionError:
        raise ImageError(f"{name} cannot be read: permission denied.") from None
    except Image.DecompressionBombError as exc:
        pixels = _bomb_size(exc)
        raise ImageError(
            f"{name} declares {pixels / 1e6:,.0f} megapixels and would need about "
            f"{pixels * 4 / 1e9:,.1f} GB of memory to open; the most DiffusionDesk opens is "
            f"{MAX_DECODE_PIXELS / 1e6:.0f} megapixels."
            if pixels
            else f"{name} declares a size too large to open safely."
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{name} is not an image file DiffusionDesk can read; use a PNG, JPEG, WebP, BMP "
            "or TIFF file."
        ) from None
    except Exception:  # a damaged header can raise anything inside Pillow
        raise ImageError(f"{name} is damaged: its header cannot be read.") from None


def _scaled_to_8_bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grayscale scaled into 0..255 (Pillow's convert clips)."""
    values = np.asarray(image)
    if image.mode == "F":
        finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        top = 1.0 if finite.max(initial=0.0) <= 1.0 else 255.0
        return Image.fromarray((np.clip(finite / top, 0, 1) * 255).round().astype(np.uint8))
    values = values.astype(np.int64)
    top = 65535 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255
    if values.max(initial=0) > 65535:
        top = int(values.max())
    scaled = np.clip(values, 0, None) * 255 // max(top, 1)
    return Image.fromarray(scaled.astype(np.uint8), "L")


def _to_srgb(image: Image.Image, notes: list[str]) -> Image.Image:
    """RGB or CMYK with an embedded ICC profile converted to sRGB, as a viewer shows it."""
    profile = image.info.get("icc_profile")
    if not profile or image.mode not in ("RGB", "CMYK"):
        return image.convert("RGB") if image.mode == "CMYK" else image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        converted = ImageCms.profileToProfile(
            image, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
    except Exception:  # a broken profile: show the numbers as they are
        notes.append("its colour profile could not be read, so its colours may look different")
        return image.convert("RGB")
    return converted if converted is not None else image.convert("RGB")


def _split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """(RGB-or-other picture, alpha) where the picture has an alpha channel or transparency."""
    if image.mode in ("PA", "La", "RGBa") or image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode in ("L", "RGB") and "transparency" in image.info:
        image = image.convert("LA" if image.mode == "L" else "RGBA")
    if image.mode == "RGBA":
        return image.convert("RGB"), image.getchannel("A")
    if image.mode == "LA":
        return image.getchannel("L"), image.getchannel("A")
    return image, None


def _to_rgb(image: Image.Image, notes: list[str]) -> tuple[Image.Image, Image.Image | None]:
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _scaled_to_8_bit(image)
    elif image.mode == "1":
        image = image.convert("L")
    image, alpha = _split_alpha(image)
    if image.mode in ("RGB", "CMYK"):
        image = _to_srgb(image, notes)
    elif image.mode == "LAB":
        image = ImageCms.applyTransform(
            image,
            ImageCms.buildTransform(
                ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
            ),
        ) or image.convert("RGB")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image, alpha


def _lowest(band: Image.Image) -> int:
    return int(np.asarray(band).min(initial=255))


def _highest(band: Image.Image) -> int:
    return int(np.asarray(band).max(initial=0))


def working_size(width: int, height: int) -> tuple[int, int]:
    """The size a big picture is scaled to: within the engine's limits, on the 8-pixel grid."""
    area = (MAX_WORK_PIXELS / (width * height)) ** 0.5
    scale = min(1.0, area, MAX_WORK_SIDE / max(width, height))
    return (
        max(GRID, int(width * scale) // GRID * GRID),
        max(GRID, int(height * scale) // GRID * GRID),
    )


def _exif_transpose_safe(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:  # broken EXIF: show the picture as stored
        return image.copy()


def open_image(source: Source) -> OpenedImage:
    """The picture in source (a path or the file's bytes) as a viewer shows it.

    Raises ImageError with one sentence for anything that is not a usable picture.
    """
    with warnings.catch_warnings():
        # Pillow warns about corrupt EXIF and odd tags on stderr; the picture opens or
        # is refused with a sentence either way.
        warnings.simplefilter("ignore")
        return _open_image(source)


def _open_image(source: Source) -> OpenedImage:
    name = _name(source)
    opened = _open(source, name)
    notes: list[str] = []
    try:
        width, height = opened.size
        if width <= 0 or height <= 0:
            raise ImageError(f"{name} has no pixels ({width}x{height}).")
        if width * height > MAX_DECODE_PIXELS:
            raise _too_large(name, width, height, opened.mode)
        try:
            if opened.format == "JPEG" and width * height > MAX_WORK_PIXELS:
                # JPEG decodes straight at 1/2, 1/4 or 1/8 size: a huge photo never
                # needs its full-size pixels in memory.
                opened.draft("RGB", working_size(width, height))
            opened.seek(0)
            opened.load()
        except MemoryError:
            raise ImageError(
                f"There is not enough memory to open {name} ({width}x{height}); close other "
                "programs or scale the picture down first."
            ) from None
        except Exception:  # every decoder failure means the same to a person
            raise ImageError(
                f"{name} is damaged or incomplete (it could not be decoded); open the "
                "original file or save it again from an image editor."
            ) from None
        picture = _exif_transpose_safe(opened)
        if (picture.width > picture.height) != (opened.width > opened.height):
            width, height = height, width  # turned by its EXIF orientation
        try:
            rgb, alpha = _to_rgb(picture, notes)
        except ImageError:
            raise
        except Exception:  # an exotic mode Pillow cannot convert
            raise ImageError(
                f"{name} uses a colour format ({picture.mode}) DiffusionDesk cannot convert; "
                "save it as an ordinary RGB PNG or JPEG."
            ) from None
    finally:
        opened.close()
    mask = None
    if alpha is not None and _lowest(alpha) < 255:
        # Transparent means "fill this in", as in other painting tools.
        mask = alpha.point(lambda a: 255 if a < 128 else 0)
        notes.append("its transparent part is used as the mask (white = repaint)")
    if rgb.width * rgb.height > MAX_WORK_PIXELS or max(rgb.size) > MAX_WORK_SIDE:
        size = working_size(rgb.width, rgb.height)
        notes.append(f"it was scaled down from {width}x{height} to {size[0]}x{size[1]}")
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
        if mask is not None:
            mask = mask.resize(size, Image.Resampling.NEAREST)
    return OpenedImage(rgb, mask, tuple(notes))


def open_mask(source: Source) -> OpenedImage:
    """A mask file: brightness says what is repainted (white) and kept (black).

    A transparent pixel counts as black, so white strokes on a transparent layer work;
    a mask that ends up empty says how masks are read.
    """
    picture, alpha_mask, notes = open_image(source)
    brightness = picture.convert("L")
    if alpha_mask is not None:
        keep = alpha_mask.point(lambda v: 0 if v else 255)  # opaque -> 255
        brightness = Image.fromarray(
            np.minimum(np.asarray(brightness), np.asarray(keep)).astype(np.uint8), "L"
        )
        notes = tuple(n for n in notes if "transparent" not in n)
    if _highest(brightness) <= 127:
        raise ImageError(
            f"The mask {_name(source)} has no white: masks are read from brightness "
            "(white = repaint, black = keep); paint the area to repaint in white."
        )
    return OpenedImage(brightness, None, notes)
