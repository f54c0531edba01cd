"""Opening a Z-Image, Qwen-Image, SANA / SANA-Sprint or FLUX.2 klein diffusers folder
through the real model manager: the family and variant from the files, offline, the
preview factors (fitted for SANA's DC-AE), and a picture through the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engine_helpers import WAIT
from new_family_helpers import TINY_FAMILIES, TinyFamily, family_request
from tiny_new_families import save_tiny_family

from engine import families
from engine.api import Finished, ModelFamily, Started
from engine.models import ModelManager
from engine.worker import Engine


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("family-folders")
    return {f.name: save_tiny_family(f.name, root / f.name) for f in TINY_FAMILIES}


@pytest.mark.parametrize("family", TINY_FAMILIES, ids=lambda f: f.name)
def test_a_family_folder_loads_offline_as_its_family_and_variant(
    family: TinyFamily, folders: dict[str, Path], no_network: None
) -> None:
    manager = ModelManager(device="cpu", dtype="float32")
    stages: list[str] = []
    model = manager.get(str(folders[family.name]), lambda s, _: stages.append(s), lambda: False)
    assert (model.family, model.variant) == (family.family, family.variant)
    assert type(model.pipe).__name__ == family.profile.pipeline_name(
        family.modes[0], family.variant
    )
    assert stages[-1] == "ready"
    factors = model.latent_rgb or families.profile(model.family).latent_rgb
    channels = 4 if family.family is ModelFamily.SANA else family.profile.latent_channels
    assert len(factors[0]) == channels  # SANA's fitted on the tiny DC-AE (4 channels)
    manager.release()


def test_a_sana_sprint_folder_makes_a_picture_through_the_engine(
    folders: dict[str, Path], one_torch_thread: object
) -> None:
    sprint = next(f for f in TINY_FAMILIES if f.variant == "sprint")
    engine = Engine(ModelManager(device="cpu", dtype="float32"))
    try:
        request = family_request(sprint, model=str(folders[sprint.name]))
        events: list[object] = []
        engine.add_listener(events.append)
        result = engine.generate(request, WAIT)
        assert isinstance(result, Finished), result
        started = next(e for e in events if isinstance(e, Started))
        assert started.model_label == "SANA-Sprint"
        assert result.request.scheduler == "sCM" and len(result.step_previews) == 2
        assert np.asarray(result.images[0]).std() > 0
    finally:
        engine.shutdown(10)
