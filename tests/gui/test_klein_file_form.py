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


@pytest.fixture(scope="module")
def _tqdm_monitor() -> None:
    """Started before the leak check: loading a single file starts tqdm's monitor thread,
    which lives as long as the process."""
    import io

    from tqdm import tqdm

    tqdm(total=1, file=io.StringIO()).close()


@pytest.mark.slow
def test_the_window_asks_for_klein_s_missing_vae_and_then_paints(
    _tqdm_monitor, qtbot, make_window, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the real engine: the missing FLUX.2 VAE is named in the error strip, Choose
    file… takes it, and the next Generate makes the picture."""
    import shutil

    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QFileDialog

    from engine.models import ModelManager
    from engine.worker import Engine

    files, _ = write_klein_files(tmp_path)
    vae = Path(shutil.move(files.vae, tmp_path / "flux2-vae.safetensors"))
    engine = Engine(ModelManager(device="cpu", dtype="float32", config_root=files.config_root))
    window = make_window(engine)
    window.form.model = str(files.transformer)
    window.form.width = window.form.height = 64
    window.form.steps = 2
    monkeypatch.setattr(
        QFileDialog, "getOpenFileNames", staticmethod(lambda *args: ([str(vae)], ""))
    )

    window.workspace.generate()
    qtbot.waitUntil(lambda: window.error_area.message() != "", timeout=60000)
    assert "FLUX.2 klein 4B needs the FLUX.2 VAE (flux2-vae.safetensors)" in (
        window.error_area.message()
    )
    qtbot.mouseClick(window.error_area.choose_file_button, Qt.MouseButton.LeftButton)
    assert window.form.model_files == (str(vae),)

    window.workspace.generate()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1, timeout=60000)
    assert window.error_area.message() == ""
