"""ControlNet fixtures: an engine over tiny models, and tiny ControlNet folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from control_helpers import save_tiny_controlnet
from engine_helpers import Recorder, TinyModels

from engine.worker import Engine


@pytest.fixture(scope="module")
def control_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("control-models"))


@pytest.fixture
def engine(control_models: TinyModels) -> Iterator[Engine]:
    eng = Engine(control_models)
    yield eng
    eng.shutdown(10)


@pytest.fixture
def recorder(engine: Engine) -> Recorder:
    rec = Recorder()
    engine.add_listener(rec)
    return rec


@pytest.fixture(scope="module")
def controlnets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different tiny ControlNets for the tiny SD 1.x model."""
    root = tmp_path_factory.mktemp("controlnets")
    return save_tiny_controlnet(root / "cn-a", seed=1), save_tiny_controlnet(root / "cn-b", seed=2)
