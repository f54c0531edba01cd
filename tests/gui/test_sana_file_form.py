"""Choosing a SANA or SANA-Sprint transformer file sets the form up for it before anything
loads (its tensor names say which): CFG with a negative prompt and the flow samplers for
SANA; Sprint's sCM sampler, its two steps and no negative prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

_SANA = (
    "blocks.0.cross_attn.q_linear.weight",
    "blocks.0.attn.qkv.weight",
    "x_embedder.proj.weight",
)


def _file(folder: Path, name: str, *extra: str) -> str:
    path = folder / name
    save_file({n: np.zeros((2, 2), dtype=np.float32) for n in (*_SANA, *extra)}, str(path))
    return str(path)


def test_a_sana_file_gives_the_form_cfg_a_negative_prompt_and_the_flow_samplers(
    qtbot, window, tmp_path: Path
) -> None:
    window.form.model = _file(tmp_path, "Sana_1600M_1024px_BF16.safetensors")
    assert (window.form.family, window.form.variant) == ("sana", "")
    assert window.prompt_panel.negative_edit.isVisible()
    combo = window.parameter_panel.scheduler_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["DPM++ 2M", "Euler", "UniPC"]
    assert (window.form.steps, window.form.width) == (20, 1024)


def test_a_sprint_file_gives_the_form_two_steps_its_sampler_and_no_negative_prompt(
    qtbot, window, tmp_path: Path
) -> None:
    name = "Sana_Sprint_1.6B_1024px.safetensors"
    window.form.model = _file(tmp_path, name, "cfg_embedder.mlp.0.weight")
    assert (window.form.family, window.form.variant) == ("sana", "sprint")
    assert not window.prompt_panel.negative_edit.isVisible()
    combo = window.parameter_panel.scheduler_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["sCM"]
    assert window.form.steps == 2


def test_a_4k_file_starts_at_2048_pixels(qtbot, window, tmp_path: Path) -> None:
    window.form.model = _file(tmp_path, "Sana_1600M_4Kpx_BF16.safetensors")
    assert (window.form.variant, window.form.width, window.form.height) == ("4k", 2048, 2048)
