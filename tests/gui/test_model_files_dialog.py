"""When the engine names a missing text encoder or VAE, the window asks for the file in a
file dialog and sends it with the next jobs (over the scripted fake engine)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog

from engine.api import ErrorKind
from engine.component_files import MISSING_FILE_MARK

MISSING = (
    "FLUX.1 needs the T5-XXL text encoder (t5xxl_fp16.safetensors) beside flux1-dev.safetensors, "
    f"{MISSING_FILE_MARK} /models/diffusion_models, /models/text_encoders)."
)


def test_a_missing_file_message_offers_a_file_dialog_whose_choice_the_next_job_sends(
    qtbot, window, fake_engine, monkeypatch, tmp_path: Path
) -> None:
    chosen = str(tmp_path / "t5xxl_fp16.safetensors")
    asked: list[str] = []

    def dialog(parent, caption, folder, filters):
        asked.append(caption)
        return [chosen], filters

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(dialog))
    fake_engine.fail_next = (ErrorKind.MODEL, MISSING)
    window.form.steps = 2
    window.workspace.generate()
    qtbot.waitUntil(lambda: window.error_area.message() != "")
    button = window.error_area.choose_file_button
    assert button.isVisibleTo(window.error_area)
    assert QApplication.activeModalWidget() is None  # offered, never forced

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert asked and "text encoder or VAE" in asked[0]
    assert window.form.model_files == (chosen,)
    assert window.error_area.message() == ""

    window.workspace.generate()
    qtbot.waitUntil(lambda: len(fake_engine.submitted) == 2)
    assert fake_engine.submitted[-1].model_files == (chosen,)


def test_other_errors_offer_no_file_dialog(qtbot, window, fake_engine) -> None:
    fake_engine.fail_next = (ErrorKind.OUT_OF_MEMORY, "out of memory at 2048x2048")
    window.form.steps = 2
    window.workspace.generate()
    qtbot.waitUntil(lambda: window.error_area.message() != "")
    assert not window.error_area.choose_file_button.isVisibleTo(window.error_area)
