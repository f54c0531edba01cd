"""ControlNet fixtures: an engine over tiny models, and tiny ControlNet folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from control_helpers import save_tiny_controlnet
from engine_fixtures import own_models_and_engine
from engine_helpers import Recorder

from engine.worker import Engine

control_models, engine = own_models_and_engine("control_models", "engine")


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
