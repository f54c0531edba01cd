"""The guards of a reachable server: token, body size, model names, rates, job privacy."""

from __future__ import annotations

import base64
import dataclasses
import json
import time

import pytest
import requests
from engine_helpers import WAIT, request
from PIL import Image
from remote_helpers import TOKEN

from engine.api import EngineError, ErrorKind, Failed, Finished
from engine.remote import RemoteEngine
from server.app import ServerConfig
from server.main import is_loopback, main
from server.security import TokenCheck, load_or_create_token

TIMEOUT = 60  # seconds for one HTTP request to a local test server


@pytest.fixture
def server_config() -> ServerConfig:
    return ServerConfig(token=TokenCheck.for_token(TOKEN), max_body_bytes=200_000)


def test_requests_without_the_token_or_with_a_wrong_one_are_refused(server):
    url = f"{server.url}/sdapi/v1/sd-models"
    assert requests.get(url, timeout=TIMEOUT).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert requests.get(url, headers=wrong, timeout=TIMEOUT).status_code == 401
    right = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(url, headers=right, timeout=TIMEOUT).status_code == 200
    # A1111 clients send credentials as HTTP basic auth; the token is the password.
    assert requests.get(url, auth=("any", TOKEN), timeout=TIMEOUT).status_code == 200


def test_a_remote_engine_with_a_wrong_token_fails_its_job_saying_so(server):
    engine = RemoteEngine(server.url, "wrong", connect_timeout=10, max_backoff=0.5)
    try:
        result = engine.generate(request(), WAIT)
    finally:
        engine.shutdown(10)
    assert isinstance(result, Failed) and result.error == ErrorKind.CONNECTION
    assert "token" in result.message


def test_a_remote_engine_with_the_token_runs_its_job(server):
    engine = RemoteEngine(server.url, TOKEN, connect_timeout=10)
    try:
        assert isinstance(engine.generate(request(steps=2), WAIT), Finished)
    finally:
        engine.shutdown(10)


def test_an_oversized_upload_is_refused_before_it_is_read(server):
    big = {"prompt": "a", "init_images": ["A" * 300_000]}
    response = requests.post(
        f"{server.url}/sdapi/v1/img2img",
        data=json.dumps(big),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_an_oversized_stream_message_fails_that_job_and_the_client_reconnects(server):
    engine = RemoteEngine(server.url, TOKEN, connect_timeout=10)
    try:
        assert engine.wait_connected(WAIT)
        noise = Image.effect_noise((512, 512), 100).convert("RGB")
        result = engine.generate(request(width=512, height=512, init_image=noise), WAIT)
        assert isinstance(result, Failed) and result.error == ErrorKind.CONNECTION
        assert "size limit" in result.message
        assert isinstance(engine.generate(request(steps=2), WAIT), Finished)
    finally:
        engine.shutdown(10)


def test_the_token_digest_is_stored_and_the_token_shown_only_when_new(tmp_path):
    path = tmp_path / "token.sha256"
    check, token = load_or_create_token(path)
    assert token and token not in path.read_text() and check.check(token)
    again, shown = load_or_create_token(path)
    assert shown is None and again.check(token) and not again.check(token + "x")
    assert path.stat().st_mode & 0o077 == 0


def test_binding_beyond_loopback_is_recognised():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--port", "70000"], "--port"),
        (["--tls-cert", "/nonexistent.pem"], "go together"),
        (["--models", "/nonexistent-folder"], "not a folder"),
        (["--ray", "--replicas", "0"], "--replicas"),
    ],
)
def test_bad_server_arguments_exit_with_one_sentence(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_client_cannot_cancel_or_resume_from_another_clients_job(hub):
    events: list = []
    public = hub.submit(request(steps=2), "client-a", lambda p, e: events.append(e))
    assert not hub.cancel(public, "client-b")
    with pytest.raises(ValueError, match="no job"):
        hub.internal_of(public, "client-b")
    assert hub.internal_of(public, "client-a") > 0
    deadline = time.monotonic() + WAIT
    while not any(isinstance(e, Finished) for e in events) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(public) >= 20  # unguessable: 128 random bits


def test_png_info_refuses_a_picture_that_is_not_one(server):
    response = requests.post(
        f"{server.url}/sdapi/v1/png-info",
        json={"image": base64.b64encode(b"GIF89a-not-really").decode()},
        auth=("", TOKEN),
        timeout=TIMEOUT,
    )
    assert response.status_code == 422 and "picture" in response.json()["detail"]


def test_a_web_page_of_another_site_cannot_use_the_server(server):
    url = f"{server.url}/sdapi/v1/sd-models"
    evil = {"Origin": "https://evil.example", "Authorization": f"Bearer {TOKEN}"}
    assert requests.get(url, headers=evil, timeout=TIMEOUT).status_code == 403
    own = {"Origin": server.url, "Authorization": f"Bearer {TOKEN}"}
    assert requests.get(url, headers=own, timeout=TIMEOUT).status_code == 200


def test_a_web_page_of_another_site_cannot_open_the_stream(server):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = server.url.replace("http://", "ws://") + "/v1/stream"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        pytest.raises(InvalidStatus),
        connect(url, origin="https://evil.example", additional_headers=auth, proxy=None),
    ):  # type: ignore[arg-type]
        pass
    with connect(url, additional_headers=auth, proxy=None) as ws:
        ws.send(json.dumps({"op": "hello", "protocol": 1}))
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "hello"


def test_folders_and_vae_paths_from_a_client_are_replaced_or_refused(hub, local_engine):
    seen: list = []
    local_engine.add_listener(seen.append)
    mine: list = []
    evil = request(steps=2, model_folders=("/",))
    public = hub.submit(evil, "client", lambda p, e: mine.append(e))
    deadline = time.monotonic() + WAIT
    while not any(isinstance(e, Finished) for e in mine) and time.monotonic() < deadline:
        time.sleep(0.02)
    internal = hub.internal_of(public, "client")
    ran = next(e for e in seen if isinstance(e, Finished) and e.job_id == internal)
    assert ran.request.model_folders != ("/",)  # the engine saw the server's folders
    assert next(e for e in mine if isinstance(e, Finished)).request.model_folders == ("/",)
    with pytest.raises(EngineError, match="is a path"):
        hub.submit(request(vae="/etc/passwd"), "client", lambda p, e: None)
    with pytest.raises(EngineError, match="no vae called"):
        hub.submit(request(vae="missing.safetensors"), "client", lambda p, e: None)
    with pytest.raises(EngineError, match="is a path"):
        hub.submit(request(model_files=("/etc/passwd",)), "client", lambda p, e: None)
    with pytest.raises(EngineError, match="no text encoder or VAE called"):
        hub.submit(request(model_files=("t5.safetensors",)), "client", lambda p, e: None)


def test_lora_controlnet_and_upscaler_paths_from_a_client_are_refused(hub):
    from engine.api import ControlUnit, HiresFix, RegionPrompt, Upscale

    def refused(words: str, **changes) -> None:
        with pytest.raises(EngineError, match=words):
            hub.submit(request(**changes), "client", lambda p, e: None)

    refused("LoRA '/etc/secret' is a path", prompt="a cat <lora:/etc/secret:0.8>")
    refused("is a path", negative_prompt="<lora:../../x:1>")
    mask = Image.new("L", (32, 32), 255)
    refused("is a path", regions=(RegionPrompt("<lora:~/x:1>", mask),))
    unit = ControlUnit("/srv/other/controlnet.safetensors", Image.new("RGB", (32, 32)))
    refused("controlnet '/srv/other/controlnet.safetensors' is a path", controls=(unit,))
    refused("no controlnet called", controls=(dataclasses.replace(unit, model="canny"),))
    refused("upscaler '/tmp/x.pth' is a path", hires=HiresFix(upscaler="/tmp/x.pth"))
    refused(
        "no upscaler called", init_image=Image.new("RGB", (32, 32)), upscale=Upscale(upscaler="4x")
    )
