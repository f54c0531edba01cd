"""Helpers for the remote tests: the test token and the tiny models' catalogue."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from engine_helpers import TINY, TINY_INPAINT, WAIT

from server.catalog import ModelCatalog

TOKEN = "test-token-that-is-long-enough"


ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    url: str
    info: dict[str, Any]
    process: subprocess.Popen[str]


@contextmanager
def server_command(
    args: list[str], data: Path, token: str | None = None
) -> Iterator[ServerProcess]:
    """`diffusiondesk-server ARGS` as a person starts it, on a free loopback port, once it
    answers /v1/info; stopped (SIGTERM) afterwards, its exit status in .process."""
    port = free_port()
    env = {**os.environ, "DIFFUSIONDESK_DATA": str(data), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "server.main", "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        info = None
        deadline = time.monotonic() + WAIT
        while info is None and time.monotonic() < deadline and process.poll() is None:
            try:
                auth = ("", token) if token else None
                info = requests.get(f"{url}/v1/info", auth=auth, timeout=10).json()
            except requests.ConnectionError:
                time.sleep(0.5)
        assert info is not None, process.stdout.read() if process.stdout else ""
        yield ServerProcess(url, info, process)
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def tiny_catalog() -> ModelCatalog:
    return ModelCatalog(include_starter=False, fixed={TINY: TINY, TINY_INPAINT: TINY_INPAINT})


def tiny_engine() -> object:
    """An engine on tiny models, built inside a Ray Serve replica's own process. A model
    folder named like a tiny model (as diffusiondesk-server's catalogue resolves "tiny"
    to a path) serves that tiny model."""
    import tempfile
    from pathlib import Path

    from engine_helpers import TinyModels

    from engine.worker import Engine

    class TinyByName(TinyModels):
        def get(self, source, progress, should_cancel, *args, **options):  # type: ignore[no-untyped-def]
            name = Path(source).name
            wanted = name if name in (TINY, TINY_INPAINT) else source
            return super().get(wanted, progress, should_cancel, *args, **options)

    return Engine(TinyByName(Path(tempfile.mkdtemp(prefix="tiny-replica-"))))
