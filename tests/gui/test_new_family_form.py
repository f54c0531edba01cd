"""The form for Z-Image, Qwen-Image, SANA / SANA-Sprint and FLUX.2 klein folders: only
the guidance, negative prompt, samplers, size grid and defaults each family uses."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QLabel
from tiny_new_families import save_tiny_family


def samplers_offered(window) -> list[str]:
    combo = window.parameter_panel.scheduler_combo
    return [combo.itemText(i) for i in range(combo.count())]


def guidance_label(window) -> str:
    panel = window.parameter_panel
    label = panel.form.labelForField(panel.guidance_spin)
    assert isinstance(label, QLabel)
    return label.text()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("form-folders")
    names = ("zimage", "qwen-image", "sana", "sana-sprint", "flux2-klein", "flux2-klein-base")
    return {name: str(save_tiny_family(name, root / name)) for name in names}


@pytest.mark.parametrize(
    ("name", "label", "negative", "samplers", "grid", "steps"),
    [
        ("zimage", None, False, ["Euler", "Euler a", "UniPC"], 16, 8),
        ("qwen-image", "Guidance", True, ["Euler", "Euler a", "UniPC"], 16, 30),
        ("sana", "Guidance", True, ["DPM++ 2M", "Euler", "UniPC"], 32, 20),
        ("sana-sprint", "Distilled guidance", False, ["sCM"], 32, 2),
        ("flux2-klein", None, False, ["Euler", "Euler a", "UniPC"], 16, 4),
        ("flux2-klein-base", "Guidance", True, ["Euler", "Euler a", "UniPC"], 16, 50),
    ],
)
def test_each_new_family_shows_only_what_it_uses(
    qtbot,
    window,
    folders: dict[str, str],
    name: str,
    label: str | None,
    negative: bool,
    samplers: list[str],
    grid: int,
    steps: int,
) -> None:
    window.form.model = folders[name]
    panel, prompts = window.parameter_panel, window.prompt_panel
    assert panel.guidance_spin.isVisible() == (label is not None)
    if label is not None:
        assert guidance_label(window) == label
    assert prompts.negative_edit.isVisible() == negative
    assert samplers_offered(window) == samplers
    assert window.form.scheduler in samplers
    assert panel.width_spin.singleStep() == grid
    assert window.form.steps == steps
    request = window.form.build_request()
    assert request.width % grid == 0 and request.scheduler in samplers
