"""Qwen-Image's tokenizer for its single files: fetched once from Qwen/Qwen-Image (a local
hub here, HF_ENDPOINT), only the tokenizer files, and named file by file when offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from download_server import DownloadServer, Repo
from model_helpers import Recorder, never

from engine import component_files as cf
from engine import tokenizer_files
from engine.api import EngineError
from tests.tiny_qwen_files import folder_image, manager_for, picture_of, write_qwen_files

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_qwen_tokenizer_is_fetched_once_from_qwen_image_then_used_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped configs hold no Qwen2.5-VL vocabulary: the tokenizer files alone come
    from Qwen/Qwen-Image's tokenizer/ folder (a local hub here), once."""
    files, _ = write_qwen_files(tmp_path)
    tokenizer = files.config_root / "qwen_image" / "tokenizer"
    source = tokenizer_files.SOURCES[cf.QWEN25_VL]
    assert (source.repo_id, source.subfolder) == ("Qwen/Qwen-Image", "tokenizer")
    hub = {f"tokenizer/{p.name}": p.read_bytes() for p in tokenizer.iterdir() if p.is_file()}
    shutil.rmtree(tokenizer)
    data = tmp_path / "data"
    monkeypatch.setenv("DIFFUSIONDESK_DATA", str(data))

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EngineError) as caught:
        manager_for(files).get(str(files.transformer), Recorder(), never)
    assert "The Qwen2.5-VL tokenizer is needed for this model" in caught.value.message
    assert "huggingface.co/Qwen/Qwen-Image/tree/main/tokenizer" in caught.value.message
    assert str(data / "tokenizers" / "qwen2.5-vl") in caught.value.message

    with DownloadServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE")
        server.state.repos[source.repo_id] = Repo(hub)
        model = manager_for(files).get(str(files.transformer), Recorder(), never)
        fetched = [line for line in server.state.log if "/resolve/" in line]
        assert fetched and all("/tokenizer/" in line for line in fetched)
    assert tokenizer_files.is_usable(data / "tokenizers" / "qwen2.5-vl")
    np.testing.assert_array_equal(picture_of(model.pipe), folder_image(files))
