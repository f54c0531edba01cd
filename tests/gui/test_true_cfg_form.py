"""FLUX.1 dev's true CFG in the form: a "True CFG" row for the variant that takes it and
no other, the negative prompt shown once it is above 1, carried into the request, and
back to off when another model is chosen."""

from __future__ import annotations

from pathlib import Path

from gui.test_family_form import model_folder


def test_flux_dev_offers_true_cfg_and_the_negative_prompt_once_it_is_on(
    qtbot, window, tmp_path: Path
) -> None:
    panel, prompts, form = window.parameter_panel, window.prompt_panel, window.form
    form.model = model_folder(tmp_path, "FluxPipeline", transformer={})
    assert (form.family, form.variant) == ("flux1", "dev")
    assert panel.true_cfg_spin.isVisible() and panel.true_cfg_spin.value() == 1.0
    assert not prompts.negative_edit.isVisible()  # true CFG off: no negative prompt
    panel.true_cfg_spin.setValue(2.5)
    assert form.true_cfg_scale == 2.5
    assert prompts.negative_edit.isVisible() and prompts.negative_label.isVisible()
    form.negative_prompt = "blurry"
    request = form.build_request()
    assert (request.true_cfg_scale, request.guidance_scale, request.negative_prompt) == (
        2.5,
        3.5,
        "blurry",
    )


def test_other_families_show_no_true_cfg_and_switching_turns_it_off(
    qtbot, window, tmp_path: Path
) -> None:
    panel, form = window.parameter_panel, window.form
    form.model = model_folder(tmp_path, "FluxPipeline", transformer={})
    form.true_cfg_scale = 3.0
    form.model = model_folder(tmp_path, "StableDiffusion3Pipeline", transformer={})
    assert form.family == "sd3"
    assert not panel.true_cfg_spin.isVisible()
    assert window.prompt_panel.negative_edit.isVisible()  # SD 3 has true CFG of its own
    assert form.build_request().true_cfg_scale == 1.0
    schnell = tmp_path / "schnell"
    schnell.mkdir()
    form.model = model_folder(schnell, "FluxPipeline", transformer={"guidance_embeds": False})
    assert form.variant == "schnell" and not panel.true_cfg_spin.isVisible()
