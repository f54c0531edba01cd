"""Engine fixtures: tiny random-weight models served by a stand-in model manager."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_helpers import Recorder, TinyModels

from engine.worker import Engine


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def engine(tiny_models: TinyModels) -> Iterator[Engine]:
    tiny_models.before_load = None
    eng = Engine(tiny_models)
    yield eng
    eng.shutdown(10)
    assert not eng._thread.is_alive()


@pytest.fixture
def recorder(engine: Engine) -> Recorder:
    rec = Recorder()
    engine.add_listener(rec)
    return rec
