"""Expanding the canvas and the forward-process panel, in the window over the real engine
with a tiny random-weight model: expansions keep the picture's pixels and undo one by one;
slider moves coalesce into few engine jobs; "Denoise from here" is an ordinary job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QDialogButtonBox

from engine.api import ForwardProcess
from guiapp.imaging import qimage_to_array

pytestmark = pytest.mark.slow

WAIT_MS = 120_000


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def real_window(make_window, tiny_model: Path):
    from engine.worker import Engine

    window = make_window(Engine(device="cpu"))
    window.form.model = str(tiny_model)
    window.form.steps = 3
    window.form.scheduler = "Euler"
    window.form.random_seed = False
    window.form.seed = 1
    return window


def _picture(size: tuple[int, int] = (64, 64)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _expand(qtbot, window, entries: int, **sides: int) -> None:
    dialog = window.expand_dialog()
    for side, box in dialog.sides.items():
        box.setValue(sides.get(side, 0))
    dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == entries, timeout=WAIT_MS)


def test_expansions_in_a_row_keep_the_picture_and_undo_one_by_one(qtbot, real_window) -> None:
    window = real_window
    picture = _picture()
    window.workspace.put_picture(picture)
    document = window.workspace.document
    _expand(qtbot, window, 1, right=32)
    first = qimage_to_array(document.image)
    assert first.shape[:2] == (64, 96)
    assert np.array_equal(first[:, :64], np.asarray(picture))
    _expand(qtbot, window, 2, top=16)
    second = qimage_to_array(document.image)
    assert second.shape[:2] == (80, 96)
    assert np.array_equal(second[16:, :], first)
    assert window.error_area.message() == ""
    document.undo_stack.undo()
    assert np.array_equal(qimage_to_array(document.image), first)
    document.undo_stack.undo()
    assert np.array_equal(qimage_to_array(document.image), np.asarray(picture))
    document.undo_stack.redo()
    assert qimage_to_array(document.image).shape[:2] == (64, 96)
    saved = window.workspace.history.entries()[0]
    assert saved.request.expand is not None and saved.request.expand.top == 16


def test_an_expansion_with_no_picture_says_what_to_do(qtbot, real_window) -> None:
    window = real_window
    _expand_none = window.expand_dialog()
    _expand_none.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()
    assert "no picture on the canvas" in window.error_area.message()


def test_the_slider_shows_the_noised_picture_and_coalesces_moves(qtbot, real_window) -> None:
    window = real_window
    panel = window.forward_panel
    panel.steps.setValue(10)
    panel.set_picture(_picture())
    qtbot.waitUntil(lambda: panel.job is None and panel.shown is not None, timeout=WAIT_MS)
    for level in range(1, 11):  # a drag: ten moves at once
        panel.slider.setValue(level)
    qtbot.waitUntil(
        lambda: panel.job is None and panel.shown is not None and panel.shown.level == 10,
        timeout=WAIT_MS,
    )
    assert panel.previews_submitted < 11  # moves made while a job ran were merged
    assert "ᾱ" in panel.facts.text() and "t = " in panel.facts.text()
    assert not panel.view.pixmap().isNull()
    assert window.workspace.history.entries() == []  # previews are not saved


def test_denoise_from_here_is_an_ordinary_job(qtbot, real_window) -> None:
    window = real_window
    panel = window.forward_panel
    panel.steps.setValue(4)
    panel.set_picture(_picture())
    panel.slider.setValue(3)
    assert panel.denoise_from_here() is not None
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1, timeout=WAIT_MS)
    entry = window.workspace.history.entries()[0]
    assert entry.request.forward == ForwardProcess(level=3, denoise=True)
    assert entry.path is not None and entry.path.exists()
    assert window.scrubber.slider.maximum() == 3
