"""diffusiondesk-server as a person starts it: a process on 127.0.0.1 serving the starter
model, asked for its info and a picture, then stopped."""

from __future__ import annotations

import pytest
from engine_helpers import WAIT
from remote_helpers import server_command

from engine.api import Finished, GenerationRequest
from engine.remote import RemoteEngine

pytestmark = pytest.mark.slow


def test_the_server_command_serves_the_starter_model_on_loopback(tmp_path):
    with server_command(["--device", "cpu"], tmp_path) as server:
        assert server.info["models"] == ["starter"] and server.info["protocol"] == 1
        engine = RemoteEngine(server.url)
        try:
            result = engine.generate(GenerationRequest(prompt="a red circle", steps=4), WAIT)
        finally:
            engine.shutdown(10)
        assert isinstance(result, Finished) and result.images[0].size == (128, 128)
