"""Prompt and negative prompt boxes, bound both ways to the view-model."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from guiapp import family_form
from guiapp.state import ViewModel
from guiapp.widgets.binding import bind


class PromptPanel(QWidget):
    def __init__(self, model: ViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("promptPanel")
        self.prompt_edit = QPlainTextEdit(self)
        self.prompt_edit.setObjectName("prompt")
        self.prompt_edit.setPlaceholderText("Describe the picture… (Ctrl+Enter to generate)")
        self.prompt_edit.setToolTip("What to paint. Ctrl+Enter generates.")
        self.negative_edit = QPlainTextEdit(self)
        self.negative_edit.setObjectName("negativePrompt")
        self.negative_edit.setPlaceholderText("What to avoid (optional)")
        self.negative_edit.setToolTip("Negative prompt: what the picture should not contain.")
        self.negative_edit.setMaximumHeight(60)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Prompt", self))
        layout.addWidget(self.prompt_edit, 3)
        self.negative_label = QLabel("Negative prompt", self)
        layout.addWidget(self.negative_label)
        layout.addWidget(self.negative_edit, 1)

        bind(model, "prompt", self.prompt_edit)
        bind(model, "negative_prompt", self.negative_edit)
        self._model = model
        model.signal("family").connect(self._fit_family)
        model.signal("variant").connect(self._fit_family)
        model.signal("true_cfg_scale").connect(self._fit_family)
        self._fit_family()

    def _fit_family(self, *_: object) -> None:
        """Only true-CFG families use a negative prompt (FLUX.1 dev with its true CFG above
        1; not the few-step models); the text stays in the view-model for the next model
        that does."""
        shown = family_form.negative_prompt_used(self._model)
        self.negative_label.setVisible(shown)
        self.negative_edit.setVisible(shown)
