"""The form offers only what the engine accepts: its limits come from engine.validation."""

from __future__ import annotations

from engine.validation import MAX_BATCH, MAX_GUIDANCE, MAX_MASK_BLUR, MAX_SIDE, max_steps_for


def test_choosing_lcm_caps_the_steps_at_its_limit(qtbot, window) -> None:
    panel = window.parameter_panel
    window.form.steps = 100
    assert panel.steps_spin.value() == 100
    panel.scheduler_combo.setCurrentText("LCM")
    assert window.form.scheduler == "LCM"
    assert max_steps_for("LCM") == 50
    assert panel.steps_spin.maximum() == 50
    assert window.form.steps == 50 and panel.steps_spin.value() == 50
    panel.steps_spin.setValue(80)
    assert window.form.steps == 50
    request = window.form.build_request()
    assert request.steps == 50
    panel.scheduler_combo.setCurrentText("Euler")
    assert panel.steps_spin.maximum() == max_steps_for("Euler")
    panel.steps_spin.setValue(200)
    assert window.form.steps == 200, "the slider's shorter reach does not cut the steps"


def test_reused_parameters_beyond_a_schedulers_limit_are_capped(qtbot, window) -> None:
    request = window.form.build_request().with_changes(scheduler="LCM", steps=100)
    window.form.apply_request(request)
    assert window.form.scheduler == "LCM" and window.form.steps == 50


def test_every_range_comes_from_validation(qtbot, window) -> None:
    panel = window.parameter_panel
    assert panel.guidance_spin.maximum() == MAX_GUIDANCE
    assert panel.batch_spin.maximum() == MAX_BATCH
    assert panel.width_spin.maximum() == panel.height_spin.maximum() == MAX_SIDE
    assert panel.blur_spin.maximum() == MAX_MASK_BLUR


def test_a_64_bit_seed_survives_the_form(qtbot, window) -> None:
    seed = 2**63 + 12345
    window.form.random_seed = False
    window.parameter_panel.seed_spin.setValue(seed)
    assert window.form.seed == seed
    assert window.form.build_request().seed == seed
    assert window.parameter_panel.seed_spin.text() == str(seed)


def test_a_64_bit_seed_is_remembered_between_runs(qtbot, settings) -> None:
    from guiapp.state import ViewModel

    form = ViewModel()
    form.seed, form.random_seed = 2**64 - 20, False
    settings.save_form(form.values())
    settings.sync()
    again = ViewModel(settings.load_form())
    assert (again.seed, again.random_seed) == (2**64 - 20, False)
