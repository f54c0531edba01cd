"""The job bookkeeping every engine that keeps job records shares (the local worker, the
remote client and the Ray front): what submit() accepts, how a job gets its terminal
event, what wait() answers and which ended jobs are forgotten, so that all of them
behave alike."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import Protocol, TypeVar

from engine.api import Event, GenerationRequest, JobResultPruned


class WaitableJob(Protocol):
    """A job record: set `done` once `result` holds its terminal event."""

    done: threading.Event
    result: Event | None


J = TypeVar("J", bound=WaitableJob)


def check_submission(request: object, closed: bool) -> None:
    """What every submit() refuses: a non-request (TypeError), or any request once the
    engine is shut down (RuntimeError)."""
    if not isinstance(request, GenerationRequest):
        raise TypeError(f"submit() takes a GenerationRequest, not {type(request).__name__}")
    if closed:
        raise RuntimeError("the engine has been shut down")


def settle(
    job: WaitableJob,
    event: Event,
    emit: Callable[[Event], None],
    lock: threading.Lock | threading.RLock,
    jobs: MutableMapping[int, J],
    kept: int,
) -> list[J]:
    """Give a job its terminal event: keep it for wait(), tell the listeners, wake wait(),
    then forget ended jobs beyond the newest `kept`; returns the forgotten ones."""
    job.result = event
    emit(event)
    job.done.set()
    with lock:
        return [jobs.pop(old) for old in ended_beyond(jobs, kept)]


def wait_for_result(
    lock: threading.Lock | threading.RLock,
    jobs: Mapping[int, WaitableJob],
    job_id: int,
    timeout: float | None,
    *,
    issued: int,
    kept: int,
) -> Event | None:
    """The job's terminal event, or None on timeout.

    Raises JobResultPruned for a job this engine issued (ids 1..issued) whose record was
    pruned, and KeyError for an id it never issued.
    """
    with lock:
        job = jobs.get(job_id)
    if job is None:
        if isinstance(job_id, int) and not isinstance(job_id, bool) and 1 <= job_id <= issued:
            raise JobResultPruned(job_id, kept)
        raise KeyError(f"no job {job_id}")
    job.done.wait(timeout)
    return job.result


def ended_beyond(jobs: Mapping[int, WaitableJob], kept: int) -> list[int]:
    """Ids of ended jobs older than the newest `kept` ended ones (call under the lock).

    `jobs` must iterate in submission order (a dict or OrderedDict filled as jobs come).
    """
    ended = [job_id for job_id, job in jobs.items() if job.done.is_set()]
    return ended[: max(0, len(ended) - kept)]
