"""Undoable document edits for QUndoStack: each command holds the state before and after
(the mask; or the picture with its mask, when an expansion changes the picture's size)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QImage, QUndoCommand


class MaskEdit(QUndoCommand):
    """Replace the whole mask (a brush stroke, clear, invert ...).

    The edit is already applied when the command is pushed (strokes paint live), so
    the first redo() does nothing.
    """

    def __init__(
        self, text: str, before: QImage, after: QImage, apply: Callable[[QImage], None]
    ) -> None:
        super().__init__(text)
        self._before = before
        self._after = after
        self._apply = apply
        self._first = True

    def redo(self) -> None:
        if self._first:
            self._first = False
            return
        self._apply(self._after)

    def undo(self) -> None:
        self._apply(self._before)


class PictureEdit(QUndoCommand):
    """Replace the picture and its mask together (an expanded canvas): undo puts the
    picture of the other size and its mask back. Applied when pushed, like MaskEdit."""

    def __init__(
        self,
        text: str,
        before: tuple[QImage, QImage],
        after: tuple[QImage, QImage],
        apply: Callable[[QImage, QImage], None],
    ) -> None:
        super().__init__(text)
        self._before = before
        self._after = after
        self._apply = apply
        self._first = True

    def redo(self) -> None:
        if self._first:
            self._first = False
            return
        self._apply(*self._after)

    def undo(self) -> None:
        self._apply(*self._before)
