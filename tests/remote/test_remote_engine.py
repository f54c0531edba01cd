"""RemoteEngine against a real server on 127.0.0.1: the same events as the local engine."""

from __future__ import annotations

import numpy as np
from engine_helpers import TINY_INPAINT, WAIT, box_mask, picture, request

from engine.api import Cancelled, ErrorKind, Failed, Finished, Queued, ResumeFrom, Started, Step


def test_a_remote_job_streams_every_step_and_finishes_like_a_local_one(
    remote, recorder, local_engine
):
    result = remote.generate(request(steps=4), WAIT)
    local = local_engine.generate(request(steps=4), WAIT)
    assert isinstance(result, Finished) and isinstance(local, Finished)
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(local.images[0]))
    job = result.job_id
    assert len(recorder.of(job, Queued)) == 1
    started = recorder.of(job, Started)
    assert len(started) == 1 and "test-server" in started[0].device
    steps = recorder.of(job, Step)
    assert steps and steps[-1].step == 4
    assert steps[-1].preview.shape == local.step_previews[-1].shape
    assert len(result.step_previews) == 4
    assert result.request.model == "tiny" and result.seeds == local.seeds
    terminal = [e for e in recorder.of(job) if isinstance(e, Finished | Cancelled | Failed)]
    assert terminal == [result]


def test_an_inpaint_job_sends_its_pictures_and_gets_them_back_in_the_result(remote):
    req = request(model=TINY_INPAINT, init_image=picture(), mask=box_mask(), strength=0.9)
    result = remote.generate(req, WAIT)
    assert isinstance(result, Finished), result
    assert result.request.init_image is req.init_image and result.request.mask is req.mask
    outside = np.asarray(box_mask()) == 0
    assert np.array_equal(np.asarray(result.images[0])[outside], np.asarray(picture())[outside])


def test_bad_input_fails_with_its_kind_and_message(remote):
    result = remote.generate(request(width=33), WAIT)
    assert isinstance(result, Failed) and result.error == ErrorKind.BAD_INPUT
    assert "multiple of 8" in result.message


def test_a_model_the_server_does_not_offer_is_refused_with_the_names_it_has(remote):
    result = remote.generate(request(model="../../etc/passwd"), WAIT)
    assert isinstance(result, Failed) and result.error == ErrorKind.MODEL
    assert "tiny" in result.message and "/etc" not in result.message.split("called")[0]


def test_cancel_of_a_running_job_stops_it_within_a_step(remote, recorder, tiny_models):
    import threading

    gate = threading.Event()
    tiny_models.before_load = gate.wait  # hold the job in loading until cancelled
    job = remote.submit(request(steps=50))
    assert remote.cancel(job)
    gate.set()
    result = remote.wait(job, WAIT)
    assert isinstance(result, Cancelled)
    assert len(recorder.of(job, Step)) == 0


def test_cancel_while_stepping_ends_the_job_before_its_last_step(remote, recorder):
    import time

    job = remote.submit(request(steps=400, width=64, height=64))
    deadline = time.monotonic() + WAIT
    while not recorder.of(job, Step) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert remote.cancel(job)
    result = remote.wait(job, WAIT)
    assert isinstance(result, Cancelled) and 0 < result.step < 400


def test_queued_jobs_report_their_position(remote, recorder, tiny_models):
    import threading
    import time

    from engine.api import ModelLoading

    gate = threading.Event()
    tiny_models.before_load = gate.wait  # the first job holds the worker while loading
    first = remote.submit(request(steps=2))
    deadline = time.monotonic() + WAIT
    while not recorder.of(first, ModelLoading) and time.monotonic() < deadline:
        time.sleep(0.01)
    waiting = [remote.submit(request(steps=2)) for _ in range(2)]
    while len([e for j in waiting for e in recorder.of(j, Queued)]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    gate.set()
    for job in (first, *waiting):
        assert isinstance(remote.wait(job, WAIT), Finished)
    assert [recorder.of(job, Queued)[0].position for job in waiting] == [0, 1]
    # The second heard that it moved up when the first of them started.
    assert [e.position for e in recorder.of(waiting[1], Queued)] == [1, 0]


def test_continue_from_a_step_of_a_remote_job(remote, local_engine):
    first = remote.generate(request(steps=4), WAIT)
    assert isinstance(first, Finished)
    resumed = remote.generate(request(steps=4, resume=ResumeFrom(first.job_id, 2)), WAIT)
    assert isinstance(resumed, Finished), resumed
    assert resumed.request.resume == ResumeFrom(first.job_id, 2)
    local_first = local_engine.generate(request(steps=4), WAIT)
    local = local_engine.generate(request(steps=4, resume=ResumeFrom(local_first.job_id, 2)), WAIT)
    assert np.array_equal(np.asarray(resumed.images[0]), np.asarray(local.images[0]))
