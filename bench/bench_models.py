"""The model a benchmark runs on, handed to an Engine as already loaded: the starter model
(resources/starter-model) when it is there, else a small random-weight SD model built from
the tests' configs. Shared by bench/canvas.py and bench/engine_overhead.py."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.api import STARTER_MODEL  # noqa: E402
from engine.models import LoadedModel, ModelManager  # noqa: E402
from engine.resources import starter_model_dir  # noqa: E402

RANDOM_DEVICE = "cpu (float32)"


class FixedModels:
    """A model manager that always hands out one already loaded model."""

    def __init__(self, model: LoadedModel, description: str) -> None:
        self.model, self.device_description = model, description

    def get(self, source, progress, should_cancel, *_, **__) -> LoadedModel:
        return self.model

    def release(self) -> None:
        pass


def small_random_model() -> LoadedModel:
    from diffusers import StableDiffusionPipeline

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import tiny_components

    components = tiny_components(Path(tempfile.mkdtemp()), width=32)
    pipe = StableDiffusionPipeline(**components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel("random-small", "sd1", pipe, None, None, False, torch.device("cpu"),
                       torch.float32)  # fmt: skip


def has_starter() -> bool:
    return (starter_model_dir() / "model_index.json").is_file()


def starter_or_random(**manager_options: object) -> tuple[LoadedModel, str, str]:
    """(model, its name for the JSON, the device description)."""
    if has_starter():
        manager = ModelManager(**manager_options)  # type: ignore[arg-type]
        model = manager.get(STARTER_MODEL, lambda *_: None, lambda: False)
        return model, "starter", manager.device_description
    return small_random_model(), "random-small", RANDOM_DEVICE
