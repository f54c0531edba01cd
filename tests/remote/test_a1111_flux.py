"""FLUX.1's guidance through the A1111-compatible API as Forge's API names it: for FLUX.1
dev, distilled_cfg_scale is the guidance the model takes in and cfg_scale the true CFG
scale beside it (1: off); both written into the PNG as Forge writes them and read back.
Models without distilled guidance keep A1111's cfg_scale and ignore the Forge field."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from engine_helpers import WAIT
from PIL import Image
from tiny_flow_models import save_flow_model

from engine import metadata
from engine.api import Finished, GenerationRequest
from engine.models import ModelManager
from engine.worker import Engine
from server.a1111 import _requests_of
from server.app import ServerConfig, create_app
from server.catalog import ModelCatalog
from server.hub import JobHub
from server.running import BackgroundServer


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> ModelCatalog:
    root = tmp_path_factory.mktemp("a1111-flux")
    fixed = {
        f"flux-{v}": str(save_flow_model(root / f"flux-{v}", "flux1", v))
        for v in ("dev", "schnell")
    }
    return ModelCatalog(include_starter=False, fixed=fixed)


def _request(body: dict, model: str, catalog: ModelCatalog) -> GenerationRequest:
    (request,) = _requests_of({"prompt": "a", **body}, model, False, catalog)
    return request


def test_flux_dev_takes_distilled_cfg_scale_as_guidance_and_cfg_scale_as_true_cfg(
    catalog: ModelCatalog,
) -> None:
    request = _request({"cfg_scale": 2.0, "distilled_cfg_scale": 4.5}, "flux-dev", catalog)
    assert (request.guidance_scale, request.true_cfg_scale) == (4.5, 2.0)
    # Left out: FLUX.1 dev's own guidance, and true CFG off (Forge's defaults for FLUX).
    request = _request({}, "flux-dev", catalog)
    assert (request.guidance_scale, request.true_cfg_scale) == (3.5, 1.0)


def test_models_without_distilled_guidance_keep_a1111s_cfg_scale(catalog: ModelCatalog) -> None:
    body = {"cfg_scale": 6.0, "distilled_cfg_scale": 4.5}
    for model in ("flux-schnell", "a model this server does not have"):
        request = _request(body, model, catalog)
        assert (request.guidance_scale, request.true_cfg_scale) == (6.0, 1.0)
    (request,) = _requests_of({"prompt": "a", **body}, "flux-dev", False)  # no catalog
    assert request.guidance_scale == 6.0


def test_a_distilled_cfg_scale_that_is_no_number_is_refused_in_a_sentence(
    catalog: ModelCatalog,
) -> None:
    from server.a1111 import A1111Error

    with pytest.raises(A1111Error, match="distilled_cfg_scale must be a number"):
        _request({"distilled_cfg_scale": "high"}, "flux-dev", catalog)


@pytest.fixture(scope="module")
def served(catalog: ModelCatalog) -> Iterator[tuple[str, Engine]]:
    engine = Engine(ModelManager(device="cpu", dtype="float32", tiny_vae_dirs={}))
    hub = JobHub(engine, catalog, where="test-server")
    try:
        with BackgroundServer(create_app(hub, ServerConfig())) as running:
            yield f"http://{running.host}:{running.port}/sdapi/v1", engine
    finally:
        engine.shutdown(10)


def test_a_flux_dev_picture_over_the_api_is_the_engines_with_both_scales_in_its_png(
    served: tuple[str, Engine], catalog: ModelCatalog
) -> None:
    url, engine = served
    same = {"prompt": "a red circle", "negative_prompt": "a blue square", "seed": 11}
    same |= {"steps": 3, "width": 64, "height": 64}
    body = same | {"cfg_scale": 2.0, "distilled_cfg_scale": 4.5, "sampler_name": "Euler"}
    body["override_settings"] = {"sd_model_checkpoint": "flux-dev"}
    reply = requests.post(f"{url}/txt2img", json=body, timeout=WAIT)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    image = Image.open(io.BytesIO(base64.b64decode(result["images"][0])))
    local = engine.generate(
        GenerationRequest(
            **same,  # type: ignore[arg-type]
            guidance_scale=4.5,
            true_cfg_scale=2.0,
            scheduler="Euler",
            model=catalog.resolve("flux-dev"),
        ),
        WAIT,
    )
    assert isinstance(local, Finished), local
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), np.asarray(local.images[0]))
    text = image.info[metadata.A1111_KEY]
    assert "CFG scale: 2.0" in text and "Distilled CFG Scale: 4.5" in text
    info = json.loads(result["info"])
    assert (info["cfg_scale"], info["distilled_cfg_scale"]) == (2.0, 4.5)

    read = requests.post(f"{url}/png-info", json={"image": result["images"][0]}, timeout=WAIT)
    parameters = read.json()["parameters"]
    assert (parameters["CFG scale"], parameters["Distilled CFG Scale"]) == ("2.0", "4.5")
