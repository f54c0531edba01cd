"""The "LoRA and embeddings" dock: lists the model folders' LoRAs and embeddings, inserts
tags and names into the prompt, fills the VAE choice, and says which add-ons of a reused
picture are missing; clip skip and VAE go from the form into the request."""

from __future__ import annotations

import torch
from PIL import Image
from PySide6.QtWidgets import QComboBox, QSpinBox
from safetensors.torch import save_file

from engine import metadata
from engine.api import GenerationRequest


def models_root(tmp_path):
    root = tmp_path / "webui" / "models"
    for sub in ("Lora", "VAE"):
        (root / sub).mkdir(parents=True)
    (tmp_path / "webui" / "embeddings").mkdir()
    save_file({"a": torch.ones(1)}, str(root / "Lora" / "detail.safetensors"))
    save_file(
        {"emb_params": torch.ones(1, 4)},
        str(tmp_path / "webui" / "embeddings" / "shiny.safetensors"),
    )
    save_file({"a": torch.ones(1)}, str(root / "VAE" / "ft-mse.safetensors"))
    return root


def test_the_dock_lists_loras_and_embeddings_and_inserts_them(window, qtbot, tmp_path):
    dock = window.addons_dock
    window.form.prompt = "a cat"
    window.form.model_folders = (str(models_root(tmp_path)),)
    qtbot.waitUntil(lambda: dock.lora_table.rowCount() == 1 and dock.embedding_list.count() == 1)
    row = dock.lora_rows()[0]
    row.weight.setValue(0.5)
    assert row.slider.value() == 50
    row.insert.click()
    assert window.form.prompt == "a cat <lora:detail:0.5>"
    row.te_check.setChecked(True)
    row.te_weight.setValue(0.3)
    row.insert.click()
    assert window.form.prompt.endswith("<lora:detail:0.3:0.5>")
    dock.embedding_list.setCurrentRow(0)
    dock.insert_negative.click()
    assert window.form.negative_prompt == "shiny"
    vae = window.parameter_panel.findChild(QComboBox, "vae")
    assert [vae.itemText(i) for i in range(vae.count())] == ["", "ft-mse"]
    vae.setCurrentText("ft-mse")
    window.parameter_panel.findChild(QSpinBox, "clipSkip").setValue(2)
    request = window.form.build_request()
    assert request.vae == "ft-mse" and request.clip_skip == 2
    assert request.model_folders == window.form.model_folders


def test_the_dock_says_which_addons_of_a_picture_are_missing(window, qtbot, tmp_path):
    made = GenerationRequest(prompt="a cat <lora:gone:1>", seed=1)
    path = metadata.save_png(Image.new("RGB", (8, 8)), tmp_path / "p.png", made, 1)
    window.form.model_folders = (str(models_root(tmp_path)),)
    window.addons_dock.check_picture(path)
    label = window.addons_dock.missing_label
    qtbot.waitUntil(lambda: label.isVisible())
    assert "the LoRA gone is not in the LoRA folders" in label.text()


def test_reusing_a_picture_keeps_this_machines_model_folders(window, tmp_path):
    folders = (str(models_root(tmp_path)),)
    window.form.model_folders = folders
    window.form.apply_request(GenerationRequest(prompt="x", clip_skip=3))
    assert window.form.clip_skip == 3 and window.form.model_folders == folders
