"""The form offers what the chosen model's family uses (guiapp/family_form.py): the
family is read from a diffusers folder's small JSON files, or reported by the engine."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import QLabel

from engine.families import profile


def model_folder(root: Path, class_name: str, **configs: dict[str, object]) -> str:
    """A folder with model_index.json and component configs (no weights: the form
    reads only the JSON)."""
    folder = root / class_name
    folder.mkdir()
    index: dict[str, object] = {"_class_name": class_name}
    for component, config in configs.items():
        index[component] = ["diffusers", "X"]
        (folder / component).mkdir()
        (folder / component / "config.json").write_text(json.dumps(config))
    (folder / "model_index.json").write_text(json.dumps(index))
    return str(folder)


def samplers_offered(window) -> list[str]:
    combo = window.parameter_panel.scheduler_combo
    return [combo.itemText(i) for i in range(combo.count())]


def guidance_label(window) -> str:
    panel = window.parameter_panel
    label = panel.form.labelForField(panel.guidance_spin)
    assert isinstance(label, QLabel)
    return label.text()


def test_a_flux_schnell_folder_shows_neither_guidance_nor_negative_prompt(
    qtbot, window, tmp_path: Path
) -> None:
    window.form.model = model_folder(
        tmp_path, "FluxPipeline", transformer={"guidance_embeds": False}
    )
    assert (window.form.family, window.form.variant) == ("flux1", "schnell")
    panel, prompts = window.parameter_panel, window.prompt_panel
    assert not panel.guidance_spin.isVisible()
    assert not prompts.negative_edit.isVisible() and not prompts.negative_label.isVisible()
    assert samplers_offered(window) == ["Euler", "Euler a", "UniPC"]
    assert window.form.scheduler in samplers_offered(window)
    assert panel.width_spin.singleStep() == 16


def test_switching_from_sd_to_flux_dev_starts_from_its_defaults_and_back(
    qtbot, window, tmp_path: Path
) -> None:
    sd = model_folder(tmp_path, "StableDiffusionPipeline", text_encoder={"hidden_size": 768})
    window.form.model = sd
    window.form.scheduler = "DPM++ 2M Karras"
    assert window.form.family == "sd1" and guidance_label(window) == "Guidance"
    window.form.model = model_folder(tmp_path, "FluxPipeline", transformer={})
    dev = profile("flux1").variant("dev")
    form = window.form
    assert (form.steps, form.width, form.height) == (dev.steps, dev.width, dev.height)
    assert form.guidance_scale == dev.guidance_scale == 3.5 and form.scheduler == "Euler"
    assert guidance_label(window) == "Distilled guidance"
    assert window.parameter_panel.guidance_spin.isVisible()
    assert not window.prompt_panel.negative_edit.isVisible()
    request = form.build_request()
    assert (request.steps, request.scheduler, request.guidance_scale) == (28, "Euler", 3.5)
    window.form.model = sd
    assert window.prompt_panel.negative_edit.isVisible()
    assert "DPM++ 2M Karras" in samplers_offered(window)
    assert (form.width, form.steps) == (512, 25)


def test_a_model_named_by_hub_id_learns_its_family_from_the_engine(
    qtbot, window, fake_engine
) -> None:
    fake_engine.families["someone/flux-schnell"] = ("flux1", "schnell", "FLUX.1 schnell")
    window.form.model = "someone/flux-schnell"
    assert window.form.family == ""  # nothing on disk says it yet
    window.form.steps = 3
    window.generate_button.click()
    qtbot.waitUntil(lambda: window.form.family == "flux1", timeout=10000)
    assert window.form.variant == "schnell"
    assert not window.parameter_panel.guidance_spin.isVisible()
    qtbot.waitUntil(lambda: "FLUX.1 schnell" in window.model_label.text(), timeout=10000)


def test_reused_parameters_keep_their_steps_and_size_across_a_family_switch(
    qtbot, window, tmp_path: Path
) -> None:
    window.form.model = model_folder(
        tmp_path, "StableDiffusionPipeline", text_encoder={"hidden_size": 768}
    )
    flux = model_folder(tmp_path, "FluxPipeline", transformer={})
    reused = window.form.build_request().with_changes(
        model=flux, steps=12, width=320, height=256, guidance_scale=2.5, scheduler="UniPC"
    )
    window.form.apply_request(reused)
    form = window.form
    assert form.family == "flux1"
    assert (form.steps, form.width, form.height) == (12, 320, 256)
    assert (form.guidance_scale, form.scheduler) == (2.5, "UniPC")
