"""ControlNets for SD 3 and FLUX.1 through diffusers' own ControlNet pipelines, with tiny
random-weight models saved as folders and loaded by the real model manager."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from control_helpers import cpu_engine, euler_request, flow_controlnet
from PIL import Image
from tiny_flow_models import save_flow_model

from engine.api import ControlUnit, ErrorKind, Failed, Finished, GenerationRequest

pytestmark = pytest.mark.slow  # a few seconds each: two families' models are built


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """family -> (model folder, a ControlNet folder made from its transformer)."""
    root = tmp_path_factory.mktemp("flow-controlnets")
    out = {}
    for family in ("sd3", "flux1"):
        folder = save_flow_model(root / family, family)
        net = flow_controlnet(folder, family)
        net.save_pretrained(root / f"cn-{family}")
        out[family] = (folder, root / f"cn-{family}")
    return out


@pytest.fixture(scope="module")
def engine():
    yield from cpu_engine()


def _request(model: Path, **changes) -> GenerationRequest:
    return euler_request(model, seed=1, **changes)


def test_sd3_zero_weight_controlnet_gives_the_same_pixels(engine, flow):
    model, net = flow["sd3"]
    plain = engine.generate(_request(model), 600)
    unit = ControlUnit(str(net), Image.new("RGB", (32, 32)), weight=0.0)
    zero = engine.generate(_request(model, controls=(unit,)), 600)
    assert isinstance(plain, Finished) and isinstance(zero, Finished), (plain, zero)
    np.testing.assert_array_equal(np.asarray(zero.images[0]), np.asarray(plain.images[0]))


def test_flux_runs_two_controlnet_units(engine, flow):
    model, net = flow["flux1"]
    units = (
        ControlUnit(str(net), Image.new("RGB", (32, 32), "white"), weight=0.7),
        ControlUnit(str(net), Image.new("RGB", (32, 32)), weight=0.3, preprocessor="canny"),
    )
    result = engine.generate(_request(model, controls=units), 600)
    assert isinstance(result, Finished), result
    assert result.images[0].size == (32, 32)


def test_sd3_controlnets_refuse_image_to_image_in_words(engine, flow):
    model, net = flow["sd3"]
    unit = ControlUnit(str(net), Image.new("RGB", (32, 32)))
    r = _request(model, controls=(unit,), init_image=Image.new("RGB", (32, 32)), strength=0.5)
    result = engine.generate(r, 600)
    assert isinstance(result, Failed) and result.error is ErrorKind.BAD_INPUT
    assert "text to image only" in result.message


def test_a_flux_controlnet_on_an_sd3_model_is_refused(engine, flow):
    unit = ControlUnit(str(flow["flux1"][1]), Image.new("RGB", (32, 32)))
    result = engine.generate(_request(flow["sd3"][0], controls=(unit,)), 600)
    assert isinstance(result, Failed) and result.error is ErrorKind.BAD_INPUT
    assert "FluxControlNetModel" in result.message


@pytest.mark.parametrize("carried", ["unit", "region"])
def test_an_sd3_expansion_refuses_units_and_regions_in_one_sentence(engine, flow, carried):
    from engine.api import Expand, RegionPrompt

    model, net = flow["sd3"]
    extra = (
        {"controls": (ControlUnit(str(net), Image.new("RGB", (32, 32))),)}
        if carried == "unit"
        else {"regions": (RegionPrompt("a cat", Image.new("L", (32, 32), 255)),)}
    )
    r = _request(model, init_image=Image.new("RGB", (32, 32)), expand=Expand(left=16),
                 width=48, strength=1.0, **extra)  # fmt: skip
    result = engine.generate(r, 600)
    assert isinstance(result, Failed) and result.error is ErrorKind.BAD_INPUT, result
    words = "text to image only" if carried == "unit" else "Regional prompts work with"
    assert words in result.message and result.message.count(". ") == 0
