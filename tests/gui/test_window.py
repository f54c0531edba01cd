"""Drive the real window like a person, over the scripted fake engine."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from gui.fake_engine import FakeEngine, prompt_colour
from gui.helpers import drag_on_canvas
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from engine.api import ErrorKind, GenerationRequest
from engine.metadata import save_png
from guiapp.imaging import qimage_to_array
from guiapp.output_writer import read_parameters
from guiapp.window import MainWindow

HAS_METADATA = importlib.util.find_spec("engine.metadata") is not None
needs_metadata = pytest.mark.skipif(not HAS_METADATA, reason="engine.metadata not written yet")


def type_prompt(qtbot, window: MainWindow, text: str) -> None:
    window.prompt_panel.prompt_edit.clear()
    qtbot.keyClicks(window.prompt_panel.prompt_edit, text)


def click(qtbot, button) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def running_id(window: MainWindow) -> int | None:
    running = window.workspace.jobs.running
    return running.id if running is not None else None


def wait_history(qtbot, window: MainWindow, count: int) -> None:
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) >= count, timeout=10000)


def test_generate_shows_previews_and_saves_with_parameters(qtbot, window, tmp_path) -> None:
    type_prompt(qtbot, window, "a red circle")
    assert window.form.prompt == "a red circle"
    window.form.steps = 6
    click(qtbot, window.generate_button)
    wait_history(qtbot, window, 1)
    assert window.canvas.previews_shown >= 1
    entry = window.workspace.history.entries()[0]
    assert entry.path.exists() and entry.path.parent == tmp_path / "out"
    if HAS_METADATA:
        saved = read_parameters(entry.path)
        assert saved is not None and saved.prompt == "a red circle" and saved.steps == 6
    with Image.open(entry.path) as image:
        assert "parameters" in image.info
    assert "done" in window.progress.text()
    canvas_pixels = qimage_to_array(window.canvas.document.image)
    assert tuple(canvas_pixels[0, 0]) == prompt_colour("a red circle")
    assert window.queue_view.job_ids() == []


def test_ctrl_enter_generates_and_generate_stays_usable(qtbot, window, fake_engine) -> None:
    window.form.steps = 3
    window.prompt_panel.prompt_edit.setFocus()
    qtbot.keyClick(
        window.prompt_panel.prompt_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier
    )
    click(qtbot, window.generate_button)
    wait_history(qtbot, window, 2)
    assert len(fake_engine.submitted) == 2
    assert "\n" not in window.form.prompt, "Ctrl+Enter must not type a newline"


def test_queue_two_jobs_and_remove_the_second(qtbot, window, fake_engine) -> None:
    fake_engine.gate = threading.Event()
    window.form.steps = 4
    first = window.workspace.generate()
    second = window.workspace.generate()
    assert window.queue_view.job_ids() == [first, second]
    qtbot.waitUntil(lambda: running_id(window) == first)
    window.queue_view.select(second)
    click(qtbot, window.queue_view.remove_button)
    assert window.queue_view.job_ids() == [first]
    fake_engine.gate.set()
    wait_history(qtbot, window, 1)
    qtbot.wait(50)
    assert [e.job_id for e in window.workspace.history.entries()] == [first]


def test_escape_cancels_within_a_step_and_keeps_the_preview(qtbot, window, fake_engine) -> None:
    fake_engine.gate = threading.Event()
    window.form.steps = 10
    job = window.workspace.generate()
    qtbot.waitUntil(lambda: window.canvas.previews_shown >= 1)
    window.prompt_panel.prompt_edit.setFocus()  # Esc works while typing, too
    qtbot.keyClick(window.prompt_panel.prompt_edit, Qt.Key.Key_Escape)
    fake_engine.gate.set()
    qtbot.waitUntil(lambda: "cancelled" in window.progress.text())
    assert "cancelled at step 1/10" in window.progress.text()
    assert "cancelled" in window.caption.text()
    assert window.workspace.history.entries() == []
    assert window.queue_view.job_ids() == []
    assert job is not None


def test_escape_while_the_model_loads_cancels_that_job(qtbot, window, fake_engine) -> None:
    fake_engine.loading_gate = threading.Event()
    first = window.workspace.generate()
    second = window.workspace.generate()
    qtbot.waitUntil(lambda: "loading model" in window.progress.text())
    assert window.progress.cancel_button.isEnabled()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    fake_engine.loading_gate.set()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1)
    assert window.workspace.history.entries()[0].job_id == second
    assert first not in window.queue_view.job_ids()


def test_bad_input_shows_inline_error_and_next_job_works(qtbot, window) -> None:
    window.form.width = 100
    assert window.workspace.generate() is None
    assert "multiple of 8" in window.error_area.message()
    click(qtbot, window.error_area.copy_button)
    assert "multiple of 8" in QApplication.clipboard().text()
    assert QApplication.activeModalWidget() is None
    window.form.width = 96
    window.form.steps = 2
    click(qtbot, window.generate_button)
    wait_history(qtbot, window, 1)
    assert window.error_area.message() == ""


def test_failed_job_is_reported_inline_and_the_window_stays_usable(
    qtbot, window, fake_engine
) -> None:
    fake_engine.fail_next = (ErrorKind.OUT_OF_MEMORY, "out of memory at 2048x2048; try 512x512")
    window.form.steps = 2
    window.workspace.generate()
    qtbot.waitUntil(lambda: window.error_area.message() != "")
    assert window.error_area.message().startswith("Out of memory:")
    assert QApplication.activeModalWidget() is None
    window.workspace.generate()
    wait_history(qtbot, window, 1)


def _put_picture(window: MainWindow, colour=(40, 80, 120), size=(64, 64)) -> None:
    window.workspace.put_picture(Image.new("RGB", size, colour))


def test_brush_undo_redo_invert_clear(qtbot, window) -> None:
    _put_picture(window)
    canvas = window.canvas
    canvas.set_hardness(1.0)
    canvas.set_brush_size(8)
    drag_on_canvas(canvas, [(10, 10), (30, 10), (50, 10)])
    mask = canvas.document.mask_array()
    assert mask[10, 10] > 200 and mask[10, 30] > 200 and mask[10, 50] > 200
    assert mask[40, 40] == 0
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not canvas.document.mask_array().any()
    qtbot.keyClick(
        canvas,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert canvas.document.mask_array()[10, 30] > 200
    window.mask_toolbar.invert_action.trigger()
    assert canvas.document.mask_array()[10, 30] < 50 and canvas.document.mask_array()[40, 40] == 255
    window.mask_toolbar.clear_action.trigger()
    assert not canvas.document.mask_array().any()
    canvas.document.undo_stack.undo()
    assert canvas.document.mask_array()[40, 40] == 255


def test_eraser_and_brush_size_keys(qtbot, window) -> None:
    _put_picture(window)
    canvas = window.canvas
    canvas.set_hardness(1.0)
    canvas.set_brush_size(20)
    drag_on_canvas(canvas, [(32, 32)])
    assert canvas.document.mask_array()[32, 32] == 255
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert canvas.brush_size == 16
    assert window.mask_toolbar.size_slider.value() == 16
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert canvas.brush_size == 20
    window.mask_toolbar.eraser_action.trigger()
    canvas.set_brush_size(4)
    drag_on_canvas(canvas, [(32, 32)])
    assert canvas.document.mask_array()[32, 32] == 0 and canvas.document.mask_array()[32, 24] == 255


def test_soft_brush_has_a_feathered_edge(qtbot, window) -> None:
    _put_picture(window)
    canvas = window.canvas
    window.mask_toolbar.softness_slider.setValue(100)
    canvas.set_brush_size(30)
    drag_on_canvas(canvas, [(32, 32)])
    mask = canvas.document.mask_array()
    assert mask[32, 32] > mask[32, 42] > mask[32, 47]


def test_typing_brackets_in_the_prompt_types_them(qtbot, window) -> None:
    size = window.canvas.brush_size
    type_prompt(qtbot, window, "[be]")
    assert window.form.prompt == "[be]"
    assert window.canvas.brush_size == size


def test_inpaint_changes_only_the_masked_area(qtbot, window) -> None:
    _put_picture(window, (40, 80, 120), (64, 64))
    canvas = window.canvas
    canvas.set_hardness(1.0)
    canvas.set_brush_size(16)
    drag_on_canvas(canvas, [(16, 16), (16, 40)])
    before = qimage_to_array(canvas.document.image)
    mask = canvas.document.mask_array()
    type_prompt(qtbot, window, "a green star")
    window.form.steps = 3
    click(qtbot, window.inpaint_button)
    wait_history(qtbot, window, 1)
    after = qimage_to_array(canvas.document.image)
    changed = np.any(after != before, axis=2)
    assert changed[mask >= 128].all()
    assert not changed[mask == 0].any()
    request = window.workspace.history.entries()[0].request
    assert request is not None and request.mode == "inpaint"
    assert canvas.document.mask_array().any(), "the mask stays for another try"


def test_inpaint_without_mask_says_what_to_do(qtbot, window) -> None:
    _put_picture(window)
    assert window.workspace.inpaint() is None
    assert "Paint a mask" in window.error_area.message()


@needs_metadata
def test_reuse_parameters_from_a_dropped_png(qtbot, window, tmp_path) -> None:
    request = GenerationRequest(
        prompt="a blue square",
        negative_prompt="blurry",
        steps=33,
        guidance_scale=7.5,
        seed=99,
        width=64,
        height=64,
        scheduler="Euler a",
    )
    path = tmp_path / "other-tool.png"
    save_png(Image.new("RGB", (64, 64), (0, 0, 255)), path, request, 99)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    drop = QDropEvent(
        QPoint(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(drop)
    assert window.canvas.document.image is not None
    assert len(window.workspace.history.entries()) == 1
    click(qtbot, window.history_strip.reuse_button)
    m = window.form
    assert (m.prompt, m.negative_prompt, m.steps, m.seed, m.random_seed) == (
        "a blue square",
        "blurry",
        33,
        99,
        False,
    )
    assert m.scheduler == "Euler a"
    assert window.parameter_panel.steps_spin.value() == 33
    assert window.prompt_panel.prompt_edit.toPlainText() == "a blue square"


def test_scrub_the_run_and_continue_from_a_step(qtbot, window, fake_engine) -> None:
    window.form.steps = 8
    window.form.random_seed = False
    window.form.seed = 5
    job = window.workspace.generate()
    wait_history(qtbot, window, 1)
    assert window.scrubber.slider.isEnabled() and window.scrubber.slider.maximum() == 8
    window.scrubber.slider.setValue(3)
    assert "step 3" in window.caption.text()
    window.progress.noisy_check.setChecked(True)
    assert window.form.show_noisy
    window.form.seed = 6
    type_prompt(qtbot, window, "a yellow star")
    click(qtbot, window.scrubber.continue_button)
    wait_history(qtbot, window, 2)
    resumed = fake_engine.submitted[-1]
    assert resumed.resume is not None and (resumed.resume.job_id, resumed.resume.step) == (job, 3)
    assert (resumed.prompt, resumed.seed) == ("a yellow star", 6)


def test_reuse_last_seed(qtbot, window) -> None:
    window.form.random_seed = True
    window.form.steps = 2
    window.workspace.generate()
    wait_history(qtbot, window, 1)
    click(qtbot, window.parameter_panel.reuse_seed_button)
    assert window.form.seed == 1234 and not window.form.random_seed


def test_window_remembers_parameters_and_output_folder(
    qtbot, make_window, settings, tmp_path
) -> None:
    engine = FakeEngine()
    first = make_window(engine)
    first.form.steps = 42
    first.form.prompt = "remember me"
    first.set_output_folder(tmp_path / "elsewhere")
    first.close()
    assert not engine.alive, "closing the window stops the engine"
    assert settings.output_folder() == tmp_path / "elsewhere"
    assert settings.geometry() is not None and settings.window_state() is not None
    second = make_window(FakeEngine())
    assert second.form.steps == 42 and second.form.prompt == "remember me"


def test_status_bar_shows_device_and_model(qtbot, window) -> None:
    assert window.device_label.text() == "fake (float32)"
    assert "starter" in window.model_label.text()


def test_the_window_does_not_import_torch() -> None:
    code = (
        "import os, sys; os.environ['QT_QPA_PLATFORM']='offscreen';"
        "import guiapp.window, guiapp.app, guiapp.bridge;"
        "from PIL import Image; from engine.api import GenerationRequest;"
        "from guiapp.output_writer import read_parameters;"
        "import guiapp.workspace; guiapp.workspace.problems(GenerationRequest(prompt='x'));"
        "read_parameters(Image.new('RGB', (8, 8)));"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
