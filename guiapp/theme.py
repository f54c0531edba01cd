"""The dark theme: a Fusion palette plus resources/dark.qss."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from engine.resources import stylesheet_path

BACKGROUND = QColor(30, 31, 38)
BASE = QColor(22, 23, 29)
TEXT = QColor(216, 218, 224)
ACCENT = QColor(122, 162, 247)


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    palette.setColor(QPalette.ColorRole.Window, BACKGROUND)
    palette.setColor(QPalette.ColorRole.WindowText, TEXT)
    palette.setColor(QPalette.ColorRole.Base, BASE)
    palette.setColor(QPalette.ColorRole.AlternateBase, BACKGROUND)
    palette.setColor(QPalette.ColorRole.ToolTipBase, BASE)
    palette.setColor(QPalette.ColorRole.ToolTipText, TEXT)
    palette.setColor(QPalette.ColorRole.Text, TEXT)
    palette.setColor(QPalette.ColorRole.Button, QColor(42, 44, 54))
    palette.setColor(QPalette.ColorRole.ButtonText, TEXT)
    palette.setColor(QPalette.ColorRole.Highlight, ACCENT)
    palette.setColor(QPalette.ColorRole.HighlightedText, QColor(15, 15, 20))
    palette.setColor(QPalette.ColorRole.PlaceholderText, QColor(120, 124, 140))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(110, 112, 122))
    app.setPalette(palette)
    path = stylesheet_path()
    if path.exists():
        app.setStyleSheet(path.read_text(encoding="utf-8"))
