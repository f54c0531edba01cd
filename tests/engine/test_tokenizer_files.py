"""The T5 / Qwen / Gemma tokenizers a transformer-only model needs: fetched once (only the
tokenizer files) from the hub into the data folder, used offline ever after, and named
file by file when there is no network. The hub is a local server (HF_ENDPOINT)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from download_server import DownloadServer, Repo
from model_helpers import Recorder, never

from engine import tokenizer_files
from engine.api import EngineError, ErrorKind
from engine.models import ModelManager
from tests.tiny_flow_files import write_flow_files

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SOURCE = tokenizer_files.SOURCES["t5"]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[DownloadServer]:
    with DownloadServer() as running:
        monkeypatch.setenv("HF_ENDPOINT", running.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield running


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("DIFFUSIONDESK_DATA", str(folder))
    return folder


def _flux_without_t5_tokenizer(tmp: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """A FLUX.1 transformer file whose configs, like the shipped ones, lack the T5
    tokenizer's vocabulary; and the files the hub repository holds for it."""
    files, _ = write_flow_files(tmp, "flux1")
    tokenizer = files.config_root / "flux1" / "tokenizer_2"
    hub = {
        f"{SOURCE.subfolder}/{p.name}": p.read_bytes() for p in tokenizer.iterdir() if p.is_file()
    }
    hub["transformer/diffusion_pytorch_model.safetensors"] = b"never fetched"
    shutil.rmtree(tokenizer)
    tokenizer.mkdir()
    (tokenizer / "tokenizer_config.json").write_text('{"model_max_length": 512}')
    return files.transformer, files.config_root, hub


def test_the_t5_tokenizer_is_fetched_once_then_used_offline(
    tmp_path: Path, server: DownloadServer, data: Path
) -> None:
    transformer, configs, hub = _flux_without_t5_tokenizer(tmp_path)
    server.state.repos[SOURCE.repo_id] = Repo(hub)

    model = ModelManager(device="cpu", config_root=configs).get(str(transformer), Recorder(), never)

    cached = data / "tokenizers" / "t5"
    assert (cached / "tokenizer.json").is_file()
    assert model.pipe.tokenizer_2("a red circle").input_ids[-1] == 1  # </s>
    fetched = [line for line in server.state.log if "/resolve/" in line]
    assert fetched and all(f"/{SOURCE.subfolder}/" in line for line in fetched)
    assert not any("diffusion_pytorch_model" in line for line in server.state.log)
    assert not list(data.glob("tokenizers/*.partial"))

    server.state.log.clear()
    again = ModelManager(device="cpu", config_root=configs)
    again.get(str(transformer), Recorder(), never)
    assert server.state.log == []  # from the data folder: no network


def test_offline_the_message_says_which_files_go_where(
    tmp_path: Path, data: Path, no_network: None
) -> None:
    transformer, configs, _ = _flux_without_t5_tokenizer(tmp_path)
    with pytest.raises(EngineError) as caught:
        ModelManager(device="cpu", config_root=configs).get(str(transformer), Recorder(), never)
    message = caught.value.message
    assert caught.value.kind == ErrorKind.MODEL
    assert "The T5-XXL tokenizer is needed for this model" in message
    assert "huggingface.co/black-forest-labs/FLUX.1-schnell/tree/main/tokenizer_2" in message
    assert "tokenizer.json, tokenizer_config.json and special_tokens_map.json" in message
    assert str(data / "tokenizers" / "t5") in message


def test_a_tokenizer_put_in_the_folder_by_hand_is_used(
    tmp_path: Path, data: Path, no_network: None
) -> None:
    transformer, configs, hub = _flux_without_t5_tokenizer(tmp_path)
    by_hand = tokenizer_files.cache_folder("t5")
    by_hand.mkdir(parents=True)
    for name, content in hub.items():
        if name.startswith(SOURCE.subfolder + "/"):
            (by_hand / name.split("/", 1)[1]).write_bytes(content)
    model = ModelManager(device="cpu", config_root=configs).get(str(transformer), Recorder(), never)
    assert model.pipe.tokenizer_2 is not None
