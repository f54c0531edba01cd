"""The window's job model: states from engine events, the running job, pruning, and a
finished job that never takes the screen from the job running after it."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt

import guiapp.output_writer
from engine.api import (
    Cancelled,
    ErrorKind,
    Failed,
    Finished,
    GenerationRequest,
    JobState,
    ModelLoading,
    Queued,
    Started,
    Step,
)
from guiapp.jobs import JobQueue

REQUEST = GenerationRequest(prompt="x", steps=4)


def _step(job_id: int, step: int, total: int = 4) -> Step:
    frame = np.full((8, 8, 3), step, np.uint8)
    return Step(job_id, step, total, 0.1 * step, frame, frame)


def _finished(job_id: int) -> Finished:
    return Finished(job_id, (Image.new("RGB", (8, 8)),), (1,), REQUEST, {"total": 0.1})


def test_a_job_goes_from_queued_through_running_to_finished_and_saved(qtbot) -> None:
    jobs = JobQueue()
    job = jobs.add(1, REQUEST)
    states: list[JobState] = []
    jobs.jobChanged.connect(lambda j: states.append(j.state))
    ended: list[int] = []
    jobs.ended.connect(lambda j: ended.append(j.id))

    jobs.handle_event(Queued(1, 2))
    assert job.status == "queued (2 ahead)"
    jobs.handle_event(ModelLoading(1, "starter", "loading unet", 0.5))
    assert jobs.running is job and job.status == "loading model"
    jobs.handle_event(Started(1, 4, "starter", "cpu", (7,)))
    jobs.handle_event(_step(1, 2))
    assert (job.step, job.total, job.seeds) == (2, 4, (7,))
    assert job.preview is not None
    jobs.handle_event(_finished(1))
    assert jobs.running is None
    assert job.state == JobState.FINISHED and job.saving and job.status == "saving"
    assert not job.ended and ended == [], "a finished job ends once its images are saved"
    jobs.mark_saved(1)
    assert job.ended and ended == [1]
    assert job.result is None and job.preview is None, "nothing big is kept after the end"
    assert states == [JobState.QUEUED, JobState.LOADING, JobState.RUNNING, JobState.FINISHED]


def test_cancelled_and_failed_jobs_end_and_release_the_running_slot(qtbot) -> None:
    jobs = JobQueue()
    first, second = jobs.add(1, REQUEST), jobs.add(2, REQUEST)
    jobs.handle_event(Started(1, 4, "starter", "cpu", (1,)))
    jobs.handle_event(Cancelled(1, 3))
    assert first.state == JobState.CANCELLED and first.step == 3 and jobs.running is None
    jobs.handle_event(Started(2, 4, "starter", "cpu", (1,)))
    jobs.handle_event(Failed(2, ErrorKind.MODEL, "no such model"))
    assert second.state == JobState.FAILED and second.failure is not None
    assert jobs.running is None and not jobs.busy()


def test_events_of_unknown_or_ended_jobs_change_nothing(qtbot) -> None:
    jobs = JobQueue()
    job = jobs.add(1, REQUEST)
    jobs.handle_event(Started(99, 4, "starter", "cpu", (1,)))
    assert jobs.running is None and jobs.find(99) is None
    jobs.handle_event(Cancelled(1, 0))
    jobs.handle_event(Started(1, 4, "starter", "cpu", (1,)))
    assert job.state == JobState.CANCELLED and jobs.running is None


def test_a_withdrawn_queued_job_ends_at_once(qtbot) -> None:
    jobs = JobQueue()
    job = jobs.add(1, REQUEST)
    ended: list[int] = []
    jobs.ended.connect(lambda j: ended.append(j.id))
    assert jobs.withdraw(1)
    assert ended == [1] and job.state == JobState.CANCELLED
    jobs.handle_event(Cancelled(1, 0))  # the engine's own word comes later
    assert ended == [1]


def test_ended_jobs_are_pruned_to_the_newest_few(qtbot) -> None:
    jobs = JobQueue(keep_ended=8)
    for job_id in range(1, 101):
        jobs.add(job_id, REQUEST)
        jobs.handle_event(Started(job_id, 4, "starter", "cpu", (1,)))
        jobs.handle_event(_step(job_id, 1))
        jobs.handle_event(_finished(job_id))
        jobs.mark_saved(job_id)
    assert [job.id for job in jobs] == list(range(93, 101))
    running = jobs.add(101, REQUEST)
    jobs.handle_event(Started(101, 4, "starter", "cpu", (1,)))
    jobs.add(102, REQUEST)
    assert len(jobs) == 10, "jobs still queued or running are never pruned"
    assert jobs.running is running and [j.id for j in jobs.waiting()] == [102]


def test_a_finished_job_does_not_take_the_screen_from_the_next_running_job(
    qtbot, window, fake_engine, monkeypatch
) -> None:
    """Job 1's save is held until job 2 runs: when it lands, job 2's preview, caption
    and progress stay; job 1 only joins the history."""
    release_save = threading.Event()
    original_save = guiapp.output_writer.save_picture  # PNG, JPEG or WebP
    saves = []

    def held_save(image, path, request, seed, *model_info) -> None:
        saves.append(path)
        if len(saves) == 1:
            release_save.wait(10)
        original_save(image, path, request, seed, *model_info)

    monkeypatch.setattr(guiapp.output_writer, "save_picture", held_save)
    ws = window.workspace
    fake_engine.gates[2] = threading.Event()
    window.form.steps = 3
    window.form.prompt = "first job"
    first = ws.generate()
    window.form.prompt = "second job"
    second = ws.generate()
    qtbot.waitUntil(lambda: ws.jobs.running is not None and ws.jobs.running.id == second)
    qtbot.waitUntil(lambda: ws.jobs.running.step == 1 and "step 1/3" in window.progress.text())
    assert ws.jobs.find(first).saving, "job 1 is still being saved"
    shown = window.canvas.shown_pixels()
    caption, progress = window.caption.text(), window.progress.text()
    assert caption.startswith(f"job #{second} ")

    release_save.set()
    qtbot.waitUntil(lambda: len(ws.history.entries()) == 1)
    qtbot.wait(50)
    assert ws.history.entries()[0].job_id == first
    assert window.caption.text() == caption
    assert window.progress.text() == progress
    assert np.array_equal(window.canvas.shown_pixels(), shown)
    assert ws.document.image is None, "job 1's picture did not replace the document"

    fake_engine.gates[2].set()
    qtbot.waitUntil(lambda: len(ws.history.entries()) == 2)
    assert window.caption.text().startswith(f"job #{second} done")
    assert "done" in window.progress.text()


def test_removing_a_queued_job_leaves_the_running_jobs_screen_alone(
    qtbot, window, fake_engine
) -> None:
    ws = window.workspace
    fake_engine.gates[1] = threading.Event()
    window.form.steps = 3
    first, second = ws.generate(), ws.generate()
    qtbot.waitUntil(lambda: ws.jobs.running is not None and ws.jobs.running.step == 1)
    qtbot.waitUntil(lambda: "step 1/3" in window.progress.text())
    caption, progress = window.caption.text(), window.progress.text()
    window.queue_view.select(second)
    qtbot.mouseClick(window.queue_view.remove_button, Qt.MouseButton.LeftButton)
    assert window.queue_view.job_ids() == [first]
    assert (window.caption.text(), window.progress.text()) == (caption, progress)
    assert window.progress.cancel_button.isEnabled()
    fake_engine.gates[1].set()
    qtbot.waitUntil(lambda: len(ws.history.entries()) == 1)
    assert ws.jobs.find(second).state == JobState.CANCELLED
