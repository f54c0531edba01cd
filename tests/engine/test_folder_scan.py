"""Add-on folders are walked again only when a folder in them changed (engine/addons/
folder_scan.py), and the walk finds what rglob finds: files that come, go or are renamed
show at the next lookup, in any sub-folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.addons import folder_scan
from engine.addons.files import PICKLED, SAFETENSORS
from engine.addons.folder_scan import files_with

OLD = time.time() - 3600  # well before the walk: the walk may be reused


def _tree(root: Path) -> Path:
    for name in ("a.safetensors", "deep/er/b.safetensors", "deep/c.pt", "d.txt", ".e.safetensors"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (root / "folder.safetensors").mkdir()  # a glob matches folders by name too
    _age(root)
    return root


def _age(root: Path) -> None:
    for where, _, _ in os.walk(root):
        os.utime(where, (OLD, OLD))


def _rglob(root: Path, suffixes: tuple[str, ...]) -> set[Path]:
    return {p for suffix in suffixes for p in root.rglob(f"*{suffix}")}


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The folders walked from here on."""
    monkeypatch.setattr(folder_scan, "_walks", {})
    walked: list[Path] = []
    walk = folder_scan._walk

    def counted(folder: Path, suffixes: tuple[str, ...]) -> folder_scan._Walk:
        walked.append(folder)
        return walk(folder, suffixes)

    monkeypatch.setattr(folder_scan, "_walk", counted)
    return walked


@pytest.mark.parametrize("suffixes", [SAFETENSORS, PICKLED, SAFETENSORS + PICKLED])
def test_the_walk_finds_what_rglob_finds(tmp_path: Path, walks: list[Path], suffixes) -> None:
    root = _tree(tmp_path / "embeddings")
    assert set(files_with(root, suffixes)) == _rglob(root, suffixes)


def test_an_unchanged_tree_is_not_walked_again(tmp_path: Path, walks: list[Path]) -> None:
    root = _tree(tmp_path / "embeddings")
    first = files_with(root, SAFETENSORS)
    assert files_with(root, SAFETENSORS) == first
    assert walks == [root]


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "deep/er/new.safetensors").write_bytes(b"x"),
        lambda root: (root / "a.safetensors").unlink(),
        lambda root: (root / "deep/er/b.safetensors").rename(root / "deep/er/z.safetensors"),
        lambda root: (root / "deep/fresh").mkdir(),
    ],
    ids=["added deep down", "removed", "renamed", "a new sub-folder"],
)
def test_a_change_anywhere_in_the_tree_is_seen_at_the_next_lookup(
    tmp_path: Path, walks: list[Path], change
) -> None:
    root = _tree(tmp_path / "embeddings")
    files_with(root, SAFETENSORS)
    change(root)
    assert set(files_with(root, SAFETENSORS)) == _rglob(root, SAFETENSORS)
    assert walks == [root, root]


def test_a_tree_changed_moments_ago_is_walked_every_time(tmp_path: Path, walks: list[Path]) -> None:
    """Within the file system's time resolution a second change may leave the time as it
    was, so a fresh tree is not trusted yet."""
    root = _tree(tmp_path / "embeddings")
    (root / "new.safetensors").write_bytes(b"x")  # the root's time is now
    files_with(root, SAFETENSORS)
    files_with(root, SAFETENSORS)
    assert walks == [root, root]


def test_a_missing_folder_lists_nothing(tmp_path: Path, walks: list[Path]) -> None:
    assert files_with(tmp_path / "nowhere", SAFETENSORS) == []
    root = _tree(tmp_path / "gone")
    files_with(root, SAFETENSORS)
    for path in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):
        path.rmdir() if path.is_dir() else path.unlink()
    root.rmdir()
    assert files_with(root, SAFETENSORS) == []
