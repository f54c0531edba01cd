"""Icons drawn for the application (resources/icons/*.svg), cached by name."""

from __future__ import annotations

from functools import cache

from PySide6.QtGui import QIcon

from guiapp.resources import icon_path


@cache
def icon(name: str) -> QIcon:
    path = icon_path(name)
    return QIcon(str(path)) if path.exists() else QIcon()
