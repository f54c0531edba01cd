"""The Models dialog: a background scan fills it; search, use, open, remove, add."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from library_files import LORA_SD1_KEYS, SD1_KEYS, SDXL_KEYS, write_safetensors
from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices

from engine.library import ModelLibrary
from guiapp.widgets import models_dialog
from guiapp.widgets.models_dialog import ModelsDialog, format_last_use, format_size


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    models = tmp_path / "ComfyUI" / "models"
    write_safetensors(models / "checkpoints" / "dreamy-sd15.safetensors", SD1_KEYS)
    write_safetensors(models / "checkpoints" / "xl-base.safetensors", SDXL_KEYS)
    write_safetensors(models / "loras" / "ink-style.safetensors", LORA_SD1_KEYS)
    return models


@pytest.fixture
def dialog(qtbot, tmp_path: Path, tree: Path):
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(tree)
    made = ModelsDialog(library)
    qtbot.addWidget(made)
    made.show()
    qtbot.waitUntil(lambda: made._scanned, timeout=60000)
    yield made
    made.close()


def table_texts(dialog: ModelsDialog) -> list[tuple[str, ...]]:
    proxy = dialog.proxy
    return [
        tuple(proxy.index(row, col).data() for col in range(proxy.columnCount()))
        for row in range(proxy.rowCount())
    ]


def select(dialog: ModelsDialog, name: str) -> None:
    entry = dialog.library.find(name)
    assert entry is not None and dialog.select_path(entry.path)


def test_opening_the_dialog_scans_in_the_background_and_lists_family_size_and_place(
    dialog: ModelsDialog, tree: Path
) -> None:
    rows = table_texts(dialog)
    assert [r[0] for r in rows] == ["dreamy-sd15", "ink-style", "xl-base"]  # sorted by name
    dreamy = rows[0]
    assert dreamy[1:3] == ("model", "SD 1.x")
    assert dreamy[3].endswith(" B") and dreamy[4] == "never"
    assert dreamy[5] == str(tree.resolve() / "checkpoints")
    assert rows[1][1:3] == ("LoRA", "SD 1.x") and rows[2][2] == "SDXL"
    assert "3 models" in dialog.status.text()


def test_search_and_kind_filter_narrow_the_list(dialog: ModelsDialog) -> None:
    dialog.search.setText("XL")
    assert [r[0] for r in table_texts(dialog)] == ["xl-base"]
    dialog.search.setText("sd 1.x")  # family words count too
    assert [r[0] for r in table_texts(dialog)] == ["dreamy-sd15", "ink-style"]
    dialog.search.clear()
    dialog.kind.setCurrentIndex(dialog.kind.findText("LoRA"))
    assert [r[0] for r in table_texts(dialog)] == ["ink-style"]


def test_using_a_model_hands_its_path_over_and_records_the_use(dialog: ModelsDialog, qtbot) -> None:
    select(dialog, "xl-base")
    with qtbot.waitSignal(dialog.modelChosen) as chosen:
        dialog.use_button.click()
    entry = dialog.library.find("xl-base")
    assert entry is not None and chosen.args == [entry.path]
    assert dialog.library.last_used(entry.path) is not None
    assert ModelLibrary(dialog.library.data_folder).last_used(entry.path) is not None
    assert [r[4] for r in table_texts(dialog) if r[0] == "xl-base"] == ["just now"]


def test_a_lora_cannot_be_used_as_the_model(dialog: ModelsDialog, qtbot) -> None:
    select(dialog, "ink-style")
    assert not dialog.use_button.isEnabled()
    with qtbot.assertNotEmitted(dialog.modelChosen):
        dialog.use_selected()
    assert "not a model to generate with" in dialog.status.text()


def test_open_folder_asks_the_desktop_to_show_the_models_folder(
    dialog: ModelsDialog, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    select(dialog, "ink-style")
    dialog.open_button.click()
    assert [u.toLocalFile() for u in opened] == [str(tree.resolve() / "loras")]


def test_remove_from_list_hides_the_model_for_good_and_keeps_the_file(
    dialog: ModelsDialog, qtbot
) -> None:
    entry = dialog.library.find("dreamy-sd15")
    assert entry is not None
    select(dialog, "dreamy-sd15")
    dialog.remove_button.click()
    assert [r[0] for r in table_texts(dialog)] == ["ink-style", "xl-base"]
    assert Path(entry.path).exists()
    dialog.rescan()
    qtbot.waitUntil(lambda: not dialog.feeder.running, timeout=60000)
    assert [r[0] for r in table_texts(dialog)] == ["ink-style", "xl-base"]


def test_adding_a_folder_scans_it_and_a_bad_folder_says_why(
    dialog: ModelsDialog, tmp_path: Path, qtbot
) -> None:
    assert not dialog.add_folder(tmp_path / "missing")
    assert "is not a folder" in dialog.status.text()
    write_safetensors(tmp_path / "more" / "extra.safetensors", SD1_KEYS)
    assert dialog.add_folder(tmp_path / "more")
    qtbot.waitUntil(lambda: not dialog.feeder.running, timeout=60000)
    assert "extra" in [r[0] for r in table_texts(dialog)]


def test_a_rescan_removes_rows_of_deleted_files_in_slices(
    dialog: ModelsDialog, tree: Path, qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(30):
        write_safetensors(tree / "loras" / f"extra{n}.safetensors", LORA_SD1_KEYS)
    dialog.rescan()
    qtbot.waitUntil(lambda: not dialog.feeder.running, timeout=60000)
    assert dialog.proxy.rowCount() == 33
    drops: list[int] = []
    real_drop = dialog.model.drop
    monkeypatch.setattr(
        dialog.model, "drop", lambda paths: drops.append(len(paths)) or real_drop(paths)
    )
    dialog.feeder._cost[models_dialog.GONE] = models_dialog.SLICE_SECONDS / 4  # 4 per slice
    for n in range(30):
        os.unlink(tree / "loras" / f"extra{n}.safetensors")
    dialog.rescan()
    qtbot.waitUntil(lambda: not dialog.feeder.running, timeout=60000)
    assert [r[0] for r in table_texts(dialog)] == ["dreamy-sd15", "ink-style", "xl-base"]
    assert sum(drops) == 30 and len(drops) > 1


def test_closing_the_main_window_stops_a_running_scan(qtbot, tmp_path: Path, tree: Path) -> None:
    from PySide6.QtWidgets import QWidget

    parent = QWidget()
    qtbot.addWidget(parent)
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(tree)
    dialog = ModelsDialog(library, parent)
    dialog.show()
    assert dialog.feeder.running
    parent.close()
    assert not dialog.feeder.running and not dialog.isVisible()


def test_the_window_menu_opens_the_dialog_and_the_chosen_model_fills_the_form(
    window, qtbot, tmp_path: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIFFUSIONDESK_DATA", str(tmp_path / "data"))
    ModelLibrary(tmp_path / "data").add_folder(tree)
    window.models_action.trigger()
    dialog = window.findChild(ModelsDialog)
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog._scanned, timeout=60000)
    select(dialog, "xl-base")
    dialog.use_selected()
    assert window.form.model == dialog.library.find("xl-base").path  # type: ignore[union-attr]
    window.models_action.trigger()
    assert window.findChildren(ModelsDialog) == [dialog]  # one dialog, brought back
    dialog.close()


def test_sizes_and_last_use_read_like_a_person_would_say_them() -> None:
    assert format_size(2_100_000_000) == "2.1 GB"
    assert format_size(144_000_000) == "144 MB"
    assert format_size(512) == "512 B"
    assert format_last_use(None) == "never"
    assert format_last_use(1000.0, now=1030.0) == "just now"
    assert format_last_use(1000.0, now=1000.0 + 3 * 86400) == "3 days ago"


def test_a_finished_job_notes_the_last_use_of_its_library_model_only(
    window, qtbot, tmp_path: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIFFUSIONDESK_DATA", str(tmp_path / "data"))
    ModelLibrary(tmp_path / "data").add_folder(tree)
    model = sorted(tree.rglob("*.safetensors"))[0].resolve()
    elsewhere = tmp_path / "elsewhere.safetensors"
    elsewhere.write_bytes(model.read_bytes())
    for name in ("starter", str(elsewhere), str(model)):
        window.form.model = name
        done = len(window.workspace.history.entries())
        window.workspace.generate()
        qtbot.waitUntil(lambda d=done: len(window.workspace.history.entries()) > d, timeout=60000)
    library = ModelLibrary(tmp_path / "data")
    assert library.last_used(str(model)) is not None
    assert library.last_used(str(elsewhere)) is None and library.last_used("starter") is None
