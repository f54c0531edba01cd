"""Every family in the window over the real engine, from tiny diffusers folders: the form
starts from the variant's defaults and samplers before loading, a picture is made with
live previews, the status bar names the variant, and the saved PNG carries the family."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from engine import families, metadata

pytestmark = pytest.mark.slow

# folder name: (family, variant, how the tests' helpers write it)
MODELS = {
    "sd3": ("sd3", "", "flow"),
    "flux-dev": ("flux1", "dev", "flow"),
    "flux-schnell": ("flux1", "schnell", "flow"),
    "zimage": ("zimage", "turbo", "new"),
    "qwen-image": ("qwen_image", "", "new"),
    "sana": ("sana", "", "new"),
    "sana-sprint": ("sana", "sprint", "new"),
    "flux2-klein": ("flux2", "distilled", "new"),
    "flux2-klein-base": ("flux2", "base", "new"),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Written before the test's thread check: saving starts tqdm's monitor thread."""
    from tiny_flow_models import save_flow_model
    from tiny_new_families import save_tiny_family

    root = tmp_path_factory.mktemp("families")
    made = {}
    for name, (family, variant, kind) in MODELS.items():
        if kind == "flow":
            made[name] = save_flow_model(root / name, family, variant or "dev")
        else:
            made[name] = save_tiny_family(name, root / name)
    return made


@pytest.mark.parametrize("name", list(MODELS))
def test_each_family_makes_a_picture_in_the_window_and_names_itself(
    qtbot, make_window, folders: dict[str, Path], name: str
) -> None:
    from engine.models import ModelManager
    from engine.worker import Engine

    family, variant_name, _ = MODELS[name]
    variant = families.profile(family).variant(variant_name)
    window = make_window(Engine(ModelManager(device="cpu", dtype="float32", tiny_vae_dirs={})))
    form = window.form
    form.model = str(folders[name])
    # Known from the folder's JSON before anything loads: the variant's own defaults.
    assert (form.family, form.variant) == (family, variant_name)
    assert form.scheduler == variant.scheduler.value
    combo = window.parameter_panel.scheduler_combo
    offered = [combo.itemText(i) for i in range(combo.count())]
    assert offered == [s.value for s in families.profile(family).samplers_for(variant_name)]
    side = families.profile(family).size_multiple * 2
    form.width = form.height = side
    form.steps = min(variant.steps, 2)
    form.random_seed = False

    window.workspace.generate()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1, timeout=120000)
    assert window.error_area.message() == ""
    assert window.canvas.previews_shown >= 1
    assert f"· {variant.label}" in window.model_label.text()
    entry = window.workspace.history.entries()[0]
    with Image.open(entry.path) as image:
        assert image.size == (side, side)
        text = image.info["parameters"]
    assert f"Family: {family}" in text
    assert (f"Variant: {variant_name}" in text) == bool(variant_name)
    assert metadata.parse_a1111(text).scheduler == variant.scheduler.value
