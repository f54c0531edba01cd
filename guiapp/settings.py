"""What the window remembers between runs (QSettings): geometry, panels, last
parameters, output folder. Opening checks, migrates or sets aside the stored settings
(guiapp/settings_upgrade.py); `notice` says when they had to be set aside."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from engine.picture_files import SUFFIXES
from guiapp.engine_location import EngineLocation
from guiapp.settings_upgrade import (
    BRUSH_SIZE_KEY,
    DEFAULT_BRUSH_SIZE,
    FORM_GROUP,
    coerce,
    open_settings,
    stored_form_value,
)
from guiapp.state import FormValues, ViewModel

ORGANIZATION = "DiffusionDesk"
APPLICATION = "DiffusionDesk"


def default_output_folder() -> Path:
    pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
    base = Path(pictures) if pictures else Path.home() / "Pictures"
    return base / "DiffusionDesk"


class AppSettings:
    def __init__(self, settings: QSettings | None = None) -> None:
        opened = open_settings(settings or QSettings(ORGANIZATION, APPLICATION))
        self.qsettings = opened.qsettings
        self.notice = opened.notice

    def load_form(self) -> FormValues:
        values = ViewModel.defaults()
        for name, default in ViewModel.defaults().items():
            key = f"{FORM_GROUP}/{name}"
            if self.qsettings.contains(key):
                with contextlib.suppress(TypeError, ValueError):
                    values[name] = coerce(self.qsettings.value(key), type(default))
        return values

    def save_form(self, values: FormValues) -> None:
        for name, value in values.items():
            self.qsettings.setValue(f"{FORM_GROUP}/{name}", stored_form_value(value))

    def engine_dtype(self) -> str:
        return str(self.qsettings.value("engine/dtype", "auto"))

    def set_engine_dtype(self, dtype: str) -> None:
        self.qsettings.setValue("engine/dtype", dtype)

    def engine_backend(self) -> str:
        return str(self.qsettings.value("engine/backend", "auto"))

    def set_engine_backend(self, backend: str) -> None:
        self.qsettings.setValue("engine/backend", backend)

    def engine_location(self) -> EngineLocation:
        """This computer, or a server and its token. The token is kept in plain text in
        the settings file, which is made readable by this user account only."""
        return EngineLocation(
            str(self.qsettings.value("engine/server", "") or ""),
            str(self.qsettings.value("engine/token", "") or ""),
        )

    def set_engine_location(self, location: EngineLocation) -> None:
        self.qsettings.setValue("engine/server", location.server.strip())
        self.qsettings.setValue("engine/token", location.token.strip())
        if location.token.strip():
            self.qsettings.sync()
            with contextlib.suppress(OSError):  # e.g. the registry on Windows: no file
                os.chmod(self.qsettings.fileName(), 0o600)

    def settings_file(self) -> str:
        """Where these settings live (shown next to the token field)."""
        return self.qsettings.fileName()

    def output_folder(self) -> Path:
        value = self.qsettings.value("output/folder")
        return Path(str(value)) if value else default_output_folder()

    def set_output_folder(self, folder: Path) -> None:
        self.qsettings.setValue("output/folder", str(folder))

    def geometry(self) -> QByteArray | None:
        value = self.qsettings.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    def window_state(self) -> QByteArray | None:
        value = self.qsettings.value("window/state")
        return value if isinstance(value, QByteArray) else None

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self.qsettings.setValue("window/geometry", geometry)
        self.qsettings.setValue("window/state", state)

    def brush_size(self) -> int:
        try:
            return int(str(self.qsettings.value(BRUSH_SIZE_KEY, DEFAULT_BRUSH_SIZE)).strip())
        except ValueError:
            return DEFAULT_BRUSH_SIZE

    def set_brush_size(self, size: int) -> None:
        self.qsettings.setValue(BRUSH_SIZE_KEY, size)

    def save_format(self) -> str:
        """ "PNG", "JPEG" or "WEBP": how finished pictures are saved."""
        value = str(self.qsettings.value("output/format", "PNG")).upper()
        return value if value in SUFFIXES else "PNG"

    def set_save_format(self, picture_format: str) -> None:
        self.qsettings.setValue("output/format", picture_format)

    def sync(self) -> None:
        self.qsettings.sync()
