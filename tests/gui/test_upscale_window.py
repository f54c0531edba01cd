"""The window's hires fix group, the Upscale settings and the history's Upscale action."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from engine.api import GenerationRequest, HiresFix, Upscale


def _generated(qtbot, window) -> None:
    qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1, timeout=20000)


def test_checking_hires_fix_makes_generate_a_hires_job(qtbot, window, fake_engine) -> None:
    group = window.parameter_panel.hires_group
    group.setChecked(True)
    group.scale.setValue(1.5)
    group.upscaler.setCurrentText("Latent (bicubic)")
    group.steps.setValue(12)
    group.denoise.setValue(0.4)
    qtbot.keyClicks(group.prompt, "crisp")
    window.generate_action.trigger()
    qtbot.waitUntil(lambda: len(fake_engine.submitted) == 1)
    assert fake_engine.submitted[0].hires == HiresFix(1.5, "Latent (bicubic)", 12, 0.4, "crisp")


def test_hires_fix_stays_out_of_image_to_image(qtbot, window, fake_engine) -> None:
    window.parameter_panel.hires_group.setChecked(True)
    window.workspace.put_picture(Image.new("RGB", (64, 64), "gray"))
    window.img2img_action.trigger()
    qtbot.waitUntil(lambda: len(fake_engine.submitted) == 1)
    assert fake_engine.submitted[0].hires is None


def test_reusing_a_hires_picture_fills_the_hires_group(window) -> None:
    hires = HiresFix(scale=2.5, upscaler="Lanczos", steps=7, denoising_strength=0.3, prompt="b")
    window.form.apply_request(GenerationRequest(prompt="a", hires=hires))
    group = window.parameter_panel.hires_group
    assert group.isChecked()
    assert (group.scale.value(), group.upscaler.currentText()) == (2.5, "Lanczos")
    assert (group.steps.value(), group.denoise.value(), group.prompt.text()) == (7, 0.3, "b")
    window.form.apply_request(GenerationRequest(prompt="a"))
    assert not group.isChecked()


def test_the_history_upscale_button_enlarges_the_selected_picture(
    qtbot, window, fake_engine
) -> None:
    window.form.width, window.form.height = 64, 48
    _generated(qtbot, window)
    upscale = window.parameter_panel.upscale_group
    upscale.scale.setValue(3)
    upscale.sd_tiles.setChecked(True)
    assert window.history_strip.upscale_button.isEnabled()
    qtbot.mouseClick(window.history_strip.upscale_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(fake_engine.submitted) == 2)
    request = fake_engine.submitted[1]
    assert request.upscale == Upscale(scale=3.0, upscaler="Lanczos", sd_tiles=True)
    assert request.init_image is not None and request.init_image.size == (64, 48)
    assert (request.width, request.height) == (64, 48)


def test_upscale_lists_upscaler_models_but_no_latent_upscaler(window, tmp_path: Path) -> None:
    folder = tmp_path / "models" / "upscale_models"
    folder.mkdir(parents=True)
    (folder / "4x-Sharp.safetensors").write_bytes(b"")
    window.form.model_folders = (str(tmp_path / "models"),)
    upscale = window.parameter_panel.upscale_group.upscaler
    names = [upscale.itemText(i) for i in range(upscale.count())]
    assert names == ["Lanczos", "Nearest", "4x-Sharp"]
    hires = window.parameter_panel.hires_group.upscaler
    assert "Latent (bicubic)" in [hires.itemText(i) for i in range(hires.count())]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("engine.worker") is None, reason="no engine")
def test_upscale_from_the_history_with_the_real_engine(qtbot, make_window, tiny_model) -> None:
    from engine.worker import Engine

    window = make_window(Engine(device="cpu"))
    window.form.model = str(tiny_model)
    window.form.width = window.form.height = 32
    window.form.steps = 2
    _generated(qtbot, window)
    window.parameter_panel.upscale_group.scale.setValue(2)
    qtbot.mouseClick(window.history_strip.upscale_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 2, timeout=60000)
    newest = window.workspace.history.entries()[0]
    with Image.open(newest.path) as image:
        assert image.size == (64, 64)
        assert "Postprocess upscaler: Lanczos" in image.info["parameters"]
    assert window.error_area.message() == ""
