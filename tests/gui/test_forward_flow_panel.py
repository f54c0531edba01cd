"""The Forward process panel with a flow-matching model (a tiny FLUX.1 folder and the real
engine): the slider shows the noised picture and says x_t = (1 - σ)·x₀ + σ·noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

WAIT_MS = 120_000


@pytest.fixture(scope="module")
def flux_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_flow_models import save_flow_model

    return save_flow_model(tmp_path_factory.mktemp("flux") / "model", "flux1")


def test_the_slider_shows_sigma_for_a_flow_model(qtbot, make_window, flux_model) -> None:
    from engine.worker import Engine

    window = make_window(Engine(device="cpu"))
    window.form.model = str(flux_model)
    window.form.steps = 4
    window.form.scheduler = "Euler"
    window.form.random_seed = False
    window.form.seed = 1
    panel = window.forward_panel
    panel.steps.setValue(4)
    rng = np.random.default_rng(0)
    panel.set_picture(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB"))
    panel.slider.setValue(2)
    qtbot.waitUntil(
        lambda: panel.job is None and panel.shown is not None and panel.shown.level == 2,
        timeout=WAIT_MS,
    )
    assert "σ = " in panel.facts.text() and "ᾱ" not in panel.facts.text()
    assert "·x₀ + " in panel.facts.text() and "t = " in panel.facts.text()
    assert not panel.view.pixmap().isNull()
