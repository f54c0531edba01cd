"""Outpainting through the engine with tiny models: the original pixels come back exactly,
the new area is painted (not left as the fill), expansions repeat, a large picture is
extended piece by piece on overlapping crops, and bad expansions get a sentence."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import WAIT, picture, request

from engine import outpaint
from engine.api import Expand, Failed, Finished, GenerationRequest, OutpaintFill, Step
from engine.compositing import seam_corrected
from engine.validation import problems

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def expanding(image, **sides: int) -> GenerationRequest:
    e = Expand(**sides)
    width, height = outpaint.expanded_size(image.size, e)
    return request(init_image=image, expand=e, width=width, height=height, strength=1.0)


def run(engine, r: GenerationRequest) -> Finished:
    result = engine.generate(r, WAIT)
    assert isinstance(result, Finished), result
    return result


def test_expanding_keeps_the_original_pixels_exactly_and_paints_the_new_area(engine):
    image = picture((32, 32))
    r = expanding(image, left=16, bottom=8)
    result = run(engine, r)
    out = np.asarray(result.images[0])
    assert result.images[0].size == (48, 40)
    assert np.array_equal(out[0:32, 16:48], np.asarray(image))
    fill = np.asarray(outpaint.canvas(image, r.expand, result.seeds[0]))
    new = np.asarray(outpaint.new_area_mask(image.size, r.expand)) > 0
    assert (out[new] != fill[new]).any(axis=1).mean() > 0.9  # painted, not the fill
    assert result.request.expand == r.expand and result.request.width == 48


def test_every_fill_keeps_the_original_and_a_batch_gets_one_canvas_each(engine):
    image = picture((32, 32))
    for fill in OutpaintFill:
        r = expanding(image, right=8, top=8).with_changes(
            expand=Expand(right=8, top=8, fill=fill.value), batch_size=2
        )
        result = run(engine, r)
        assert len(result.images) == 2
        for out in result.images:
            assert np.array_equal(np.asarray(out)[8:40, 0:32], np.asarray(image))


def test_expansions_in_a_row_keep_every_earlier_picture(engine):
    image = picture((32, 32))
    first = run(engine, expanding(image, left=8, right=8)).images[0]
    second = run(engine, expanding(first, top=16)).images[0]
    third = run(engine, expanding(second, right=8, bottom=8)).images[0]
    out = np.asarray(third)
    assert third.size == (56, 56)
    assert np.array_equal(out[0:48, 0:48], np.asarray(second))
    assert np.array_equal(out[16:48, 8:40], np.asarray(image))


def test_a_large_picture_is_extended_piece_by_piece_on_overlapping_crops(engine, recorder):
    image = picture((96, 64))
    r = expanding(image, left=16, right=16, top=16).with_changes(
        inpaint_only_masked=True, inpaint_padding=8, expand=Expand(16, 16, 16, 0, tile=48)
    )
    pieces = outpaint.pieces(r)
    assert len(pieces) > 3
    for piece in pieces:  # each crop is at most the tile and holds its cell
        x1, y1, x2, y2 = piece.crop
        assert x2 - x1 <= 48 and y2 - y1 <= 48
        assert x1 <= piece.cell[0] and piece.cell[2] <= x2
    job = engine.submit(r)
    result = engine.wait(job, WAIT)
    assert isinstance(result, Finished), result
    out = np.asarray(result.images[0])
    assert result.images[0].size == (128, 80)
    assert np.array_equal(out[16:80, 16:112], np.asarray(image))
    fill = np.asarray(outpaint.canvas(image, r.expand, result.seeds[0]))
    new = np.asarray(outpaint.new_area_mask(image.size, r.expand)) > 0
    assert (out[new] != fill[new]).any(axis=1).mean() > 0.9
    steps = recorder.of(job, Step)
    assert [s.step for s in steps] == list(range(1, len(pieces) * 3 + 1))
    assert all(s.preview.shape[1] > s.preview.shape[0] for s in steps)  # the whole canvas


def test_the_seam_band_shifts_the_painting_toward_the_original_and_keeps_it_exact():
    original = np.full((16, 32, 3), 100, np.uint8)
    generated = np.full((16, 32, 3), 140, np.uint8)  # the painting came out too light
    kept = np.zeros((16, 32), bool)
    kept[:, 16:] = True
    composite = np.where(kept[..., None], original, generated)
    out = seam_corrected(original, generated, composite, kept, band=8)
    assert np.array_equal(out[:, 16:], original[:, 16:])
    assert abs(int(out[8, 15, 0]) - 100) < abs(int(out[8, 4, 0]) - 100)  # nearer the seam
    assert int(out[8, 0, 0]) == 140  # beyond the band: the painting as it was


@pytest.mark.parametrize(
    ("text", "sides"),
    [
        ("128", {"left": 128, "right": 128, "top": 128, "bottom": 128}),
        ("left=128,right=64", {"left": 128, "right": 64, "top": 0, "bottom": 0}),
        ("up=8, down=16", {"left": 0, "right": 0, "top": 8, "bottom": 16}),
        ("all=32,left=8", {"left": 8, "right": 32, "top": 32, "bottom": 32}),
    ],
)
def test_expand_text_names_sides_or_all_around(text, sides):
    assert outpaint.parse_expand(text) == sides


def test_bad_expansions_are_refused_with_a_sentence_each():
    image = picture((32, 32))
    with pytest.raises(ValueError, match="not understood"):
        outpaint.parse_expand("sideways=12")
    found = problems(expanding(image, left=12))
    assert any("multiple of 8" in p for p in found)
    assert any("expand by at least" in p for p in problems(expanding(image)))
    wrong_size = expanding(image, left=16).with_changes(width=32)
    assert any("set width and height to the expanded size" in p for p in problems(wrong_size))
    masked = expanding(image, left=16).with_changes(mask=image.convert("L"))
    assert any("clear the mask" in p for p in problems(masked))
    pieces = expanding(image, left=64).with_changes(
        inpaint_only_masked=True, expand=Expand(left=64, tile=48), inpaint_padding=32
    )
    assert any("make the piece at least" in p for p in problems(pieces))


def test_a_bad_expansion_fails_the_job_and_the_engine_goes_on(engine):
    image = picture((32, 32))
    failed = engine.generate(expanding(image, left=4), WAIT)
    assert isinstance(failed, Failed) and "multiple of 8" in failed.message
    assert isinstance(engine.generate(expanding(image, left=8), WAIT), Finished)


def test_expansion_and_forward_process_travel_over_the_wire():
    from engine import wire
    from engine.api import ForwardProcess

    image = picture((32, 32))
    r = expanding(image, left=16, top=8).with_changes(
        expand=Expand(left=16, top=8, fill="noise", band=12, tile=256)
    )
    assert wire.request_from_dict(wire.request_to_dict(r)).expand == r.expand
    f = request(init_image=image, forward=ForwardProcess(level=2, denoise=True))
    assert wire.request_from_dict(wire.request_to_dict(f)).forward == f.forward
