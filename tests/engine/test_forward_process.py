"""The forward process, visible: x_t from the model's own schedule equals diffusers'
scheduler.add_noise, one seed gives one noise, and "denoise from here" runs the reverse
process from exactly that latent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_helpers import WAIT, picture, request

from engine import forward
from engine.api import Failed, Finished, ForwardProcess, SchedulerName, Started, Step
from engine.schedulers import make_scheduler

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", [SchedulerName.DDIM, SchedulerName.DDPM, SchedulerName.EULER])
@pytest.mark.parametrize("level", [1, 4, 10])
def test_the_noised_latent_matches_the_schedulers_own_add_noise(tiny_models, name, level):
    model = tiny_models.get("tiny", lambda *_: None, lambda: False)
    scheduler = make_scheduler(name, model.pipe.scheduler.config)
    scheduler.set_timesteps(10)
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    noise = forward.seeded_noise((1, 4, 8, 8), 5)
    state = forward.noise_to(scheduler, x0, noise, level)
    t = scheduler.timesteps[state.index]
    expected = scheduler.add_noise(x0, noise, t.reshape(1))
    torch.testing.assert_close(state.pipeline, expected, rtol=1e-5, atol=1e-5)
    a = float(model.pipe.scheduler.alphas_cumprod[int(round(float(t)))])
    if name is not SchedulerName.EULER:
        assert state.alpha_bar == pytest.approx(a)
    torch.testing.assert_close(
        state.vp, state.alpha_bar**0.5 * x0 + (1 - state.alpha_bar) ** 0.5 * noise
    )


def test_level_zero_is_the_picture_and_the_same_seed_gives_the_same_noise():
    assert torch.equal(forward.seeded_noise((1, 4, 4, 4), 9), forward.seeded_noise((1, 4, 4, 4), 9))
    assert not torch.equal(
        forward.seeded_noise((1, 4, 4, 4), 9), forward.seeded_noise((1, 4, 4, 4), 10)
    )


def test_a_forward_job_shows_the_noised_picture_and_one_seed_shows_the_same(engine):
    image = picture((32, 32))
    r = request(init_image=image, forward=ForwardProcess(level=2), steps=4, seed=7)
    first, again = engine.generate(r, WAIT), engine.generate(r, WAIT)
    other = engine.generate(r.with_changes(seed=8), WAIT)
    clean = engine.generate(r.with_changes(forward=ForwardProcess(level=0)), WAIT)
    for result in (first, again, other, clean):
        assert isinstance(result, Finished), result
        assert result.images[0].size == (32, 32) and not result.step_previews
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(other.images[0]))
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(clean.images[0]))
    assert first.request.forward == ForwardProcess(level=2)


def test_denoise_from_here_starts_from_exactly_the_noised_latent(engine, recorder, tiny_models):
    model = tiny_models.get("tiny", lambda *_: None, lambda: False)
    image = picture((32, 32))
    r = request(
        init_image=image,
        forward=ForwardProcess(level=3, denoise=True),
        steps=5,
        seed=11,
        scheduler=SchedulerName.DDIM.value,
        guidance_scale=1.0,
    )
    state, _ = forward.forward_latents(model, r, forward.LatentCache(), 11)
    seen: list[torch.Tensor] = []
    handle = model.pipe.unet.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].detach().clone())
    )
    try:
        job = engine.submit(r)
        result = engine.wait(job, WAIT)
    finally:
        handle.remove()
    assert isinstance(result, Finished), result
    assert len(seen) == 3  # the last three steps of five, one UNet call each
    torch.testing.assert_close(seen[0], state.pipeline, rtol=1e-5, atol=1e-5)
    assert recorder.of(job, Started)[0].total_steps == 3
    assert [s.step for s in recorder.of(job, Step)] == [1, 2, 3]
    assert len(result.step_previews) == 3


def test_a_noise_level_beyond_the_steps_is_refused_with_a_sentence(engine):
    r = request(init_image=picture(), forward=ForwardProcess(level=9), steps=4)
    failed = engine.generate(r, WAIT)
    assert isinstance(failed, Failed) and "from 0 to 4" in failed.message
    no_picture = engine.generate(request(forward=ForwardProcess(level=1)), WAIT)
    assert isinstance(no_picture, Failed) and "needs a picture" in no_picture.message


def test_a_flow_matching_model_is_refused_with_a_sentence(tiny_models):
    import dataclasses
    from types import SimpleNamespace

    from diffusers import FlowMatchEulerDiscreteScheduler

    from engine.api import EngineError

    model = tiny_models.get("tiny", lambda *_: None, lambda: False)
    flow = dataclasses.replace(
        model, pipe=SimpleNamespace(scheduler=FlowMatchEulerDiscreteScheduler())
    )
    r = request(init_image=picture(), forward=ForwardProcess(level=1))
    with pytest.raises(EngineError, match="flow matching"):
        forward.forward_latents(flow, r, forward.LatentCache(), 1)
