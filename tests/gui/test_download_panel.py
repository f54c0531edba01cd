"""Downloading from the Models dialog, against a local server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from download_server import Behaviour, DownloadServer
from library_files import write_safetensors
from PySide6.QtWidgets import QMessageBox

from engine import downloads
from engine.library import ModelLibrary
from guiapp.widgets.models_dialog import ModelsDialog

LORA = {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": [4, 768]}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[DownloadServer]:
    with DownloadServer() as running:
        monkeypatch.setenv("HF_ENDPOINT", running.endpoint)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield running


@pytest.fixture
def lora_bytes(tmp_path: Path) -> bytes:
    path = write_safetensors(tmp_path / "src" / "x.safetensors", LORA, data=b"\0" * 200_000)
    return path.read_bytes()


@pytest.fixture
def dialog(qtbot, tmp_path: Path):
    made = ModelsDialog(ModelLibrary(tmp_path / "data"))
    qtbot.addWidget(made)
    made.show()
    qtbot.waitUntil(lambda: made._scanned, timeout=60000)
    yield made
    made.close()


def test_a_downloaded_lora_lands_in_the_loras_folder_and_in_the_list(
    qtbot,
    dialog: ModelsDialog,
    server: DownloadServer,
    lora_bytes: bytes,
) -> None:
    server.state.files["/api/download/ink-style.safetensors"] = lora_bytes
    panel = dialog.downloads
    panel.source.setText(server.url("/api/download/ink-style.safetensors"))
    panel.kind.setCurrentIndex(panel.kind.findText("LoRA"))
    panel.download_button.click()
    qtbot.waitUntil(lambda: panel.status.text().startswith("Downloaded"), timeout=30000)
    target = dialog.library.own_folder / "loras" / "ink-style.safetensors"
    assert target.read_bytes() == lora_bytes
    assert panel.bar.value() == 1000
    qtbot.waitUntil(lambda: dialog.library.find("ink-style") is not None, timeout=60000)
    assert dialog.library.find("ink-style").kind == "lora"  # type: ignore[union-attr]


def test_cancel_keeps_the_part_and_download_again_finishes_it(
    qtbot,
    dialog: ModelsDialog,
    server: DownloadServer,
    lora_bytes: bytes,
) -> None:
    server.state.files["/slow.safetensors"] = lora_bytes
    server.state.behaviour["/slow.safetensors"] = Behaviour(bytes_per_second=20_000)
    panel = dialog.downloads
    panel.source.setText(server.url("/slow.safetensors"))
    panel.download_button.click()
    qtbot.waitUntil(lambda: "/s" in panel.status.text(), timeout=30000)
    assert panel.cancel_button.isEnabled() and not panel.download_button.isEnabled()
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: panel.status.text().startswith("Cancelled"), timeout=30000)
    part = dialog.library.own_folder / "checkpoints" / "slow.safetensors.part"
    assert 0 < part.stat().st_size < len(lora_bytes)

    server.state.behaviour["/slow.safetensors"] = Behaviour()
    panel.download_button.click()
    qtbot.waitUntil(lambda: panel.status.text().startswith("Downloaded"), timeout=30000)
    assert (
        dialog.library.own_folder / "checkpoints" / "slow.safetensors"
    ).read_bytes() == lora_bytes


def test_a_big_download_asks_first_and_no_means_nothing_is_fetched(
    qtbot,
    dialog: ModelsDialog,
    server: DownloadServer,
    lora_bytes: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.state.files["/big.safetensors"] = lora_bytes
    monkeypatch.setattr(downloads, "ASK_ABOVE_BYTES", 1000)
    asked: list[str] = []

    def answer(_parent, _title, text, *args):
        asked.append(text)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", answer)
    panel = dialog.downloads
    panel.source.setText(server.url("/big.safetensors"))
    panel.download_button.click()
    qtbot.waitUntil(lambda: panel.status.text() == "Download not started.", timeout=30000)
    assert asked and "is 200 kB. Download it into" in asked[0]
    assert not (dialog.library.own_folder / "checkpoints").exists()


def test_a_gated_file_says_how_to_give_a_token(
    qtbot,
    dialog: ModelsDialog,
    server: DownloadServer,
) -> None:
    server.state.files["/gated.safetensors"] = b"x"
    server.state.behaviour["/gated.safetensors"] = Behaviour(status=403)
    panel = dialog.downloads
    panel.source.setText(server.url("/gated.safetensors"))
    panel.download_button.click()
    qtbot.waitUntil(lambda: "gated or private" in panel.status.text(), timeout=30000)
    assert "Token field" in panel.status.text() and panel.download_button.isEnabled()
