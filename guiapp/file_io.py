"""Pictures in and out of the window, with a sentence instead of an exception.

Opening goes through engine.images (EXIF orientation, 16-bit, CMYK, transparency as a
mask, bombs refused before decoding) and engine.metadata (parameters checked, values
left out named). Saving a history entry elsewhere ("Save as…") writes the image the
window holds, atomically, with its parameters: it works when the first save failed.
No widgets here; the window shows what these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage

from engine import atomic_file, images, metadata
from engine.api import GenerationRequest
from guiapp.imaging import qimage_to_pil

UNSAVED_HINT = "the image is kept in the history: use Save as… to save it elsewhere."


@dataclass
class LoadedPicture:
    image: Image.Image | None = None  # RGB; None when the file cannot be used
    mask: np.ndarray | None = None  # H x W uint8, 255 = repaint (from transparency)
    request: GenerationRequest | None = None  # the parameters the file carries
    notes: list[str] = field(default_factory=list)  # to show beside the picture
    error: str = ""  # one sentence when image is None


def load_picture(path: Path) -> LoadedPicture:
    try:
        image, mask, notes = images.open_image(path)
    except images.ImageError as exc:
        return LoadedPicture(error=f"Could not open the picture: {exc.message}")
    loaded = LoadedPicture(image=image, notes=[f"{path.name}: {note}." for note in notes])
    if mask is not None:
        loaded.mask = np.asarray(mask, dtype=np.uint8)
    reading = metadata.read_parameters_checked(path)
    loaded.request = reading.request
    if reading.left_out:
        loaded.notes.append(
            f"{path.name}: these parameters were left out because DiffusionDesk cannot use "
            f"them: {'; '.join(reading.left_out)}."
        )
    return loaded


def save_image_as(
    image: QImage, path: Path, request: GenerationRequest | None, seed: int | None
) -> str:
    """Write image to path as a PNG (with its parameters when known); "" or a sentence."""
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    picture = qimage_to_pil(image)
    try:
        if request is not None:
            metadata.save_png(picture, path, request, request.seed if seed is None else seed)
        else:
            atomic_file.write_atomic(path, lambda f: picture.save(f, format="PNG"))
    except atomic_file.SaveError as exc:
        return exc.message
    return ""


def save_failed_message(exc: BaseException, folder: Path) -> str:
    """What the window says when an output folder refuses a finished image."""
    reason = exc.message if isinstance(exc, atomic_file.SaveError) else f"{exc}"
    if not isinstance(exc, atomic_file.SaveError):
        reason = f"Could not save the image in {folder} ({reason})."
    return f"{reason.rstrip('.')}; {UNSAVED_HINT}"
