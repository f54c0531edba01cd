"""`diffusiondesk`: open the window; the engine starts in the background.

The engine (torch, diffusers) is imported and built on a helper thread so the window
appears at once and never freezes while torch loads; Generate is enabled when the
engine is attached. Which engine: `--engine URL` (with `--token` or $DIFFUSIONDESK_TOKEN)
for this run, else the one chosen in File → Engine location… (this computer by default).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import threading
import time
import traceback
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from engine.api import EngineLike
from guiapp.bridge import EngineBridge
from guiapp.engine_location import EngineLocation
from guiapp.engine_switch import EngineStarter
from guiapp.icons import icon
from guiapp.settings import APPLICATION, ORGANIZATION, AppSettings
from guiapp.smoke_test import SmokeTest
from guiapp.theme import apply_dark_theme
from guiapp.window import MainWindow


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


def initial_location(
    args: argparse.Namespace, settings: AppSettings, smoke: bool
) -> EngineLocation:
    """--engine for this run (not remembered), else the stored choice; the smoke test
    always checks this install's own engine."""
    if args.engine:
        return EngineLocation(args.engine, args.token or "")
    if smoke:
        return EngineLocation()
    return settings.engine_location()


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
        choices=("auto", "torch", "openvino", "openvino-int8"),
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
    parser.add_argument(
        "--token", default=None, help="its access token (default: $DIFFUSIONDESK_TOKEN)"
    )
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
    window.engines.local_factory = lambda: default_engine_factory(
        args.device,
        args.dtype or window.settings.engine_dtype(),
        args.allow_pickle,
        args.backend or window.settings.engine_backend(),
        args.compile,
    )
    starter = window.engines.switch_to(
        initial_location(args, window.settings, bool(smoke)), start=False
    )
    if starter is None:  # a stored address that cannot be used: said inline; run locally
        starter = window.engines.switch_to(EngineLocation(), start=False)
    assert starter is not None
    route_uncaught_errors(window)
    if smoke:
        smoke.watch(window, starter)
    window.show()
    starter.start()
    code = app.exec()
    window.engines.join(10.0)
    return smoke.report(code) if smoke else code


if __name__ == "__main__":
    raise SystemExit(main())
