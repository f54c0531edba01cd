"""Saves finished images (PNG with their parameters) off the GUI thread.

A finished job is shown as done only after its images are on disk: the window hands
the Finished event here and waits for `saved`. One small worker thread does the
writing so that a large PNG never stalls the event loop; close() joins it.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, Qt, Signal

from engine.api import Finished, GenerationRequest
from guiapp.file_io import save_failed_message


def save_png(image: Image.Image, path: Path, request: GenerationRequest, seed: int) -> None:
    """engine.metadata.save_png (A1111 "parameters" chunk + JSON, written atomically)."""
    try:
        from engine.metadata import save_png as engine_save_png
    except ImportError:  # pragma: no cover - only while engine.metadata is being written
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("parameters", f"{request.prompt}\nSteps: {request.steps}, Seed: {seed}")
        tmp = path.with_suffix(".part")
        image.save(tmp, format="PNG", pnginfo=info)
        tmp.replace(path)
        return
    engine_save_png(image, path, request, seed)


def read_parameters(source: Path | Image.Image) -> GenerationRequest | None:
    try:
        from engine.metadata import read_parameters as engine_read_parameters
    except ImportError:  # pragma: no cover - only while engine.metadata is being written
        return None
    return engine_read_parameters(source)


@dataclass(frozen=True)
class SavedJob:
    event: Finished
    paths: tuple[Path, ...]
    error: str = ""  # non-empty if saving failed
    unsaved: tuple[Path, ...] = ()  # where the images that failed to save were meant to go


class OutputWriter(QObject):
    saved = Signal(object)  # SavedJob, delivered on the GUI thread
    _relay = Signal(object)  # emitted on the writer thread

    _counter = itertools.count()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._queue: queue.Queue[tuple[Finished, Path] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._relay.connect(self.saved, Qt.ConnectionType.QueuedConnection)

    def write(self, event: Finished, folder: Path) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="diffusiondesk-output-writer", daemon=True
            )
            self._thread.start()
        self._queue.put((event, folder))

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    @classmethod
    def file_name(cls, job_id: int, seed: int) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return f"{stamp}-{next(cls._counter):04d}-job{job_id}-seed{seed}.png"

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event, folder = item
            planned = [folder / self.file_name(event.job_id, seed) for seed in event.seeds]
            paths: list[Path] = []
            error = ""
            try:
                for image, seed, path in zip(event.images, event.seeds, planned, strict=False):
                    save_png(image, path, event.request.with_changes(seed=seed), seed)
                    paths.append(path)
            except Exception as exc:  # noqa: BLE001 - reported inline in the window
                error = save_failed_message(exc, folder)
            unsaved = tuple(planned[len(paths) :])
            self._relay.emit(SavedJob(event, tuple(paths), error, unsaved))
