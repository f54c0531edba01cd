"""What the loaded family allows for a hires fix and a tiled SD upscale, checked before any
pass runs, so a job that cannot finish says so at once instead of after its first pass.

- Both repaint with image to image: a family diffusers has no image-to-image pipeline for
  (SANA, FLUX.2 klein) is refused, unless it is an inpaint-only model (FLUX.1 Fill), which
  the jobs run as an inpaint of the whole picture.
- A latent upscaler enlarges plain 4-channel SD latents; the flow families' latents are
  packed or normalised otherwise, so they take a pixel upscaler.
- Every picture the model sees keeps to the family's size grid (16 px for the flow
  families): the hires size, and the enlarged picture and tile of a tiled upscale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine import families
from engine.api import EngineError, ErrorKind, GenerationRequest, Mode, ModelFamily
from engine.upscale_options import hires_size, is_latent, upscale_size

if TYPE_CHECKING:
    from engine.models import LoadedModel

# Families whose latents are plain 4-channel pictures an eighth of the size (not packed
# into sequences, as FLUX's are), which interpolation can enlarge.
LATENT_FAMILIES = frozenset({ModelFamily.SD1, ModelFamily.SD2, ModelFamily.SDXL})


def _refuse(message: str) -> EngineError:
    return EngineError(ErrorKind.BAD_INPUT, message)


def _repaints(model: LoadedModel, what: str) -> None:
    profile = families.profile(model.family)
    if profile.pipeline_name(Mode.IMG2IMG, model.variant) is None and not model.is_inpaint_unet:
        raise _refuse(
            f"{what} repaints the enlarged picture with image to image, and diffusers has no "
            f"image-to-image pipeline for {model.label} models; choose another model."
        )


def _off_grid(model: LoadedModel, sides: dict[str, int]) -> list[str]:
    grid = families.profile(model.family).size_multiple
    return [f"{name} {value}" for name, value in sides.items() if value % grid]


def check_hires(r: GenerationRequest, model: LoadedModel) -> None:
    """Refuse a hires fix the loaded model cannot finish, in one sentence."""
    assert r.hires is not None
    _repaints(model, "Hires fix")
    if is_latent(r.hires.upscaler) and model.family not in LATENT_FAMILIES:
        raise _refuse(
            f"{r.hires.upscaler} enlarges Stable Diffusion 1.x, 2.x and XL latents; for "
            f"{model.label} models choose the Lanczos hires upscaler or an upscaler model."
        )
    width, height = hires_size(r)
    off = _off_grid(model, {"width": width, "height": height})
    if off:
        grid = families.profile(model.family).size_multiple
        raise _refuse(
            f"{model.label} models need sides in multiples of {grid}, and hires fix at "
            f"{r.hires.scale:g}x makes {width}x{height}; choose a scale or base size that "
            f"gives multiples of {grid}."
        )


def check_tiled(r: GenerationRequest, model: LoadedModel) -> None:
    """Refuse a tiled SD upscale the loaded model cannot finish, in one sentence."""
    assert r.upscale is not None
    _repaints(model, "The tiled SD upscale")
    width, height = upscale_size(r)
    tile = r.upscale.tile
    off = _off_grid(model, {"width": width, "height": height, "tile": tile})
    if off:
        grid = families.profile(model.family).size_multiple
        raise _refuse(
            f"{model.label} models need sides in multiples of {grid}, and this upscale has "
            f"{', '.join(off)}; choose a scale and tile that give multiples of {grid}."
        )
