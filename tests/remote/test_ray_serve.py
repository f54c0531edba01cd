"""The server on a local Ray Serve deployment, deployed by the builder `serve run` uses
(server.ray_serve:build_app): two replicas that each own a tiny-model engine, clients on
127.0.0.1, and `diffusiondesk-server --ray ADDRESS` joining it. Slow (starting Ray takes
a minute here) but bounded: one Ray instance for the module, num_cpus=1, shut down at
the end."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from engine_helpers import WAIT, request
from remote_helpers import TOKEN, server_command, tiny_catalog

from engine.api import Cancelled, ErrorKind, Failed, Finished, ResumeFrom, Started, Step
from engine.remote import RemoteEngine
from server.app import ServerConfig, create_app
from server.hub import JobHub
from server.running import BackgroundServer
from server.security import TokenCheck

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent.parent
LONG = 1000  # steps: a job still running when the test acts on it (ended early by it)


@pytest.fixture(scope="module")
def ray_engine() -> Iterator[object]:
    """The application deployed as `serve run server.ray_serve:build_app ...` deploys it."""
    from ray import serve

    from server.ray_engine import RayEngine
    from server.ray_serve import APP_NAME, build_app

    path = os.pathsep.join([str(TESTS.parent), str(TESTS)])
    ray.init(
        include_dashboard=False,
        num_cpus=1,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
    )
    serve.start(proxy_location="Disabled")
    app = build_app(
        {"replicas": "2", "autoscale": "false", "cpus": "0", "engine": "remote_helpers:tiny_engine"}
    )
    handle = serve.run(app, name=APP_NAME, route_prefix=None)
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
    # Long jobs: with two replicas the second runs at once too, and a 400-step 64 px job
    # finished in under 2 s here, sometimes before the cancel reached it.
    running = client.submit(request(steps=LONG, width=128, height=128))
    queued = client.submit(request(steps=LONG, width=128, height=128))
    deadline = time.monotonic() + WAIT
    while not any(isinstance(e, Step) and e.job_id == running for e in events):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for job in (queued, running):
        ended = [e for e in events if e.job_id == job and not isinstance(e, Step | Started)]
        assert client.cancel(job), ended
    for job in (running, queued):
        result = client.wait(job, WAIT)
        assert isinstance(result, Cancelled), result
    assert client.wait(running, 0).step < LONG
    assert isinstance(client.generate(request(steps=2), WAIT), Finished)


def test_a_killed_replica_fails_its_job_clearly_and_the_deployment_recovers(clients):
    client = clients[0]
    events = events_of(client)
    job = client.submit(request(steps=LONG, width=128, height=128))
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


def test_continuing_from_a_step_runs_on_any_replica_with_the_steps_carried_along(clients):
    client = clients[0]
    events = events_of(client)
    first = client.generate(request(steps=4, seed=3), WAIT)
    assert isinstance(first, Finished)
    # At once, so the router spreads them; every replica adopts the carried steps.
    again = [
        client.submit(request(steps=4, seed=3, resume=ResumeFrom(first.job_id, 2)))
        for _ in range(4)
    ]
    results = [client.wait(job, WAIT) for job in again]
    assert all(isinstance(r, Finished) for r in results), results
    for job, result in zip(again, results, strict=True):
        # From step 3 on (the first two were carried); a client that falls behind may
        # skip a stale preview (server/stream.py), never the last one.
        steps = [e.step for e in events if isinstance(e, Step) and e.job_id == job]
        assert steps[-1:] == [4] and set(steps) <= {3, 4}, steps
        assert result.request.resume == ResumeFrom(first.job_id, 2)
        assert result.images[0].tobytes() == results[0].images[0].tobytes()
    cancelled = client.submit(request(steps=4, seed=3, resume=ResumeFrom(again[0], 2)))
    assert isinstance(client.wait(cancelled, WAIT), Finished), "a continue can be continued"


def test_continuing_a_job_whose_steps_are_gone_says_so(clients):
    result = clients[0].generate(request(steps=4, resume=ResumeFrom(10_000, 2)), WAIT)
    assert isinstance(result, Failed) and result.error == ErrorKind.BAD_INPUT


def test_the_serve_run_builder_names_a_bad_argument_in_one_sentence():
    from server.ray_serve import build_app

    for args, words in (
        ({"replica": "2"}, "unknown argument replica"),
        ({"replicas": "0"}, "replicas must be at least 1"),
        ({"gpus": "many"}, "gpus must be a number"),
        ({"autoscale": "maybe"}, "autoscale must be true or false"),
        ({"engine": "nowhere"}, "engine must look like module:function"),
        ({"engine": "nowhere:engine"}, "cannot be found"),
    ):
        with pytest.raises(ValueError, match=words):
            build_app(args)


def test_the_server_command_with_ray_serves_the_application_serve_run_started(ray_engine, tmp_path):
    """`diffusiondesk-server --ray ADDRESS` joins the cluster, finds the running
    application instead of deploying its own, and leaves it running when it stops."""
    from ray import serve

    from server.ray_serve import APP_NAME

    models = tmp_path / "models"
    (models / "tiny").mkdir(parents=True)
    (models / "tiny" / "model_index.json").write_text("{}")
    address = ray.get_runtime_context().gcs_address
    args = ["--ray", address, "--models", str(models), "--token", TOKEN, "--name", "front"]
    with server_command(args, tmp_path, TOKEN) as server:
        engine = RemoteEngine(server.url, TOKEN)
        try:
            result = engine.generate(request(steps=2), WAIT)
            assert engine.device_description.startswith("Ray Serve (the application serve run")
        finally:
            engine.shutdown(10)
        assert isinstance(result, Finished), result
    output = server.process.stdout.read() if server.process.stdout else ""
    assert "Finished server process" in output, output  # stopped cleanly on SIGTERM
    assert APP_NAME in serve.status().applications, "the application serve run started stays"
