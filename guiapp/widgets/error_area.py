"""Inline, non-modal error messages with a copy button; shows the workspace's `error`."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QFrame, QHBoxLayout, QLabel, QWidget

from engine.component_files import MISSING_FILE_MARK
from guiapp.widgets.binding import follow
from guiapp.widgets.buttons import push_button
from guiapp.workspace import Workspace


class ErrorArea(QFrame):
    """A strip above the canvas; hidden until there is something to say."""

    def __init__(self, workspace: Workspace, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._workspace = workspace
        self.setObjectName("errorArea")
        self.label = QLabel(self)
        self.label.setObjectName("errorText")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_button = push_button(
            self,
            "copy",
            "Copy",
            "Copy the message (and details) to the clipboard",
            "copyErrorButton",
            self.copy,
        )
        self.choose_file_button = push_button(
            self,
            "file",
            "Choose file…",
            "Choose the text encoder or VAE file the model needs; it is used from now on",
            "chooseModelFileButton",
            self.choose_model_files,
        )
        self.dismiss_button = push_button(
            self, "remove", "", "Dismiss", "dismissErrorButton", workspace.clear_error
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.choose_file_button)
        layout.addWidget(self.copy_button)
        layout.addWidget(self.dismiss_button)
        self.hide()
        follow(workspace, "error", self._show)

    def _show(self, message: str) -> None:
        self.label.setText(message)
        self.label.setToolTip(self._workspace.error_detail or message)
        self.setVisible(bool(message))
        self.choose_file_button.setVisible(MISSING_FILE_MARK in message)

    def choose_model_files(self) -> None:
        """The engine named a missing text encoder or VAE: ask for it (or them)."""
        paths, _ = QFileDialog.getOpenFileNames(
            self,
            "Choose the model's text encoder or VAE files",
            "",
            "Weights (*.safetensors *.sft *.gguf);;All files (*)",
        )
        if paths:
            form = self._workspace.form
            form.model_files = tuple(dict.fromkeys((*form.model_files, *paths)))
            self._workspace.clear_error()

    def message(self) -> str:
        return self._workspace.error

    def full_text(self) -> str:
        detail = self._workspace.error_detail
        return f"{self._workspace.error}\n\n{detail}" if detail else self._workspace.error

    def copy(self) -> None:
        QApplication.clipboard().setText(self.full_text())
