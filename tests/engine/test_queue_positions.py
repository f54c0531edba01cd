"""Queue positions: every waiting job hears its new place when a job ahead starts or is
cancelled, so the window's "2 ahead" counts down."""

from __future__ import annotations

import threading
import time

from engine_helpers import WAIT, request

from engine.api import Finished, ModelLoading, Queued


def hold_first_job(engine, recorder, tiny_models) -> tuple[int, threading.Event]:
    gate = threading.Event()
    tiny_models.before_load = gate.wait
    first = engine.submit(request(steps=2))
    deadline = time.monotonic() + WAIT
    while not recorder.of(first, ModelLoading):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return first, gate


def positions(recorder, job: int) -> list[int]:
    return [e.position for e in recorder.of(job, Queued)]


def test_waiting_jobs_count_down_as_the_jobs_ahead_start(engine, recorder, tiny_models):
    first, gate = hold_first_job(engine, recorder, tiny_models)
    waiting = [engine.submit(request(steps=2)) for _ in range(3)]
    try:
        assert [positions(recorder, job) for job in waiting] == [[0], [1], [2]]
    finally:
        tiny_models.before_load = None
        gate.set()
    for job in (first, *waiting):
        assert isinstance(engine.wait(job, WAIT), Finished)
    assert positions(recorder, waiting[2]) == [2, 1, 0]
    assert positions(recorder, waiting[1]) == [1, 0]


def test_cancelling_a_queued_job_moves_the_ones_behind_it_up(engine, recorder, tiny_models):
    first, gate = hold_first_job(engine, recorder, tiny_models)
    ahead, behind = engine.submit(request(steps=2)), engine.submit(request(steps=2))
    try:
        assert engine.cancel(ahead)
        assert positions(recorder, behind) == [1, 0]
    finally:
        tiny_models.before_load = None
        gate.set()
    assert isinstance(engine.wait(behind, WAIT), Finished)
