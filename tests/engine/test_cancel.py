"""Cancel while queued, while loading and while running; jobs run in order."""

from __future__ import annotations

import threading

from engine_helpers import WAIT, request

from engine.api import Cancelled, Finished, Started, Step


def test_cancel_while_queued(engine, recorder, tiny_models):
    release = threading.Event()
    tiny_models.before_load = lambda: release.wait(30)
    first = engine.submit(request())
    second = engine.submit(request())
    third = engine.submit(request(seed=3))
    assert engine.cancel(second)
    cancelled = engine.wait(second, 5)  # at once, even though the worker is busy
    release.set()
    assert isinstance(cancelled, Cancelled) and cancelled.step == 0
    assert isinstance(engine.wait(first, WAIT), Finished)
    assert isinstance(engine.wait(third, WAIT), Finished)
    assert recorder.of(second, Started) == []
    assert not engine.cancel(second)  # already over
    order = [e.job_id for e in recorder.events if isinstance(e, Started)]
    assert order == [first, third]


def test_cancel_while_loading(engine, recorder, tiny_models):
    def cancel_during_load() -> None:
        engine.cancel(job)

    tiny_models.before_load = cancel_during_load
    job = engine.submit(request())
    result = engine.wait(job, WAIT)
    assert isinstance(result, Cancelled) and result.step == 0
    assert recorder.of(job, Started) == []
    tiny_models.before_load = None
    assert isinstance(engine.generate(request(), WAIT), Finished)


def test_cancel_while_running_stops_within_one_step(engine, recorder):
    def cancel_at_step_two(event) -> None:
        if isinstance(event, Step) and event.step == 2:
            engine.cancel(event.job_id)

    engine.add_listener(cancel_at_step_two)
    job = engine.submit(request(steps=20))
    result = engine.wait(job, WAIT)
    assert isinstance(result, Cancelled), result
    assert result.step == 2
    assert [s.step for s in recorder.of(job, Step)] == [1, 2]
    engine.remove_listener(cancel_at_step_two)
    assert isinstance(engine.generate(request(), WAIT), Finished)


def test_cancel_inside_a_step_interrupts_the_unet(engine, tiny_models):
    """A cancel arriving mid-step stops at the next UNet block, before the step ends."""
    job = None
    unet = tiny_models.get("tiny", lambda *_: None, lambda: False).pipe.unet
    calls = {"n": 0}

    def cancel_on_third_block(*_):
        calls["n"] += 1
        if calls["n"] == 3:
            engine.cancel(job)

    handle = unet.down_blocks[0].register_forward_hook(cancel_on_third_block)
    try:
        job = engine.submit(request(steps=20))
        result = engine.wait(job, WAIT)
    finally:
        handle.remove()
    assert isinstance(result, Cancelled), result
    assert result.step == 2  # the third UNet call is step 3's; it never completed


def test_shutdown_cancels_and_joins(tiny_models):
    from engine.worker import Engine

    release = threading.Event()
    tiny_models.before_load = lambda: release.wait(30)
    engine = Engine(tiny_models)
    running = engine.submit(request())
    waiting = engine.submit(request())
    release.set()
    engine.shutdown(30)
    tiny_models.before_load = None
    assert not engine._thread.is_alive()
    assert isinstance(engine.wait(waiting, 1), Cancelled)
    assert engine.wait(running, 1) is not None
