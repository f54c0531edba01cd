"""The canvas: shows the document's picture (or a live preview) with its mask as a
translucent overlay, and paints the mask with the brush; zoom and pan.

Left button paints the mask (or erases it with the eraser), the middle button or
Space + left button pans, the wheel zooms under the cursor. The picture, the mask and
their undo stack belong to guiapp.document.Document; the canvas holds only the brush
and the view.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QKeyEvent,
    QMouseEvent,
    QPen,
    QPixmap,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

from guiapp.document import MAX_BRUSH, MIN_BRUSH, Brush, Document
from guiapp.imaging import array_to_qimage, qimage_to_array

MIN_ZOOM, MAX_ZOOM = 0.05, 64.0


class Canvas(QGraphicsView):
    """Shows a Document (or a live preview) and paints its mask."""

    brushSizeChanged = Signal(int)
    zoomChanged = Signal(float)

    def __init__(self, document: Document, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("canvas")
        self.document = document
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

        self.brush = Brush()
        # What the brush paints into: the document's mask, or a PaintLayer (regions,
        # a ControlNet sketch) with the same stroke methods.
        self.paint_target: Any = document
        self._last_point: QPointF | None = None
        self._panning = False
        self._space_down = False
        self._pan_origin = QPointF()
        self._zoom = 1.0
        self._fitted = False
        self.previews_shown = 0
        document.imageChanged.connect(self.show_document)
        document.maskChanged.connect(self._refresh_overlay)

    # ------------------------------------------------------------------ showing

    def show_document(self) -> None:
        """Show the document's picture (after previews, or when it changed)."""
        image = self.document.image
        if image is not None:
            self._image_item.setPixmap(QPixmap.fromImage(image))
            self._set_scene_size(image.size())
        self._overlay_item.setVisible(True)

    def show_preview(self, preview: np.ndarray, size: QSize) -> None:
        """Show a preview (a whole picture, maybe smaller) scaled to the picture's `size`."""
        pixmap = QPixmap.fromImage(array_to_qimage(preview))
        if pixmap.size() != size:
            pixmap = pixmap.scaled(
                size,
                Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        self._image_item.setPixmap(pixmap)
        self._overlay_item.setVisible(size == self.document.mask.size())
        self._set_scene_size(size)
        self.previews_shown += 1

    def shown_pixels(self) -> np.ndarray:
        """What the canvas shows now, H x W x 3 (for tests and screenshots)."""
        return qimage_to_array(self._image_item.pixmap().toImage(), 3)

    def _set_scene_size(self, size: QSize) -> None:
        self._scene.setSceneRect(QRectF(0, 0, size.width(), size.height()))
        if not self._fitted:
            self.fit()

    def _refresh_overlay(self) -> None:
        self._overlay_item.setPixmap(QPixmap.fromImage(self.document.mask))

    # ------------------------------------------------------------------ brush

    @property
    def brush_size(self) -> int:
        return self.brush.size

    def set_brush_size(self, size: int) -> None:
        size = max(MIN_BRUSH, min(MAX_BRUSH, int(size)))
        if size != self.brush.size:
            self.brush.size = size
            self._update_cursor(self._cursor_item.rect().center())
            self.brushSizeChanged.emit(size)

    @property
    def hardness(self) -> float:
        return self.brush.hardness

    def set_hardness(self, hardness: float) -> None:
        self.brush.hardness = max(0.0, min(1.0, float(hardness)))

    @property
    def erasing(self) -> bool:
        return self.brush.erasing

    def set_erasing(self, erasing: bool) -> None:
        self.brush.erasing = bool(erasing)

    def _update_cursor(self, centre: QPointF) -> None:
        r = self.brush.size / 2.0
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

    def resizeEvent(self, event: QResizeEvent) -> None:
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
        if button == Qt.MouseButton.LeftButton and self.paint_target.begin_stroke():
            point = self.mapToScene(event.position().toPoint())
            self._last_point = point
            self.paint_target.paint_segment(point, point, self.brush)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        point = self.mapToScene(event.position().toPoint())
        self._update_cursor(point)
        self._cursor_item.setVisible(self.document.image is not None)
        if self._panning:
            delta = event.position() - self._pan_origin
            self._pan_origin = event.position()
            h, v = self.horizontalScrollBar(), self.verticalScrollBar()
            h.setValue(h.value() - int(delta.x()))
            v.setValue(v.value() - int(delta.y()))
            event.accept()
            return
        if self._last_point is not None:
            self.paint_target.paint_segment(self._last_point, point, self.brush)
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
        if event.button() == Qt.MouseButton.LeftButton and self._last_point is not None:
            self._last_point = None
            self.paint_target.end_stroke("Erase" if self.brush.erasing else "Brush stroke")
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def leaveEvent(self, event: QEvent) -> None:
        self._cursor_item.setVisible(False)
        super().leaveEvent(event)
