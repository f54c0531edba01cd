"""The forward process for the flow-matching families: x_t equals the family scheduler's
own scale_noise (add_noise for SANA's DPM-Solver) on the schedule the family's pipeline
really runs at that size (FLUX's resolution-dependent mu, klein's empirical mu, packed
latents), one seed gives one noise, and "denoise from here" feeds the transformer exactly
that latent and runs only the remaining steps."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler
from engine_helpers import WAIT, picture
from flow_canvas_helpers import (
    FLOW_MODELS,
    FlowModel,
    flow_model,
    flow_request,
    module_engine,
    serve_flow,
)

from engine import flow_forward, forward
from engine.api import Failed, Finished, ForwardProcess, Started, Step
from engine.worker import Engine

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engine(tiny_models) -> Iterator[Engine]:
    yield from module_engine(tiny_models)


SIZE = (64, 64)
# SANA-Sprint's sCM sampler draws fresh noise every step: refused (a test below).
FORWARD_MODELS = [m for m in FLOW_MODELS if m.name != "sana-sprint"]
# Models with a text-to-image pipeline, which "denoise from here" runs.
DENOISE_MODELS = [m for m in FORWARD_MODELS if m.name != "flux-fill"]


@pytest.fixture(autouse=True)
def _served(tiny_models) -> None:
    serve_flow(tiny_models)


def _forward_request(model: FlowModel, level: int, *, denoise: bool = False, seed: int = 5):
    return flow_request(
        model,
        init_image=picture(SIZE),
        forward=ForwardProcess(level=level, denoise=denoise),
        steps=4,
        seed=seed,
    )


@pytest.mark.parametrize("model", FORWARD_MODELS, ids=str)
@pytest.mark.parametrize("level", [1, 3, 4])
def test_the_noised_latent_equals_the_family_schedulers_own_scale_noise(model, level):
    loaded = flow_model(model)
    r = _forward_request(model, level)
    state, scheduler = forward.forward_latents(loaded, r, forward.LatentCache(), 5)
    x0 = forward.encode(loaded, r.init_image)
    noise = forward.seeded_noise(tuple(x0.shape), 5)
    packed_x0 = flow_forward.pack(model.profile, x0, *SIZE)
    packed_noise = flow_forward.pack(model.profile, noise, *SIZE)
    t = scheduler.timesteps[state.index].reshape(1)
    if hasattr(scheduler, "scale_noise"):
        expected = scheduler.scale_noise(packed_x0, t, packed_noise)
    else:  # DPM-Solver in flow sigmas (SANA): add_noise is its forward process
        expected = scheduler.add_noise(packed_x0, packed_noise, t)
    torch.testing.assert_close(state.pipeline, expected, rtol=1e-6, atol=1e-6)
    sigma = float(scheduler.sigmas[state.index])
    assert state.sigma == pytest.approx(sigma) and 0 < sigma <= 1
    torch.testing.assert_close(state.vp, (1 - sigma) * x0 + sigma * noise, rtol=1e-5, atol=1e-5)
    # Packing is a permutation: unpacked again, the latents are the same numbers.
    torch.testing.assert_close(flow_forward.unpack(model.profile, state.pipeline, *SIZE), state.vp)


def _recording(cls: type, seen: list[torch.Tensor]) -> Any:
    original = cls.set_timesteps

    @functools.wraps(original)  # pipelines read its signature (sigmas, mu)
    def set_timesteps(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        seen.append(self.sigmas.clone())

    return set_timesteps


@pytest.mark.parametrize("model", DENOISE_MODELS, ids=str)
def test_the_forward_schedule_is_the_one_the_familys_pipeline_runs(engine, monkeypatch, model):
    seen: list[torch.Tensor] = []
    for cls in (FlowMatchEulerDiscreteScheduler, DPMSolverMultistepScheduler):
        monkeypatch.setattr(cls, "set_timesteps", _recording(cls, seen))
    r = _forward_request(model, 2)
    result = engine.generate(r.with_changes(init_image=None, forward=None), WAIT)
    assert isinstance(result, Finished), result
    assert seen, "the pipeline set no schedule"
    ran = seen[-1]
    _, scheduler = forward.forward_latents(flow_model(model), r, forward.LatentCache(), 5)
    assert torch.equal(scheduler.sigmas, ran)


@pytest.mark.parametrize("model", FORWARD_MODELS, ids=str)
def test_a_forward_job_shows_the_noised_picture_and_one_seed_shows_the_same(engine, model):
    r = _forward_request(model, 2)
    first, again = engine.generate(r, WAIT), engine.generate(r, WAIT)
    other = engine.generate(r.with_changes(seed=6), WAIT)
    for result in (first, again, other):
        assert isinstance(result, Finished), result
        assert result.images[0].size == SIZE
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(other.images[0]))
    assert 0 < first.facts["sigma"] < 1 and "t" in first.facts


def _hidden_states(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    value = kwargs.get("hidden_states", kwargs.get("x", args[0] if args else None))
    if isinstance(value, list):  # Z-Image takes one tensor per picture, with a frame axis
        value = torch.stack([v.squeeze(1) for v in value])
    assert isinstance(value, torch.Tensor)
    return value.detach().clone()


@pytest.mark.parametrize("model", DENOISE_MODELS, ids=str)
def test_denoise_from_here_starts_from_exactly_the_noised_latent(engine, recorder, model):
    loaded = flow_model(model)
    r = _forward_request(model, 2, denoise=True, seed=11)
    state, _ = forward.forward_latents(loaded, r, forward.LatentCache(), 11)
    seen: list[torch.Tensor] = []

    def record(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen.append(_hidden_states(args, kwargs))

    handle = loaded.pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        job = engine.submit(r)
        result = engine.wait(job, WAIT)
    finally:
        handle.remove()
    assert isinstance(result, Finished), result
    first = seen[0][:1]  # the conditional half where a batch doubles for guidance
    expected = state.pipeline.to(first.dtype)
    if first.shape != expected.shape:  # klein's pipeline adds no channels; others none
        expected = expected.reshape(first.shape)
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-5)
    assert recorder.of(job, Started)[0].total_steps == 2
    assert [s.step for s in recorder.of(job, Step)] == [1, 2]
    assert result.images[0].size == SIZE


def test_sana_sprint_and_flux_fill_say_what_they_cannot_do(engine):
    sprint = next(m for m in FLOW_MODELS if m.name == "sana-sprint")
    failed = engine.generate(_forward_request(sprint, 1), WAIT)
    assert isinstance(failed, Failed) and "SANA-Sprint" in failed.message
    fill = next(m for m in FLOW_MODELS if m.name == "flux-fill")
    shown = engine.generate(_forward_request(fill, 1), WAIT)
    assert isinstance(shown, Finished), shown
    refused = engine.generate(_forward_request(fill, 1, denoise=True), WAIT)
    assert isinstance(refused, Failed) and "text-to-image model" in refused.message
