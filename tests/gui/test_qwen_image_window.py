"""The window over the real engine with Qwen-Image's single files: a missing text encoder
is named in the error strip, Choose file… takes it, and the next job makes a picture; the
status bar shows the family and the transformer's quantization."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory):
    """Written before the test's thread check: saving starts tqdm's monitor thread."""
    import torch

    from tests.tiny_qwen_files import write_qwen_files

    written, _ = write_qwen_files(
        tmp_path_factory.mktemp("qwen"),
        dtype=torch.float8_e4m3fn,
        name="qwen_image_fp8_e4m3fn.safetensors",
    )
    return written


def test_a_missing_qwen_encoder_is_asked_for_and_the_next_job_draws(
    qtbot, make_window, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, files
) -> None:
    from engine.worker import Engine
    from tests.tiny_qwen_files import manager_for

    encoder = Path(shutil.move(files.text_encoders["qwen2.5-vl"], tmp_path))
    window = make_window(Engine(manager_for(files)))
    window.form.model = str(files.transformer)
    assert window.form.family == "qwen_image"  # from the file's names, before loading
    window.form.width = window.form.height = 32
    window.form.steps = 2
    window.form.random_seed = False

    window.workspace.generate()
    qtbot.waitUntil(lambda: window.error_area.message() != "", timeout=60000)
    assert (
        "Qwen-Image needs the Qwen2.5-VL text encoder (qwen_2.5_vl_7b_fp8_scaled.safetensors)"
        in window.error_area.message()
    )
    button = window.error_area.choose_file_button
    assert button.isVisibleTo(window.error_area)
    chosen = [str(encoder)]
    monkeypatch.setattr(
        QFileDialog, "getOpenFileNames", staticmethod(lambda *args: (chosen, args[-1]))
    )
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert window.form.model_files == (str(encoder),)

    window.workspace.generate()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1, timeout=120000)
    assert window.error_area.message() == ""
    assert "fp8 (e4m3fn)" in window.device_label.text()
    assert "Qwen-Image" in window.model_label.text()
