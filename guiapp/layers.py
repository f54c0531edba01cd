"""Paint layers beside the inpaint mask: a region's area, or a sketch for a ControlNet.

A PaintLayer is an ARGB picture the canvas brush paints into when the layer is the
canvas's paint target (Canvas.paint_target); it has the same stroke interface as the
Document's mask, and every stroke or clear is one command on the document's undo stack,
so Ctrl+Z undoes region and sketch strokes in the order they were made. LayerItem shows
a layer (or any picture, such as a control map) over the canvas picture.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from PySide6.QtCore import QObject, QPointF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPixmap, QRadialGradient
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene

from engine.api import GenerationRequest
from guiapp.document import Brush, Document, blank_mask
from guiapp.imaging import array_to_qimage, qimage_to_array
from guiapp.mask_commands import MaskEdit

DEFAULT_SIZE = QSize(128, 128)  # a layer's size before any picture is on the canvas


class PaintLayer(QObject):
    """One paintable layer the size of the document's picture."""

    changed = Signal()

    def __init__(self, document: Document, name: str, color: QColor) -> None:
        super().__init__(document)
        self.document = document
        self.name = name
        self.color = QColor(color)
        self._image = blank_mask(self._picture_size())
        self._before: QImage | None = None

    def _picture_size(self) -> QSize:
        image = self.document.image
        return image.size() if image is not None else DEFAULT_SIZE

    @property
    def image(self) -> QImage:
        return self._image

    def _fit(self) -> None:
        """A picture of another size came onto the canvas: the layer follows it."""
        size = self._picture_size()
        if self._image.size() != size:
            self._image = self._image.scaled(
                size,
                Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )

    def alpha(self) -> np.ndarray:
        """Where the layer is painted, H x W uint8 (255 = fully painted)."""
        return qimage_to_array(self._image, 4)[:, :, 3].copy()

    def is_empty(self) -> bool:
        return not self.alpha().any()

    def mask(self, size: tuple[int, int]) -> Image.Image:
        """The painted area as a PIL "L" picture of size (width, height)."""
        mask = Image.fromarray(self.alpha(), "L")
        return mask if mask.size == size else mask.resize(size, Image.Resampling.BILINEAR)

    def drawing(self, size: tuple[int, int]) -> Image.Image:
        """The strokes as white on black RGB (a sketch for a scribble ControlNet)."""
        return self.mask(size).convert("RGB")

    # ------------------------------------------------------------------ strokes

    def begin_stroke(self) -> bool:
        self._fit()
        self._before = self._image.copy()
        return True

    def paint_segment(self, start: QPointF, end: QPointF, brush: Brush) -> None:
        if self._before is None:
            return
        painter = QPainter(self._image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        if brush.erasing:
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationOut)
        distance = math.hypot(end.x() - start.x(), end.y() - start.y())
        count = max(1, int(distance / max(1.0, brush.size / 6.0)))
        for i in range(1, count + 1) if distance > 0 else [0]:
            self._dab(painter, start + (end - start) * (i / count), brush)
        painter.end()
        self.changed.emit()

    def _dab(self, painter: QPainter, centre: QPointF, brush: Brush) -> None:
        radius = brush.size / 2.0
        gradient = QRadialGradient(centre, radius)
        clear = QColor(self.color)
        clear.setAlpha(0)
        gradient.setColorAt(0.0, self.color)
        gradient.setColorAt(min(0.999, brush.hardness), self.color)
        gradient.setColorAt(1.0, clear)
        painter.setBrush(QBrush(gradient))
        painter.drawEllipse(centre, radius, radius)

    def end_stroke(self, text: str) -> None:
        before, self._before = self._before, None
        if before is not None:
            label = f"{text} ({self.name})"
            self.document.undo_stack.push(MaskEdit(label, before, self._image.copy(), self._set))
            self.changed.emit()

    def clear(self) -> None:
        before = self._image.copy()
        self._set(blank_mask(self._picture_size()))
        self.document.undo_stack.push(
            MaskEdit(f"Clear {self.name}", before, self._image.copy(), self._set)
        )

    def fill_box(self, left: float, top: float, right: float, bottom: float) -> None:
        """Paint a box given as fractions of the picture (quick left/right halves)."""
        self._fit()
        before = self._image.copy()
        w, h = self._image.width(), self._image.height()
        painter = QPainter(self._image)
        painter.fillRect(
            round(left * w), round(top * h), round((right - left) * w), round((bottom - top) * h),
            self.color,
        )  # fmt: skip
        painter.end()
        self.document.undo_stack.push(
            MaskEdit(f"Fill {self.name}", before, self._image.copy(), self._set)
        )
        self.changed.emit()

    def set_mask(self, mask: Image.Image, text: str) -> None:
        """Paint the layer as `mask` says (white: painted), resized to the picture; one
        undoable edit (Reuse parameters puts a picture's region masks back this way)."""
        self._fit()
        before = self._image.copy()
        size = (self._image.width(), self._image.height())
        alpha = np.asarray(mask.convert("L").resize(size, Image.Resampling.BILINEAR))
        rgba = np.empty((*alpha.shape, 4), np.uint8)
        rgba[..., :3] = (self.color.red(), self.color.green(), self.color.blue())
        rgba[..., 3] = alpha
        image = array_to_qimage(rgba).convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
        self._set(image)
        self.document.undo_stack.push(
            MaskEdit(f"{text} ({self.name})", before, self._image.copy(), self._set)
        )

    def _set(self, image: QImage) -> None:
        self._image = image.copy()
        self.changed.emit()


class LayerItem(QGraphicsPixmapItem):
    """A picture shown over the canvas picture, translucent; follows a PaintLayer."""

    Z = 1.5  # above the picture and the mask overlay, under the brush cursor

    def __init__(self, scene: QGraphicsScene, opacity: float = 0.5) -> None:
        super().__init__()
        self.setZValue(self.Z)
        self.setOpacity(opacity)
        scene.addItem(self)

    def show_image(self, image: QImage | None) -> None:
        self.setVisible(image is not None)
        if image is not None:
            self.setPixmap(QPixmap.fromImage(image))

    def follow(self, layer: PaintLayer) -> None:
        self.show_image(layer.image)
        layer.changed.connect(lambda: self.show_image(layer.image) if self.isVisible() else None)


def plain_job(request: GenerationRequest) -> bool:
    """Whether the docks' ControlNet units and regions join this request: every job but a
    continued run (it keeps the units and regions it ran with), a forward-process view
    (nothing is generated) and an upscale (its tiles are pieces of another size). An
    expansion takes them at the picture's size; the engine places them on the new canvas."""
    view_only = request.forward is not None and not request.forward.denoise
    return request.resume is None and request.upscale is None and not view_only


def unit_size(request: GenerationRequest) -> tuple[int, int]:
    """The size the docks' control images and region masks are made at: the picture's
    (before an expansion grows it)."""
    if request.expand is not None and request.init_image is not None:
        return request.init_image.size
    return request.width, request.height
