"""The window's jobs: one record per submitted request, the running job, and the one
place that reads engine events (`JobQueue.handle_event`).

A job goes QUEUED -> LOADING -> RUNNING -> FINISHED (or CANCELLED / FAILED at any
point). A finished job is "saving" until the output writer has written its images;
then it has ended. Ended jobs are pruned to the newest few, so hours of use keep
memory flat. Widgets never hold jobs: the queue view, the progress panel and the
canvas follow this model's signals.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QObject, Signal

from engine.api import (
    Cancelled,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    JobState,
    ModelLoading,
    Queued,
    Started,
    Step,
)

KEEP_ENDED = 8
"""Ended jobs kept (for "continue from" and for tests); older ones are dropped."""


@dataclass(eq=False)
class Job:
    id: int
    request: GenerationRequest
    state: JobState = JobState.QUEUED
    position: int = 0  # jobs ahead of this one while queued
    stage: str = ""  # what model loading is doing
    load_progress: float = -1.0  # 0..1, or -1 when unknown
    total: int = 0
    step: int = 0
    elapsed: float = 0.0
    seeds: tuple[int, ...] = ()
    device: str = ""
    model: str = ""
    family: str = ""  # the loaded model's family and variant, from Started
    variant: str = ""
    model_label: str = ""  # e.g. "FLUX.1 schnell"
    preview: np.ndarray | None = field(default=None, repr=False)
    noisy_preview: np.ndarray | None = field(default=None, repr=False)
    result: Finished | None = field(default=None, repr=False)  # held until it is saved
    failure: Failed | None = None

    @property
    def saving(self) -> bool:
        return self.result is not None

    @property
    def ended(self) -> bool:
        """Nothing more will happen to it (a finished job also has to be saved)."""
        return self.state.ended and not self.saving

    @property
    def status(self) -> str:
        """A few words for the queue view."""
        match self.state:
            case JobState.QUEUED:
                return f"queued ({self.position} ahead)" if self.position else "queued"
            case JobState.LOADING:
                return "loading model"
            case JobState.RUNNING if self.device:
                return f"running on {self.device}"  # e.g. "cpu (float32), replica 3f2a on gpu-7"
            case JobState.FINISHED if self.saving:
                return "saving"
            case state:
                return str(state)


class JobQueue(QObject):
    """Every job the window submitted, newest last, and which one the engine runs."""

    jobAdded = Signal(object)  # Job
    jobChanged = Signal(object)  # Job: state, position or loading stage changed
    stepped = Signal(object)  # Job: the running job has a new step and preview
    finished = Signal(object)  # Job: the engine finished it; its result waits to be saved
    ended = Signal(object)  # Job: saved, cancelled or failed
    runningChanged = Signal(object)  # Job or None

    def __init__(self, keep_ended: int = KEEP_ENDED, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: dict[int, Job] = {}
        self._running: Job | None = None
        self._keep_ended = keep_ended

    # ------------------------------------------------------------------ reading

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)

    def find(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    @property
    def running(self) -> Job | None:
        """The job the engine is loading or sampling for, if any."""
        return self._running

    def waiting(self) -> list[Job]:
        """Jobs not yet taken by the engine, oldest first."""
        return [job for job in self._jobs.values() if job.state == JobState.QUEUED]

    def busy(self) -> bool:
        """True while a job is queued, loading or running."""
        return any(not job.state.ended for job in self._jobs.values())

    def owns_screen(self, job: Job) -> bool:
        """May this job's progress, caption and picture take the screen?

        Not while another job runs: a job that ends (or finishes saving) after the next
        one has started must leave that job's canvas, caption and progress alone."""
        return self._running is None or self._running is job

    # ------------------------------------------------------------------ changing

    def add(self, job_id: int, request: GenerationRequest) -> Job:
        job = Job(job_id, request)
        self._jobs[job_id] = job
        self.jobAdded.emit(job)
        return job

    def handle_event(self, event: Event) -> None:
        """Apply one engine event to its job (events of unknown jobs are ignored)."""
        job = self._jobs.get(event.job_id)
        if job is None or job.state.ended:
            return
        match event:
            case Queued(position=position):
                if job.state == JobState.QUEUED:
                    job.position = position
                    self.jobChanged.emit(job)
            case ModelLoading(stage=stage, progress=progress):
                job.state, job.stage, job.load_progress = JobState.LOADING, stage, progress
                self._set_running(job)
                self.jobChanged.emit(job)
            case Started(total_steps=total, seeds=seeds, device=device, model=model):
                job.state, job.total, job.seeds = JobState.RUNNING, total, seeds
                job.device, job.model = device, model
                job.family, job.variant = event.family, event.variant
                job.model_label = event.model_label
                self._set_running(job)
                self.jobChanged.emit(job)
            case Step(step=step, total=total, elapsed=elapsed):
                job.step, job.total, job.elapsed = step, total, elapsed
                job.preview, job.noisy_preview = event.preview, event.noisy_preview
                self.stepped.emit(job)
            case Finished():
                job.state, job.result = JobState.FINISHED, event
                job.preview = job.noisy_preview = None
                self._release_running(job)
                self.jobChanged.emit(job)
                self.finished.emit(job)
            case Cancelled(step=step):
                job.state, job.step = JobState.CANCELLED, step
                self._end(job)
            case Failed():
                job.state, job.failure = JobState.FAILED, event
                self._end(job)

    def withdraw(self, job_id: int) -> bool:
        """A queued job the person removed: it ends now (its Cancelled event comes later)."""
        job = self._jobs.get(job_id)
        if job is None or job.state != JobState.QUEUED:
            return False
        job.state = JobState.CANCELLED
        self._end(job)
        return True

    def mark_saved(self, job_id: int) -> None:
        """The output writer is done with this job's images (saved or not)."""
        job = self._jobs.get(job_id)
        if job is not None and job.saving:
            job.result = None
            self._end(job)

    def _set_running(self, job: Job) -> None:
        if self._running is not job:
            self._running = job
            self.runningChanged.emit(job)

    def _release_running(self, job: Job) -> None:
        if self._running is job:
            self._running = None
            self.runningChanged.emit(None)

    def _end(self, job: Job) -> None:
        job.preview = job.noisy_preview = None
        self._release_running(job)
        self.ended.emit(job)
        self._prune()

    def _prune(self) -> None:
        ended = [job_id for job_id, job in self._jobs.items() if job.ended]
        for job_id in ended[: max(0, len(ended) - self._keep_ended)]:
            del self._jobs[job_id]
