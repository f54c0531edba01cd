"""SANA's Gemma 2 tokenizer: as shipped, engine/model_configs/sana holds no vocabulary, so
a SANA transformer file fetches it once from the hub (a local server here, HF_ENDPOINT)
into the data folder, tokenizer files only, and gives the same pixels as the model's own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from model_helpers import Recorder, never

from engine import component_files as cf
from engine.models import ModelManager
from engine.resources import model_configs_dir
from tests.single_file_cases import assert_same_pixels
from tests.tiny_sana_files import sana_image, write_sana_files

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_gemma_tokenizer_is_fetched_once_from_the_hub_and_gives_the_same_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from download_server import DownloadServer, Repo

    from engine import tokenizer_files

    files, reference = write_sana_files(tmp_path)
    source = tokenizer_files.SOURCES[cf.GEMMA2]
    folder = files.config_root / "sana"
    hub = {
        f"{source.subfolder}/{p.name}": p.read_bytes()
        for p in (folder / "tokenizer").iterdir()
        if p.is_file()
    }
    shutil.rmtree(folder / "tokenizer")
    shipped = model_configs_dir() / "sana" / "tokenizer"
    shutil.copytree(shipped, folder / "tokenizer")
    index = json.loads((folder / "model_index.json").read_text())
    index["tokenizer"] = json.loads((shipped.parent / "model_index.json").read_text())["tokenizer"]
    (folder / "model_index.json").write_text(json.dumps(index))
    monkeypatch.setenv("DIFFUSIONDESK_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with DownloadServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        server.state.repos[source.repo_id] = Repo(hub)
        model = ModelManager(device="cpu", dtype="float32", config_root=files.config_root).get(
            str(files.transformer), Recorder(), never
        )
        fetched = [line for line in server.state.log if "/resolve/" in line]
    assert fetched and all(f"/{source.subfolder}/" in line for line in fetched)
    assert (tmp_path / "data" / "tokenizers" / "gemma2" / "tokenizer.json").is_file()
    assert_same_pixels(sana_image(model.pipe), sana_image(reference))
