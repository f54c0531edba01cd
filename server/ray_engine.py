"""RayEngine: the EngineLike interface over a Ray Serve deployment (server/ray_serve.py).

The server's JobHub, streaming channel and A1111 routes take it in place of a local
Engine, so a cluster behaves like one machine to every client. Each job is one streaming
call routed by its model name (multiplexing); cancel cancels that call, which reaches
the replica running it. A replica that dies mid-job ends that job as Failed(CONNECTION)
with the reason; it is not retried (a retry would repeat every step already shown).
Each finished or cancelled job's trajectory comes back with its events and the newest
few are kept here, so "continue from a step" runs on whichever replica is free.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine import wire
from engine.api import (
    TERMINAL_KINDS,
    Cancelled,
    ErrorKind,
    Event,
    Failed,
    GenerationRequest,
    Queued,
    Started,
    Step,
)
from engine.job_results import check_submission, settle, wait_for_result

log = logging.getLogger(__name__)

KEEP_RESULTS = 64
KEEP_TRAJECTORIES = 8  # as the local engine: the runs that can be continued
TRAJECTORY = "trajectory"  # the "type" of a stream item carrying a job's trajectory


@dataclass(eq=False)
class _Job:
    id: int
    request: GenerationRequest
    started: bool = False
    steps_done: int = 0
    cancel_requested: bool = False
    ended: bool = False
    stream: Any = None
    done: threading.Event = field(default_factory=threading.Event)
    result: Event | None = None


class RayEngine:
    """Implements api.EngineLike with one Ray Serve streaming call per job."""

    def __init__(self, handle: Any, description: str = "Ray Serve deployment") -> None:
        self._handle = handle
        self._description = description
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Event], None]] = []
        self._jobs: OrderedDict[int, _Job] = OrderedDict()
        self._threads: dict[int, threading.Thread] = {}
        self._trajectories: OrderedDict[int, Any] = OrderedDict()
        self._ids = itertools.count(1)
        self._issued = 0
        self._closed = False

    @property
    def device_description(self) -> str:
        return self._description

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def submit(self, request: GenerationRequest) -> int:
        with self._lock:
            check_submission(request, self._closed)
            job = _Job(next(self._ids), request)
            self._issued = job.id
            self._jobs[job.id] = job
            position = sum(1 for j in self._jobs.values() if not j.started and not j.ended) - 1
        self._emit(Queued(job.id, position))
        thread = threading.Thread(target=self._run, args=(job,), name=f"ray-job-{job.id}")
        thread.daemon = True
        with self._lock:
            self._threads[job.id] = thread
        thread.start()
        return job.id

    def cancel(self, job_id: int) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.ended:
                return False
            job.cancel_requested = True
            stream = job.stream
        if stream is not None:
            stream.cancel()
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            live = [j.id for j in self._jobs.values() if not j.ended]
        for job_id in live:
            self.cancel(job_id)
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)

    def wait(self, job_id: int, timeout: float | None = None) -> Event | None:
        return wait_for_result(
            self._lock, self._jobs, job_id, timeout, issued=self._issued, kept=KEEP_RESULTS
        )

    def generate(self, request: GenerationRequest, timeout: float | None = None) -> Event | None:
        return self.wait(self.submit(request), timeout)

    # ------------------------------------------------------------------ per-job thread

    def _source(self, job: _Job) -> Any:
        """The trajectory a continue starts from; None (and the job ended) if not kept."""
        resume = job.request.resume
        assert resume is not None
        with self._lock:
            source = self._trajectories.get(resume.job_id)
        if source is None:
            message = (
                f"Job {resume.job_id} has no stored steps to continue from (the cluster "
                f"keeps the last {KEEP_TRAJECTORIES} jobs); run it again from the start."
            )
            self._end(job, Failed(job.id, ErrorKind.BAD_INPUT, message))
        return source

    def _keep(self, job: _Job, trajectory: Any) -> None:
        with self._lock:
            self._trajectories[job.id] = trajectory
            while len(self._trajectories) > KEEP_TRAJECTORIES:
                self._trajectories.popitem(last=False)

    def _run(self, job: _Job) -> None:
        try:
            source = None
            if job.request.resume is not None:
                source = self._source(job)
                if source is None:
                    return
            data = wire.request_to_dict(job.request)
            stream = self._handle.options(
                stream=True, multiplexed_model_id=job.request.model
            ).generate.remote(data, source)
            with self._lock:
                job.stream = stream
                cancel_now = job.cancel_requested
            if cancel_now:
                stream.cancel()
            for item in stream:
                if isinstance(item, dict) and item.get("type") == TRAJECTORY:
                    self._keep(job, item.get("trajectory"))
                    continue
                event = wire.event_from_dict(item, job.id, original=job.request)
                if isinstance(event, Queued):
                    continue  # the replica's own queue; ours was reported at submit
                if isinstance(event, Started):
                    job.started = True
                    self._emit(event)
                    self._announce_positions()
                    continue
                elif isinstance(event, Step):
                    job.steps_done = event.step
                if event.kind in TERMINAL_KINDS:
                    self._end(job, event)
                    return
                self._emit(event)
            self._end(
                job,
                Failed(job.id, ErrorKind.INTERNAL, "The replica ended the job without a result."),
            )
        except Exception as exc:  # cancelled, a dead replica, a lost cluster
            if job.cancel_requested:
                self._end(job, Cancelled(job.id, job.steps_done))
            else:
                log.warning("job %d failed on the cluster: %r", job.id, exc)
                self._end(
                    job,
                    Failed(
                        job.id,
                        ErrorKind.CONNECTION,
                        "The Ray Serve replica running this job stopped "
                        f"({type(exc).__name__}); the job did not finish and was not "
                        "retried: submit it again.",
                    ),
                )
        finally:
            with self._lock:
                self._threads.pop(job.id, None)

    def _announce_positions(self) -> None:
        """A job started or ended: the jobs not yet started moved up."""
        with self._lock:
            waiting = [j.id for j in self._jobs.values() if not j.started and not j.ended]
        for position, job_id in enumerate(waiting):
            self._emit(Queued(job_id, position))

    def _emit(self, event: Event) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("an engine listener failed on %s", type(event).__name__)

    def _end(self, job: _Job, event: Event) -> None:
        with self._lock:
            if job.ended:
                return
            job.ended = True
        settle(job, event, self._emit, self._lock, self._jobs, KEEP_RESULTS)
        if not job.started:
            self._announce_positions()
