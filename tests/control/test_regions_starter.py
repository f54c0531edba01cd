"""The issue's regional-prompt check on the starter model: "a red circle" in the left
half and "a blue square" in the right half land left and right in at least 80% of 50
seeded runs (engine/region_check.py judges by colour centroids; bench/regions.py prints
the rate beside the no-regions baseline)."""

from __future__ import annotations

import pytest

from engine import region_check
from engine.api import Finished
from engine.models import ModelManager
from engine.resources import starter_model_dir
from engine.worker import Engine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (starter_model_dir() / "model_index.json").exists(),
        reason="starter model weights not present",
    ),
]


def test_red_circle_left_and_blue_square_right_in_most_seeded_runs():
    engine = Engine(ModelManager(device="cpu", dtype="float32"))
    try:
        placed = []
        for seed in range(50):
            result = engine.generate(region_check.request(seed), 600)
            assert isinstance(result, Finished), result
            placed.append(region_check.placement(result.images[0]))
    finally:
        engine.shutdown()
    rate = sum(p.correct for p in placed) / len(placed)
    assert rate >= 0.8, [p for p in placed if not p.correct]
