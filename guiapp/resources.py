"""The window's icons and stylesheet, found by the engine's one resources locator."""

from __future__ import annotations

from pathlib import Path

from engine.resources import icons_dir, stylesheet_path

__all__ = ["icon_path", "stylesheet_path"]


def icon_path(name: str) -> Path:
    return icons_dir() / f"{name}.svg"
