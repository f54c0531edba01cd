"""Closing the window never loses a finished image."""

from __future__ import annotations

import threading

import guiapp.output_writer
from engine.api import Event, Finished


def _pngs(window) -> list:
    folder = window.workspace.output_folder
    return sorted(folder.glob("*.png")) if folder.exists() else []


def test_an_image_the_engine_finished_but_the_window_never_saw_is_saved_on_close(
    qtbot, window, fake_engine
) -> None:
    finished = threading.Event()

    def listen(event: Event) -> None:
        match event:
            case Finished():
                finished.set()

    fake_engine.add_listener(listen)
    window.form.steps = 2
    window.workspace.generate()
    # Wait without running the event loop: the Finished event stays undelivered.
    assert finished.wait(10)
    assert _pngs(window) == []
    window.close()
    saved = _pngs(window)
    assert len(saved) == 1 and saved[0].stat().st_size > 0
    assert not list(window.workspace.output_folder.glob("*.part")), "no half-written file"


def test_closing_waits_for_an_image_that_is_being_written(
    qtbot, window, fake_engine, monkeypatch
) -> None:
    writing = threading.Event()
    original_save = guiapp.output_writer.save_picture  # PNG, JPEG or WebP

    def slow_save(image, path, request, seed, *model_info) -> None:
        writing.set()
        threading.Event().wait(0.5)  # a slow disk
        original_save(image, path, request, seed, *model_info)

    monkeypatch.setattr(guiapp.output_writer, "save_picture", slow_save)
    window.form.steps = 2
    window.workspace.generate()
    qtbot.waitUntil(writing.is_set)
    window.close()
    assert len(_pngs(window)) == 1


def test_an_image_that_could_not_be_saved_stays_in_the_history_for_save_as(
    qtbot, window, tmp_path
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the output folder should be")
    window.set_output_folder(blocked)
    window.form.steps = 2
    window.form.prompt = "keep me"
    window.workspace.generate()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1)
    entry = window.workspace.history.entries()[0]
    assert entry.path is None and "not saved" in entry.name
    assert window.error_area.message() != ""
    target = tmp_path / "elsewhere.png"
    window.workspace.save_entry_as(entry, target)
    read = guiapp.output_writer.read_parameters(target)
    assert read is not None and read.prompt == "keep me"


def test_save_as_another_format_writes_that_format(qtbot, window, tmp_path) -> None:
    from PIL import Image

    window.form.steps = 2
    window.workspace.generate()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1)
    entry = window.workspace.history.entries()[0]
    window.workspace.save_entry_as(entry, tmp_path / "copy.jpg")
    window.workspace.save_entry_as(entry, tmp_path / "copy.png")
    with Image.open(tmp_path / "copy.jpg") as picture:
        assert picture.format == "JPEG"
    assert (tmp_path / "copy.png").read_bytes() == entry.path.read_bytes()
    window.workspace.save_entry_as(entry, tmp_path / "copy.gif")
    assert ".gif" in window.error_area.message()
