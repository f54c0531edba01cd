"""Inline, non-modal error messages with a copy button."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from guiapp.icons import icon


class ErrorArea(QFrame):
    """A strip above the canvas; hidden until there is something to say."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorArea")
        self.label = QLabel()
        self.label.setObjectName("errorText")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_button = QPushButton(icon("copy"), "Copy")
        self.copy_button.setObjectName("copyErrorButton")
        self.copy_button.setToolTip("Copy the message (and details) to the clipboard")
        self.copy_button.clicked.connect(self.copy)
        self.dismiss_button = QPushButton(icon("remove"), "")
        self.dismiss_button.setObjectName("dismissErrorButton")
        self.dismiss_button.setToolTip("Dismiss")
        self.dismiss_button.clicked.connect(self.clear)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.copy_button)
        layout.addWidget(self.dismiss_button)
        self._detail = ""
        self.hide()

    def show_error(self, message: str, detail: str = "") -> None:
        self.label.setText(message)
        self.label.setToolTip(detail or message)
        self._detail = detail
        self.show()

    def message(self) -> str:
        return "" if self.isHidden() else self.label.text()

    def full_text(self) -> str:
        text = self.label.text()
        return f"{text}\n\n{self._detail}" if self._detail else text

    def copy(self) -> None:
        QApplication.clipboard().setText(self.full_text())

    def clear(self) -> None:
        self.label.clear()
        self._detail = ""
        self.hide()
