"""Full, read-only, forbidden or vanished output folders: a sentence saying what happened
and what to do, no partial PNG or temporary file left behind, and (in the window) the image
kept in the history so that Save as… can put it elsewhere."""

from __future__ import annotations

import errno
import os

import pytest
from engine_helpers import picture
from PIL import Image
from reliability_helpers import cli_fails_with, one_sentence

from engine import atomic_file, metadata
from engine.api import ErrorKind, GenerationRequest

REQUEST = GenerationRequest(prompt="a red circle", seed=3)


def only_files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def refuse_with(monkeypatch, code: int, where: str = "mkstemp") -> None:
    """Make the disk refuse with errno `code` at one point of the atomic write."""

    def refuse(*_args, **_kwargs):
        raise OSError(code, os.strerror(code))

    target = {"mkstemp": (atomic_file.tempfile, "mkstemp"), "fsync": (atomic_file.os, "fsync")}
    monkeypatch.setattr(*target[where], refuse)


@pytest.mark.parametrize(
    ("code", "where", "words"),
    [
        (errno.ENOSPC, "fsync", "is full"),
        (errno.EDQUOT, "fsync", "is full"),
        (errno.EROFS, "mkstemp", "read-only disk"),
        (errno.EACCES, "mkstemp", "permission denied"),
        (errno.EPERM, "mkstemp", "permission denied"),
        (errno.ENOENT, "mkstemp", "is gone"),
        (errno.EIO, "fsync", "could not be saved"),
    ],
)
def test_a_refusing_disk_gets_a_sentence_and_leaves_nothing_behind(
    tmp_path, monkeypatch, code, where, words
):
    folder = tmp_path / "out"
    folder.mkdir()
    refuse_with(monkeypatch, code, where)
    with pytest.raises(atomic_file.SaveError) as caught:
        metadata.save_png(picture(), folder / "a.png", REQUEST, 3)
    assert caught.value.kind == ErrorKind.BAD_INPUT and caught.value.errno == code
    one_sentence(caught.value.message)
    assert words in caught.value.message and "a.png" in caught.value.message
    assert only_files(folder) == []


def test_a_disk_that_fills_up_halfway_through_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "a.png"
    metadata.save_png(picture(), path, REQUEST, 3)
    before = path.read_bytes()

    def half_then_full(f) -> None:
        f.write(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(atomic_file.SaveError, match="is full"):
        atomic_file.atomic_write(path, half_then_full)
    assert path.read_bytes() == before and only_files(tmp_path) == ["a.png"]


def test_a_failed_rename_removes_the_temporary_file(tmp_path, monkeypatch):
    def no_rename(*_args) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(atomic_file.os, "replace", no_rename)
    with pytest.raises(atomic_file.SaveError):
        metadata.save_png(picture(), tmp_path / "a.png", REQUEST, 3)
    assert only_files(tmp_path) == []


def test_a_vanished_output_folder_is_made_again_and_nothing_is_lost(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    folder.rmdir()
    path = metadata.save_png(picture(), folder / "a.png", REQUEST, 3)
    assert Image.open(path).size == (32, 32) and metadata.read_parameters(path).seed == 3


def test_an_output_folder_inside_a_file_says_it_is_not_a_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(atomic_file.SaveError, match="is not a folder") as caught:
        metadata.save_png(picture(), blocker / "out" / "a.png", REQUEST, 3)
    one_sentence(caught.value.message)
    assert only_files(tmp_path) == ["file"]


def test_a_save_error_is_still_an_os_error_for_older_callers(tmp_path, monkeypatch):
    refuse_with(monkeypatch, errno.ENOSPC, "fsync")
    with pytest.raises(OSError, match="is full"):
        metadata.save_png(picture(), tmp_path / "a.png", REQUEST, 3)


BASE = ["--prompt", "a", "--model", "tiny", "--steps", "1", "--width", "32", "--height", "32"]


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.ENOSPC, "is full"), (errno.EROFS, "read-only"), (errno.EACCES, "permission")],
)
def test_the_cli_says_why_a_finished_image_was_not_saved(cli, tmp_path, monkeypatch, code, words):
    refuse_with(monkeypatch, code, "fsync" if code == errno.ENOSPC else "mkstemp")
    line = cli_fails_with(cli, *BASE, words=words, output=tmp_path / "out" / "a.png")
    assert "choose another" in line or "free some space" in line
