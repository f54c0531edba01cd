"""A box for seeds: whole numbers up to engine.validation's limit (past 64 bits' worth of
digits a spin box would round them through a float)."""

from __future__ import annotations

from PySide6.QtCore import QRegularExpression, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import QLineEdit, QWidget

from engine.validation import MAX_BATCH, MAX_SEED

LARGEST_SEED = MAX_SEED - MAX_BATCH  # a batch counts up from the seed


class SeedEdit(QLineEdit):
    """Digits only; `valueChanged` carries a Python int (no 32-bit limit)."""

    valueChanged = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        digits = len(str(LARGEST_SEED))
        self.setValidator(QRegularExpressionValidator(QRegularExpression(f"[0-9]{{1,{digits}}}")))
        self.textEdited.connect(self._edited)
        self.setText("0")

    def value(self) -> int:
        text = self.text()
        return min(int(text), LARGEST_SEED) if text else 0

    def setValue(self, value: int) -> None:  # the Qt spelling bind() expects
        value = max(0, min(LARGEST_SEED, int(value)))
        if self.text() != str(value):
            self.setText(str(value))
            self.valueChanged.emit(value)

    def _edited(self, text: str) -> None:
        if text:
            if int(text) > LARGEST_SEED:
                self.setText(str(LARGEST_SEED))
            self.valueChanged.emit(self.value())
