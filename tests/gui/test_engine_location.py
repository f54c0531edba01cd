"""File → Engine location…: choosing this computer or a server, switching engines while
the window runs (history kept, old jobs stopped, ids never mixed up), and the setting."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from gui.fake_engine import FakeEngine
from PySide6.QtWidgets import QLineEdit

from engine.api import JobState, ResumeFrom
from guiapp.engine_location import EngineLocation
from guiapp.settings import AppSettings
from guiapp.window import MainWindow


def generate(qtbot, window: MainWindow, steps: int = 2) -> int:
    window.form.steps = steps
    job = window.workspace.generate()
    assert job is not None
    return job


def wait_history(qtbot, window: MainWindow, count: int) -> None:
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) >= count, timeout=20_000)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_location_names_what_to_change_when_its_address_is_unusable() -> None:
    assert EngineLocation().local and EngineLocation().problem() == ""
    assert EngineLocation("http://gpu-box:7860").problem() == ""
    assert "must start with http://" in EngineLocation("ftp://gpu-box").problem()
    assert "bad port" in EngineLocation("http://gpu-box:99999").problem()
    assert EngineLocation("https://gpu-box:8443/dd/").describe() == "gpu-box:8443"


def test_the_location_and_its_token_are_remembered_in_a_private_settings_file(
    settings: AppSettings,
) -> None:
    assert settings.engine_location() == EngineLocation()
    settings.set_engine_location(EngineLocation(" http://gpu-box:7860 ", "s3cret"))
    assert settings.engine_location() == EngineLocation("http://gpu-box:7860", "s3cret")
    assert os.stat(settings.settings_file()).st_mode & 0o077 == 0


def test_the_dialog_masks_the_token_and_keeps_a_bad_address_open_with_one_sentence(
    qtbot, window: MainWindow
) -> None:
    window.engine_action.trigger()
    dialog = window.engine_location_dialog
    assert dialog.local_button.isChecked() and not dialog.url_edit.isEnabled()
    assert dialog.token_edit.echoMode() == QLineEdit.EchoMode.Password
    assert window.settings.settings_file() in dialog.findChild(object, "engineNote").text()
    dialog.server_button.setChecked(True)
    dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()
    assert dialog.isVisible() and "Enter the server's address" in dialog.error_label.text()
    dialog.url_edit.setText("ftp://gpu-box")
    dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()
    assert dialog.isVisible() and "must start with http://" in dialog.error_label.text()
    assert window.bridge.engine is not None and window.settings.engine_location().local
    dialog.reject()


def test_switching_engines_keeps_the_history_and_the_next_job_runs_on_the_new_one(
    qtbot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    first = generate(qtbot, window)
    wait_history(qtbot, window, 1)
    other = FakeEngine()
    other.device_description = "other (float32)"
    window.engines.local_factory = lambda: other
    window.use_engine_location(EngineLocation())
    qtbot.waitUntil(lambda: window.bridge.engine is other, timeout=20_000)
    assert window.device_label.text() == "other (float32)"
    qtbot.waitUntil(lambda: not fake_engine.alive, timeout=20_000)  # stopped off the GUI thread
    second = generate(qtbot, window)
    wait_history(qtbot, window, 2)
    assert second > first, "job ids never repeat across engines"
    newest, older = window.workspace.history.entries()[:2]
    assert (newest.where, older.where) == ("other (float32)", "fake (float32)")
    assert window.caption.text().endswith("ran on other (float32)")
    assert len(other.submitted) == 1 and len(fake_engine.submitted) == 1
    assert window.error_area.message() == ""


def test_a_job_running_when_the_engine_changes_ends_cancelled_and_the_window_goes_on(
    qtbot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    fake_engine.gate = threading.Event()
    job = generate(qtbot, window, steps=4)
    qtbot.waitUntil(lambda: window.workspace.jobs.running is not None, timeout=20_000)
    other = FakeEngine()
    window.engines.local_factory = lambda: other
    window.use_engine_location(EngineLocation())
    qtbot.waitUntil(lambda: window.bridge.engine is other, timeout=20_000)
    ended = window.workspace.jobs.find(job)
    qtbot.waitUntil(lambda: ended.state == JobState.CANCELLED, timeout=20_000)
    generate(qtbot, window)
    wait_history(qtbot, window, 1)


def test_continuing_a_run_of_the_previous_engine_says_to_run_it_again(
    qtbot, window: MainWindow
) -> None:
    first = generate(qtbot, window, steps=4)
    wait_history(qtbot, window, 1)
    other = FakeEngine()
    window.engines.local_factory = lambda: other
    window.use_engine_location(EngineLocation())
    qtbot.waitUntil(lambda: window.bridge.engine is other, timeout=20_000)
    assert window.workspace.continue_from(first, 2) is None
    assert "engine used before the switch" in window.error_area.message()
    assert other.submitted == []


def test_an_unreachable_server_is_said_inline_and_the_window_stays_usable(
    qtbot, window: MainWindow, fake_engine: FakeEngine
) -> None:
    window.use_engine_location(EngineLocation(f"http://127.0.0.1:{closed_port()}"))
    qtbot.waitUntil(lambda: "Cannot reach" in window.error_area.message(), timeout=30_000)
    assert window.device_label.text() == "not connected"
    assert window.settings.engine_location().server.startswith("http://127.0.0.1:")
    window.engines.local_factory = lambda: FakeEngine()
    window.use_engine_location(EngineLocation())  # and back: the window works again
    qtbot.waitUntil(lambda: window.device_label.text() == "fake (float32)", timeout=20_000)
    generate(qtbot, window)
    wait_history(qtbot, window, 1)


def test_a_bad_address_from_the_settings_is_refused_inline(qtbot, window: MainWindow) -> None:
    assert window.engines.switch_to(EngineLocation("ftp://x")) is None
    assert "must start with http://" in window.error_area.message()
    assert window.bridge.engine is not None


def test_the_engine_menu_item_is_in_the_file_menu(window: MainWindow) -> None:
    file_menu = window.menuBar().actions()[0].menu()
    assert window.engine_action in file_menu.actions()
    assert Path(window.settings.settings_file()).name.endswith(".ini")
    assert window.engine_action.text() == "Engine location…"


def test_the_queue_says_where_the_running_job_runs(qtbot, window: MainWindow, fake_engine) -> None:
    fake_engine.gate = threading.Event()
    try:
        job = generate(qtbot, window, steps=3)
        qtbot.waitUntil(lambda: window.workspace.jobs.running is not None, timeout=20_000)
        item = window.queue_view.list.item(0)
        qtbot.waitUntil(lambda: "running on fake (float32)" in item.text(), timeout=20_000)
        assert window.queue_view.job_ids() == [job]
    finally:
        fake_engine.gate.set()
    wait_history(qtbot, window, 1)


def test_continuing_a_run_of_the_new_engine_names_it_in_that_engines_numbering(
    qtbot, window: MainWindow
) -> None:
    generate(qtbot, window)
    wait_history(qtbot, window, 1)
    other = FakeEngine()
    window.engines.local_factory = lambda: other
    window.use_engine_location(EngineLocation())
    qtbot.waitUntil(lambda: window.bridge.engine is other, timeout=20_000)
    made_here = generate(qtbot, window, steps=4)
    wait_history(qtbot, window, 2)
    again = window.workspace.continue_from(made_here, 2)
    assert again is not None and again > made_here
    wait_history(qtbot, window, 3)
    assert other.submitted[-1].resume == ResumeFrom(1, 2), "the engine's own id for its job"
    newest = window.workspace.history.entries()[0]
    assert newest.request.resume == ResumeFrom(made_here, 2), "the window's id in the result"


def test_news_from_a_server_before_its_engine_is_handed_over_is_still_shown(
    qtbot, window: MainWindow, monkeypatch
) -> None:
    import engine.remote

    class TalksAtOnce(FakeEngine):
        """Reports a refused token while it is still being built, as a real one can."""

        def __init__(self, url: str, token: str | None) -> None:
            super().__init__()

        def add_status_listener(self, listener) -> None:
            listener(False, "Cannot reach the server: the token was refused.")

    monkeypatch.setattr(engine.remote, "RemoteEngine", TalksAtOnce)
    window.use_engine_location(EngineLocation("http://gpu-box:7860", "wrong"))
    qtbot.waitUntil(lambda: isinstance(window.bridge.engine, TalksAtOnce), timeout=20_000)
    qtbot.waitUntil(lambda: "token was refused" in window.error_area.message(), timeout=20_000)
    assert window.device_label.text() == "not connected"
