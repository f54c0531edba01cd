"""The weight-free preprocessors: each gives a white-on-black map of the asked size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.api import Preprocessor
from engine.control.preprocess import canny, control_map, lineart, scribble, soft_edge


def square(size: int = 64) -> Image.Image:
    """A grey square on white, from 16 to 47."""
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill=(60, 60, 60))
    return image


def white(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L")) > 127


def test_canny_marks_the_square_outline_and_nothing_inside_or_outside():
    edges = white(canny(square(), (64, 64)))
    assert edges[14:50, 14:50].sum() > 4 * 28  # about the outline's length
    assert not edges[22:42, 22:42].any()  # the flat inside
    assert not edges[:10].any() and not edges[:, :10].any()  # the flat outside
    rows, cols = np.nonzero(edges)
    assert rows.min() >= 13 and rows.max() <= 50 and cols.min() >= 13 and cols.max() <= 50


def test_canny_lines_are_thin():
    edges = white(canny(square(), (64, 64)))
    assert edges[32, :].sum() <= 4  # one row crosses the left and right edges: 1-2 px each


def test_soft_edge_is_brightest_at_the_border_and_graded():
    soft = np.asarray(soft_edge(square(), (64, 64)).convert("L"), dtype=float)
    assert soft[32, 14:18].max() > 200
    assert soft[32, 30:34].max() < 20
    assert len(np.unique(soft)) > 10  # grey levels, not a binary map


def test_lineart_picks_dark_strokes_on_light_paper():
    paper = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(paper).line((8, 32, 56, 32), fill="black", width=2)
    lines = white(lineart(paper, (64, 64)))
    assert lines[31:34, 10:54].mean() > 0.4
    assert not lines[:20].any() and not lines[45:].any()


def test_scribble_thickens_a_thin_drawing_on_any_background():
    drawing = Image.new("RGB", (128, 128), (30, 30, 90))
    ImageDraw.Draw(drawing).line((10, 64, 118, 64), fill=(250, 250, 0), width=1)
    strokes = white(scribble(drawing, (128, 128)))
    assert strokes[63:66, 20:100].all()  # a 1 px line becomes 3 px wide at 128 px
    assert not strokes[:50].any()


@pytest.mark.parametrize("kind", [p.value for p in Preprocessor])
def test_every_preprocessor_gives_an_rgb_map_of_the_requested_size(kind):
    out = control_map(square(100), kind, (48, 40))
    assert out.mode == "RGB" and out.size == (48, 40)


def test_none_passes_a_depth_map_through_resized():
    depth = Image.linear_gradient("L").convert("RGB")
    out = control_map(depth, "none", (64, 64))
    values = np.asarray(out)[:, 32, 0].astype(int)
    assert values[0] < 10 and values[-1] > 245 and (np.diff(values) >= 0).all()
