"""Conversions between the engine's pictures (PIL images, uint8 numpy arrays) and Qt's.

Every conversion copies the pixel buffer: a QImage built over a numpy array does not
own its memory, and the array may be freed (or reused by the engine) afterwards.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage


def array_to_qimage(array: np.ndarray) -> QImage:
    """An H x W x 3 (RGB) or H x W x 4 (RGBA) or H x W (gray) uint8 array -> QImage (a copy)."""
    data = np.ascontiguousarray(array, dtype=np.uint8)
    if data.ndim == 2:
        h, w = data.shape
        fmt, bpl = QImage.Format.Format_Grayscale8, w
    elif data.ndim == 3 and data.shape[2] == 3:
        h, w, _ = data.shape
        fmt, bpl = QImage.Format.Format_RGB888, 3 * w
    elif data.ndim == 3 and data.shape[2] == 4:
        h, w, _ = data.shape
        fmt, bpl = QImage.Format.Format_RGBA8888, 4 * w
    else:
        raise ValueError(f"expected an H x W, H x W x 3 or H x W x 4 array, got {data.shape}")
    return QImage(data.data, w, h, bpl, fmt).copy()


def pil_to_qimage(image: Image.Image) -> QImage:
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    return array_to_qimage(np.asarray(image))


def qimage_to_array(image: QImage, channels: int = 3) -> np.ndarray:
    """A QImage -> H x W x channels uint8 array (channels 3 = RGB, 4 = RGBA, 1 = gray)."""
    fmt = {
        1: QImage.Format.Format_Grayscale8,
        3: QImage.Format.Format_RGB888,
        4: QImage.Format.Format_RGBA8888,
    }[channels]
    converted = image.convertToFormat(fmt)
    h, w = converted.height(), converted.width()
    bpl = converted.bytesPerLine()
    buffer = np.frombuffer(converted.constBits(), dtype=np.uint8, count=bpl * h)
    rows = buffer.reshape(h, bpl)[:, : w * channels]
    out = rows.reshape(h, w, channels).copy()
    return out[:, :, 0] if channels == 1 else out


def qimage_to_pil(image: QImage) -> Image.Image:
    return Image.fromarray(qimage_to_array(image, 3), "RGB")
