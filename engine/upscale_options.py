"""Hires fix and upscale options without torch: the upscaler names, the sizes they make,
the steps a job takes, and the checks of a request's HiresFix and Upscale records.

The window and the CLI read the names and the checks from here; validation.problems()
adds these problems to the rest, so a bad value fails before any model loads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real

from engine.api import GenerationRequest, HiresFix, Upscale

# A1111's latent upscalers: name -> (torch interpolation mode, antialias).
LATENT_UPSCALERS: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
LANCZOS = "Lanczos"
NEAREST = "Nearest"
PIXEL_UPSCALERS = (LANCZOS, NEAREST)
"""Pixel upscalers that need no model file; any other name is an upscaler model."""
UPSCALER_MODEL_SUFFIXES = (".safetensors", ".pth", ".pt")

MIN_SCALE = 1.0
MAX_SCALE = 8.0
MAX_OUTPUT_SIDE = 8192  # a tiled upscale's output; only one tile at a time is in the model
MIN_TILE = 64
MAX_TILE = 2048
SR_TILE = 256  # input pixels an upscaler model sees at once
SR_OVERLAP = 16


def is_latent(upscaler: str) -> bool:
    return upscaler in LATENT_UPSCALERS


def is_model(upscaler: str) -> bool:
    """Whether the name is an upscaler model (a file), not a built-in upscaler."""
    return not is_latent(upscaler) and upscaler not in PIXEL_UPSCALERS


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """width x height times scale, each side rounded to a multiple of 8 (the latent grid)."""
    return (max(8, round(width * scale / 8) * 8), max(8, round(height * scale / 8) * 8))


def hires_size(request: GenerationRequest) -> tuple[int, int]:
    assert request.hires is not None
    return scaled_size(request.width, request.height, request.hires.scale)


def upscale_size(request: GenerationRequest) -> tuple[int, int]:
    assert request.upscale is not None
    return scaled_size(request.width, request.height, request.upscale.scale)


def hires_steps(hires: HiresFix, first_pass_steps: int) -> int:
    """The schedule length of the second pass (0 in the record: the first pass's)."""
    return hires.steps or first_pass_steps


def strength_steps(steps: int, strength: float, flow: bool = False) -> int:
    """Steps image-to-image runs of a schedule: diffusers' get_timesteps rule (the flow
    families' pipelines skip int(steps - steps * strength) steps; see plan.start_index)."""
    if flow:
        return steps - int(max(steps - min(steps * strength, steps), 0))
    return min(int(steps * strength), steps)


def axis_starts(size: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Where tiles of `tile` pixels start along a side of `size` so that neighbours overlap
    by at least `overlap` pixels; starts are multiples of `multiple`."""
    if size <= tile:
        return [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    while True:
        starts = [
            round(i * (size - tile) / (count - 1) / multiple) * multiple for i in range(count)
        ]
        starts[-1] = size - tile
        if all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False)):
            return starts
        count += 1


def tile_count(width: int, height: int, upscale: Upscale) -> int:
    tile_w, tile_h = min(upscale.tile, width), min(upscale.tile, height)
    across = axis_starts(width, tile_w, upscale.overlap, 8)
    down = axis_starts(height, tile_h, upscale.overlap, 8)
    return len(across) * len(down)


def sr_tile_count(width: int, height: int) -> int:
    """Tiles an upscaler model runs over a width x height input."""
    return len(axis_starts(width, min(SR_TILE, width), SR_OVERLAP)) * len(
        axis_starts(height, min(SR_TILE, height), SR_OVERLAP)
    )


def total_steps(request: GenerationRequest, first_pass: int, flow: bool = False) -> int:
    """Steps a job reports: both hires passes, or every tile's steps of an SD upscale.
    first_pass: the steps of the plain run (plan.total); flow: a flow family's model."""
    r = request
    if r.hires is not None:
        second = hires_steps(r.hires, r.steps)
        return first_pass + strength_steps(second, r.hires.denoising_strength, flow)
    if r.upscale is not None:
        width, height = upscale_size(r)
        if r.upscale.sd_tiles:
            return tile_count(width, height, r.upscale) * strength_steps(r.steps, r.strength, flow)
        return sr_tile_count(r.width, r.height) if is_model(r.upscale.upscaler) else 1
    return first_pass


def needs_diffusion_model(request: GenerationRequest) -> bool:
    """False for an upscale that only enlarges pixels (no model need be loaded)."""
    return request.upscale is None or request.upscale.sd_tiles


# ----------------------------------------------------------------------------- checks


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _scale_problem(what: str, scale: object) -> list[str]:
    if not _is_number(scale) or not MIN_SCALE <= scale <= MAX_SCALE:  # type: ignore[operator]
        return [
            f"the {what} scale must be a number from {MIN_SCALE:g} to {MAX_SCALE:g}, got {scale!r}"
        ]
    return []


def _upscaler_problem(what: str, name: object, latent_ok: bool) -> list[str]:
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        return [f"the {what} upscaler must be a name such as {LANCZOS!r}, got {name!r}"]
    if not latent_ok and is_latent(name):
        return [
            f"{name} works only inside a hires fix; to enlarge a picture choose {LANCZOS} "
            "or an upscaler model"
        ]
    return []


def hires_problems(r: GenerationRequest, hires: object, max_steps: int) -> list[str]:
    if not isinstance(hires, HiresFix):
        return [f"hires must be a HiresFix, got {type(hires).__name__}"]
    found = _scale_problem("hires", hires.scale) + _upscaler_problem("hires", hires.upscaler, True)
    if r.init_image is not None or r.mask is not None or r.upscale is not None:
        found.append("hires fix is for text-to-image only: remove the init image or turn it off")
    if not _is_int(hires.steps) or not 0 <= hires.steps <= max_steps:
        found.append(
            f"hires steps must be a whole number from 0 (as many as the first pass) to "
            f"{max_steps}, got {hires.steps!r}"
        )
    strength = hires.denoising_strength
    if not _is_number(strength) or not 0 < strength <= 1:  # type: ignore[operator]
        found.append(
            f"hires denoising strength must be more than 0 and at most 1, got {strength!r}"
        )
    elif (
        _is_int(hires.steps)
        and _is_int(r.steps)
        and 0 <= hires.steps <= max_steps
        and strength_steps(hires_steps(hires, r.steps), strength) < 1
    ):
        found.append(
            f"hires denoising strength {strength} leaves no hires step to run; raise it "
            "or the hires steps"
        )
    for label, text in (
        ("hires prompt", hires.prompt),
        ("hires negative prompt", hires.negative_prompt),
    ):
        if not isinstance(text, str):
            found.append(f"the {label} must be text, got {type(text).__name__}")
    if not found and _is_int(r.width) and _is_int(r.height):
        width, height = hires_size(r)
        if max(width, height) > MAX_OUTPUT_SIDE // 2:
            found.append(
                f"hires fix would make {width}x{height}; keep each side at most "
                f"{MAX_OUTPUT_SIDE // 2} (lower the scale), or upscale afterwards with tiles"
            )
    return found


def upscale_problems(r: GenerationRequest, upscale: object) -> list[str]:
    if not isinstance(upscale, Upscale):
        return [f"upscale must be an Upscale, got {type(upscale).__name__}"]
    found = _scale_problem("upscale", upscale.scale)
    found += _upscaler_problem("upscale", upscale.upscaler, False)
    if r.init_image is None:
        found.append("an upscale needs a picture to enlarge (the init image)")
    if r.mask is not None:
        found.append("an upscale enlarges the whole picture: remove the mask")
    if getattr(r, "expand", None) is not None or getattr(r, "forward", None) is not None:
        found.append("an upscale is a job of its own: turn off expand and the forward process")
    if getattr(r, "controls", ()) or getattr(r, "regions", ()):
        found.append("an upscale runs without ControlNet units and regional prompts: remove them")
    if not isinstance(upscale.sd_tiles, bool):
        found.append(f"sd tiles must be true or false, got {upscale.sd_tiles!r}")
    if not _is_int(upscale.tile) or not MIN_TILE <= upscale.tile <= MAX_TILE or upscale.tile % 8:
        found.append(
            f"the tile size must be a multiple of 8 from {MIN_TILE} to {MAX_TILE}, "
            f"got {upscale.tile!r}"
        )
    elif not _is_int(upscale.overlap) or not 0 <= upscale.overlap <= upscale.tile // 2:
        found.append(
            f"the tile overlap must be a whole number from 0 to half the tile "
            f"({upscale.tile // 2}), got {upscale.overlap!r}"
        )
    if not found and _is_int(r.width) and _is_int(r.height):
        width, height = upscale_size(r)
        if max(width, height) > MAX_OUTPUT_SIDE:
            found.append(
                f"the upscale would make {width}x{height}; keep each side at most "
                f"{MAX_OUTPUT_SIDE} (lower the scale)"
            )
    return found


def problems(r: GenerationRequest, max_steps_for: Callable[[str], int]) -> list[str]:
    """Every problem with the request's hires fix and upscale, as sentences."""
    found: list[str] = []
    if r.hires is not None:
        found += hires_problems(r, r.hires, max_steps_for(r.scheduler))
    if r.upscale is not None:
        found += upscale_problems(r, r.upscale)
    return found


def model_names(model_folders: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Upscaler model files in the upscaler folders (upscale_models/, ESRGAN/, RealESRGAN/),
    by file stem; only each folder's own files, so listing never walks a large tree."""
    from engine.addons.files import roots_of
    from engine.asset_folders import AssetKind, asset_folders

    names: dict[str, None] = {}
    for folder in asset_folders(AssetKind.UPSCALER, roots_of(model_folders)):
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.name.lower())
        except OSError:  # unreadable folder: nothing to offer from it
            continue
        for path in entries:
            if path.suffix.lower() in UPSCALER_MODEL_SUFFIXES and path.is_file():
                names.setdefault(path.stem)
    return tuple(names)
