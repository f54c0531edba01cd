"""Fixtures for the hostile-input battery: engines over tiny models (and over the real
model manager for files), and a CLI runner returning (exit code, stdout, its stderr lines).
Shared helpers that are not fixtures live in tests/reliability_helpers.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from engine_helpers import TINY, Recorder, TinyModels
from reliability_helpers import CLI


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny"))


class MixedModels:
    """Tiny models by name ("tiny"), and the real ModelManager for paths: the real
    loading code meets hostile files while the next job still finishes in a second."""

    device_description = "cpu (float32)"

    def __init__(self, tiny: TinyModels, allow_pickle: bool = False) -> None:
        from engine.models import ModelManager

        self.tiny = tiny
        self.real = ModelManager(device="cpu", dtype="float32", allow_pickle=allow_pickle)

    def get(self, source, progress, should_cancel, *_, **__):
        if source == TINY:
            return self.tiny.get(source, progress, should_cancel)
        return self.real.get(source, progress, should_cancel)

    def release(self) -> None:
        self.real.release()


def _engine(models: object) -> Iterator:
    from engine.worker import Engine

    eng = Engine(models)
    yield eng
    eng.shutdown(10)
    assert not eng._thread.is_alive()


@pytest.fixture
def engine(tiny_models: TinyModels) -> Iterator:
    tiny_models.before_load = None
    yield from _engine(tiny_models)
    tiny_models.before_load = None


@pytest.fixture
def real_engine(tiny_models: TinyModels) -> Iterator:
    """Paths go through the real ModelManager (pickles refused)."""
    yield from _engine(MixedModels(tiny_models))


@pytest.fixture
def pickle_engine(tiny_models: TinyModels) -> Iterator:
    """As real_engine, started with --allow-pickle."""
    yield from _engine(MixedModels(tiny_models, allow_pickle=True))


@pytest.fixture
def recorder(engine) -> Recorder:
    rec = Recorder()
    engine.add_listener(rec)
    return rec


@pytest.fixture
def cli(capsys, tiny_models: TinyModels) -> Callable:
    from engine import cli as cli_module

    def run(*args: str) -> tuple[int, str, list[str]]:
        code = cli_module.main(["generate", *args], models=tiny_models)
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.startswith(CLI)]
        assert "Traceback" not in captured.err
        return code, captured.out, lines

    return run
