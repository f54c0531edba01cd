"""Where a job's ControlNet units and regions lie when the job works on another canvas
than the picture they were made for: an expansion (outpaint), one piece of a piecewise
expansion, or a run continued from one of its steps.

Expansion: a control image or region mask of the picture's own size lies over the
picture; the new area gets no control (black map: the model is free to invent there)
and the region masks stretch outward from their edges (a region that touches a side
goes on into the new area). An image of any other size covers the whole expanded canvas.
Each unit becomes its control map at the canvas size (preprocessor "none"), so a piece
is a crop of it and a continued run reads the same map.

An expansion's record keeps its units as given (preprocessor and source, for Reuse
parameters) and its regions as placed (a mask at the canvas size).

Continuing: a unit's start and end are fractions of the steps the original run took;
the continued run's pipeline sees only the remaining steps, so they are moved onto those.
No torch here.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image

from engine.api import ControlUnit, Expand, GenerationRequest, Preprocessor, RegionPrompt
from engine.control.preprocess import control_map
from engine.outpaint import Box, expanded_size, original_box


def _placed_map(unit: ControlUnit, size: tuple[int, int], e: Expand) -> Image.Image:
    canvas = expanded_size(size, e)
    assert unit.image is not None  # checked before the job runs
    if unit.image.size != size:
        return control_map(unit.image, unit.preprocessor, canvas)
    placed = Image.new("RGB", canvas, "black")
    placed.paste(control_map(unit.image, unit.preprocessor, size), original_box(size, e)[:2])
    return placed


def _placed_mask(mask: Image.Image, size: tuple[int, int], e: Expand) -> Image.Image:
    if mask.size != size:
        return mask.convert("L").resize(expanded_size(size, e), Image.Resampling.NEAREST)
    pad = ((e.top, e.bottom), (e.left, e.right))
    return Image.fromarray(np.pad(np.asarray(mask.convert("L")), pad, mode="edge"))


def expanded(r: GenerationRequest) -> GenerationRequest:
    """An expanding request with its units and regions placed on the expanded canvas."""
    assert r.expand is not None and r.init_image is not None
    if not r.controls and not r.regions:
        return r
    size, e = r.init_image.size, r.expand
    controls = tuple(
        replace(u, image=_placed_map(u, size, e), preprocessor=Preprocessor.NONE.value)
        for u in r.controls
    )
    regions = tuple(replace(g, mask=_placed_mask(g.mask, size, e)) for g in r.regions)
    return r.with_changes(controls=controls, regions=regions)


def cropped(
    r: GenerationRequest, box: Box
) -> tuple[tuple[ControlUnit, ...], tuple[RegionPrompt, ...]]:
    """The placed units and regions of an expanded request, cut to one piece's crop; a
    region with nothing inside the crop is left out (its prompt has no place there)."""
    controls = tuple(replace(u, image=u.image.crop(box)) for u in r.controls if u.image is not None)
    regions = []
    for region in r.regions:
        mask = region.mask.convert("L").crop(box)
        if mask.getbbox() is not None:
            regions.append(replace(region, mask=mask))
    return controls, tuple(regions)


def _kept_steps(unit: ControlUnit, total: int) -> tuple[int, int]:
    """[first, end) of the steps a unit acts on, by diffusers' rule: step i of `total`
    is kept unless i / total < start or (i + 1) / total > end."""
    kept = [i for i in range(total) if not (i / total < unit.start or (i + 1) / total > unit.end)]
    return (kept[0], kept[-1] + 1) if kept else (0, 0)


def continued(r: GenerationRequest, done: int, total: int) -> tuple[ControlUnit, ...]:
    """The units of a request that continues a `total`-step run after its `done`-th step:
    placed on the canvas if the run was an expansion (its record keeps the units as they
    were given, with their preprocessors), then moved onto the remaining steps."""
    units = (
        expanded(r).controls if r.expand is not None and r.init_image is not None else r.controls
    )
    return continued_units(units, done, total)


def continued_units(
    units: tuple[ControlUnit, ...], done: int, total: int
) -> tuple[ControlUnit, ...]:
    """Units for a run that continues a `total`-step run after its `done`-th step, acting
    on exactly the steps they acted on in the original. The fractions sit half a step
    inside each border, so rounding cannot move a border; a unit whose steps are all
    done keeps running at weight 0, which gives the same pixels as no unit."""
    left = total - done
    out = []
    for unit in units:
        first, end = (k - done for k in _kept_steps(unit, total))
        first, end = max(first, 0), min(end, left)
        if end <= first:
            out.append(replace(unit, weight=0.0, start=0.0, end=1.0))
            continue
        start = 0.0 if first == 0 else (first - 0.5) / left
        stop = 1.0 if end == left else (end + 0.5) / left
        out.append(replace(unit, start=start, end=stop))
    return tuple(out)
