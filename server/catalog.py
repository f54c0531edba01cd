"""The models a server offers, by name: the only models a remote client can ask for.

Clients name a model ("starter", "sd15.safetensors", "sub/folder-model"); the server
maps the name to a file or folder inside its configured model folders. A client never
sends a path, a URL or a hub id that the server would open: an unknown name is refused
with the list of names it could use, so traversal ("../../etc/passwd") has nowhere to go.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from engine.api import STARTER_MODEL, EngineError, ErrorKind
from engine.asset_folders import AssetKind, asset_folders, default_roots, find_asset

CHECKPOINT_SUFFIXES = (".safetensors",)
MAX_LISTED = 20  # names quoted in a "no such model" message


class ModelCatalog:
    """Model names mapped to sources the engine loads, rescanned when a name is missing."""

    def __init__(
        self,
        roots: Iterable[Path] = (),
        *,
        include_starter: bool = True,
        fixed: Mapping[str, str] | None = None,
    ) -> None:
        """roots: model folders (ours, A1111's or ComfyUI's `models/`, or a checkpoint
        folder itself); fixed: extra name -> source pairs (tests, a configured hub id)."""
        self._roots = [Path(r).expanduser() for r in roots]
        self._fixed = dict(fixed or {})
        if include_starter:
            self._fixed.setdefault(STARTER_MODEL, STARTER_MODEL)
        self._lock = threading.Lock()
        self._scanned: dict[str, str] = {}
        self.rescan()

    def rescan(self) -> None:
        found: dict[str, str] = {}
        for folder in self._folders():
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES:
                    if path.parent.name in ("unet", "vae", "text_encoder", "text_encoder_2"):
                        continue  # a component of a diffusers folder, not a checkpoint
                    found.setdefault(path.relative_to(folder).as_posix(), str(path))
                elif path.name == "model_index.json":
                    name = path.parent.relative_to(folder).as_posix()
                    if name != ".":
                        found.setdefault(name, str(path.parent))
        with self._lock:
            self._scanned = found

    def _folders(self) -> list[Path]:
        folders = asset_folders(AssetKind.CHECKPOINT, self._roots)
        # A root given as the folder of checkpoints itself, under any name.
        for root in self._roots:
            if root.is_dir() and root.resolve() not in folders:
                folders.append(root.resolve())
        return folders

    def names(self) -> list[str]:
        with self._lock:
            return sorted(set(self._fixed) | set(self._scanned))

    def resolve(self, name: object) -> str:
        """The source the engine loads for `name`, or an EngineError(MODEL) that lists
        what the server has."""
        if not isinstance(name, str) or not name:
            raise EngineError(ErrorKind.BAD_INPUT, "the model must be a model's name (text)")
        source = self._lookup(name)
        if source is None:
            self.rescan()  # a file added since the last scan
            source = self._lookup(name)
        if source is None:
            listed = self.names()
            shown = ", ".join(listed[:MAX_LISTED]) + (" …" if len(listed) > MAX_LISTED else "")
            raise EngineError(
                ErrorKind.MODEL,
                f"This server has no model called {name[:80]!r}; choose one of: {shown}.",
            )
        return source

    @property
    def roots(self) -> list[Path]:
        """The model roots this server's add-ons (LoRAs, embeddings, VAEs) come from."""
        return list(self._roots) or default_roots()

    def resolve_asset(
        self, kind: AssetKind, name: object, suffixes: tuple[str, ...] = CHECKPOINT_SUFFIXES
    ) -> str:
        """The file of an add-on a client names (a VAE, ...), inside the server's folders
        only; a path, or a name that is not there, is refused."""
        what = kind.value.replace("_", " ")
        if not isinstance(name, str) or not name.strip():
            raise EngineError(ErrorKind.BAD_INPUT, f"the {what} must be a file's name (text)")
        if "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
            raise EngineError(
                ErrorKind.BAD_INPUT,
                f"the {what} {name[:80]!r} is a path; on a server, name the file only "
                f"(it is looked up in the server's {what} folders)",
            )
        path = find_asset(kind, name, self.roots, suffixes=suffixes)
        if path is None:
            raise EngineError(ErrorKind.MODEL, f"This server has no {what} called {name[:80]!r}.")
        return str(path)

    def _lookup(self, name: str) -> str | None:
        with self._lock:
            return self._fixed.get(name) or self._scanned.get(name)

    def name_of(self, source: str) -> str:
        """The public name of a source (for events that carry it), never a server path."""
        with self._lock:
            for table in (self._fixed, self._scanned):
                for name, value in table.items():
                    if value == source:
                        return name
        return Path(source).name
