"""Closing the window never loses a finished image."""

from __future__ import annotations

import threading

import guiapp.output_writer
from engine.api import Event, Finished


def _pngs(window) -> list:  # noqa: ANN001
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

    def slow_save(image, path, request, seed) -> None:  # noqa: ANN001
        writing.set()
        threading.Event().wait(0.5)  # a slow disk
        original_save(image, path, request, seed)

    monkeypatch.setattr(guiapp.output_writer, "save_picture", slow_save)
    window.form.steps = 2
    window.workspace.generate()
    qtbot.waitUntil(writing.is_set)
    window.close()
    assert len(_pngs(window)) == 1
