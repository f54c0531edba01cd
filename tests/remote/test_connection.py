"""Connection loss, reconnection, slow clients and the command line's --engine."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
from engine_helpers import WAIT, request

from engine.api import Cancelled, ErrorKind, Failed, Finished, Step
from engine.cli import main as cli_main
from engine.remote import RemoteEngine, stream_url
from server.app import create_app
from server.running import BackgroundServer
from server.stream import Outbox


def test_losing_the_server_fails_the_running_job_with_the_reason_and_reconnects(hub, tiny_models):
    first = BackgroundServer(create_app(hub)).start()
    port = first.port
    engine = RemoteEngine(first.url, connect_timeout=5, max_backoff=0.2)
    statuses: list[tuple[bool, str]] = []
    engine.add_status_listener(lambda up, text: statuses.append((up, text)))
    gate = threading.Event()
    tiny_models.before_load = gate.wait
    try:
        assert engine.wait_connected(WAIT)
        job = engine.submit(request(steps=3))
        deadline = time.monotonic() + WAIT
        while engine._jobs[job].state != "sent" and time.monotonic() < deadline:
            time.sleep(0.01)
        first.stop()
        result = engine.wait(job, WAIT)
        assert isinstance(result, Failed) and result.error == ErrorKind.CONNECTION
        assert "Lost the connection" in result.message
        assert statuses and statuses[-1][0] is False
        gate.set()
        tiny_models.before_load = None
        with BackgroundServer(create_app(hub), port=port):
            assert engine.wait_connected(WAIT)
            assert isinstance(engine.generate(request(steps=2), WAIT), Finished)
        assert statuses[-1][0] is False and any(up for up, _ in statuses)
    finally:
        gate.set()
        engine.shutdown(10)


def test_a_job_submitted_with_no_server_fails_saying_it_cannot_reach_it():
    engine = RemoteEngine("http://127.0.0.1:9", connect_timeout=2, max_backoff=0.2)
    try:
        result = engine.generate(request(), WAIT)
    finally:
        engine.shutdown(10)
    assert isinstance(result, Failed) and result.error == ErrorKind.CONNECTION
    assert "Cannot reach" in result.message and "127.0.0.1:9" in result.message


def test_shutdown_ends_every_live_job_with_exactly_one_terminal_event(remote, recorder):
    jobs = [remote.submit(request(steps=200, width=64, height=64)) for _ in range(3)]
    remote.shutdown(10)
    for job in jobs:
        terminal = [e for e in recorder.of(job) if isinstance(e, Finished | Cancelled | Failed)]
        assert len(terminal) == 1


def test_a_slow_client_gets_only_the_newest_preview_of_each_job():
    async def scenario() -> list:
        outbox = Outbox(asyncio.get_running_loop())
        preview = np.zeros((2, 2, 3), np.uint8)
        outbox.push(("msg", {"type": "accepted"}))
        for step in range(1, 6):
            outbox.push(("event", ("a", Step(1, step, 5, 0.0, preview, preview))))
        outbox.push(("event", ("a", Cancelled(1, 5))))
        outbox.push(("event", ("a", Step(1, 9, 9, 0.0, preview, preview))))
        return [await outbox.get() for _ in range(4)]

    items = asyncio.run(scenario())
    steps = [
        value[1].step for kind, value in items if kind == "event" and isinstance(value[1], Step)
    ]
    assert steps == [5, 9] and isinstance(items[2][1][1], Cancelled)


def test_engine_locations_are_read_as_websocket_addresses():
    assert stream_url("http://gpu.local:7860") == "ws://gpu.local:7860/v1/stream"
    assert stream_url("https://gpu.local/dd/") == "wss://gpu.local/dd/v1/stream"
    assert stream_url("10.0.0.2:7860") == "ws://10.0.0.2:7860/v1/stream"


def test_the_command_line_generates_on_a_server_with_engine(server, tmp_path, capsys):
    out = tmp_path / "remote.png"
    argv = [
        "generate",
        "--prompt",
        "a red circle",
        "--steps",
        "2",
        "--width",
        "32",
        "--height",
        "32",
        "--model",
        "tiny",
        "--seed",
        "3",
        "--quiet",
        "--engine",
        server.url,
        "--output",
        str(out),
    ]
    assert cli_main(argv) == 0, capsys.readouterr().err
    assert out.is_file() and "seed 3" in capsys.readouterr().out


def test_the_command_line_refuses_a_bad_engine_location(capsys, tmp_path):
    argv = ["generate", "--prompt", "a", "--engine", "ftp://x", "--output", str(tmp_path / "a.png")]
    assert cli_main(argv) == 1
    assert "--engine" in capsys.readouterr().err
