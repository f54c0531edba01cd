"""The window over the real engine with a tiny random-weight model (no download)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from gui.helpers import drag_on_canvas
from PIL import Image
from PySide6.QtCore import Qt

from guiapp.imaging import qimage_to_array

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("engine.worker") is None, reason="engine.worker not written yet"
    ),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def real_window(make_window, tiny_model: Path):
    from engine.worker import Engine

    window = make_window(Engine(device="cpu"))
    window.form.model = str(tiny_model)
    window.form.width = window.form.height = 64
    window.form.steps = 3
    window.form.scheduler = "Euler"
    window.form.random_seed = False
    window.form.seed = 1
    return window


def test_generate_with_the_real_engine(qtbot, real_window) -> None:
    window = real_window
    qtbot.keyClicks(window.prompt_panel.prompt_edit, " red")
    qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1, timeout=60000)
    assert window.canvas.previews_shown >= 1
    entry = window.workspace.history.entries()[0]
    assert entry.path.exists()
    with Image.open(entry.path) as image:
        assert image.size == (64, 64)
        assert "parameters" in image.info
    assert window.scrubber.slider.maximum() == 3
    assert window.error_area.message() == ""


def test_inpaint_with_the_real_engine_keeps_unmasked_pixels(qtbot, real_window) -> None:
    window = real_window
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB")
    window.workspace.put_picture(picture)
    canvas = window.canvas
    canvas.set_hardness(1.0)
    canvas.set_brush_size(16)
    drag_on_canvas(canvas, [(20, 20), (44, 20)])
    window.form.mask_blur = 0
    window.form.strength = 1.0
    before = qimage_to_array(canvas.document.image)
    mask = canvas.document.mask_array()
    qtbot.mouseClick(window.inpaint_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1, timeout=60000)
    assert window.error_area.message() == ""
    after = qimage_to_array(canvas.document.image)
    changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 2
    outside = mask == 0
    # far from the brush (beyond any feathering) nothing may change
    far = outside.copy()
    far[8:33, 8:57] = False
    assert not changed[far].any()
    assert changed[mask == 255].mean() > 0.5


def test_bad_model_path_is_an_inline_error_and_next_job_works(
    qtbot, real_window, tiny_model
) -> None:
    window = real_window
    window.form.model = str(tiny_model.parent / "does-not-exist")
    window.workspace.generate()
    qtbot.waitUntil(lambda: window.error_area.message() != "", timeout=60000)
    assert "Model problem" in window.error_area.message()
    window.form.model = str(tiny_model)
    window.workspace.generate()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1, timeout=60000)


def test_only_masked_inpaint_previews_from_the_real_engine_land_in_the_mask_box(
    qtbot, real_window
) -> None:
    window = real_window
    ys, xs = np.mgrid[0:64, 0:96]
    smooth = np.stack([xs * 2, ys * 3, np.full_like(xs, 100)], axis=2).astype(np.uint8)
    window.workspace.put_picture(Image.fromarray(smooth, "RGB"))
    mask = np.zeros((64, 96), np.uint8)
    mask[16:40, 56:80] = 255
    window.workspace.document.set_mask_array(mask)
    window.form.width, window.form.height = 96, 64
    window.form.mask_blur = 0
    window.form.strength = 1.0
    window.form.inpaint_only_masked = True
    shown: list[np.ndarray] = []
    window.workspace.jobs.stepped.connect(lambda _job: shown.append(window.canvas.shown_pixels()))
    window.workspace.inpaint()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1, timeout=60000)
    assert window.error_area.message() == ""
    assert shown, "previews reached the canvas"
    for frame in shown:
        assert frame.shape == smooth.shape
        changed = np.abs(frame.astype(int) - smooth.astype(int)).max(axis=2) > 8
        rows, cols = np.nonzero(changed)
        assert len(rows) > 0
        assert cols.min() >= 56 - 2 and cols.max() < 80 + 2
        assert rows.min() >= 16 - 2 and rows.max() < 40 + 2
