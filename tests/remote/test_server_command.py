"""diffusiondesk-server as a person starts it: a process on 127.0.0.1 serving the starter
model, asked for its info and a picture, then stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from engine_helpers import WAIT

from engine.api import Finished, GenerationRequest
from engine.remote import RemoteEngine

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_server_command_serves_the_starter_model_on_loopback(tmp_path):
    port = free_port()
    env = {**os.environ, "DIFFUSIONDESK_DATA": str(tmp_path), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "server.main", "--port", str(port), "--device", "cpu"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        info = None
        deadline = time.monotonic() + WAIT
        while info is None and time.monotonic() < deadline and process.poll() is None:
            try:
                info = requests.get(f"http://127.0.0.1:{port}/v1/info", timeout=10).json()
            except requests.ConnectionError:
                time.sleep(0.5)
        assert info is not None, process.stdout.read() if process.stdout else ""
        assert info["models"] == ["starter"] and info["protocol"] == 1
        engine = RemoteEngine(f"http://127.0.0.1:{port}")
        try:
            result = engine.generate(GenerationRequest(prompt="a red circle", steps=4), WAIT)
        finally:
            engine.shutdown(10)
        assert isinstance(result, Finished) and result.images[0].size == (128, 128)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
