"""Tiled SD upscale (A1111's "SD upscale"): enlarge a picture beyond what fits in memory.

1. The init image is enlarged to the target size with a pixel upscaler (Lanczos or a
   model, itself run piece by piece).
2. The enlarged picture is cut into tiles of `tile` pixels overlapping by `overlap`
   (starts on the 8-pixel latent grid); each tile runs image-to-image at the request's
   strength, steps and prompt, one at a time.
3. Each repainted tile is added with a feathered weight (engine/tiles.py) that ramps
   across the overlap, so neighbouring tiles fade into each other and no seam shows.

Memory bound: the model only ever sees one tile (tile x tile pixels, batch 1); besides
the model and that one tile's activations, the job holds the enlarged picture and the
blend's buffers (WORKING_BYTES_PER_PIXEL per output pixel) and one small preview per tile:
at most `memory_bound()` bytes (tests/engine/test_tiled_upscale.py measures both on a
1024-pixel upscale).

Previews show the whole picture: the enlarged input with the finished tiles pasted in,
and the running tile's step preview at its place. Every step streams a preview; the
scrubber keeps one per tile (all steps of every tile would be hundreds of MB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from engine import canvas_fits, families
from engine.api import ShouldCancel, Upscale
from engine.compositing import fit
from engine.plan import Inputs, Plan, make_plan
from engine.preview import MAX_PREVIEW_SIDE
from engine.sampling import PipelineRunner, RunResult, StepReport, Trajectory
from engine.tiles import Blender, Tile, grid
from engine.upscale_options import tile_count, total_steps, upscale_size
from engine.upscalers.enlarge import enlarge

if TYPE_CHECKING:
    from engine.models import LoadedModel

# The enlarged picture (PIL RGB, 4 bytes a pixel) + the blend (engine.tiles.Blender).
WORKING_BYTES_PER_PIXEL = 4 + Blender.BYTES_PER_PIXEL


def memory_bound(width: int, height: int, tile: int, overlap: int) -> int:
    """Bytes a tiled upscale to width x height holds beyond the model and one tile's run:
    the enlarged picture and the blend, one tile's pixels in and out (float32 at most),
    and the scrubber's previews (one whole-picture preview per tile)."""
    tiles = tile_count(width, height, Upscale(tile=tile, overlap=overlap))
    preview = 3 * MAX_PREVIEW_SIDE * MAX_PREVIEW_SIDE
    return (
        WORKING_BYTES_PER_PIXEL * width * height + 2 * 4 * tile * tile * 3 + (tiles + 2) * preview
    )


class TilePreview:
    """The whole picture at preview size: finished tiles pasted, the running one on top."""

    def __init__(self, enlarged: Image.Image) -> None:
        self.size = fit(enlarged.size, MAX_PREVIEW_SIDE)
        self.factor = self.size[0] / enlarged.width
        self.base = np.asarray(enlarged.resize(self.size, Image.Resampling.BILINEAR)).copy()

    def _box(self, tile: Tile) -> tuple[int, int, int, int]:
        x0, y0 = round(tile.x * self.factor), round(tile.y * self.factor)
        x1 = max(x0 + 1, round((tile.x + tile.width) * self.factor))
        y1 = max(y0 + 1, round((tile.y + tile.height) * self.factor))
        return x0, y0, x1, y1

    def with_tile(self, tile: Tile, rgb: np.ndarray) -> np.ndarray:
        out = self.base.copy()
        self._paste(out, tile, rgb)
        return out

    def finish(self, tile: Tile, rgb: np.ndarray) -> None:
        self._paste(self.base, tile, rgb)

    def _paste(self, into: np.ndarray, tile: Tile, rgb: np.ndarray) -> None:
        x0, y0, x1, y1 = self._box(tile)
        piece = Image.fromarray(rgb).resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR)
        into[y0:y1, x0:x1] = np.asarray(piece)


def run_tiled(
    runner: PipelineRunner,
    plan: Plan,
    model: LoadedModel,
    *,
    on_step: StepReport,
    should_cancel: ShouldCancel,
    enlarge_options: dict,
) -> RunResult:
    """An SD upscale of the plan's init image; enlarge_options go to upscalers.enlarge()."""
    r = plan.request
    up = r.upscale
    assert up is not None and r.init_image is not None
    grand_total = total_steps(r, plan.total, families.profile(model.family).flow)

    # 1. Enlarge with a pixel upscaler (once the family is known to allow the tiles).
    canvas_fits.check_tiled(r, model)
    width, height = upscale_size(r)
    enlarged = enlarge(
        r.init_image, (width, height), up.upscaler, should_cancel=should_cancel, **enlarge_options
    )

    # 2. and 3. Image-to-image tile by tile, blended as each tile finishes.
    tiles = grid(width, height, up.tile, up.overlap, multiple=8)
    blender = Blender(width, height, up.overlap)
    preview = TilePreview(enlarged)
    previews: list[np.ndarray] = []
    done, seconds = 0, 0.0
    sampling = decode = callbacks = 0.0
    warnings: list[str] = []
    for tile in tiles:
        tile_plan = _tile_plan(plan, model, enlarged.crop(tile.box), tile)

        def tile_step(
            step: int,
            _: int,
            elapsed: float,
            x0: np.ndarray,
            noisy: np.ndarray,
            tile: Tile = tile,
            done: int = done,
            seconds: float = seconds,
        ) -> None:
            whole, whole_noisy = preview.with_tile(tile, x0), preview.with_tile(tile, noisy)
            on_step(done + step, grand_total, seconds + elapsed, whole, whole_noisy)

        result = runner.run(tile_plan, model, on_step=tile_step, should_cancel=should_cancel)
        pixels = np.asarray(result.images[0].convert("RGB"))
        blender.add(tile, pixels)
        preview.finish(tile, pixels)
        previews.append(preview.base.copy())
        done += len(result.trajectory.latents)
        seconds += result.sampling_seconds + result.decode_seconds
        sampling += result.sampling_seconds
        decode += result.decode_seconds
        callbacks += result.callback_seconds
        warnings += [w for w in result.warnings if w not in warnings]
    del enlarged  # before the blend's result, which is the last large allocation
    image = Image.fromarray(blender.result())
    trajectory = Trajectory(
        plan.scheduler,
        plan.steps,
        plan.start_index,
        width,
        height,
        None,
        latents=[],
        previews=previews,
        noisy_previews=previews,  # the same arrays: a finished tile has no noisy view
    )
    return RunResult([image], trajectory, warnings, sampling, decode, callbacks)


def _tile_plan(plan: Plan, model: LoadedModel, crop: Image.Image, tile: Tile) -> Plan:
    request = plan.request.with_changes(
        init_image=crop, width=tile.width, height=tile.height, upscale=None, batch_size=1
    )
    return make_plan(request, model, Inputs(request, plan.seeds[:1], None))
