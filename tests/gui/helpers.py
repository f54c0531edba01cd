"""Small helpers for driving the window like a person."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from guiapp.widgets.canvas import Canvas


def drag_on_canvas(canvas: Canvas, points: list[tuple[float, float]]) -> None:
    """Press, move through and release at scene points (image pixels) with the left button."""
    viewport = canvas.viewport()

    def to_view(x: float, y: float) -> QPoint:
        return canvas.mapFromScene(QPointF(x, y))

    first = to_view(*points[0])
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, first)
    for x, y in points[1:]:
        QTest.mouseMove(viewport, to_view(x, y))
    last = to_view(*points[-1])
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, last)
