"""The document: the picture being worked on, its inpaint mask and the mask's undo stack.

The mask is an ARGB image whose alpha is the mask (255 = repaint), so the canvas can
draw it as a translucent overlay as it is. Brush strokes are painted here (the canvas
only turns mouse positions into image coordinates); every stroke, clear and invert is
one undoable command on `undo_stack`, and so is an expansion of the canvas
(`replace_picture`), which changes the picture's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from PySide6.QtCore import QObject, QPointF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QRadialGradient, QUndoStack

from guiapp.imaging import qimage_to_array, qimage_to_pil
from guiapp.mask_commands import MaskEdit, PictureEdit

MASK_COLOR = QColor(255, 70, 70)
MIN_BRUSH, MAX_BRUSH = 1, 256


@dataclass
class Brush:
    size: int = 24
    hardness: float = 0.6  # 1 = hard edge, 0 = soft all the way from the centre
    erasing: bool = False


def blank_mask(size: QSize) -> QImage:
    mask = QImage(size, QImage.Format.Format_ARGB32_Premultiplied)
    mask.fill(Qt.GlobalColor.transparent)
    return mask


class Document(QObject):
    """The canvas picture and its mask; widgets show it and call its edits."""

    imageChanged = Signal()
    maskChanged = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self._image: QImage | None = None
        self._mask = QImage()
        self._stroke_before: QImage | None = None

    # ------------------------------------------------------------------ picture

    @property
    def image(self) -> QImage | None:
        return self._image

    @property
    def mask(self) -> QImage:
        return self._mask

    def picture(self) -> Image.Image | None:
        """The picture as an RGB PIL image (what image-to-image and inpaint start from)."""
        return qimage_to_pil(self._image) if self._image is not None else None

    def set_image(self, image: QImage, keep_mask: bool = True) -> None:
        """Make `image` the picture; a mask of another size (or keep_mask=False) is reset."""
        self._image = image.copy()
        if not keep_mask or self._mask.size() != image.size():
            self._mask = blank_mask(image.size())
            self.undo_stack.clear()
        self.imageChanged.emit()
        self.maskChanged.emit()

    def replace_picture(self, image: QImage, text: str) -> None:
        """Make `image` the picture as one undoable edit (an expansion: any size), with a
        blank mask; undo brings back the picture and mask before it."""
        if self._image is None:
            self.set_image(image, keep_mask=False)
            return
        before = (self._image.copy(), self._mask.copy())
        after = (image.copy(), blank_mask(image.size()))
        self._apply_picture(*after)
        self.undo_stack.push(PictureEdit(text, before, after, self._apply_picture))

    def _apply_picture(self, image: QImage, mask: QImage) -> None:
        self._image = image.copy()
        self._mask = mask.copy()
        self.imageChanged.emit()
        self.maskChanged.emit()

    # ------------------------------------------------------------------ mask

    def mask_array(self) -> np.ndarray:
        """The mask as H x W uint8 (255 = repaint)."""
        if self._mask.isNull():
            return np.zeros((0, 0), np.uint8)
        return qimage_to_array(self._mask, 4)[:, :, 3].copy()

    def mask_image(self) -> Image.Image | None:
        """The mask as a PIL "L" image, or None if nothing is masked."""
        array = self.mask_array()
        if array.size == 0 or not array.any():
            return None
        return Image.fromarray(array, "L")

    def set_mask_array(self, array: np.ndarray, text: str = "Set mask") -> None:
        """Replace the mask with an H x W uint8 array (undoable)."""
        h, w = array.shape
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[..., 0], rgba[..., 1], rgba[..., 2] = MASK_COLOR.red(), MASK_COLOR.green(), 70
        rgba[..., 3] = array
        image = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).convertToFormat(
            QImage.Format.Format_ARGB32_Premultiplied
        )
        self._push_edit(text, image.copy())

    def clear_mask(self) -> None:
        if not self._mask.isNull():
            self._push_edit("Clear mask", blank_mask(self._mask.size()))

    def invert_mask(self) -> None:
        if not self._mask.isNull():
            self.set_mask_array(255 - self.mask_array(), "Invert mask")

    def _push_edit(self, text: str, after: QImage) -> None:
        before = self._mask.copy()
        self._set_mask(after)
        self.undo_stack.push(MaskEdit(text, before, after.copy(), self._set_mask))

    def _set_mask(self, mask: QImage) -> None:
        self._mask = mask.copy()
        self.maskChanged.emit()

    # ------------------------------------------------------------------ brush strokes

    def begin_stroke(self) -> bool:
        """Start a stroke; False when there is no picture to mask."""
        if self._image is None or self._mask.isNull():
            return False
        self._stroke_before = self._mask.copy()
        return True

    def paint_segment(self, start: QPointF, end: QPointF, brush: Brush) -> None:
        """Dab the brush along start -> end (image coordinates), live, during a stroke."""
        if self._stroke_before is None:
            return
        painter = QPainter(self._mask)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        if brush.erasing:
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationOut)
        distance = math.hypot(end.x() - start.x(), end.y() - start.y())
        spacing = max(1.0, brush.size / 6.0)
        count = max(1, int(distance / spacing))
        for i in range(1, count + 1) if distance > 0 else [0]:
            _dab(painter, start + (end - start) * (i / count), brush)
        painter.end()
        self.maskChanged.emit()

    def end_stroke(self, text: str) -> None:
        """Finish the stroke as one undoable edit."""
        before, self._stroke_before = self._stroke_before, None
        if before is not None:
            self.undo_stack.push(MaskEdit(text, before, self._mask.copy(), self._set_mask))
            self.maskChanged.emit()


def _dab(painter: QPainter, centre: QPointF, brush: Brush) -> None:
    radius = brush.size / 2.0
    gradient = QRadialGradient(centre, radius)
    solid = QColor(MASK_COLOR)
    clear = QColor(MASK_COLOR)
    clear.setAlpha(0)
    gradient.setColorAt(0.0, solid)
    gradient.setColorAt(min(0.999, brush.hardness), solid)
    gradient.setColorAt(1.0, clear)
    painter.setBrush(QBrush(gradient))
    painter.drawEllipse(centre, radius, radius)
