"""The Speed panel: guidance cut-off, fast decode and deep cache go into each job's request;
precision and backend are kept for the engine's next start."""

from __future__ import annotations

import pytest

from engine import validation
from guiapp import app
from guiapp.settings import AppSettings
from guiapp.widgets.speed_panel import SpeedPanel

pytestmark = pytest.mark.gui


def test_cutoff_and_fast_decode_go_into_the_request(window) -> None:
    panel = window.speed_panel
    assert window.form.build_request().guidance_cutoff == 1.0  # off
    panel.cutoff.setValue(0.4)
    panel.fast_decode.setChecked(True)
    request = window.form.build_request()
    assert request.guidance_cutoff == pytest.approx(0.4) and request.fast_decode is True
    assert window.form.values()["guidance_cutoff"] == pytest.approx(0.4)  # kept between runs


def test_deep_cache_goes_into_the_request_and_shows_off_at_one(window) -> None:
    panel = window.speed_panel
    assert window.form.build_request().deep_cache == 1 and panel.deep_cache.text() == "off"
    panel.deep_cache.setValue(3)
    assert window.form.build_request().deep_cache == 3
    panel.deep_cache.setValue(99)  # the spin box keeps to the engine's limit
    assert window.form.build_request().deep_cache == validation.MAX_DEEP_CACHE


def test_precision_and_backend_are_kept_for_the_next_start(qtbot, settings: AppSettings) -> None:
    from guiapp.state import ViewModel

    form = ViewModel()
    panel = SpeedPanel(form, settings)
    qtbot.addWidget(panel)
    assert panel.precision.currentText() == "auto" and panel.backend.currentText() == "auto"
    panel.precision.setCurrentText("float32")
    panel.backend.setCurrentText("torch")
    assert settings.engine_dtype() == "float32" and settings.engine_backend() == "torch"
    assert "next starts" in panel.note.text()
    again = SpeedPanel(ViewModel(), settings)
    qtbot.addWidget(again)
    assert again.precision.currentText() == "float32"


def test_the_window_starts_its_engine_with_the_kept_settings(monkeypatch) -> None:
    args = app.parse_args(["--backend", "openvino", "--compile"])
    assert args.dtype is None and args.backend == "openvino" and args.compile
    made = {}

    class Recording:
        def __init__(self, **kwargs: object) -> None:
            made.update(kwargs)

    import engine.worker

    monkeypatch.setattr(engine.worker, "Engine", Recording)
    app.default_engine_factory("cpu", "float32", False, "torch", True)
    assert made["dtype"] == "float32" and made["backend"] == "torch" and made["compile_unet"]
