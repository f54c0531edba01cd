"""What wait() answers and which ended jobs are forgotten, shared by every engine that
keeps job records (the local worker, the remote client and the Ray front), so that all
of them answer a pruned or unknown job the same way."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

from engine.api import Event, JobResultPruned


class WaitableJob(Protocol):
    """A job record: set `done` once `result` holds its terminal event."""

    done: threading.Event
    result: Event | None


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
