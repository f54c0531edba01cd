"""Continue a finished or cancelled job from one of its steps."""

from __future__ import annotations

import numpy as np
from engine_helpers import WAIT, box_mask, picture, request

from engine.api import ErrorKind, Failed, Finished, ResumeFrom, Step


def test_resume_with_the_same_prompt_reproduces_the_run(engine, recorder):
    source = engine.generate(request(steps=5, scheduler="Euler"), WAIT)
    assert isinstance(source, Finished), source
    resumed = engine.generate(request(resume=ResumeFrom(source.job_id, 2)), WAIT)
    assert isinstance(resumed, Finished), resumed
    assert [s.step for s in recorder.of(resumed.job_id, Step)] == [3, 4, 5]
    assert all(s.total == 5 for s in recorder.of(resumed.job_id, Step))
    assert len(resumed.step_previews) == 5
    assert resumed.request.steps == 5 and resumed.request.scheduler == "Euler"
    a = np.asarray(source.images[0]).astype(int)
    b = np.asarray(resumed.images[0]).astype(int)
    assert np.abs(a - b).max() <= 2


def test_resume_with_a_new_prompt_changes_the_rest(engine):
    source = engine.generate(request(steps=4, scheduler="DPM++ 2M"), WAIT)
    resumed = engine.generate(
        request(prompt="a blue square", seed=99, resume=ResumeFrom(source.job_id, 1)), 60
    )
    assert isinstance(resumed, Finished), resumed
    assert resumed.seeds == (99,)
    assert not np.array_equal(np.asarray(source.images[0]), np.asarray(resumed.images[0]))


def test_resume_img2img_and_inpaint(engine):
    img2img = engine.generate(request(steps=4, init_image=picture(), strength=0.75), WAIT)
    resumed = engine.generate(request(resume=ResumeFrom(img2img.job_id, 1)), WAIT)
    assert isinstance(resumed, Finished), resumed
    assert len(resumed.step_previews) == 3
    init, mask = picture(), box_mask()
    inpaint = engine.generate(request(steps=4, init_image=init, mask=mask, strength=1.0), WAIT)
    resumed = engine.generate(request(resume=ResumeFrom(inpaint.job_id, 2)), WAIT)
    assert isinstance(resumed, Finished), resumed
    out, orig = np.asarray(resumed.images[0]), np.asarray(init)
    outside = np.asarray(mask) <= 127
    np.testing.assert_array_equal(out[outside], orig[outside])


def test_resume_of_unknown_job_or_step_is_bad_input(engine):
    missing = engine.generate(request(resume=ResumeFrom(12345, 1)), WAIT)
    assert isinstance(missing, Failed) and missing.error == ErrorKind.BAD_INPUT
    source = engine.generate(request(steps=3), WAIT)
    too_far = engine.generate(request(resume=ResumeFrom(source.job_id, 7)), WAIT)
    assert isinstance(too_far, Failed) and "steps 1 to 3" in too_far.message
    last = engine.generate(request(resume=ResumeFrom(source.job_id, 3)), WAIT)
    assert isinstance(last, Failed) and "nothing is left" in last.message


def test_resume_a_cancelled_job(engine):
    def cancel_at_two(event):
        if isinstance(event, Step) and event.step == 2:
            engine.cancel(event.job_id)

    engine.add_listener(cancel_at_two)
    job = engine.submit(request(steps=6, scheduler="Euler"))
    engine.wait(job, WAIT)
    engine.remove_listener(cancel_at_two)
    resumed = engine.generate(request(resume=ResumeFrom(job, 2)), WAIT)
    assert isinstance(resumed, Finished), resumed
    assert len(resumed.step_previews) == 6
