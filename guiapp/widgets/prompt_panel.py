"""Prompt and negative prompt boxes, bound both ways to the view-model."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from guiapp.state import ViewModel


class PromptPanel(QWidget):
    def __init__(self, model: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("promptPanel")
        self._model = model
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setObjectName("prompt")
        self.prompt_edit.setPlaceholderText("Describe the picture… (Ctrl+Enter to generate)")
        self.prompt_edit.setToolTip("What to paint. Ctrl+Enter generates.")
        self.negative_edit = QPlainTextEdit()
        self.negative_edit.setObjectName("negativePrompt")
        self.negative_edit.setPlaceholderText("What to avoid (optional)")
        self.negative_edit.setToolTip("Negative prompt: what the picture should not contain.")
        self.negative_edit.setMaximumHeight(60)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Prompt"))
        layout.addWidget(self.prompt_edit, 3)
        layout.addWidget(QLabel("Negative prompt"))
        layout.addWidget(self.negative_edit, 1)

        self.prompt_edit.setPlainText(model.prompt)
        self.negative_edit.setPlainText(model.negative_prompt)
        self.prompt_edit.textChanged.connect(self._prompt_edited)
        self.negative_edit.textChanged.connect(self._negative_edited)
        model.promptChanged.connect(self._show_prompt)
        model.negative_promptChanged.connect(self._show_negative)

    def _prompt_edited(self) -> None:
        self._model.prompt = self.prompt_edit.toPlainText()

    def _negative_edited(self) -> None:
        self._model.negative_prompt = self.negative_edit.toPlainText()

    def _show_prompt(self, text: str) -> None:
        if self.prompt_edit.toPlainText() != text:
            self.prompt_edit.setPlainText(text)

    def _show_negative(self, text: str) -> None:
        if self.negative_edit.toPlainText() != text:
            self.negative_edit.setPlainText(text)
