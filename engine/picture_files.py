"""Saving a finished picture as PNG, JPEG or WebP, with its parameters inside.

PNG carries the A1111 "parameters" text chunk and our JSON record (engine/metadata.py).
JPEG and WebP carry the A1111 text in EXIF UserComment exactly as AUTOMATIC1111 writes
it (an 8-byte "UNICODE\\0" charset prefix, then UTF-16 big-endian), which A1111, Forge,
sd-parsers, CivitAI and our own reader all read back. The format follows the file's
suffix. Every write is atomic (engine/atomic_file.py): the file is the old one or the complete
new one, and a disk that refuses gives a SaveError with a sentence.

No Qt and no torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from engine import metadata
from engine.api import GenerationRequest, ModelInfo
from engine.atomic_file import atomic_write

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
JPEG_QUALITY = 95
WEBP_QUALITY = 95
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286


def format_of(path: str | os.PathLike[str]) -> str | None:
    """ "PNG", "JPEG" or "WEBP" for a file name we can save, else None."""
    return FORMATS.get(Path(path).suffix.lower())


def user_comment(text: str) -> bytes:
    """EXIF UserComment bytes the way A1111 writes them (piexif's "unicode" encoding)."""
    return b"UNICODE\x00" + text.encode("utf-16-be", errors="surrogatepass")


def exif_with_parameters(text: str) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = user_comment(text)
    return exif.tobytes()


def save_picture(
    image: Image.Image,
    path: str | os.PathLike[str],
    request: GenerationRequest,
    seed: int,
    model_info: ModelInfo | None = None,
) -> Path:
    """Write image to path in the format its suffix names, with the parameters inside.
    ValueError for a suffix we cannot write (say which ones we can)."""
    path = Path(path)
    kind = format_of(path)
    if kind is None:
        raise ValueError(
            f"{path.name}: pictures are saved as .png, .jpg or .webp, not {path.suffix!r}"
        )
    if kind == "PNG":
        return metadata.save_png(image, path, request, seed, model_info)
    text = metadata.format_a1111(request, seed, model_info)
    options: dict[str, object] = {"exif": exif_with_parameters(text)}
    if kind == "JPEG":
        image = image.convert("RGB")  # JPEG has no alpha
        options.update(quality=JPEG_QUALITY)
    else:
        options.update(quality=WEBP_QUALITY)
    return atomic_write(path, lambda f: image.save(f, format=kind, **options))
