"""Checks of a request's ControlNet units and regional prompts, in validation's words.

No torch: the window runs these before it submits, as validation.problems does.
"""

from __future__ import annotations

from numbers import Integral, Real

from PIL import Image

from engine.api import ControlUnit, GenerationRequest, Preprocessor, RegionPrompt

MAX_UNITS = 4
MAX_REGIONS = 8
MAX_WEIGHT = 2.0  # A1111's ControlNet weight slider stops at 2
PREPROCESSORS = tuple(p.value for p in Preprocessor)


def _number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and value == value


def _unit_problems(n: int, unit: object) -> list[str]:
    name = f"control unit {n}"
    if not isinstance(unit, ControlUnit):
        return [f"{name} must be a ControlUnit, got {type(unit).__name__}"]
    found: list[str] = []
    if not isinstance(unit.model, str) or not unit.model.strip():
        found.append(f"{name} has no model: name a ControlNet or T2I adapter folder or file")
    if not isinstance(unit.image, Image.Image):
        found.append(f"{name} has no control image (got {type(unit.image).__name__})")
    if not _number(unit.weight) or not 0 <= unit.weight <= MAX_WEIGHT:
        found.append(f"{name}'s weight must be from 0 to {MAX_WEIGHT:g}, got {unit.weight!r}")
    if not (_number(unit.start) and _number(unit.end) and 0 <= unit.start < unit.end <= 1):
        found.append(
            f"{name}'s start and end must be fractions of the steps with 0 <= start < end "
            f"<= 1, got start {unit.start!r} and end {unit.end!r}"
        )
    if unit.preprocessor not in PREPROCESSORS:
        found.append(
            f"{name} has an unknown preprocessor {unit.preprocessor!r}; choose one of: "
            f"{', '.join(PREPROCESSORS)}"
        )
    return found


def _region_problems(
    n: int, region: object, width: object, height: object, also: tuple[tuple[int, int], ...]
) -> list[str]:
    name = f"region {n}"
    if not isinstance(region, RegionPrompt):
        return [f"{name} must be a RegionPrompt, got {type(region).__name__}"]
    found: list[str] = []
    if not isinstance(region.prompt, str) or not region.prompt.strip():
        found.append(f"{name} has no prompt: type what belongs in it, or remove the region")
    mask = region.mask
    if not isinstance(mask, Image.Image):
        return [*found, f"{name}'s mask is not an image (got {type(mask).__name__})"]
    sized = isinstance(width, Integral) and isinstance(height, Integral)
    if sized and mask.size not in ((width, height), *also):
        found.append(
            f"{name}'s mask is {mask.size[0]}x{mask.size[1]} but the picture is "
            f"{width}x{height}; paint it on the picture's own size"
        )
    elif mask.convert("L").getbbox() is None:
        found.append(f"{name}'s mask is empty: paint where its prompt belongs")
    return found


def problems(r: GenerationRequest) -> list[str]:
    """Every problem with the request's control units and regions, as sentences."""
    found: list[str] = []
    controls, regions = r.controls, r.regions
    if not isinstance(controls, tuple | list):
        found.append(f"controls must be a list of control units, got {type(controls).__name__}")
    elif len(controls) > MAX_UNITS:
        found.append(f"at most {MAX_UNITS} control units run at once, got {len(controls)}")
    else:
        for n, unit in enumerate(controls, 1):
            found += _unit_problems(n, unit)
    if not isinstance(regions, tuple | list):
        found.append(f"regions must be a list of region prompts, got {type(regions).__name__}")
    elif len(regions) > MAX_REGIONS:
        found.append(f"at most {MAX_REGIONS} regions are allowed, got {len(regions)}")
    else:
        # An expansion's regions may be painted on the picture before it grows.
        also = (r.init_image.size,) if r.expand and isinstance(r.init_image, Image.Image) else ()
        for n, region in enumerate(regions, 1):
            found += _region_problems(n, region, r.width, r.height, also)
    return found
