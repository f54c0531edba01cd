"""Tiled SD upscale with a tiny model: a 1024-pixel result stays within the memory bound
engine/tiled_upscale.py states, the model never sees more than one tile, and no seam shows
where tiles meet (the brightness step across tile edges is no larger than anywhere else)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from engine_helpers import TINY, WAIT, request
from PIL import Image

from engine import tiled_upscale
from engine.api import Finished, Step, Upscale
from engine.plan import check_inputs, make_plan
from engine.sampling import PipelineRunner
from engine.tiles import Blender, Tile, feather, grid
from engine.upscale_options import tile_count

TILE, OVERLAP = 256, 64


def smooth_picture(size: int) -> Image.Image:
    """A picture with no edges of its own: two gentle gradients."""
    ramp = np.linspace(40, 215, size, dtype=np.float32)
    rgb = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                    np.full((size, size), 128, np.float32)], axis=-1)  # fmt: skip
    return Image.fromarray(rgb.astype(np.uint8))


BAND = 8  # pixels averaged on each side of a column: the texture averages out, seams do not


def band_steps(rgb: np.ndarray) -> np.ndarray:
    """For each column c, the mean over rows of |mean of the BAND columns left of c - mean
    of the BAND columns from c on| (index c - BAND; columns BAND .. width - BAND)."""
    grey = rgb.astype(np.float64).mean(axis=2)
    sums = np.concatenate([np.zeros((grey.shape[0], 1)), np.cumsum(grey, axis=1)], axis=1)
    width = grey.shape[1]
    cols = np.arange(BAND, width - BAND + 1)
    left = (sums[:, cols] - sums[:, cols - BAND]) / BAND
    right = (sums[:, cols + BAND] - sums[:, cols]) / BAND
    return np.abs(left - right).mean(axis=0)


def tile_edges(tiles: list[Tile], width: int, *, both: bool = True) -> list[int]:
    """Where tiles start (and with both, end) inside the picture (the grid is square)."""
    starts = {t.x for t in tiles if t.x > 0}
    ends = {t.x + t.width for t in tiles} - {width} if both else set()
    return sorted(starts | ends)


def seam_ratio(rgb: np.ndarray, edges: list[int]) -> float:
    """The step across the edges over the median step elsewhere, in both directions."""
    width = rgb.shape[1]
    ratio = 0.0
    for view in (rgb, rgb.transpose(1, 0, 2)):
        steps = band_steps(view)
        at = [steps[e - BAND] for e in edges]
        elsewhere = [
            steps[c - BAND]
            for c in range(BAND, width - BAND + 1)
            if all(abs(c - e) > 2 * BAND for e in edges)
        ]
        ratio += float(np.mean(at) / np.median(elsewhere)) / 2
    return ratio


def test_feathered_tiles_cover_every_pixel_and_a_flat_picture_blends_to_itself():
    tiles = grid(300, 200, 128, 32, multiple=8)
    total = np.zeros((200, 300), np.float32)
    for tile in tiles:
        x0, y0, x1, y1 = tile.box
        total[y0:y1, x0:x1] += feather(tile, 300, 200, 32)
    assert total.min() > 0.99  # every pixel has a full weight from some tile
    blender = Blender(300, 200, 32)
    for tile in tiles:
        blender.add(tile, np.full((tile.height, tile.width, 3), 77, np.uint8))
    assert (blender.result() == 77).all()


@pytest.mark.slow
def test_a_1024_pixel_tiled_upscale_stays_within_its_memory_bound_and_shows_no_seam(
    tiny_models, one_torch_thread, monkeypatch
):
    model = tiny_models.get(TINY, lambda *a: None, lambda: False)
    up = Upscale(scale=2, upscaler="Lanczos", sd_tiles=True, tile=TILE, overlap=OVERLAP)
    r = request(init_image=smooth_picture(512), width=512, height=512, steps=2, strength=0.5,
                upscale=up)  # fmt: skip
    plan = make_plan(r, model, check_inputs(r, {}))
    # What the model sees: the largest latent into the UNet, picture into the VAE.
    seen: dict[str, int] = {"unet": 0, "encoder": 0, "decoder": 0}
    hooks = [
        part.register_forward_pre_hook(
            lambda _m, args, name=name: seen.__setitem__(name, max(seen[name], *args[0].shape[-2:]))
        )
        for name, part in (
            ("unet", model.pipe.unet),
            ("encoder", model.pipe.vae.encoder),
            ("decoder", model.pipe.vae.decoder),
        )  # fmt: skip
    ]
    tiles_out: list[tuple[Tile, np.ndarray]] = []
    add = Blender.add

    def recording_add(self: Blender, tile: Tile, pixels: np.ndarray) -> None:
        tiles_out.append((tile, pixels.copy()))
        add(self, tile, pixels)

    monkeypatch.setattr(Blender, "add", recording_add)
    steps: list[int] = []
    tracemalloc.start()
    try:
        result = tiled_upscale.run_tiled(
            PipelineRunner(), plan, model,
            on_step=lambda step, *_: steps.append(step),
            should_cancel=lambda: False, enlarge_options={},
        )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        for hook in hooks:
            hook.remove()
    image = np.asarray(result.images[0])
    assert image.shape == (1024, 1024, 3)
    tiles = grid(1024, 1024, TILE, OVERLAP, multiple=8)
    assert len(tiles) == tile_count(1024, 1024, up) == 25
    assert steps == list(range(1, 26))  # one image-to-image step per tile, numbered as one run

    # Memory: what the job holds stays under the stated bound; the model sees one tile.
    # (The bound counts the picture and the blend tracemalloc sees, and the enlarged PIL
    # picture it does not.)
    recorded = sum(pixels.nbytes for _, pixels in tiles_out)  # this test's own copies
    assert peak - recorded <= tiled_upscale.memory_bound(1024, 1024, TILE, OVERLAP)
    assert seen == {"unet": TILE // 8, "encoder": TILE, "decoder": TILE // 8}

    # No seam: the step across tile edges is like the steps elsewhere.
    assert seam_ratio(image, tile_edges(tiles, 1024)) < 1.5
    # The tiny model's tiles happen to agree with each other; real models' tiles differ.
    # Made to differ (alternate tiles brightened by 48), pasted they show their edges (so
    # the measure sees seams) and blended they do not.
    hard = np.zeros(image.shape, np.float32)
    blender = Blender(1024, 1024, OVERLAP)
    for i, (tile, pixels) in enumerate(tiles_out):
        shifted = np.clip(pixels.astype(np.float32) + 48 * (i % 2), 0, 255)
        x0, y0, x1, y1 = tile.box
        hard[y0:y1, x0:x1] = shifted
        add(blender, tile, shifted)
    assert seam_ratio(hard, tile_edges(tiles, 1024, both=False)) > 2  # a later tile's edge
    assert seam_ratio(blender.result(), tile_edges(tiles, 1024)) < 1.5


def test_an_sd_upscale_job_reports_every_tile_step_with_whole_picture_previews(
    engine, recorder, one_torch_thread
):
    up = Upscale(scale=2, sd_tiles=True, tile=64, overlap=16)
    r = request(init_image=smooth_picture(64), width=64, height=64, steps=2, strength=0.5,
                upscale=up)  # fmt: skip
    result = engine.generate(r, WAIT)
    assert isinstance(result, Finished), result
    assert result.images[0].size == (128, 128)
    steps = recorder.of(result.job_id, Step)
    assert [s.step for s in steps] == list(range(1, 10))  # 3 x 3 tiles, one step each
    assert all(s.preview.shape == (128, 128, 3) for s in steps)  # the whole picture
    assert len(result.step_previews) == 9
    assert result.request.upscale == up
