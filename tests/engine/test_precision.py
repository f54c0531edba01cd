"""bfloat16 (the default on CPUs with bfloat16 units) against float32 on the same seed:
the same picture, closely. The tiny random models and the bundled starter model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import WAIT
from tiny_models import save_tiny_model

from engine.api import STARTER_MODEL, Finished, GenerationRequest
from engine.models import ModelManager, starter_model_dir
from engine.worker import Engine


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def pictures(model: str, request: GenerationRequest) -> dict[str, np.ndarray]:
    made = {}
    for dtype in ("float32", "bfloat16"):
        engine = Engine(ModelManager(device="cpu", dtype=dtype), backend="torch")
        try:
            result = engine.generate(request.with_changes(model=model), WAIT)
        finally:
            engine.shutdown(10)
        assert isinstance(result, Finished), result
        assert result.request.model == model
        made[dtype] = np.asarray(result.images[0])
    return made


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("precision") / "tiny")


def test_bfloat16_pictures_match_float32_on_the_tiny_model(tiny_folder):
    request = GenerationRequest(prompt="a red circle", steps=8, seed=4, width=64, height=64)
    made = pictures(str(tiny_folder), request)
    assert psnr(made["bfloat16"], made["float32"]) > 30


@pytest.mark.slow
@pytest.mark.skipif(
    not (starter_model_dir() / "model_index.json").is_file(), reason="no starter model"
)
def test_the_starter_model_keeps_its_quality_in_bfloat16():
    request = GenerationRequest(
        prompt="a large red circle in the centre on a blue background", steps=20, seed=3
    )
    made = pictures(STARTER_MODEL, request)
    assert psnr(made["bfloat16"], made["float32"]) > 40  # measured here: 52 dB
