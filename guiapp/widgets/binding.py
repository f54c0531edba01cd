"""One generic `bind()`: a widget shows an observable property and writes it back.

The widget follows the property's change signal; a person's edit sets the property.
Both directions check for equality first (and properties emit only on change), so a
binding never loops and a text box never loses its cursor to its own echo.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSlider,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QSpinBox,
    QWidget,
)

from guiapp.properties import Observable
from guiapp.widgets.seed_edit import SeedEdit


def _accessors(widget: QWidget) -> tuple[Callable[[], Any], Callable[[Any], None], Any]:
    """(read, write, edited signal or None) of a widget's one value."""
    match widget:
        case QSpinBox() | QDoubleSpinBox() | QAbstractSlider() | SeedEdit():
            return widget.value, widget.setValue, widget.valueChanged
        case QAbstractButton() | QGroupBox():  # a checkable group box: its check
            return widget.isChecked, widget.setChecked, widget.toggled
        case QComboBox():
            return widget.currentText, widget.setCurrentText, widget.currentTextChanged
        case QPlainTextEdit():
            return widget.toPlainText, widget.setPlainText, widget.textChanged
        case QLineEdit():
            return widget.text, widget.setText, widget.textEdited
        case QLabel():
            return widget.text, widget.setText, None
        case QProgressBar():
            return widget.value, widget.setValue, None
        case _:
            raise TypeError(f"bind() does not know how to show a value in {type(widget).__name__}")


def bind(
    model: Observable,
    name: str,
    widget: QWidget,
    *,
    to_widget: Callable[[Any], Any] | None = None,
    from_widget: Callable[[Any], Any] | None = None,
) -> None:
    """Keep `widget` showing `model.<name>`; edits in the widget set the property.

    `to_widget` / `from_widget` convert where the widget shows the value differently
    (a path as text, a number as a label)."""
    read, write, edited = _accessors(widget)
    show = to_widget or (lambda value: value)
    take = from_widget or (lambda value: value)
    updating = False

    def update_widget(value: Any) -> None:
        nonlocal updating
        if not shiboken6.isValid(widget):  # the widget went before the model
            return
        shown = show(value)
        if read() != shown:
            # A widget that clamps (a slider shorter than the spin box beside it) must
            # not write its clamped value back.
            updating = True
            try:
                write(shown)
            finally:
                updating = False

    def update_model(*_: object) -> None:
        if not updating:
            setattr(model, name, take(read()))

    update_widget(getattr(model, name))
    model.signal(name).connect(update_widget)
    if edited is not None:
        edited.connect(update_model)


def follow(model: Observable, name: str, slot: Callable[[Any], object]) -> None:
    """Call `slot(value)` now and whenever `model.<name>` changes (one way: a label, an
    enabled state)."""
    slot(getattr(model, name))
    model.signal(name).connect(slot)
