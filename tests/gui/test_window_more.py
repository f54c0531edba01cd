"""More of what a person does: zoom and pan, copy, save as, paste, batches, start-up."""

from __future__ import annotations

import threading

from gui.fake_engine import FakeEngine, prompt_colour
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from guiapp.app import EngineStarter, attach_when_ready
from guiapp.bridge import EngineBridge
from guiapp.imaging import qimage_to_array
from guiapp.window import MainWindow


def test_zoom_with_wheel_and_keys_and_pan_with_middle_button(qtbot, window) -> None:
    window.workspace.put_picture(Image.new("RGB", (256, 256), (10, 20, 30)))
    canvas = window.canvas
    start = canvas.zoom
    window.mask_toolbar.zoom_in_action.trigger()
    assert canvas.zoom > start
    canvas.zoom_by(4)
    scroll = canvas.horizontalScrollBar()
    assert scroll.maximum() > 0
    before = scroll.value()
    viewport = canvas.viewport()
    centre = viewport.rect().center()
    QTest.mousePress(viewport, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, centre)
    QTest.mouseMove(viewport, centre + QPoint(-60, 0))
    QTest.mouseRelease(
        viewport,
        Qt.MouseButton.MiddleButton,
        Qt.KeyboardModifier.NoModifier,
        centre + QPoint(-60, 0),
    )
    assert scroll.value() != before
    assert not canvas.document.mask_array().any(), "panning does not paint"
    window.mask_toolbar.fit_action.trigger()
    view_rect = canvas.mapToScene(viewport.rect()).boundingRect()
    assert view_rect.contains(QPointF(0, 0)) and view_rect.contains(QPointF(255, 255))


def test_copy_save_as_and_paste(qtbot, window, tmp_path) -> None:
    window.form.steps = 2
    window.workspace.generate()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1)
    entry = window.workspace.history.entries()[0]
    qtbot.mouseClick(window.history_strip.copy_button, Qt.MouseButton.LeftButton)
    copied = QApplication.clipboard().image()
    assert copied.size() == entry.image.size()
    target = tmp_path / "copy.png"
    window.workspace.save_entry_as(entry, target)
    assert target.read_bytes() == entry.path.read_bytes()

    pasted = QImage(40, 24, QImage.Format.Format_RGB32)
    pasted.fill(0x00FF00)
    QApplication.clipboard().setImage(pasted)
    window.canvas.setFocus()
    window.paste_action.trigger()
    image = window.canvas.document.image
    assert (image.width(), image.height()) == (40, 24)
    assert tuple(qimage_to_array(image)[0, 0]) == (0, 255, 0)


def test_opened_image_is_cropped_to_the_latent_grid(qtbot, window, tmp_path) -> None:
    path = tmp_path / "odd.jpg"
    Image.new("RGB", (101, 67), (200, 10, 10)).save(path)
    assert window.workspace.open_image(path)
    assert (window.canvas.document.image.width(), window.canvas.document.image.height()) == (96, 64)
    assert window.workspace.history.entries() == [], "a picture without parameters is not a result"


def test_a_batch_adds_every_image_to_history(qtbot, window) -> None:
    window.form.batch_size = 3
    window.form.steps = 2
    window.form.random_seed = False
    window.form.seed = 10
    window.workspace.generate()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 3)
    seeds = sorted(e.seed for e in window.workspace.history.entries())
    assert seeds == [10, 11, 12]
    assert all(e.path.exists() for e in window.workspace.history.entries())


def test_clicking_a_thumbnail_shows_it(qtbot, window) -> None:
    window.form.steps = 2
    window.form.prompt = "first"
    window.workspace.generate()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1)
    window.form.prompt = "second"
    window.workspace.generate()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 2)
    assert tuple(qimage_to_array(window.canvas.document.image)[0, 0]) == prompt_colour("second")
    first_item = window.history_strip.list.item(1)
    rect = window.history_strip.list.visualItemRect(first_item)
    qtbot.mouseClick(
        window.history_strip.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center()
    )
    assert tuple(qimage_to_array(window.canvas.document.image)[0, 0]) == prompt_colour("first")


def test_window_is_usable_while_the_engine_starts(qtbot, settings, tmp_path) -> None:
    release = threading.Event()
    engines: list[FakeEngine] = []

    def slow_factory() -> FakeEngine:
        release.wait(10)
        engine = FakeEngine()
        engines.append(engine)
        return engine

    window = MainWindow(EngineBridge(), settings)
    window.set_output_folder(tmp_path / "out")
    qtbot.addWidget(window)
    starter = EngineStarter(slow_factory)
    attach_when_ready(window, starter)
    window.show()
    starter.start()
    assert not window.generate_button.isEnabled()
    assert "starting" in window.device_label.text()
    qtbot.keyClicks(window.prompt_panel.prompt_edit, "typing while it starts")
    release.set()
    qtbot.waitUntil(lambda: window.generate_button.isEnabled())
    assert window.device_label.text() == "fake (float32)"
    window.form.steps = 2
    window.workspace.generate()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1)
    window.close()
    starter.join(5)
    assert not engines[0].alive


def test_starter_failure_is_shown_inline(qtbot, settings) -> None:
    def broken() -> FakeEngine:
        raise RuntimeError("no torch here")

    window = MainWindow(EngineBridge(), settings)
    qtbot.addWidget(window)
    starter = EngineStarter(broken)
    attach_when_ready(window, starter)
    starter.start()
    qtbot.waitUntil(lambda: "no torch here" in window.error_area.message())
    starter.join(5)
    assert not window.generate_button.isEnabled()


def test_every_widget_of_the_window_belongs_to_qt_not_python(qtbot, window) -> None:
    """A widget Python still owns is deleted twice at exit (a segfault in ~QObject)."""
    import shiboken6
    from PySide6.QtWidgets import QWidget

    children = window.findChildren(QWidget)
    assert len(children) > 50
    owned = [type(c).__name__ for c in children if shiboken6.ownedByPython(c)]
    assert owned == []
