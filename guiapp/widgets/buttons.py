"""Buttons the way every panel makes them: icon, text, tooltip, object name, parent."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QPushButton, QToolButton, QWidget

from guiapp.icons import icon


def push_button(
    parent: QWidget,
    icon_name: str,
    text: str,
    tip: str,
    name: str = "",
    on_click: Callable[[], object] | None = None,
) -> QPushButton:
    button = QPushButton(icon(icon_name), text, parent)
    _finish(button, tip, name, on_click)
    return button


def tool_button(
    parent: QWidget,
    icon_name: str,
    tip: str,
    name: str = "",
    on_click: Callable[[], object] | None = None,
) -> QToolButton:
    button = QToolButton(parent)
    button.setIcon(icon(icon_name))
    _finish(button, tip, name, on_click)
    return button


def _finish(
    button: QPushButton | QToolButton,
    tip: str,
    name: str,
    on_click: Callable[[], object] | None,
) -> None:
    button.setToolTip(tip)
    if name:
        button.setObjectName(name)
    if on_click is not None:
        button.clicked.connect(lambda _checked=False: on_click())
