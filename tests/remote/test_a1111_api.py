"""The A1111-compatible /sdapi/v1 routes, driven by the `webuiapi` package (a client no
one here wrote) against a server on 127.0.0.1 with tiny random models."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import requests
import webuiapi
from engine_helpers import TINY_INPAINT, WAIT, box_mask, picture, request

from engine import metadata
from engine.api import Finished

TIMEOUT = 60


@pytest.fixture
def api(server) -> webuiapi.WebUIApi:
    client = webuiapi.WebUIApi(host=server.host, port=server.port, steps=3)
    client.util_set_model("tiny")
    return client


def test_txt2img_makes_the_same_picture_as_the_engine_with_its_parameters(api, local_engine):
    result = api.txt2img(
        prompt="a red circle", width=32, height=32, seed=1, cfg_scale=3.0, sampler_name="Euler a"
    )
    local = local_engine.generate(request(scheduler="Euler a", seed=1), WAIT)
    assert isinstance(local, Finished)
    assert len(result.images) == 1 and result.images[0].size == (32, 32)
    assert np.array_equal(np.asarray(result.images[0].convert("RGB")), np.asarray(local.images[0]))
    assert result.info["all_seeds"] == [1] and result.info["sd_model_name"] == "tiny"
    assert "Steps: 3" in result.images[0].info[metadata.A1111_KEY]


def test_txt2img_runs_n_iter_batches_with_consecutive_seeds(api):
    result = api.txt2img(prompt="a", width=32, height=32, seed=10, batch_size=2, n_iter=2)
    assert len(result.images) == 4 and result.info["all_seeds"] == [10, 11, 12, 13]


def test_img2img_with_a_mask_repaints_only_the_masked_part(api):
    api.util_set_model(TINY_INPAINT)
    result = api.img2img(
        images=[picture()],
        mask_image=box_mask(),
        mask_blur=0,
        inpaint_full_res=False,
        denoising_strength=0.9,
        prompt="a yellow star",
        width=32,
        height=32,
        seed=2,
    )
    out = np.asarray(result.images[0].convert("RGB"))
    keep = np.asarray(box_mask()) == 0
    assert np.array_equal(out[keep], np.asarray(picture())[keep])
    assert not np.array_equal(out[~keep], np.asarray(picture())[~keep])


def test_progress_shows_the_current_preview_and_interrupt_stops_the_run(api):
    outcome: dict = {}

    def run() -> None:
        outcome["result"] = api.txt2img(prompt="a", width=64, height=64, steps=400, seed=1)

    thread = threading.Thread(target=run)
    thread.start()
    progress: dict = {}
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        progress = api.get_progress()
        if progress["current_image"] and progress["state"]["sampling_step"] > 0:
            break
        time.sleep(0.05)
    api.interrupt()
    thread.join(WAIT)
    assert progress["current_image"] and 0 < progress["progress"] < 1
    assert progress["state"]["sampling_steps"] == 400
    result = outcome["result"]
    assert result.info["interrupted"] is True and result.images == []
    assert api.get_progress()["state"]["job_count"] == 0


def test_models_samplers_and_the_model_switch(api, server):
    assert api.util_get_model_names() == ["tiny", "tiny-inpaint"]
    assert {"Euler a", "DPM++ 2M Karras"} <= set(api.util_get_sampler_names())
    api.util_set_model("tiny-inpaint")
    assert api.util_get_current_model() == "tiny-inpaint"
    response = requests.post(
        f"{server.url}/sdapi/v1/options",
        json={"sd_model_checkpoint": "../outside.safetensors"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 404 and "tiny" in response.json()["detail"]
    assert api.util_get_current_model() == "tiny-inpaint"


def test_txt2img_with_enable_hr_runs_a_hires_fix(api):
    hires = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent (bicubic)"}
    result = api.txt2img(prompt="a", width=32, height=32, steps=2, seed=3,
                         denoising_strength=0.5, **hires)  # fmt: skip
    assert result.images[0].size == (64, 64)
    info = api.png_info(result.images[0]).info
    assert "Hires upscale: 2" in info and "Hires upscaler: Latent (bicubic)" in info


def test_png_info_reads_back_the_parameters_of_a_result(api):
    image = api.txt2img(prompt="a blue square", width=32, height=32, seed=4).images[0]
    info = api.png_info(image)
    assert "a blue square" in info.info and "Seed: 4" in info.info
    assert info.json["parameters"]["Seed"] == "4"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"restore_faces": True}, "face restoration"),
        ({"enable_hr": True, "hr_scale": 20}, "hires scale must be a number from 1 to 8"),
        ({"width": 33}, "multiple of 8"),
        ({"sampler_name": "Nonsense"}, "unknown sampler"),
        ({"override_settings": {"sd_model_checkpoint": "/etc/passwd"}}, "no model"),
        ({"override_settings": {"sd_vae": "../vae.safetensors"}}, "is a path"),
        ({"override_settings": {"CLIP_stop_at_last_layers": 0}}, "lip"),
    ],
)
def test_requests_it_cannot_honour_are_refused_with_a_sentence(api, changes, message):
    base = {"prompt": "a", "width": 32, "height": 32, "steps": 2}
    with pytest.raises(RuntimeError) as info:
        api.txt2img(**{**base, **changes})
    status, text = info.value.args
    assert 400 <= status < 500 and message in text
