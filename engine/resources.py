"""The one locator of the application's own files: the starter model, icons, stylesheet
and the model configs that single-file checkpoints are loaded with.

Found through importlib.resources from the engine package, so a source checkout and an
installed package answer alike; a PyInstaller bundle unpacks them under sys._MEIPASS.
"""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path


def _engine_dir() -> Path:
    return Path(str(files("engine")))


def resources_dir() -> Path:
    """resources/: beside the engine package in a checkout, at the bundle's root."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return _engine_dir().parent / "resources"


def starter_model_dir() -> Path:
    return resources_dir() / "starter-model"


def icons_dir() -> Path:
    return resources_dir() / "icons"


def stylesheet_path() -> Path:
    return resources_dir() / "dark.qss"


def model_configs_dir() -> Path:
    """engine/model_configs/<family>/: the configs single-file checkpoints need, offline."""
    return _engine_dir() / "model_configs"
