"""A SANA transformer file whose Gemma 2 encoder is missing: the engine's sentence makes the
window offer a file dialog, and the chosen file goes with the next job (scripted engine;
tests/engine/test_sana_files.py loads such a file given this way)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from engine import component_files as cf
from engine import sana_files
from engine.api import ErrorKind


def test_a_missing_gemma_encoder_is_asked_for_and_sent_with_the_next_job(
    qtbot, window, fake_engine, monkeypatch, tmp_path: Path
) -> None:
    model = Path("/models/diffusion_models/Sana_1600M_1024px_BF16.safetensors")
    message = cf.missing_message(
        "SANA", sana_files.GEMMA, model, [model.parent, Path("/models/text_encoders")], []
    )
    chosen = str(tmp_path / "gemma_2_2b_it.safetensors")
    monkeypatch.setattr(
        QFileDialog, "getOpenFileNames", staticmethod(lambda *args: ([chosen], args[-1]))
    )
    fake_engine.fail_next = (ErrorKind.MODEL, message)
    window.form.steps = 2
    window.workspace.generate()
    qtbot.waitUntil(lambda: window.error_area.message() != "")
    assert "SANA needs the Gemma 2 2B text encoder" in window.error_area.message()

    qtbot.mouseClick(window.error_area.choose_file_button, Qt.MouseButton.LeftButton)
    window.workspace.generate()
    qtbot.waitUntil(lambda: len(fake_engine.submitted) == 2)
    assert fake_engine.submitted[-1].model_files == (chosen,)
