# ruff: noqa: F811 - the window fixtures come from tests/gui/conftest.py
"""The window meets hostile files: the inline error strip says one sentence, nothing is lost
(an image that cannot be saved stays in the history and Save as… writes it elsewhere), and
the window stays usable."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
from gui.conftest import fake_engine, make_window, no_leaks, settings, window  # noqa: F401
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from reliability_helpers import encode, png_with_header

from engine import atomic_file, metadata
from engine.api import GenerationRequest
from guiapp.imaging import qimage_to_array

pytestmark = pytest.mark.gui


def entries(window) -> list:
    return window.workspace.history.entries()


def wait_history(qtbot, window, count: int) -> None:
    qtbot.waitUntil(lambda: len(entries(window)) >= count, timeout=60_000)


def strip(window) -> str:
    return window.error_area.message()


def generate_one(qtbot, window) -> None:
    window.form.prompt = "a red circle"
    window.form.steps = 2
    before = len(entries(window))
    assert window.workspace.generate() is not None
    wait_history(qtbot, window, before + 1)


def test_opening_a_decompression_bomb_says_how_much_memory_it_needs(window, tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_header(40_000, 40_000))
    assert window.workspace.open_image(path) is False
    assert "would need about" in strip(window) and "GB of memory" in strip(window)
    assert window.workspace.document.image is None
    assert "\n" not in strip(window)


def test_opening_a_text_file_says_it_is_not_an_image(window, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    assert window.workspace.open_image(path) is False
    assert "is not an image file" in strip(window)


def test_opening_a_picture_with_transparency_puts_its_mask_on_the_canvas(window, tmp_path):
    picture = Image.new("RGBA", (64, 48), (20, 40, 60, 255))
    picture.paste((0, 0, 0, 0), (16, 8, 40, 32))
    path = tmp_path / "holes.png"
    path.write_bytes(encode(picture))
    assert window.workspace.open_image(path) is True
    mask = window.workspace.document.mask_array()
    assert mask.shape == (48, 64)
    assert mask[20, 20] == 255 and mask[2, 2] == 0
    assert "transparent part is used as the mask" in strip(window)
    assert qimage_to_array(window.workspace.document.image)[2, 2].tolist() == [20, 40, 60]


def test_opening_an_exif_rotated_photo_shows_it_upright(window, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 32), (90, 90, 90)).save(path, exif=exif)
    assert window.workspace.open_image(path) is True
    image = window.workspace.document.image
    assert (image.width(), image.height()) == (32, 64)


def test_a_png_with_impossible_parameters_fills_the_form_with_the_good_ones(window, tmp_path):
    info = PngInfo()
    info.add_text(
        "parameters",
        "a castle\nSteps: -4, Sampler: Euler a, CFG scale: inf, Seed: 1e999, Size: 513x512",
    )
    path = tmp_path / "odd.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    steps, guidance, seed = window.form.steps, window.form.guidance_scale, window.form.seed
    assert window.workspace.open_image(path) is True
    for words in ("1e999", "-4", "inf", "513x512"):  # each value left out is named
        assert words in strip(window), strip(window)
    window.workspace.reuse_parameters(entries(window)[0])
    assert window.form.prompt == "a castle" and window.form.scheduler == "Euler a"
    assert window.form.steps != -4 and window.form.width % 8 == 0
    assert (window.form.guidance_scale, window.form.seed) == (guidance, seed)
    assert window.form.steps in (steps, 20)


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.ENOSPC, "is full"), (errno.EROFS, "read-only"), (errno.EACCES, "permission denied")],
)
def test_an_image_the_output_folder_refuses_stays_in_the_history_and_saves_elsewhere(
    qtbot, window, tmp_path, monkeypatch, code, words
):
    def refuse(*_args, **_kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic_file.os, "fsync", refuse)
    generate_one(qtbot, window)
    assert words in strip(window) and "Save as" in strip(window)
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []  # no partial PNG, no temp file
    entry = entries(window)[0]
    assert entry.request is not None and entry.request.prompt == "a red circle"
    monkeypatch.undo()
    elsewhere = tmp_path / "elsewhere" / "saved.png"
    assert window.workspace.save_entry_as(entry, elsewhere) is True
    assert metadata.read_parameters(elsewhere).prompt == "a red circle"
    shown = qimage_to_array(entry.image)
    assert np.array_equal(np.asarray(Image.open(elsewhere).convert("RGB")), shown)


def test_save_as_onto_a_full_disk_says_so_and_leaves_nothing(qtbot, window, tmp_path, monkeypatch):
    generate_one(qtbot, window)
    entry = entries(window)[0]

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_file.os, "fsync", full)
    target = tmp_path / "full-disk"
    assert window.workspace.save_entry_as(entry, target / "a.png") is False
    assert "is full" in strip(window)
    assert list(target.iterdir()) == []


def test_a_vanished_output_folder_is_made_again(qtbot, window, tmp_path):
    out = tmp_path / "out"
    generate_one(qtbot, window)
    for path in out.iterdir():
        path.unlink()
    out.rmdir()
    generate_one(qtbot, window)
    assert entries(window)[0].path.exists()
    assert strip(window) == ""


def test_our_own_record_with_impossible_values_names_what_was_left_out(window, tmp_path):
    record = metadata.to_record(GenerationRequest(prompt="a tower"), seed=3)
    record.update(steps=-1, guidance_scale="lots", inpaint_only_masked="false", width=513)
    info = PngInfo()
    info.add_text("diffusiondesk", json.dumps(record))
    path = tmp_path / "ours.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    assert window.workspace.open_image(path) is True
    for words in ("Steps -1", "Guidance scale 'lots'", "Width 513", "was left out"):
        assert words in strip(window), strip(window)
    request = entries(window)[0].request
    assert request.prompt == "a tower" and request.steps >= 1
    assert request.inpaint_only_masked is False and request.width % 8 == 0
