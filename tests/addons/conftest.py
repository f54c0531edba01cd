"""Add-on fixtures: an engine over tiny models of its own (LoRA tests change weights, so
they do not share the session's tiny models), and model folders in a temporary tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import TinyModels

from engine.worker import Engine


@pytest.fixture(scope="module")
def own_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("addon-models"))


@pytest.fixture
def addon_engine(own_models: TinyModels) -> Iterator[Engine]:
    eng = Engine(own_models)
    yield eng
    eng.shutdown(10)


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    """An A1111-style models folder: Lora/, VAE/ and ../embeddings."""
    root = tmp_path / "webui" / "models"
    for sub in ("Lora", "VAE"):
        (root / sub).mkdir(parents=True)
    (tmp_path / "webui" / "embeddings").mkdir()
    return root
