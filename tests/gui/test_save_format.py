"""File → Save pictures as: finished pictures saved as PNG, JPEG or WebP, remembered."""

from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtWidgets import QMenu

from engine.metadata import read_parameters
from guiapp.settings import AppSettings


def save_format_actions(window) -> dict[str, object]:
    menu = window.findChild(QMenu, "saveFormatMenu")
    assert menu is not None
    return {action.data(): action for action in menu.actions()}


@pytest.mark.parametrize(
    ("choice", "suffix", "kind"), [("JPEG", ".jpg", "JPEG"), ("WEBP", ".webp", "WEBP")]
)
def test_a_chosen_format_is_used_for_results_and_remembered(
    qtbot,
    window,
    settings: AppSettings,
    choice: str,
    suffix: str,
    kind: str,
) -> None:
    actions = save_format_actions(window)
    assert actions["PNG"].isChecked()
    actions[choice].trigger()
    window.form.prompt, window.form.steps = "a green triangle", 3
    window.generate_action.trigger()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) >= 1, timeout=10000)
    path = window.workspace.history.entries()[0].path
    assert path.suffix == suffix
    with Image.open(path) as image:
        assert image.format == kind
    back = read_parameters(path)
    assert back is not None and (back.prompt, back.steps) == ("a green triangle", 3)
    assert settings.save_format() == choice


def test_an_unknown_saved_format_falls_back_to_png(settings: AppSettings) -> None:
    settings.qsettings.setValue("output/format", "TIFF")
    assert settings.save_format() == "PNG"
