"""Settings across upgrades: versioned, migrated from the unversioned keys, and set aside
(with a notice and defaults) when damaged, unreadable or written by a newer version."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

import guiapp.settings_upgrade as upgrade
from guiapp.bridge import EngineBridge
from guiapp.settings import AppSettings
from guiapp.settings_upgrade import SETTINGS_VERSION, VERSION_KEY, open_settings, set_aside
from guiapp.state import ViewModel
from guiapp.window import MainWindow

NOW = datetime(2026, 12, 4, 17, 5, 9)


def _ini(path: Path) -> QSettings:
    return QSettings(str(path), QSettings.Format.IniFormat)


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


UNVERSIONED = """[parameters]
prompt=a green square
steps=33
scheduler=Euler a
guidance_scale=7.5
random_seed=false
seed=1234
width=96

[output]
folder=/tmp/my pictures

[canvas]
brush_size=40
"""


def _set_aside_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.set-aside-*"))


def test_unversioned_settings_are_migrated_and_keep_every_value(tmp_path: Path) -> None:
    path = _write(tmp_path / "settings.ini", UNVERSIONED)
    settings = AppSettings(_ini(path))

    assert settings.notice is None
    form = settings.load_form()
    assert (form["prompt"], form["steps"], form["scheduler"]) == ("a green square", 33, "Euler a")
    assert (form["guidance_scale"], form["random_seed"], form["seed"], form["width"]) == (
        7.5,
        False,
        1234,
        96,
    )
    assert settings.output_folder() == Path("/tmp/my pictures")
    assert settings.brush_size() == 40
    assert f"version={SETTINGS_VERSION}" in path.read_text()  # written to disk at once
    assert not _set_aside_files(tmp_path)


def test_migration_drops_only_the_values_the_form_cannot_use(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "settings.ini",
        "[parameters]\nprompt=kept\nsteps=lots\nscheduler=Euler\nwidth=513\nheight=64\n"
        "guidance_scale=nan\nseed=-5\n[canvas]\nbrush_size=huge\n",
    )
    opened = open_settings(_ini(path))

    assert opened.notice is None
    assert set(opened.dropped) == {
        "parameters/steps",
        "parameters/width",
        "parameters/guidance_scale",
        "parameters/seed",
        "canvas/brush_size",
    }
    form = AppSettings(opened.qsettings).load_form()
    defaults = ViewModel.defaults()
    assert (form["prompt"], form["scheduler"], form["height"]) == ("kept", "Euler", 64)
    for name in ("steps", "width", "guidance_scale", "seed"):
        assert form[name] == defaults[name]


def test_steps_past_what_the_stored_scheduler_allows_are_dropped(tmp_path: Path) -> None:
    path = _write(tmp_path / "settings.ini", "[parameters]\nscheduler=LCM\nsteps=80\n")
    assert open_settings(_ini(path)).dropped == ("parameters/steps",)


def test_a_fresh_install_gets_the_current_version_and_no_notice(tmp_path: Path) -> None:
    settings = AppSettings(_ini(tmp_path / "new.ini"))
    assert settings.notice is None
    assert settings.load_form() == ViewModel.defaults()
    assert int(settings.qsettings.value(VERSION_KEY)) == SETTINGS_VERSION


def test_current_settings_reopen_unchanged_and_without_notice(tmp_path: Path) -> None:
    path = tmp_path / "settings.ini"
    first = AppSettings(_ini(path))
    first.save_form({**ViewModel.defaults(), "prompt": "again", "steps": 12})
    first.sync()
    again = AppSettings(_ini(path))
    assert again.notice is None
    assert (again.load_form()["prompt"], again.load_form()["steps"]) == ("again", 12)


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("binary", bytes(range(256)) * 8, "nothing in the file could be read"),
        ("format error", b"[parameters\nsteps=20\n", "not a valid settings file"),
        ("text", b"this is not a settings file at all\n", "nothing in the file could be read"),
        ("bad version", b"[meta]\nversion=banana\n", "is not a number"),
    ],
)
def test_a_damaged_settings_file_is_set_aside_byte_for_byte(
    tmp_path: Path, name: str, content: bytes, why: str
) -> None:
    path = _write(tmp_path / "settings.ini", content)
    opened = open_settings(_ini(path), now=NOW)

    kept = tmp_path / "settings.ini.set-aside-20261204-170509"
    assert _set_aside_files(tmp_path) == [kept]
    assert kept.read_bytes() == content
    assert opened.notice is not None
    assert why in opened.notice and "damaged" in opened.notice
    assert str(kept) in opened.notice and "default settings" in opened.notice
    fresh = AppSettings(opened.qsettings)
    assert fresh.load_form() == ViewModel.defaults()
    assert opened.qsettings.allKeys() == [VERSION_KEY]
    assert AppSettings(_ini(path)).notice is None  # the new file is fine next time


def test_settings_from_a_newer_version_are_set_aside_with_that_reason(tmp_path: Path) -> None:
    path = _write(tmp_path / "settings.ini", "[meta]\nversion=7\n[parameters]\nsteps=44\n")
    settings = AppSettings(_ini(path))

    assert settings.notice is not None
    assert "newer DiffusionDesk (settings version 7" in settings.notice
    assert settings.load_form()["steps"] == ViewModel.defaults()["steps"]
    [kept] = _set_aside_files(tmp_path)
    assert _ini(kept).value("parameters/steps") == "44"


def test_an_unreadable_settings_path_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "settings.ini"
    path.mkdir()  # unreadable as a file even for root
    (path / "inside").write_text("x")
    settings = AppSettings(_ini(path))

    assert settings.notice is not None and "could not be read" in settings.notice
    [kept] = _set_aside_files(tmp_path)
    assert (kept / "inside").read_text() == "x"
    settings.save_form({"prompt": "works again"})
    settings.sync()
    assert AppSettings(_ini(path)).load_form()["prompt"] == "works again"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_settings_file_without_read_permission_is_set_aside(tmp_path: Path) -> None:
    path = _write(tmp_path / "settings.ini", UNVERSIONED)
    path.chmod(0)
    settings = AppSettings(_ini(path))
    assert settings.notice is not None and "could not be read" in settings.notice
    assert len(_set_aside_files(tmp_path)) == 1


def test_two_set_asides_in_the_same_second_keep_both_files(tmp_path: Path) -> None:
    path = tmp_path / "settings.ini"
    for content in (b"\x00\x01 first", b"\x00\x02 second"):
        _write(path, content)
        open_settings(_ini(path), now=NOW)
    kept = _set_aside_files(tmp_path)
    assert [p.read_bytes() for p in kept] == [b"\x00\x01 first", b"\x00\x02 second"]


def test_a_file_that_cannot_be_moved_aside_is_left_alone_and_the_session_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "settings.ini", "[meta]\nversion=99\n")

    def refuse(*_: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(upgrade.os, "replace", refuse)
    settings = AppSettings(_ini(path))

    assert settings.notice is not None
    assert "could not be moved aside" in settings.notice and "will not save" in settings.notice
    assert path.read_text() == "[meta]\nversion=99\n"
    assert Path(settings.qsettings.fileName()).parent != tmp_path
    settings.save_form({"prompt": "this session only"})
    assert settings.load_form()["prompt"] == "this session only"
    assert path.read_text() == "[meta]\nversion=99\n"


def test_settings_that_are_not_a_file_are_copied_aside_then_cleared(tmp_path: Path) -> None:
    # Settings held outside a file (the Windows registry) look like this: keys, no file.
    store = _ini(tmp_path / "never-written.ini")
    store.setValue(VERSION_KEY, 9)
    store.setValue("parameters/prompt", "from the future")
    opened = set_aside(store, "were written by a newer DiffusionDesk", NOW, tmp_path / "aside")

    kept = tmp_path / "aside" / "settings.set-aside-20261204-170509.ini"
    assert opened.notice is not None and str(kept) in opened.notice
    assert _ini(kept).value("parameters/prompt") == "from the future"
    assert opened.qsettings.allKeys() == [VERSION_KEY]


def test_the_window_says_so_without_blocking_and_starts_with_defaults(
    qtbot,
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "settings.ini", b"\xff\xfe\x00garbage\x00")
    window = MainWindow(EngineBridge(), AppSettings(_ini(path)))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    try:
        assert "damaged" in window.error_area.message()
        assert "settings.ini.set-aside-" in window.error_area.message()
        assert "started with default settings" in window.error_area.message()
        assert window.error_area.isVisible()
        assert QApplication.activeModalWidget() is None
        assert window.form.values() == ViewModel.defaults()
    finally:
        window.close()
