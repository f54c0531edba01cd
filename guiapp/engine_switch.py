"""Starting the window's engine and switching it while the window runs.

`EngineStarter` builds one engine on a helper thread (torch loads there, never on the
GUI thread). `EngineSwitcher` turns an EngineLocation into an engine: the local one
through a factory the application gives it, a server's through engine.remote. The new
engine replaces the old one only once it exists (guiapp.bridge.EngineBridge.replace), so
the window stays usable throughout, and nothing in the history or the form is touched.
A remote engine's connection news (refused token, unreachable, lost, back) is shown
inline, and the engine keeps reconnecting by itself.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal

from engine.api import EngineLike
from guiapp.bridge import EngineBridge
from guiapp.engine_location import EngineLocation
from guiapp.workspace import Workspace

LocalFactory = Callable[[], EngineLike]


class EngineStarter(QObject):
    """Builds the engine on a helper thread and hands it to the GUI thread."""

    ready = Signal(object)
    failed = Signal(str)

    def __init__(self, factory: Callable[[], EngineLike], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._factory = factory
        self.engine: EngineLike | None = None
        self._thread = threading.Thread(target=self._run, name="engine-starter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            engine = self._factory()
        except Exception as exc:  # shown inline in the window
            self.failed.emit(f"The engine could not start: {exc}")
            return
        self.engine = engine
        self.ready.emit(engine)


class EngineSwitcher(QObject):
    """Puts the engine of a location into the window's bridge, without blocking."""

    switched = Signal(object)  # EngineLocation: its engine is attached now
    # (engine, connected, message) from a remote engine's network thread
    _connection = Signal(object, bool, str)

    def __init__(
        self,
        bridge: EngineBridge,
        workspace: Workspace,
        local_factory: LocalFactory | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.workspace = workspace
        self.local_factory = local_factory
        self.location: EngineLocation | None = None  # the one attached or being started
        self.starter: EngineStarter | None = None
        self._starters: list[EngineStarter] = []
        self._connection_message = ""
        # The latest news from engines built but not attached yet (they connect at once,
        # maybe before their starter has even handed them over), by id(engine).
        self._early: dict[int, tuple[EngineLike, bool, str]] = {}
        self._connection.connect(self._on_connection, Qt.ConnectionType.QueuedConnection)

    def switch_to(self, location: EngineLocation, start: bool = True) -> EngineStarter | None:
        """Start the engine `location` names; it replaces the current one when ready.
        Returns its starter (not yet started if start is False), or None after showing
        what to change when the location cannot be used."""
        problem = location.problem()
        if not problem and location.local and self.local_factory is None:
            problem = "This window was started without a local engine."
        if problem:
            self.workspace.show_error(problem)
            return None
        self.location = location
        starter = EngineStarter(lambda: self._build(location), self)
        self.starter = starter
        self._starters.append(starter)
        queued = Qt.ConnectionType.QueuedConnection
        starter.ready.connect(lambda engine: self._ready(starter, location, engine), queued)
        starter.failed.connect(lambda message: self._failed(starter, message), queued)
        if self.bridge.engine is None:
            self.workspace.device = (
                "engine starting…" if location.local else f"connecting to {location.describe()}…"
            )
        if start:
            starter.start()
        return starter

    def join(self, timeout: float) -> None:
        """Wait for engines still being built (at closing)."""
        for starter in self._starters:
            starter.join(timeout)
            if starter.engine is not None and starter.engine is not self.bridge.engine:
                _stop_later(starter.engine)  # became ready after the window closed

    def _build(self, location: EngineLocation) -> EngineLike:
        """On the starter's thread."""
        if location.local:
            assert self.local_factory is not None
            return self.local_factory()
        from engine.remote import RemoteEngine

        engine = RemoteEngine(location.server, location.effective_token())
        engine.add_status_listener(
            lambda up, message: self._report(engine, up, message)  # type: ignore[arg-type]
        )
        return engine

    def _report(self, engine: EngineLike, up: bool, message: str) -> None:
        """On a remote engine's network thread: hand the news to the GUI thread."""
        with contextlib.suppress(RuntimeError):  # the window (and this object) are gone
            self._connection.emit(engine, up, message)

    def _ready(self, starter: EngineStarter, location: EngineLocation, engine: EngineLike) -> None:
        self._starters.remove(starter)
        early = self._early.pop(id(engine), None)
        if starter is not self.starter or self.workspace.closed:
            _stop_later(engine)  # a newer switch overtook this one, or the window closed
            return
        if self.bridge.engine is None:
            self.bridge.attach(engine)
        else:
            self.bridge.replace(engine)
        self._early.clear()  # news of engines older than this one no longer matters
        self.switched.emit(location)
        if early is not None:
            self._on_connection(*early)
        if not location.local:
            self.workspace.statusMessage.emit(f"Engine: {location.describe()}", 5000)

    def _failed(self, starter: EngineStarter, message: str) -> None:
        self._starters.remove(starter)
        if starter is self.starter:
            self.workspace.show_error(message)

    def _on_connection(self, engine: EngineLike, up: bool, message: str) -> None:
        if self.workspace.closed:
            return
        if engine is not self.bridge.engine:
            if any(
                engine is starter.engine or starter.engine is None for starter in self._starters
            ):
                self._early[id(engine)] = (engine, up, message)
            return
        if up:
            self.workspace.device = engine.device_description
            if self._connection_message and self.workspace.error == self._connection_message:
                self.workspace.clear_error()
            self._connection_message = ""
            self.workspace.statusMessage.emit(message[0].upper() + message[1:], 5000)
        else:
            self._connection_message = message
            self.workspace.device = "not connected"
            self.workspace.show_error(message)


def _stop_later(engine: EngineLike) -> None:
    """Shut an engine down without making the GUI thread wait for it."""
    threading.Thread(target=engine.shutdown, name="engine-stop", daemon=True).start()
