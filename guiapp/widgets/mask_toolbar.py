"""Brush tools for the canvas: brush / eraser, size ([ and ]), soft edge, clear, invert,
undo / redo, zoom."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QLabel, QSlider, QToolBar, QWidget

from guiapp.document import MAX_BRUSH, MIN_BRUSH
from guiapp.icons import icon
from guiapp.widgets.canvas import Canvas


class MaskToolBar(QToolBar):
    def __init__(self, canvas: Canvas, parent: QWidget | None = None) -> None:
        super().__init__("Mask tools", parent)
        self.setObjectName("maskToolBar")
        self._canvas = canvas
        self._build_tools(canvas)
        self._build_brush(canvas)
        self.addSeparator()
        self._build_edits(canvas)
        self.addSeparator()
        self._build_zoom(canvas)

    def _build_tools(self, canvas: Canvas) -> None:
        group = QActionGroup(self)
        self.brush_action = QAction(icon("brush"), "Brush", self)
        self.brush_action.setToolTip("Paint the mask: the area to repaint (B)")
        self.brush_action.setShortcut(QKeySequence("B"))
        self.eraser_action = QAction(icon("eraser"), "Eraser", self)
        self.eraser_action.setToolTip("Erase the mask (E)")
        self.eraser_action.setShortcut(QKeySequence("E"))
        for action in (self.brush_action, self.eraser_action):
            action.setCheckable(True)
            group.addAction(action)
            self.addAction(action)
        self.brush_action.setChecked(True)
        self.eraser_action.toggled.connect(canvas.set_erasing)

    def _build_brush(self, canvas: Canvas) -> None:
        self.addWidget(QLabel(" Size "))
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setObjectName("brushSize")
        self.size_slider.setRange(MIN_BRUSH, MAX_BRUSH)
        self.size_slider.setFixedWidth(110)
        self.size_slider.setValue(canvas.brush_size)
        self.size_slider.setToolTip("Brush size in pixels ([ smaller, ] larger)")
        self.size_slider.valueChanged.connect(canvas.set_brush_size)
        canvas.brushSizeChanged.connect(self.size_slider.setValue)
        self.addWidget(self.size_slider)
        self.size_label = QLabel(f"{canvas.brush_size:>3}px")
        canvas.brushSizeChanged.connect(lambda size: self.size_label.setText(f"{size:>3}px"))
        self.addWidget(self.size_label)

        self.smaller_action = QAction("Smaller brush", self)
        self.smaller_action.setShortcut(QKeySequence("["))
        self.smaller_action.triggered.connect(
            lambda: canvas.set_brush_size(max(MIN_BRUSH, round(canvas.brush_size / 1.25)))
        )
        self.larger_action = QAction("Larger brush", self)
        self.larger_action.setShortcut(QKeySequence("]"))
        self.larger_action.triggered.connect(
            lambda: canvas.set_brush_size(
                max(canvas.brush_size + 1, round(canvas.brush_size * 1.25))
            )
        )

        self.addWidget(QLabel(" Soft "))
        self.softness_slider = QSlider(Qt.Orientation.Horizontal)
        self.softness_slider.setObjectName("brushSoftness")
        self.softness_slider.setRange(0, 100)
        self.softness_slider.setFixedWidth(80)
        self.softness_slider.setValue(round((1 - canvas.hardness) * 100))
        self.softness_slider.setToolTip("Soft edge of the brush (0 = hard)")
        self.softness_slider.valueChanged.connect(lambda v: canvas.set_hardness(1 - v / 100))
        self.addWidget(self.softness_slider)

    def _build_edits(self, canvas: Canvas) -> None:
        self.clear_action = QAction(icon("clear"), "Clear mask", self)
        self.clear_action.setToolTip("Clear the whole mask (Ctrl+Shift+X)")
        self.clear_action.setShortcut(QKeySequence("Ctrl+Shift+X"))
        self.clear_action.triggered.connect(canvas.document.clear_mask)
        self.invert_action = QAction(icon("invert"), "Invert mask", self)
        self.invert_action.setToolTip("Invert the mask (Ctrl+I)")
        self.invert_action.setShortcut(QKeySequence("Ctrl+I"))
        self.invert_action.triggered.connect(canvas.document.invert_mask)
        self.undo_action = canvas.document.undo_stack.createUndoAction(self, "Undo")
        self.undo_action.setIcon(icon("undo"))
        self.undo_action.setShortcut(QKeySequence("Ctrl+Z"))
        self.undo_action.setToolTip("Undo the last mask edit (Ctrl+Z)")
        self.redo_action = canvas.document.undo_stack.createRedoAction(self, "Redo")
        self.redo_action.setIcon(icon("redo"))
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.redo_action.setToolTip("Redo (Ctrl+Shift+Z)")
        for action in (self.clear_action, self.invert_action, self.undo_action, self.redo_action):
            self.addAction(action)

    def _build_zoom(self, canvas: Canvas) -> None:
        self.zoom_in_action = QAction(icon("zoom-in"), "Zoom in", self)
        self.zoom_in_action.setShortcuts([QKeySequence("Ctrl+="), QKeySequence("Ctrl++")])
        self.zoom_in_action.triggered.connect(lambda: canvas.zoom_by(1.25))
        self.zoom_out_action = QAction(icon("zoom-out"), "Zoom out", self)
        self.zoom_out_action.setShortcut(QKeySequence("Ctrl+-"))
        self.zoom_out_action.triggered.connect(lambda: canvas.zoom_by(0.8))
        self.fit_action = QAction(icon("fit"), "Fit to window", self)
        self.fit_action.setShortcut(QKeySequence("Ctrl+0"))
        self.fit_action.triggered.connect(canvas.fit)
        for action in (self.zoom_in_action, self.zoom_out_action, self.fit_action):
            action.setToolTip(f"{action.text()} ({action.shortcut().toString()})")
            self.addAction(action)

    def shortcut_actions(self) -> list[QAction]:
        """Actions (also those not on the bar) the window registers for its shortcuts."""
        return [*self.actions(), self.smaller_action, self.larger_action]
