"""`diffusiondesk --smoke-test`: prove an installed copy works, then quit.

It opens the real window with throw-away settings and output folder (the person's own are
never touched), waits for the engine to start, makes one small picture with the starter
model through the window's workspace, waits until the window saved it, and exits 0. Any
failure (the engine not starting, the job failing, no file saved, the time running out)
exits 1 with the reason. One JSON line on stdout reports how long each stage took, so
packaging checks can quote start-up times.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

from engine.api import GenerationRequest, JobState
from guiapp.jobs import Job
from guiapp.settings import AppSettings
from guiapp.window import MainWindow

if TYPE_CHECKING:
    from guiapp.app import EngineStarter

PROMPT = "a red circle on a blue background"
STEPS = 8
DEFAULT_TIMEOUT_S = 600.0


class SmokeTest(QObject):
    def __init__(self, started_at: float, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__()
        self.started_at = started_at  # time.perf_counter() when main() began
        self.timeout_s = timeout_s
        self.scratch = Path(tempfile.mkdtemp(prefix="diffusiondesk-smoke-"))
        self.settings = AppSettings(
            QSettings(str(self.scratch / "settings.ini"), QSettings.Format.IniFormat)
        )
        self.output_folder = self.scratch / "pictures"
        self.times: dict[str, float] = {}
        self.device = ""
        self.failure: str | None = None
        self._window: MainWindow | None = None
        self._deadline = QTimer(self)
        self._deadline.setSingleShot(True)
        self._deadline.timeout.connect(self._timed_out)

    def _mark(self, stage: str) -> None:
        self.times[f"{stage}_s"] = round(time.perf_counter() - self.started_at, 3)
        self.times[f"{stage}_at"] = round(time.time(), 3)  # wall clock, for outside timers

    def watch(self, window: MainWindow, starter: EngineStarter) -> None:
        """Connect to the window before it is shown and the engine starter before it starts."""
        self._window = window
        window.set_output_folder(self.output_folder)
        queued = Qt.ConnectionType.QueuedConnection
        starter.failed.connect(self._fail, queued)
        window.bridge.engineAttached.connect(self._engine_ready)
        window.workspace.jobs.ended.connect(self._job_ended)
        QTimer.singleShot(0, self._shown)
        self._deadline.start(int(self.timeout_s * 1000))

    def _shown(self) -> None:
        if self._window is None or not self._window.isVisible():
            self._fail("the window did not appear")
            return
        self._mark("window_shown")

    def _engine_ready(self, device: str) -> None:
        self._mark("engine_ready")
        self.device = device
        request = GenerationRequest(prompt=PROMPT, steps=STEPS, seed=1)
        if self._window is not None and self._window.workspace.submit(request) is None:
            self._fail(f"the window refused the job: {self._window.workspace.error}")

    def _job_ended(self, job: Job) -> None:
        """A job ends once its picture is saved, or when it failed or was cancelled."""
        if job.state == JobState.FINISHED:
            self._mark("picture_done")
            self._quit()
        elif job.failure is not None:
            self._fail(f"the job failed: {job.failure.message}")
        else:
            self._fail(f"the job ended {job.state}")

    def _timed_out(self) -> None:
        self._fail(f"timed out after {self.timeout_s:.0f} s")

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self._quit()

    def _quit(self) -> None:
        self._deadline.stop()
        # close() waits for the window's writer (already done when the job ended)
        if self._window is not None:
            self._window.close()
        QApplication.quit()

    def report(self, exit_code: int) -> int:
        """Print the JSON line and return the process's exit code."""
        saved = sorted(p.name for p in self.output_folder.glob("*.png"))
        if self.failure is None and not saved:
            self.failure = "the window saved no picture"
        if self.failure is None and exit_code != 0:
            self.failure = f"the event loop ended with code {exit_code}"
        result = {
            "smoke_test": "failed" if self.failure else "passed",
            **({"reason": self.failure} if self.failure else {}),
            "device": self.device,
            "saved": saved,
            **self.times,
        }
        print(json.dumps(result), flush=True)
        if self.failure:
            print(f"Smoke test failed: {self.failure}", file=sys.stderr, flush=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        return 1 if self.failure else 0
