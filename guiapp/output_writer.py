"""Saves finished images (PNG, JPEG or WebP with their parameters) off the GUI thread.

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

from PySide6.QtCore import QObject, Qt, Signal

from engine.api import Finished
from engine.metadata import read_parameters
from engine.picture_files import SUFFIXES, save_picture
from guiapp.file_io import save_failed_message

__all__ = ["OutputWriter", "SavedJob", "read_parameters", "save_picture"]


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
        self._queue: queue.Queue[tuple[Finished, Path, str] | None] = queue.Queue()
        self.picture_format = "PNG"  # or "JPEG", "WEBP": engine.picture_files.FORMATS
        self._thread: threading.Thread | None = None
        self._relay.connect(self.saved, Qt.ConnectionType.QueuedConnection)

    def write(self, event: Finished, folder: Path) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="diffusiondesk-output-writer", daemon=True
            )
            self._thread.start()
        self._queue.put((event, folder, SUFFIXES.get(self.picture_format, ".png")))

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    @classmethod
    def file_name(cls, job_id: int, seed: int, suffix: str = ".png") -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return f"{stamp}-{next(cls._counter):04d}-job{job_id}-seed{seed}{suffix}"

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event, folder, suffix = item
            planned = [folder / self.file_name(event.job_id, seed, suffix) for seed in event.seeds]
            paths: list[Path] = []
            error = ""
            try:
                for image, seed, path in zip(event.images, event.seeds, planned, strict=False):
                    request = event.request.with_changes(seed=seed)
                    save_picture(image, path, request, seed, event.model_info)
                    paths.append(path)
            except Exception as exc:  # reported inline in the window
                error = save_failed_message(exc, folder)
            unsaved = tuple(planned[len(paths) :])
            self._relay.emit(SavedJob(event, tuple(paths), error, unsaved))
