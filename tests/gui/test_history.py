"""The history keeps every result, but step previews only for the newest few runs."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage

from engine.api import GenerationRequest
from guiapp.history import History, HistoryEntry, Run

REQUEST = GenerationRequest(prompt="x")


INPAINT = REQUEST.with_changes(
    width=8, height=8, init_image=Image.new("RGB", (8, 8)), mask=Image.new("L", (8, 8), 255)
)


def _run(job_id: int, steps: int = 5) -> Run:
    frames = tuple(np.full((8, 8, 3), i, np.uint8) for i in range(steps))
    return Run(job_id, INPAINT, frames, frames)


def _entry(run: Run | None, seed: int = 1) -> HistoryEntry:
    request = run.request if run is not None else REQUEST
    return HistoryEntry(None, QImage(8, 8, QImage.Format.Format_RGB888), request, seed, run)


def test_only_the_newest_runs_keep_their_step_previews(qtbot) -> None:
    history = History(keep_run_previews=4)
    runs = [_run(job_id) for job_id in range(1, 11)]
    for run in runs:
        history.add(_entry(run, 1))
        history.add(_entry(run, 2))  # a batch shares its run
    assert len(history.entries()) == 20, "every result stays listed"
    assert [r.job_id for r in history.runs_with_previews()] == [7, 8, 9, 10]
    assert all(not run.step_previews and not run.noisy_step_previews for run in runs[:6])
    assert runs[-1].preview(3) is not None and runs[0].preview(3) is None
    assert history.find_run(2) is runs[1], "an old run keeps its request for 'continue'"
    entries = history.entries()
    assert entries[0].request.mode == "inpaint" and entries[0].request.init_image is not None
    oldest = entries[-1].request
    assert oldest.init_image is None and oldest.mask is None, "old entries drop their pictures"
    assert (oldest.prompt, oldest.steps) == (REQUEST.prompt, REQUEST.steps)


def test_the_list_is_capped_and_the_newest_is_selected(qtbot) -> None:
    history = History(keep_entries=5)
    removed: list[HistoryEntry] = []
    history.removed.connect(removed.append)
    entries = [_entry(None, seed) for seed in range(8)]
    for entry in entries:
        history.add(entry)
    assert history.entries() == entries[::-1][:5]
    assert removed == entries[:3]
    assert history.current is entries[-1]


def test_an_unsaved_entry_is_named_as_such(qtbot) -> None:
    entry = _entry(_run(12))
    assert entry.name == "job 12 (not saved)" and entry.job_id == 12
