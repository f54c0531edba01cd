"""Add-on fixtures: an engine over tiny models of its own (LoRA tests change weights, so
they do not share the session's tiny models), and model folders in a temporary tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_fixtures import own_models_and_engine

own_models, addon_engine = own_models_and_engine("own_models", "addon_engine")


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    """An A1111-style models folder: Lora/, VAE/ and ../embeddings."""
    root = tmp_path / "webui" / "models"
    for sub in ("Lora", "VAE"):
        (root / sub).mkdir(parents=True)
    (tmp_path / "webui" / "embeddings").mkdir()
    return root
