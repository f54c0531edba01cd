"""Choosing a Qwen-Image transformer file sets the form up for Qwen-Image before anything
loads (its tensor names say the family): true CFG with a negative prompt, flow samplers,
its own defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def test_a_qwen_image_file_gives_the_form_its_family_before_loading(
    qtbot, window, tmp_path: Path
) -> None:
    path = tmp_path / "qwen_image_fp8_e4m3fn.safetensors"
    names = ("txt_norm.weight", "transformer_blocks.0.img_mod.1.weight", "img_in.weight")
    save_file({name: np.zeros((2, 2), dtype=np.float32) for name in names}, str(path))

    window.form.model = str(path)
    assert (window.form.family, window.form.variant) == ("qwen_image", "")
    assert window.prompt_panel.negative_edit.isVisible()
    assert window.parameter_panel.guidance_spin.isVisible()
    combo = window.parameter_panel.scheduler_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["Euler", "Euler a", "UniPC"]
    assert window.form.scheduler == "Euler"


def test_a_file_whose_names_say_nothing_leaves_the_family_to_the_engine(
    qtbot, window, tmp_path: Path
) -> None:
    path = tmp_path / "mystery.safetensors"
    save_file({"weight": np.zeros(2, dtype=np.float32)}, str(path))
    window.form.model = str(path)
    assert window.form.family == ""
