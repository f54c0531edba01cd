"""Icons drawn for the application (resources/icons/*.svg), cached by name."""

from __future__ import annotations

from functools import cache

from PySide6.QtGui import QIcon

from engine.resources import icons_dir


@cache
def icon(name: str) -> QIcon:
    path = icons_dir() / f"{name}.svg"
    return QIcon(str(path)) if path.exists() else QIcon()
