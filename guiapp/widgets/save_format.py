"""File → "Save pictures as": PNG, JPEG or WebP, one choice at a time, remembered.

PNG keeps our full JSON record beside the A1111 text; JPEG and WebP carry the A1111
text in EXIF, as AUTOMATIC1111 writes it (engine/picture_files.py).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QWidget

CHOICES = (
    ("PNG", "PNG (all settings, lossless)"),
    ("JPEG", "JPEG (smaller; settings in EXIF)"),
    ("WEBP", "WebP (smaller; settings in EXIF)"),
)


def save_format_menu(parent: QWidget, current: str, chosen: Callable[[str], None]) -> QMenu:
    """A menu of the formats with `current` checked; `chosen(format)` on a change."""
    menu = QMenu("Save pictures as", parent)
    menu.setObjectName("saveFormatMenu")
    group = QActionGroup(menu)
    group.setExclusive(True)
    for picture_format, label in CHOICES:
        action = QAction(label, menu)
        action.setCheckable(True)
        action.setChecked(picture_format == current)
        action.setData(picture_format)
        action.triggered.connect(lambda _on=False, f=picture_format: chosen(f))
        group.addAction(action)
        menu.addAction(action)
    return menu
