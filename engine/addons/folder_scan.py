"""The files of a folder tree with given endings, walked again only when a folder in the
tree changed.

Every job looks its prompt's embeddings up by name, so the embedding folders were walked
(four globs) on every job: milliseconds a job for a large folder, for nothing when no file
came or went. Adding, removing or renaming an entry changes the modification time of the
folder that holds it, so the walk is kept with the times of every folder it went through,
and those are compared (one stat a folder) before it is trusted again. No torch here.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# A folder changed this recently may change again within the file system's time
# resolution (2 s on FAT) without its time moving, so such a walk is not reused.
SETTLED_SECONDS = 2.0


@dataclass(frozen=True)
class _Walk:
    folders: tuple[tuple[str, int], ...]  # every folder walked, with its mtime in ns
    found: tuple[Path, ...]
    reusable: bool  # no folder had changed within SETTLED_SECONDS of the walk


_walks: dict[tuple[Path, tuple[str, ...]], _Walk] = {}
_lock = threading.Lock()  # the window's thread and the engine's worker both list


def files_with(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """What `[p for s in suffixes for p in folder.rglob(f"*{s}")]` finds (symlinked
    folders are not entered, as Python 3.11's rglob does not), in no particular order."""
    key = (Path(folder), tuple(suffixes))
    with _lock:
        known = _walks.get(key)
    if known is not None and known.reusable and _unchanged(known.folders):
        return list(known.found)
    walk = _walk(*key)
    with _lock:
        _walks[key] = walk
    return list(walk.found)


def _unchanged(folders: tuple[tuple[str, int], ...]) -> bool:
    for path, mtime in folders:
        try:
            if os.stat(path).st_mtime_ns != mtime:
                return False
        except OSError:
            return False
    return True


def _walk(folder: Path, suffixes: tuple[str, ...]) -> _Walk:
    settled = time.time_ns() - int(SETTLED_SECONDS * 1e9)
    patterns = [f"*{suffix}" for suffix in suffixes]
    folders: list[tuple[str, int]] = []
    found: list[Path] = []
    for where, subfolders, files in os.walk(folder):
        try:
            folders.append((where, os.stat(where).st_mtime_ns))
        except OSError:
            continue
        names = [*subfolders, *files]  # a glob matches folders by name too
        for pattern in patterns:
            found += [Path(where, name) for name in fnmatch.filter(names, pattern)]
    reusable = bool(folders) and all(mtime < settled for _, mtime in folders)
    return _Walk(tuple(folders), tuple(found), reusable)
