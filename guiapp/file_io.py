"""Pictures in and out of the window, with a sentence instead of an exception.

Opening goes through engine.images: EXIF orientation, 16-bit, palette, CMYK and
transparency (which becomes the mask) as a viewer shows them; bombs and damaged files
refused with one sentence before anything is decoded. Saving elsewhere ("Save as…")
writes atomically and says what a refusing disk means. No widgets here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from engine import atomic_file, images

UNSAVED_HINT = "the image is kept in the history: use Save as… to save it elsewhere."


@dataclass
class OpenedPicture:
    image: Image.Image | None = None  # RGB; None when the file cannot be used
    mask: np.ndarray | None = None  # H x W uint8, 255 = repaint (from transparency)
    notes: list[str] = field(default_factory=list)  # to show beside the picture
    error: str = ""  # one sentence when image is None


def open_picture(path: Path) -> OpenedPicture:
    try:
        image, mask, notes = images.open_image(path)
    except images.ImageError as exc:
        return OpenedPicture(error=f"Could not open the picture: {exc.message}")
    opened = OpenedPicture(image=image, notes=[f"{path.name}: {note}." for note in notes])
    if mask is not None:
        opened.mask = np.asarray(mask, dtype=np.uint8)
    return opened


def copy_file(source: Path, target: Path) -> None:
    """source's bytes written to target atomically (SaveError with a sentence)."""
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise atomic_file.SaveError(
            f"{source.name} could not be read back ({exc.strerror or exc}); save the copy "
            "in the history instead.",
            exc.errno,
        ) from exc
    atomic_file.atomic_write_bytes(target, data)


def save_failed_message(exc: BaseException, folder: Path) -> str:
    """What the window says when an output folder refuses a finished image."""
    if isinstance(exc, atomic_file.SaveError):
        reason = exc.message
    else:
        reason = f"Could not save the image in {folder} ({exc})."
    return f"{reason.rstrip('.')}; {UNSAVED_HINT}"
