"""The flow families' image-to-image and inpaint pipelines noise the picture with
scale_noise, which only FlowMatchEuler has: the other samplers they offer (DPM++ 2M,
UniPC in flow sigmas) get one computing the same, and Z-Image's list of sigmas reaches
them as an array. Every offered sampler runs every mode of every family."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from engine_helpers import WAIT, box_mask, picture
from flow_canvas_helpers import FLOW_MODELS, flow_request, module_engine, serve_flow

from engine.api import Finished, Mode, SchedulerName
from engine.schedulers import make_scheduler
from engine.worker import Engine

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engine(tiny_models) -> Iterator[Engine]:
    yield from module_engine(tiny_models)


SHIFTED = {"shift": 3.0, "use_dynamic_shifting": False}


@pytest.mark.parametrize("name", [SchedulerName.DPMPP_2M, SchedulerName.UNIPC])
def test_a_flow_solvers_scale_noise_is_the_flow_forward_process_at_its_sigma(name):
    solver = make_scheduler(name.value, SHIFTED, flow=True)
    solver.set_timesteps(4)
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    for index in (1, 2):
        solver._begin_index = index  # as the pipelines' set_begin_index does
        got = solver.scale_noise(x0, solver.timesteps[index].reshape(1), noise)
        sigma = float(solver.sigmas[index])
        assert 0 < sigma < 1
        torch.testing.assert_close(got, (1 - sigma) * x0 + sigma * noise)


def test_unipc_takes_z_images_list_of_sigmas_as_flow_match_euler_does():
    euler = make_scheduler(SchedulerName.EULER.value, SHIFTED, flow=True)
    unipc = make_scheduler(SchedulerName.UNIPC.value, SHIFTED, flow=True)
    sigmas = [1.0, 0.75, 0.5, 0.25]
    euler.set_timesteps(sigmas=sigmas)
    unipc.set_timesteps(sigmas=sigmas)
    torch.testing.assert_close(unipc.sigmas[:4], euler.sigmas[:4])


CASES = [
    (model, sampler, mode)
    for model in FLOW_MODELS
    for sampler in model.profile.samplers_for(model.variant)
    for mode in model.modes
    if mode is not Mode.TXT2IMG and sampler is not SchedulerName.SCM
]


@pytest.mark.slow  # forty tiny runs
@pytest.mark.parametrize(("model", "sampler", "mode"), CASES, ids=str)
def test_every_offered_sampler_runs_image_to_image_and_inpaint(engine, tiny_models, model,
                                                               sampler, mode):  # fmt: skip
    serve_flow(tiny_models)
    changes: dict[str, object] = {"init_image": picture((64, 64)), "strength": 0.8}
    if mode is Mode.INPAINT:
        changes["mask"] = box_mask((64, 64), (16, 16, 48, 48))
    result = engine.generate(flow_request(model, scheduler=sampler.value, **changes), WAIT)
    assert isinstance(result, Finished), result


def test_euler_a_on_a_flow_model_gives_one_picture_per_seed(engine, tiny_models):
    serve_flow(tiny_models)
    flux = next(m for m in FLOW_MODELS if m.name == "flux-dev")
    r = flow_request(flux, scheduler=SchedulerName.EULER_A.value, seed=8)
    first, again = engine.generate(r, WAIT), engine.generate(r, WAIT)
    other = engine.generate(r.with_changes(seed=9), WAIT)
    for result in (first, again, other):
        assert isinstance(result, Finished), result
    same = np.asarray(first.images[0])
    assert np.array_equal(np.asarray(again.images[0]), same)
    assert not np.array_equal(np.asarray(other.images[0]), same)
