"""Settings that survive upgrades: the settings' version, the migrations between versions,
and setting aside a file this version cannot use.

Each version of the settings has a number under `meta/version`; settings written before
versions existed count as version 0. Opening runs every migration from the stored
version up to SETTINGS_VERSION. A file that is damaged, cannot be read, or was written
by a newer DiffusionDesk is never overwritten: it is renamed with a date suffix, the
window says so, and the application starts with defaults.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

from engine.schedulers import NAMES as SCHEDULER_NAMES
from engine.validation import (
    MAX_BATCH,
    MAX_GUIDANCE,
    MAX_MASK_BLUR,
    MAX_SEED,
    MAX_SIDE,
    max_steps_for,
)
from guiapp.state import ViewModel

SETTINGS_VERSION = 1
VERSION_KEY = "meta/version"
FORM_GROUP = "parameters"
BRUSH_SIZE_KEY = "canvas/brush_size"
DEFAULT_BRUSH_SIZE = 24


@dataclass(frozen=True)
class OpenedSettings:
    qsettings: QSettings
    notice: str | None  # what the window tells the person; None when all went well
    dropped: tuple[str, ...] = ()  # keys a migration removed because no version can use them


def coerce(value: object, kind: type) -> object:
    """A stored value as the form's type (INI files hand back every value as text)."""
    if kind is bool:
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    if kind is int and isinstance(value, str):
        return int(value.strip())
    return kind(value)


def stored_form_value(value: object) -> object:
    """How a form value is stored: ints as text, since a 64-bit seed does not fit
    QSettings' signed integers."""
    return str(value) if type(value) is int else value


def _form_value_fits(name: str, value: object, scheduler: object) -> bool:
    if name == "scheduler":
        return value in SCHEDULER_NAMES
    if name == "steps":
        return 1 <= value <= max_steps_for(str(scheduler))  # type: ignore[operator]
    if name in ("width", "height"):
        return 8 <= value <= MAX_SIDE and value % 8 == 0  # type: ignore[operator]
    if name == "batch_size":
        return 1 <= value <= MAX_BATCH  # type: ignore[operator]
    if name == "guidance_scale":
        return 0.0 <= value <= MAX_GUIDANCE  # type: ignore[operator]
    if name == "strength":
        return 0.0 < value <= 1.0  # type: ignore[operator]
    if name == "mask_blur":
        return 0 <= value <= MAX_MASK_BLUR  # type: ignore[operator]
    if name == "seed":
        return 0 <= value <= MAX_SEED  # type: ignore[operator]
    return True


def _migrate_0_to_1(settings: QSettings) -> list[str]:
    """Version 0 stored whatever the form held, as text. Version 1 promises that every
    stored form value has the form's type and is one the form accepts, so a value an
    older release let through (a scheduler since renamed, steps past LCM's 50, a size
    off the 8-pixel grid, text where a number belongs; the same for the brush size)
    falls back to its default here rather than failing at every start."""
    dropped = []
    defaults = ViewModel.defaults()
    stored_scheduler = settings.value(f"{FORM_GROUP}/scheduler", defaults["scheduler"])
    for name, default in defaults.items():
        key = f"{FORM_GROUP}/{name}"
        if not settings.contains(key):
            continue
        try:
            value = coerce(settings.value(key), type(default))
            fits = _form_value_fits(name, value, stored_scheduler)
        except (TypeError, ValueError, OverflowError):
            fits = False
        if fits:
            settings.setValue(key, stored_form_value(value))
        else:
            settings.remove(key)
            dropped.append(key)
    try:
        int(str(settings.value(BRUSH_SIZE_KEY, DEFAULT_BRUSH_SIZE)).strip())
    except ValueError:
        settings.remove(BRUSH_SIZE_KEY)
        dropped.append(BRUSH_SIZE_KEY)
    return dropped


# MIGRATIONS[n] turns version n into version n + 1 and returns the keys it dropped.
MIGRATIONS: tuple[Callable[[QSettings], list[str]], ...] = (_migrate_0_to_1,)
assert len(MIGRATIONS) == SETTINGS_VERSION


def _unusable(settings: QSettings) -> str | None:
    """Why these settings cannot be used as they are, as the end of a sentence; or None."""
    path = Path(settings.fileName())
    if path.is_dir():
        return "could not be read (it is a folder, not a file)"
    if path.is_file():
        try:
            with path.open("rb") as file:
                has_content = bool(file.read(1))
        except OSError as exc:
            return f"could not be read ({exc.strerror or exc})"
    else:
        has_content = False
    if settings.status() == QSettings.Status.AccessError:
        return "could not be read (access denied)"
    if settings.status() == QSettings.Status.FormatError:
        return "are damaged (the file is not a valid settings file)"
    if has_content and not settings.allKeys():
        return "are damaged (nothing in the file could be read)"
    stored = settings.value(VERSION_KEY)
    if stored is None:
        return None
    try:
        version = int(str(stored).strip())
    except ValueError:
        return f"are damaged (their version, {str(stored)[:40]!r}, is not a number)"
    if version < 0:
        return f"are damaged (their version, {version}, is negative)"
    if version > SETTINGS_VERSION:
        return (
            f"were written by a newer DiffusionDesk (settings version {version}; this one "
            f"reads up to version {SETTINGS_VERSION})"
        )
    return None


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _scratch_settings() -> QSettings:
    """Settings for this session only, when the real file can neither be used nor moved."""
    folder = Path(tempfile.mkdtemp(prefix="diffusiondesk-settings-"))
    return QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)


def _copy_keys(settings: QSettings, target: Path) -> None:
    copy = QSettings(str(target), QSettings.Format.IniFormat)
    for key in settings.allKeys():
        copy.setValue(key, settings.value(key))
    copy.sync()
    if copy.status() != QSettings.Status.NoError:
        raise OSError(f"could not write {target}")


def set_aside(
    settings: QSettings, reason: str, now: datetime | None = None, aside_dir: Path | None = None
) -> OpenedSettings:
    """Keep the unusable settings under a dated name and start from empty settings.

    A settings file is renamed (its bytes are kept exactly, damaged or not). Settings that
    are not a file (the Windows registry) are copied key by key into an INI file in
    aside_dir (the application's config folder) and then cleared."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = Path(settings.fileName())
    start = "Your settings " + reason
    try:
        if path.exists():
            kept = _free_name(path.with_name(f"{path.name}.set-aside-{stamp}"))
            os.replace(path, kept)
            fresh = QSettings(str(path), settings.format())
            fresh.clear()  # Qt may still hold the old file's keys in its cache
        else:
            folder = aside_dir or Path(
                QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppConfigLocation)
            )
            folder.mkdir(parents=True, exist_ok=True)
            kept = _free_name(folder / f"settings.set-aside-{stamp}.ini")
            _copy_keys(settings, kept)
            settings.clear()
            fresh = settings
    except OSError as exc:
        notice = (
            f"{start}, and they could not be moved aside ({exc}). DiffusionDesk started "
            "with default settings and will not save settings until that is fixed."
        )
        return OpenedSettings(_scratch_settings(), notice)
    fresh.setValue(VERSION_KEY, SETTINGS_VERSION)
    fresh.sync()
    notice = (
        f"{start}, so DiffusionDesk started with default settings. The old settings are "
        f"kept in {kept}."
    )
    return OpenedSettings(fresh, notice)


def open_settings(settings: QSettings, now: datetime | None = None) -> OpenedSettings:
    """Check the settings, migrate them to SETTINGS_VERSION, or set them aside."""
    reason = _unusable(settings)
    if reason is not None:
        return set_aside(settings, reason, now)
    version = int(str(settings.value(VERSION_KEY, 0)).strip())
    dropped: list[str] = []
    for migrate in MIGRATIONS[version:]:
        dropped += migrate(settings)
    if version < SETTINGS_VERSION:
        settings.setValue(VERSION_KEY, SETTINGS_VERSION)
        settings.sync()
    return OpenedSettings(settings, None, tuple(dropped))
