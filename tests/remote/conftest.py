"""Remote fixtures: a real engine on tiny models, served on 127.0.0.1 by a server thread
that stops at the end of each test, and a RemoteEngine connected to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_helpers import Recorder, TinyModels
from remote_helpers import tiny_catalog

from engine.remote import RemoteEngine
from engine.worker import Engine
from server.app import ServerConfig, create_app
from server.hub import JobHub
from server.running import BackgroundServer


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def local_engine(tiny_models: TinyModels) -> Iterator[Engine]:
    tiny_models.before_load = None
    engine = Engine(tiny_models)
    yield engine
    engine.shutdown(10)


@pytest.fixture
def hub(local_engine: Engine) -> JobHub:
    return JobHub(local_engine, tiny_catalog(), where="test-server")


@pytest.fixture
def server_config() -> ServerConfig:
    return ServerConfig()


@pytest.fixture
def server(hub: JobHub, server_config: ServerConfig) -> Iterator[BackgroundServer]:
    app = create_app(hub, server_config)
    with BackgroundServer(app, max_message_bytes=server_config.max_body_bytes) as running:
        yield running


@pytest.fixture
def remote(server: BackgroundServer) -> Iterator[RemoteEngine]:
    engine = RemoteEngine(server.url, connect_timeout=10)
    assert engine.wait_connected(30), engine.connection_error
    yield engine
    engine.shutdown(10)


@pytest.fixture
def recorder(remote: RemoteEngine) -> Recorder:
    rec = Recorder()
    remote.add_listener(rec)
    return rec
