"""Dropping other tools' pictures on the window and reusing their settings."""

from __future__ import annotations

from pathlib import Path

import picture_samples as samples
import pytest
from library_files import SDXL_KEYS, write_safetensors
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent

from engine.library import ModelLibrary


def drop(window, path: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPoint(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)


@pytest.fixture
def library_with_juggernaut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DIFFUSIONDESK_DATA", str(tmp_path / "data"))
    models = tmp_path / "ComfyUI" / "models"
    write_safetensors(models / "checkpoints" / "sdxl" / "juggernautXL.safetensors", SDXL_KEYS)
    library = ModelLibrary()
    library.add_folder(models)
    library.scan()
    entry = library.find("juggernautXL")
    assert entry is not None
    return entry.path


def test_a_dropped_comfyui_webp_fills_the_form_with_its_settings_and_model(
    qtbot,
    window,
    tmp_path: Path,
    library_with_juggernaut: str,
) -> None:
    drop(window, samples.comfyui(tmp_path / "ComfyUI_00001_.webp"))
    assert len(window.workspace.history.entries()) == 1
    assert "made with ComfyUI" in window.statusBar().currentMessage()
    window.history_strip.reuse_button.click()
    m = window.form
    assert (m.prompt, m.negative_prompt, m.seed, m.random_seed) == (
        "a red fox in snow",
        "watermark",
        987654321012,
        False,
    )
    assert (m.steps, m.guidance_scale, m.scheduler) == (30, 7.5, "Euler a")
    assert (m.width, m.height) == (832, 1216)
    assert m.model == library_with_juggernaut


def test_a_picture_that_states_little_changes_little(qtbot, window, tmp_path: Path) -> None:
    window.form.steps, window.form.width, window.form.model = 11, 256, "starter"
    path = samples.save(tmp_path / "a.png", png_texts={"parameters": "only a prompt here"})
    drop(window, path)
    window.history_strip.reuse_button.click()
    assert window.form.prompt == "only a prompt here"
    assert (window.form.steps, window.form.width, window.form.model) == (11, 256, "starter")


def test_a_model_the_library_lacks_is_named_but_not_put_in_the_form(
    qtbot,
    window,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DIFFUSIONDESK_DATA", str(tmp_path / "empty-data"))
    drop(window, samples.a1111(tmp_path / "a.jpg"))
    message = window.statusBar().currentMessage()
    assert (
        "made with AUTOMATIC1111" in message
        and "'dreamshaper_8' is not in your model library" in message
    )
    window.history_strip.reuse_button.click()
    assert window.form.model == "starter" and window.form.steps == 28


@pytest.mark.parametrize("suffix", ["png", "jpg", "webp"])
def test_a_picture_without_settings_says_so_and_leaves_the_form_alone(
    qtbot,
    window,
    tmp_path: Path,
    suffix: str,
) -> None:
    before = window.form.values()
    drop(window, samples.save(tmp_path / f"photo.{suffix}"))
    assert window.canvas.document.image is not None
    assert window.workspace.history.entries() == []
    assert "carries no generation settings" in window.statusBar().currentMessage()
    assert window.form.values() == before
