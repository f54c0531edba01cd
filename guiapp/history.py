"""The results of this session: every finished image (and pictures opened with
parameters), newest first, with the step-by-step previews of the newest few runs.

A run's previews (one picture per step, for the scrubber and "continue from here")
and the pictures its request started from are the biggest things a result carries;
only the newest KEEP_RUN_PREVIEWS runs keep them (older entries keep their parameters),
and only the newest KEEP_ENTRIES entries stay listed (the files stay on disk), so
memory stays flat over hours of use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from engine.api import GenerationRequest
from engine.control.metadata import UnitSetting

KEEP_RUN_PREVIEWS = 4
KEEP_ENTRIES = 200


@dataclass(eq=False)
class Run:
    """One job's denoising trajectory, shared by the entries of its batch."""

    job_id: int
    request: GenerationRequest
    step_previews: tuple[np.ndarray, ...] = field(default=(), repr=False)
    noisy_step_previews: tuple[np.ndarray, ...] = field(default=(), repr=False)

    def preview(self, step: int, noisy: bool = False) -> np.ndarray | None:
        """The preview after `step` steps (1-based), or None if not kept."""
        frames = (
            self.noisy_step_previews if noisy and self.noisy_step_previews else self.step_previews
        )
        if not 1 <= step <= len(frames):
            return None
        return frames[step - 1]

    def forget_previews(self) -> None:
        self.step_previews = self.noisy_step_previews = ()
        self.request = _without_pictures(self.request)


def _without_pictures(request: GenerationRequest) -> GenerationRequest:
    if request.init_image is None and request.mask is None:
        return request
    return request.with_changes(init_image=None, mask=None)


@dataclass(eq=False)
class HistoryEntry:
    path: Path | None  # None: the image could not be saved (Save as can still write it)
    image: QImage
    request: GenerationRequest | None  # None: a PNG without parameters
    seed: int | None = None
    run: Run | None = None
    where: str = ""  # the engine that made it: "cpu (float32)", "… on gpu-box", a replica
    # ControlNet units a dropped picture's text names (without their images); a result of
    # this session has them, images included, in its request.
    units: tuple[UnitSetting, ...] = ()

    @property
    def job_id(self) -> int | None:
        return self.run.job_id if self.run is not None else None

    @property
    def name(self) -> str:
        if self.path is not None:
            return self.path.name
        return f"job {self.job_id} (not saved)" if self.run is not None else "(not saved)"


class History(QObject):
    """Entries newest first, and the one selected."""

    added = Signal(object)  # HistoryEntry
    removed = Signal(object)  # HistoryEntry (dropped as the list grew)
    currentChanged = Signal(object)  # HistoryEntry or None

    def __init__(
        self,
        keep_run_previews: int = KEEP_RUN_PREVIEWS,
        keep_entries: int = KEEP_ENTRIES,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._entries: list[HistoryEntry] = []
        self._runs: list[Run] = []
        self._current: HistoryEntry | None = None
        self._keep_run_previews = keep_run_previews
        self._keep_entries = keep_entries

    def entries(self) -> list[HistoryEntry]:
        return list(self._entries)

    def runs_with_previews(self) -> list[Run]:
        """The runs that still keep their step previews, oldest first."""
        return [run for run in self._runs if run.step_previews]

    @property
    def current(self) -> HistoryEntry | None:
        return self._current

    def select(self, entry: HistoryEntry | None) -> None:
        if entry is not self._current:
            self._current = entry
            self.currentChanged.emit(entry)

    def find_run(self, job_id: int) -> Run | None:
        for entry in self._entries:
            if entry.run is not None and entry.run.job_id == job_id:
                return entry.run
        return None

    def add(self, entry: HistoryEntry, select: bool = True) -> None:
        self._entries.insert(0, entry)
        if entry.run is not None and entry.run not in self._runs:
            self._runs.append(entry.run)
            old = self._runs[: -self._keep_run_previews]
            for run in old:
                run.forget_previews()
            self._runs = self._runs[len(old) :]
            for kept in self._entries:
                if kept.run in old and kept.request is not None:
                    kept.request = _without_pictures(kept.request)
        self.added.emit(entry)
        if select:
            self.select(entry)
        while len(self._entries) > self._keep_entries:
            dropped = self._entries.pop()
            if dropped is self._current:
                self.select(None)
            self.removed.emit(dropped)
