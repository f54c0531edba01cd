"""What the window remembers between runs (QSettings): geometry, panels, last
parameters, output folder."""

from __future__ import annotations

import contextlib
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from engine.picture_files import SUFFIXES
from guiapp.state import FormValues, ViewModel

ORGANIZATION = "DiffusionDesk"
APPLICATION = "DiffusionDesk"


def default_output_folder() -> Path:
    pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
    base = Path(pictures) if pictures else Path.home() / "Pictures"
    return base / "DiffusionDesk"


def _coerce(value: object, kind: type) -> object:
    if kind is bool:
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    return kind(value)


class AppSettings:
    def __init__(self, settings: QSettings | None = None) -> None:
        self.qsettings = settings or QSettings(ORGANIZATION, APPLICATION)

    def load_form(self) -> FormValues:
        values = ViewModel.defaults()
        for name, default in ViewModel.defaults().items():
            key = f"parameters/{name}"
            if self.qsettings.contains(key):
                with contextlib.suppress(TypeError, ValueError):
                    values[name] = _coerce(self.qsettings.value(key), type(default))
        return values

    def save_form(self, values: FormValues) -> None:
        for name, value in values.items():
            # ints as text: a 64-bit seed does not fit QSettings' signed integers
            stored = str(value) if type(value) is int else value
            self.qsettings.setValue(f"parameters/{name}", stored)

    def engine_dtype(self) -> str:
        return str(self.qsettings.value("engine/dtype", "auto"))

    def set_engine_dtype(self, dtype: str) -> None:
        self.qsettings.setValue("engine/dtype", dtype)

    def engine_backend(self) -> str:
        return str(self.qsettings.value("engine/backend", "auto"))

    def set_engine_backend(self, backend: str) -> None:
        self.qsettings.setValue("engine/backend", backend)

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
        with contextlib.suppress(TypeError, ValueError):
            return int(str(self.qsettings.value("canvas/brush_size", 24)))
        return 24

    def set_brush_size(self, size: int) -> None:
        self.qsettings.setValue("canvas/brush_size", size)

    def save_format(self) -> str:
        """ "PNG", "JPEG" or "WEBP": how finished pictures are saved."""
        value = str(self.qsettings.value("output/format", "PNG")).upper()
        return value if value in SUFFIXES else "PNG"

    def set_save_format(self, picture_format: str) -> None:
        self.qsettings.setValue("output/format", picture_format)

    def sync(self) -> None:
        self.qsettings.sync()
