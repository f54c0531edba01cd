"""GUI tests: offscreen Qt, a window per test, and a check that nothing leaks."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is imported anywhere

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import shiboken6
from gui.fake_engine import FakeEngine
from PySide6.QtCore import QCoreApplication, QSettings, QTimer

from guiapp.bridge import EngineBridge
from guiapp.settings import AppSettings
from guiapp.window import MainWindow

GUI_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if GUI_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.gui)


class _TimerTracker:
    """Remembers every QTimer started and every QTimer.singleShot pending during a test."""

    def __init__(self) -> None:
        self.timers: list[weakref.ref] = []
        self.single_shots = 0
        self._lock = threading.Lock()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original_start = QTimer.start
        original_single = QTimer.singleShot
        tracker = self

        def start(timer: QTimer, *args: object) -> None:
            tracker.timers.append(weakref.ref(timer))
            original_start(timer, *args)

        def single_shot(*args: object) -> None:
            args = list(args)
            callback_index = len(args) - 1
            callback = args[callback_index]
            if callable(callback):
                with tracker._lock:
                    tracker.single_shots += 1

                def wrapped(*a: object) -> None:
                    with tracker._lock:
                        tracker.single_shots -= 1
                    callback(*a)

                args[callback_index] = wrapped
            original_single(*args)

        monkeypatch.setattr(QTimer, "start", start)
        monkeypatch.setattr(QTimer, "singleShot", staticmethod(single_shot))

    def active(self) -> list[str]:
        alive = []
        for ref in self.timers:
            timer = ref()
            if timer is not None and shiboken6.isValid(timer) and timer.isActive():
                alive.append(f"QTimer(interval={timer.interval()}, parent={timer.parent()})")
        if self.single_shots:
            alive.append(f"{self.single_shots} pending QTimer.singleShot")
        return alive


def _settle(until: Callable[[], bool], seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def no_leaks(qapp, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test that leaves a thread running or a Qt timer active behind it."""
    before = set(threading.enumerate())
    tracker = _TimerTracker()
    tracker.install(monkeypatch)
    yield

    def new_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before and t.is_alive()]

    # generous: on a loaded machine a worker may need seconds to finish its current step
    _settle(lambda: not new_threads() and not tracker.active(), seconds=20.0)
    leaked = [t.name for t in new_threads()]
    timers = tracker.active()
    assert not leaked, f"threads outlived the test: {leaked}"
    assert not timers, f"timers outlived the test: {timers}"


@pytest.fixture
def settings(tmp_path: Path) -> AppSettings:
    return AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def fake_engine() -> Iterator[FakeEngine]:
    engine = FakeEngine()
    yield engine
    engine.shutdown(2.0)


@pytest.fixture
def make_window(qtbot, settings: AppSettings, tmp_path: Path):
    """Build a MainWindow over an engine; it is closed (engine shut down) after the test."""
    windows: list[MainWindow] = []

    def make(engine: object) -> MainWindow:
        window = MainWindow(EngineBridge(engine), settings)  # type: ignore[arg-type]
        window.set_output_folder(tmp_path / "out")
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


@pytest.fixture
def window(make_window, fake_engine: FakeEngine) -> MainWindow:
    return make_window(fake_engine)
