"""Inpaint previews on the canvas: the engine sends whole, already composited pictures
(engine/api.py Step); the window only scales them to the picture and shows them, so a
preview's changed pixels land where the final image will change: inside the mask's box."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

MARGIN = 2  # pixels a scaled-up preview may blur past the box


def _masked_picture(window) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A smooth 96x64 picture with a mask over x 56..79, y 16..39; returns it and the box.

    Smooth, so that a half-size preview scaled back up matches it outside the mask."""
    ys, xs = np.mgrid[0:64, 0:96]
    picture = np.stack([xs * 2, ys * 3, np.full_like(xs, 100)], axis=2).astype(np.uint8)
    window.workspace.put_picture(Image.fromarray(picture, "RGB"))
    mask = np.zeros((64, 96), np.uint8)
    mask[16:40, 56:80] = 255
    window.workspace.document.set_mask_array(mask)
    return picture, (56, 16, 80, 40)


def _changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 8
    ys, xs = np.nonzero(changed)
    assert len(xs) > 0, "the preview changed nothing"
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("only_masked", [True, False])
@pytest.mark.parametrize("noisy", [False, True])
def test_an_inpaint_preview_changes_only_pixels_inside_the_mask_box(
    qtbot, window, fake_engine, only_masked: bool, noisy: bool
) -> None:
    picture, (left, top, right, bottom) = _masked_picture(window)
    window.form.inpaint_only_masked = only_masked
    window.form.show_noisy = noisy
    window.form.steps = 4
    fake_engine.gate = threading.Event()
    shown_before = window.canvas.previews_shown
    assert window.workspace.inpaint() is not None
    qtbot.waitUntil(lambda: window.canvas.previews_shown > shown_before)
    shown = window.canvas.shown_pixels()
    fake_engine.gate.set()
    assert shown.shape == picture.shape, "the preview is shown at the picture's size"
    x0, y0, x1, y1 = _changed_box(picture, shown)
    assert x0 >= left - MARGIN and y0 >= top - MARGIN
    assert x1 <= right + MARGIN and y1 <= bottom + MARGIN
    assert (x1 - x0) >= (right - left) // 2, "the repainted region is shown, not a corner of it"
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1)


def test_the_finished_inpaint_replaces_only_the_masked_pixels(qtbot, window) -> None:
    picture, (left, top, right, bottom) = _masked_picture(window)
    window.form.inpaint_only_masked = True
    window.form.steps = 2
    window.workspace.inpaint()
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1)
    result = window.canvas.shown_pixels()
    assert _changed_box(picture, result) == (left, top, right, bottom)
