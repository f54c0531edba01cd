"""Choosing a FLUX.2 klein transformer file sets the form to klein's before it loads:
its header and name say distilled or base (engine/families/flux2.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_klein_files import write_klein_files


@pytest.mark.parametrize(
    ("distilled", "guidance", "steps"), [(True, False, 4), (False, True, 50)], ids=["klein", "base"]
)
def test_a_klein_file_sets_the_form_to_klein_before_it_loads(
    qtbot, window, tmp_path: Path, distilled: bool, guidance: bool, steps: int
) -> None:
    files, _ = write_klein_files(tmp_path, distilled=distilled)
    window.form.model = str(files.transformer)
    assert (window.form.family, window.form.steps) == ("flux2", steps)
    assert window.form.variant == ("distilled" if distilled else "base")
    assert window.parameter_panel.guidance_spin.isVisible() == guidance
    assert window.prompt_panel.negative_edit.isVisible() == guidance
    combo = window.parameter_panel.scheduler_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["Euler", "Euler a", "UniPC"]
    assert window.form.scheduler == "Euler"
