"""The one locator of the application's files: the starter model, icons, stylesheet and
model configurations, wherever DiffusionDesk is installed.

resources/ is shipped as the package `diffusiondesk_resources` (setup.py maps the name
onto the folder, so the 31 MB starter model never moves), and engine/model_configs as
package data of `engine`. Both are found through importlib.resources, which answers for
a wheel, an editable install and a PyInstaller bundle alike. A source checkout that was
never installed (or a shared environment holding another checkout's editable install)
uses the resources/ folder beside this engine/, so code and files always come from the
same tree. No torch, no Qt: the window and the CLI both import this.
"""

from __future__ import annotations

import importlib.resources
from functools import cache
from pathlib import Path

RESOURCES_PACKAGE = "diffusiondesk_resources"
_CHECKOUT = Path(__file__).resolve().parent.parent


class ResourcesMissing(FileNotFoundError):
    """The application's files are not where the install put them."""


def _as_path(package: str) -> Path:
    root = importlib.resources.files(package)
    if not isinstance(root, Path):  # a zip import: models need real folders
        raise ResourcesMissing(
            f"{package} is installed as a zip archive ({root}); reinstall DiffusionDesk "
            "with pip (not as an egg or zipapp)."
        )
    return root


@cache
def resources_dir() -> Path:
    """The folder holding icons/, dark.qss and starter-model/."""
    checkout = _CHECKOUT / "resources"
    if (_CHECKOUT / "pyproject.toml").is_file() and (checkout / "__init__.py").is_file():
        return checkout
    try:
        return _as_path(RESOURCES_PACKAGE)
    except ModuleNotFoundError as exc:
        raise ResourcesMissing(
            f"DiffusionDesk's files (package {RESOURCES_PACKAGE}) are not installed; "
            "reinstall DiffusionDesk."
        ) from exc


def starter_model_dir() -> Path:
    return resources_dir() / "starter-model"


def icons_dir() -> Path:
    return resources_dir() / "icons"


def stylesheet_path() -> Path:
    return resources_dir() / "dark.qss"


@cache
def model_configs_dir() -> Path:
    """engine/model_configs: the diffusers configs and tokenizers single files need."""
    return _as_path("engine") / "model_configs"
