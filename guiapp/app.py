"""`diffusiondesk`: open the window; the engine starts in the background.

The engine (torch, diffusers) is imported and built on a helper thread so the window
appears at once and never freezes while torch loads; Generate is enabled when the
engine is attached.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication

from engine.api import EngineLike
from guiapp.bridge import EngineBridge
from guiapp.icons import icon
from guiapp.settings import APPLICATION, ORGANIZATION
from guiapp.smoke_test import SmokeTest
from guiapp.theme import apply_dark_theme
from guiapp.window import MainWindow


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


def default_engine_factory(
    device: str,
    dtype: str,
    allow_pickle: bool,
    backend: str | None = None,
    compile_unet: bool = False,
) -> EngineLike:
    from engine.worker import Engine  # imports torch: only ever on the starter thread

    return Engine(
        device=device,
        dtype=dtype,
        allow_pickle=allow_pickle,
        niceness=ENGINE_NICENESS,
        backend=backend,
        compile_unet=compile_unet,
    )


def remote_engine_factory(url: str, token: str | None, starter: EngineStarter) -> EngineLike:
    """An engine on a diffusiondesk-server; connection trouble shows in the error strip."""
    from engine.remote import RemoteEngine

    engine = RemoteEngine(url, token)
    engine.add_status_listener(lambda up, message: None if up else starter.failed.emit(message))
    return engine


def attach_when_ready(window: MainWindow, starter: EngineStarter) -> None:
    def attach(engine: EngineLike) -> None:
        if window.closed:
            engine.shutdown(5.0)
        else:
            window.bridge.attach(engine)

    starter.ready.connect(attach, Qt.ConnectionType.QueuedConnection)
    starter.failed.connect(window.workspace.show_error, Qt.ConnectionType.QueuedConnection)


GIL_SWITCH_INTERVAL = 0.001
# The engine's threads yield the CPU to the window's: with torch busy on every core,
# a woken GUI thread at equal priority can wait a whole scheduler slice (many ms).
ENGINE_NICENESS = 5


def share_the_gil_fairly() -> None:
    """The engine's worker thread runs Python between torch calls; with the default 5 ms
    switch interval the GUI thread can wait several intervals for the GIL. 1 ms keeps
    the event loop's waits short at no measurable cost to sampling."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)


def route_uncaught_errors(window: MainWindow) -> None:
    """A bug in a slot must not pass silently or kill the window: print it and show it
    inline (with the traceback behind the Copy button)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        previous(kind, error, tb)
        if threading.current_thread() is threading.main_thread() and not window.closed:
            detail = "".join(traceback.format_exception(kind, error, tb))
            window.workspace.show_error(f"Internal error: {error}", detail)

    sys.excepthook = hook


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="diffusiondesk", description="DiffusionDesk window")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument(
        "--dtype",
        default=None,
        help="auto, float32, float16, bfloat16 (default: the Speed panel's)",
    )
    parser.add_argument(
        "--backend",
        default=None,
        choices=("auto", "torch", "openvino"),
        help="what runs the UNet on the CPU (default: the Speed panel's)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow loading .ckpt/.pt pickle checkpoints (they can run code)",
    )
    parser.add_argument("--model", default=None, help="model to select at start")
    parser.add_argument(
        "pictures", nargs="*", type=Path, help="pictures to open (as from a file manager)"
    )
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="check this install: open the window, start the engine, make one picture with "
        "the starter model (throw-away settings and folder), print timings as JSON, quit; "
        "exit code 0 when all worked",
    )
    parser.add_argument(
        "--engine", default=None, metavar="URL", help="use a diffusiondesk-server's engine"
    )
    parser.add_argument("--token", default=None, help="its access token ($DIFFUSIONDESK_TOKEN)")
    args = parser.parse_args(argv)
    if args.engine:
        from engine.remote import stream_url

        try:
            stream_url(args.engine)
        except ValueError as exc:
            parser.error(f"--engine: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    started_at = time.perf_counter()
    # In a frozen bundle the model library's scan process starts by running this
    # executable again; freeze_support hands that run to multiprocessing.
    multiprocessing.freeze_support()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    share_the_gil_fairly()
    QApplication.setOrganizationName(ORGANIZATION)
    QApplication.setApplicationName(APPLICATION)
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setWindowIcon(icon("app"))
    apply_dark_theme(app)
    smoke = SmokeTest(started_at) if args.smoke_test else None
    window = MainWindow(EngineBridge(), smoke.settings if smoke else None)
    if args.model:
        window.form.model = args.model
    for picture in args.pictures:
        window.workspace.open_image(picture)
    token = args.token or os.environ.get("DIFFUSIONDESK_TOKEN")
    starter = EngineStarter(
        (lambda: remote_engine_factory(args.engine, token, starter))
        if args.engine
        else (
            lambda: default_engine_factory(
                args.device,
                args.dtype or window.settings.engine_dtype(),
                args.allow_pickle,
                args.backend or window.settings.engine_backend(),
                args.compile,
            )
        )
    )
    attach_when_ready(window, starter)
    route_uncaught_errors(window)
    if smoke:
        smoke.watch(window, starter)
    window.show()
    starter.start()
    code = app.exec()
    starter.join(10.0)
    if starter.engine is not None and window.bridge.engine is not starter.engine:
        starter.engine.shutdown(5.0)  # became ready after the window closed
    return smoke.report(code) if smoke else code


if __name__ == "__main__":
    raise SystemExit(main())
