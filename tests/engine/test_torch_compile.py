"""torch.compile of the UNet (opt-in): said up front, same pictures, and a compile that
fails falls back to the plain UNet with a warning instead of failing the job."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_helpers import WAIT, Recorder, request

from engine.api import Finished, ModelLoading, Started
from engine.backends import choice
from engine.worker import Engine


def run(tiny_models, job) -> tuple[Finished, Recorder]:
    engine = Engine(tiny_models, backend="torch", compile_unet=True)
    events = Recorder()
    engine.add_listener(events)
    try:
        result = engine.generate(job, WAIT)
    finally:
        engine.shutdown(10)
    assert isinstance(result, Finished), result
    return result, events


@pytest.mark.slow
def test_compiled_unet_makes_the_same_picture_and_says_its_cost_first(
    tiny_models, engine, monkeypatch
):
    # Dynamo's tracing without inductor's code generation, which takes many minutes on a
    # busy 2-core machine: the engine's part (patching, cancel, restore) is the same.
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn: compile_(fn, backend="eager"))
    reference = engine.generate(request(steps=3), WAIT)
    result, events = run(tiny_models, request(steps=3))
    stages = [e.stage for e in events.of(result.job_id, ModelLoading)]
    assert choice.COMPILE_COST in stages
    assert events.of(result.job_id, Started)[0].device.endswith(", torch.compile")
    assert choice.COMPILE_COST in result.warnings
    diff = np.abs(np.asarray(result.images[0]).astype(int) - np.asarray(reference.images[0]))
    assert diff.max() <= 3
    assert "forward" not in vars(tiny_models.get("tiny", lambda *_: None, lambda: False).pipe.unet)


def test_a_failing_compile_falls_back_to_the_plain_unet(tiny_models, monkeypatch):
    def broken(fn):
        def call(*_args, **_kwargs):
            raise RuntimeError("no C++ compiler found")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    result, _ = run(tiny_models, request(steps=2))
    assert any(
        "torch.compile failed (RuntimeError: no C++ compiler found)" in w for w in result.warnings
    )
    assert len(result.step_previews) == 2
