"""The canvas: the picture, a translucent mask overlay and a mask brush, with zoom and pan.

Left button paints the mask (or erases it with the eraser), the middle button or
Space + left button pans, the wheel zooms under the cursor. Every stroke, clear and
invert is one undoable command on the canvas's QUndoStack.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
    QRadialGradient,
    QUndoStack,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

from guiapp.imaging import qimage_to_array
from guiapp.mask_commands import MaskEdit

MASK_COLOR = QColor(255, 70, 70)
MIN_BRUSH, MAX_BRUSH = 1, 256
MIN_ZOOM, MAX_ZOOM = 0.05, 64.0


class Canvas(QGraphicsView):
    """Shows the document image (or a live preview) and edits its mask."""

    brushSizeChanged = Signal(int)
    maskChanged = Signal()
    zoomChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("canvas")
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setMouseTracking(True)
        self.setAcceptDrops(False)  # the window handles drops
        self.viewport().setAcceptDrops(False)
        self.setBackgroundBrush(QColor(24, 24, 28))

        self._image_item = QGraphicsPixmapItem()
        self._overlay_item = QGraphicsPixmapItem()
        self._overlay_item.setOpacity(0.5)
        self._cursor_item = QGraphicsEllipseItem()
        self._cursor_item.setPen(QPen(QColor(255, 255, 255, 200), 0))
        self._cursor_item.setVisible(False)
        for z, item in enumerate((self._image_item, self._overlay_item, self._cursor_item)):
            item.setZValue(z)
            self._scene.addItem(item)

        self.undo_stack = QUndoStack(self)
        self._image: QImage | None = None
        self._mask = QImage()
        self._brush_size = 24
        self._hardness = 0.6  # 1 = hard edge, 0 = soft all the way from the centre
        self._erasing = False
        self._stroke_before: QImage | None = None
        self._last_point: QPointF | None = None
        self._panning = False
        self._space_down = False
        self._pan_origin = QPointF()
        self._zoom = 1.0
        self._fitted = False
        self.previews_shown = 0

    # ------------------------------------------------------------------ document

    def has_image(self) -> bool:
        return self._image is not None

    def image(self) -> QImage | None:
        return self._image

    def image_size(self) -> QSize | None:
        return self._image.size() if self._image is not None else None

    def set_image(self, image: QImage, keep_mask: bool = True) -> None:
        """Make `image` the document; a mask of another size (or keep_mask=False) is reset."""
        self._image = image.copy()
        if not keep_mask or self._mask.size() != image.size():
            self._mask = self._blank_mask(image.size())
            self.undo_stack.clear()
            self._refresh_overlay()
        self._image_item.setPixmap(QPixmap.fromImage(self._image))
        self._overlay_item.setVisible(True)
        self._scene.setSceneRect(QRectF(0, 0, image.width(), image.height()))
        if not self._fitted:
            self.fit()
        self.maskChanged.emit()

    def show_document(self) -> None:
        """Show the document image again (after previews)."""
        if self._image is not None:
            self._image_item.setPixmap(QPixmap.fromImage(self._image))
            self._scene.setSceneRect(QRectF(0, 0, self._image.width(), self._image.height()))
        self._overlay_item.setVisible(True)

    def show_preview(self, preview: QImage, size: QSize | None = None) -> None:
        """Show a preview (scaled to `size`, default the document size) without keeping it."""
        target = size or self.image_size() or preview.size()
        pixmap = QPixmap.fromImage(preview)
        if pixmap.size() != target:
            pixmap = pixmap.scaled(
                target,
                Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        self._image_item.setPixmap(pixmap)
        self._overlay_item.setVisible(self._image is not None and target == self._mask.size())
        self._scene.setSceneRect(QRectF(0, 0, target.width(), target.height()))
        if not self._fitted:
            self.fit()
        self.previews_shown += 1

    # ------------------------------------------------------------------ mask

    @staticmethod
    def _blank_mask(size: QSize) -> QImage:
        mask = QImage(size, QImage.Format.Format_ARGB32_Premultiplied)
        mask.fill(Qt.GlobalColor.transparent)
        return mask

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

    def has_mask(self) -> bool:
        return self.mask_image() is not None

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
        if self._mask.isNull():
            return
        self._push_edit("Clear mask", self._blank_mask(self._mask.size()))

    def invert_mask(self) -> None:
        if self._mask.isNull():
            return
        self.set_mask_array(255 - self.mask_array(), "Invert mask")

    def _push_edit(self, text: str, after: QImage) -> None:
        before = self._mask.copy()
        self._set_mask(after)
        self.undo_stack.push(MaskEdit(text, before, after.copy(), self._set_mask))

    def _set_mask(self, mask: QImage) -> None:
        self._mask = mask.copy()
        self._refresh_overlay()
        self.maskChanged.emit()

    def _refresh_overlay(self) -> None:
        self._overlay_item.setPixmap(QPixmap.fromImage(self._mask))

    # ------------------------------------------------------------------ brush

    @property
    def brush_size(self) -> int:
        return self._brush_size

    def set_brush_size(self, size: int) -> None:
        size = max(MIN_BRUSH, min(MAX_BRUSH, int(size)))
        if size != self._brush_size:
            self._brush_size = size
            self._update_cursor(self._cursor_item.rect().center())
            self.brushSizeChanged.emit(size)

    @property
    def hardness(self) -> float:
        return self._hardness

    def set_hardness(self, hardness: float) -> None:
        self._hardness = max(0.0, min(1.0, float(hardness)))

    @property
    def erasing(self) -> bool:
        return self._erasing

    def set_erasing(self, erasing: bool) -> None:
        self._erasing = bool(erasing)

    def _dab(self, painter: QPainter, centre: QPointF) -> None:
        radius = self._brush_size / 2.0
        gradient = QRadialGradient(centre, radius)
        solid = QColor(MASK_COLOR)
        clear = QColor(MASK_COLOR)
        clear.setAlpha(0)
        gradient.setColorAt(0.0, solid)
        gradient.setColorAt(min(0.999, self._hardness), solid)
        gradient.setColorAt(1.0, clear)
        painter.setBrush(QBrush(gradient))
        painter.drawEllipse(centre, radius, radius)

    def _paint_segment(self, start: QPointF, end: QPointF) -> None:
        if self._mask.isNull():
            return
        painter = QPainter(self._mask)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        if self._erasing:
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationOut)
        distance = math.hypot(end.x() - start.x(), end.y() - start.y())
        spacing = max(1.0, self._brush_size / 6.0)
        count = max(1, int(distance / spacing))
        for i in range(1, count + 1) if distance > 0 else [0]:
            t = i / count
            self._dab(painter, start + (end - start) * t)
        painter.end()
        self._refresh_overlay()

    def _update_cursor(self, centre: QPointF) -> None:
        r = self._brush_size / 2.0
        self._cursor_item.setRect(QRectF(centre.x() - r, centre.y() - r, 2 * r, 2 * r))

    # ------------------------------------------------------------------ view

    def fit(self) -> None:
        rect = self._scene.sceneRect()
        if rect.isEmpty() or self.viewport().width() < 10:
            return
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        self._zoom = self.transform().m11()
        self._fitted = True
        self.zoomChanged.emit(self._zoom)

    def zoom_by(self, factor: float) -> None:
        new = max(MIN_ZOOM, min(MAX_ZOOM, self._zoom * factor))
        if new == self._zoom:
            return
        self.scale(new / self._zoom, new / self._zoom)
        self._zoom = new
        self._fitted = True
        self.zoomChanged.emit(new)

    @property
    def zoom(self) -> float:
        return self._zoom

    def resizeEvent(self, event) -> None:  # noqa: ANN001 - Qt override
        super().resizeEvent(event)
        if not self._fitted:
            self.fit()

    # ------------------------------------------------------------------ input

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.25**steps)
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            self.viewport().unsetCursor()
            return
        super().keyReleaseEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and self._space_down
        ):
            self._panning = True
            self._pan_origin = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if button == Qt.MouseButton.LeftButton and self._image is not None:
            point = self.mapToScene(event.position().toPoint())
            self._stroke_before = self._mask.copy()
            self._last_point = point
            self._paint_segment(point, point)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        point = self.mapToScene(event.position().toPoint())
        self._update_cursor(point)
        self._cursor_item.setVisible(self._image is not None)
        if self._panning:
            delta = event.position() - self._pan_origin
            self._pan_origin = event.position()
            h, v = self.horizontalScrollBar(), self.verticalScrollBar()
            h.setValue(h.value() - int(delta.x()))
            v.setValue(v.value() - int(delta.y()))
            event.accept()
            return
        if self._stroke_before is not None and self._last_point is not None:
            self._paint_segment(self._last_point, point)
            self._last_point = point
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._panning and event.button() in (
            Qt.MouseButton.MiddleButton,
            Qt.MouseButton.LeftButton,
        ):
            self._panning = False
            if self._space_down:
                self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            else:
                self.viewport().unsetCursor()
            event.accept()
            return
        if event.button() == Qt.MouseButton.LeftButton and self._stroke_before is not None:
            before, self._stroke_before = self._stroke_before, None
            self._last_point = None
            text = "Erase" if self._erasing else "Brush stroke"
            self.undo_stack.push(MaskEdit(text, before, self._mask.copy(), self._set_mask))
            self.maskChanged.emit()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: ANN001 - Qt override
        self._cursor_item.setVisible(False)
        super().leaveEvent(event)
