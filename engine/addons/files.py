"""Which add-on files a request names, found in the model folders (no torch here, so
the window and the metadata writer share the engine's answer)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from engine.addons.folder_scan import files_with
from engine.asset_folders import AssetKind, asset_folders, default_roots, find_asset

SAFETENSORS = (".safetensors",)
PICKLED = (".pt", ".bin", ".ckpt")  # A1111 also reads these; they can run code, we do not


def roots_of(folders: Iterable[str]) -> list[Path]:
    """The model roots of a request's `model_folders`; DiffusionDesk's own when empty."""
    roots = [Path(p).expanduser() for p in folders if p]
    return roots or default_roots()


def lora_path(name: str, roots: list[Path]) -> Path | None:
    return find_asset(AssetKind.LORA, name, roots, suffixes=SAFETENSORS)


def vae_path(name: str, roots: list[Path]) -> Path | None:
    """A VAE given as a path (file or folder) or as a file name in the VAE folders."""
    path = Path(name).expanduser()
    if path.is_dir() or path.is_file():
        return path
    return find_asset(AssetKind.VAE, name, roots, suffixes=SAFETENSORS)


def listing(
    kind: AssetKind, roots: list[Path], suffixes: tuple[str, ...] = SAFETENSORS
) -> dict[str, Path]:
    """Name (file stem) -> file for every file of a kind (the first root wins)."""
    found: dict[str, Path] = {}
    for folder in asset_folders(kind, roots):
        paths = files_with(folder, suffixes)  # walked again only when the tree changed
        for path in sorted(paths, key=lambda p: (len(p.parts), str(p))):
            found.setdefault(path.stem, path)
    return found


def embedding_files(roots: list[Path]) -> dict[str, Path]:
    return listing(AssetKind.EMBEDDING, roots)


def mentioned(texts: Iterable[str], names: Iterable[str]) -> list[str]:
    """The names that appear in any of the texts as a whole word (A1111 matches tokens)."""
    texts = list(texts)
    used = []
    for name in names:
        pattern = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
        if any(pattern.search(text) for text in texts):
            used.append(name)
    return used
