"""Engine fixtures: tiny random-weight models served by a stand-in model manager; tiny model
folders, configs and a local hub for the model tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline
from engine_helpers import Recorder, TinyModels
from model_helpers import FakeHub
from tiny_models import save_tiny_model, tiny_sdxl_pipeline

from engine.worker import Engine


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def engine(tiny_models: TinyModels) -> Iterator[Engine]:
    tiny_models.before_load = None
    eng = Engine(tiny_models)
    yield eng
    eng.shutdown(10)
    assert not eng._thread.is_alive()


@pytest.fixture
def recorder(engine: Engine) -> Recorder:
    rec = Recorder()
    engine.add_listener(rec)
    return rec


@pytest.fixture(scope="module")
def one_torch_thread() -> object:
    """Tiny models gain nothing from threads; on a loaded machine, spinning OpenMP
    threads make them a hundred times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def tiny_inpaint_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-inpaint", inpaint_unet=True)


@pytest.fixture(scope="module")
def tiny_configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Config folders for the tiny models, in the layout of engine/model_configs/."""
    root = tmp_path_factory.mktemp("configs")
    sd = StableDiffusionPipeline.from_pretrained(save_tiny_model(root / "sd1"))
    sd.save_pretrained(root / "sd2")
    save_tiny_model(root / "sd1-inpaint", inpaint_unet=True)
    tiny_sdxl_pipeline(root / "build", single_file_layout=True).save_pretrained(root / "sdxl")
    return root


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test on any attempt to open a network connection."""
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def fake_hub(tiny_folder: Path, monkeypatch: pytest.MonkeyPatch):
    hub = FakeHub("someone/tiny-sd", tiny_folder)
    hub.point_hub_here(monkeypatch)
    yield hub
    hub.close()
