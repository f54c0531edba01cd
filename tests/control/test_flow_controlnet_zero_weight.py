"""A FLUX.1 ControlNet at zero weight gives the picture of no ControlNet, pixel for pixel,
in text to image, image to image and inpaint, and so does an SD 3 one (text to image, the
one mode diffusers has for it) (diffusers' FluxControlNet pipelines sample
the control image's encoding from the job's generators before drawing the noise:
engine/control/same_noise.py), and the units still act at a non-zero weight."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from control_helpers import cpu_engine, euler_request, flow_controlnet
from engine_helpers import box_mask, picture
from PIL import Image
from tiny_flow_models import save_flow_model, tiny_sd3_pipeline

from engine.api import ControlUnit, Finished, GenerationRequest

pytestmark = pytest.mark.slow  # a FLUX.1 folder and its ControlNet are built and loaded

SIZE = 32


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("flux-zero")
    folder = save_flow_model(root / "flux1", "flux1")
    net = flow_controlnet(folder, "flux1")
    torch.manual_seed(0)
    with torch.no_grad():  # from_transformer zeroes the residual layers: make them act
        for layer in (
            *net.controlnet_blocks,
            *net.controlnet_single_blocks,
            net.controlnet_x_embedder,
        ):
            torch.nn.init.normal_(layer.weight, std=0.3)
    net.save_pretrained(root / "cn")
    return folder, root / "cn"


@pytest.fixture(scope="module")
def engine():
    yield from cpu_engine()


MODES = {
    "text to image": {},
    "image to image": {"init_image": picture((SIZE, SIZE)), "strength": 0.7},
    "inpaint": {
        "init_image": picture((SIZE, SIZE)),
        "mask": box_mask((SIZE, SIZE), (8, 8, 24, 24)),
        "strength": 0.9,
        "mask_blur": 0,
    },
}


def _request(model: Path, **changes) -> GenerationRequest:
    return euler_request(model, seed=4, steps=3, size=SIZE, guidance=3.5, **changes)


@pytest.mark.parametrize("mode", list(MODES))
def test_a_zero_weight_flux_controlnet_gives_the_same_pixels_as_none(engine, flux, mode):
    model, net = flux
    changes = MODES[mode]
    plain = engine.generate(_request(model, **changes), 600)
    control = Image.fromarray(np.random.default_rng(5).integers(0, 256, (SIZE, SIZE, 3), np.uint8))
    unit = ControlUnit(str(net), control, weight=0.0)
    zero = engine.generate(_request(model, controls=(unit,), **changes), 600)
    full = engine.generate(
        _request(model, controls=(unit.__class__(str(net), control),), **changes), 600
    )
    for result in (plain, zero, full):
        assert isinstance(result, Finished), result
    same = np.asarray(plain.images[0].convert("RGB"))
    np.testing.assert_array_equal(np.asarray(zero.images[0].convert("RGB")), same)
    assert not np.array_equal(np.asarray(full.images[0].convert("RGB")), same)


@pytest.fixture(scope="module")
def sd3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sd3-zero")
    folder = root / "sd3"  # two layers: SD 3 adds no residual to its last (text-only) block
    tiny_sd3_pipeline(root / "build", layers=2).save_pretrained(folder)
    net = flow_controlnet(folder, "sd3")
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in (*net.controlnet_blocks, net.pos_embed_input.proj):
            torch.nn.init.normal_(layer.weight, std=0.3)
    net.save_pretrained(root / "cn")
    return folder, root / "cn"


def test_a_zero_weight_sd3_controlnet_gives_the_same_pixels_as_none(engine, sd3):
    model, net = sd3
    control = Image.fromarray(np.random.default_rng(5).integers(0, 256, (SIZE, SIZE, 3), np.uint8))
    plain = engine.generate(_request(model, guidance_scale=4.0), 600)
    zero = engine.generate(
        _request(model, guidance_scale=4.0, controls=(ControlUnit(str(net), control, weight=0.0),)),
        600,
    )
    full = engine.generate(
        _request(model, guidance_scale=4.0, controls=(ControlUnit(str(net), control),)), 600
    )
    for result in (plain, zero, full):
        assert isinstance(result, Finished), result
    same = np.asarray(plain.images[0])
    np.testing.assert_array_equal(np.asarray(zero.images[0]), same)
    assert not np.array_equal(np.asarray(full.images[0]), same)
