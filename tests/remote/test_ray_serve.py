"""The server on a local Ray Serve deployment: two replicas that each own a tiny-model
engine, clients on 127.0.0.1. Slow (starting Ray takes a minute here) but bounded: one
Ray instance for the module, num_cpus=1, shut down at the end."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from engine_helpers import WAIT, request
from remote_helpers import TOKEN, tiny_catalog, tiny_engine

from engine.api import Cancelled, ErrorKind, Failed, Finished, Started, Step
from engine.remote import RemoteEngine
from server.app import ServerConfig, create_app
from server.hub import JobHub
from server.running import BackgroundServer
from server.security import TokenCheck

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ray_engine() -> Iterator[object]:
    from ray import serve

    from server.ray_engine import RayEngine
    from server.ray_serve import deploy

    path = os.pathsep.join([str(TESTS.parent), str(TESTS)])
    handle = deploy(
        replicas=2,
        autoscale=False,
        engine_factory=tiny_engine,
        num_cpus=0,
        init_options={
            "num_cpus": 1,
            "_node_ip_address": "127.0.0.1",
            "runtime_env": {"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
        },
    )
    engine = RayEngine(handle)
    try:
        yield engine
    finally:
        engine.shutdown(10)
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def front(ray_engine) -> Iterator[BackgroundServer]:
    config = ServerConfig(token=TokenCheck.for_token(TOKEN), max_body_bytes=200_000)
    hub = JobHub(ray_engine, tiny_catalog(), where="front")  # type: ignore[arg-type]
    with BackgroundServer(create_app(hub, config), max_message_bytes=200_000) as server:
        yield server


@pytest.fixture
def clients(front) -> Iterator[list[RemoteEngine]]:
    engines = [RemoteEngine(front.url, TOKEN) for _ in range(4)]
    yield engines
    for engine in engines:
        engine.shutdown(10)


def events_of(engine: RemoteEngine) -> list:
    seen: list = []
    engine.add_listener(seen.append)
    return seen


def test_forty_jobs_from_four_clients_all_finish_with_previews_and_one_ending(clients):
    seen = [events_of(c) for c in clients]
    jobs = [[c.submit(request(steps=3, seed=i)) for i in range(10)] for c in clients]
    for client, ids, events in zip(clients, jobs, seen, strict=True):
        for job in ids:
            assert isinstance(client.wait(job, WAIT), Finished)
            mine = [e for e in events if e.job_id == job]
            assert any(isinstance(e, Step) for e in mine)
            assert sum(isinstance(e, Finished | Cancelled | Failed) for e in mine) == 1
            started = [e for e in mine if isinstance(e, Started)]
            assert "replica" in started[0].device and "front" in started[0].device


def test_cancel_reaches_the_replica_for_running_and_queued_jobs(clients):
    client = clients[0]
    events = events_of(client)
    running = client.submit(request(steps=400, width=64, height=64))
    queued = client.submit(request(steps=400, width=64, height=64))
    deadline = time.monotonic() + WAIT
    while not any(isinstance(e, Step) and e.job_id == running for e in events):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.cancel(queued) and client.cancel(running)
    for job in (running, queued):
        result = client.wait(job, WAIT)
        assert isinstance(result, Cancelled), result
    assert client.wait(running, 0).step < 400
    assert isinstance(client.generate(request(steps=2), WAIT), Finished)


def test_a_killed_replica_fails_its_job_clearly_and_the_deployment_recovers(clients):
    client = clients[0]
    events = events_of(client)
    job = client.submit(request(steps=400, width=64, height=64))
    deadline = time.monotonic() + WAIT
    while not any(isinstance(e, Step) and e.job_id == job for e in events):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    device = next(e.device for e in events if isinstance(e, Started) and e.job_id == job)
    replica = device.split("replica ")[1].split()[0]
    names = [a for a in ray.util.list_named_actors(all_namespaces=True) if replica in a["name"]]
    ray.kill(ray.get_actor(names[0]["name"], namespace=names[0]["namespace"]), no_restart=False)
    result = client.wait(job, WAIT)
    assert isinstance(result, Failed) and result.error == ErrorKind.CONNECTION
    assert "replica" in result.message and "submit it again" in result.message
    others = [c.submit(request(steps=2, seed=i)) for i, c in enumerate(clients)]
    for c, other in zip(clients, others, strict=True):
        assert isinstance(c.wait(other, WAIT), Finished)


def test_the_front_refuses_a_bad_token_an_oversized_upload_and_an_outside_path(front, clients):
    url = f"{front.url}/sdapi/v1/txt2img"
    assert requests.post(url, json={"prompt": "a"}, timeout=60).status_code == 401
    big = requests.post(url, data="x" * 300_000, auth=("", TOKEN), timeout=60)
    assert big.status_code == 413
    result = clients[0].generate(request(model="/etc/passwd"), WAIT)
    assert isinstance(result, Failed) and result.error == ErrorKind.MODEL
