"""The form's hires fix and upscale fields as the engine's HiresFix and Upscale records,
and back (Reuse parameters); the upscale request for a finished picture. No widgets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

from engine.api import GenerationRequest, HiresFix, Upscale
from engine.upscale_options import LATENT_UPSCALERS, PIXEL_UPSCALERS, is_latent

if TYPE_CHECKING:
    from guiapp.state import ViewModel


def hires_of(form: ViewModel) -> HiresFix | None:
    if not form.hires_enabled:
        return None
    return HiresFix(
        scale=float(form.hires_scale),
        upscaler=form.hires_upscaler.strip(),
        steps=int(form.hires_steps),
        denoising_strength=float(form.hires_denoise),
        prompt=form.hires_prompt.strip(),
    )


def apply_hires(form: ViewModel, hires: HiresFix | None) -> None:
    """The form shows a request's hires fix (or none)."""
    form.hires_enabled = hires is not None
    if hires is not None:
        form.hires_scale = float(hires.scale)
        form.hires_upscaler = hires.upscaler
        form.hires_steps = int(hires.steps)
        form.hires_denoise = float(hires.denoising_strength)
        form.hires_prompt = hires.prompt


def apply_upscale(form: ViewModel, upscale: Upscale | None) -> None:
    """The form's Upscale settings show a request's upscale (none: left as they are)."""
    if upscale is not None:
        form.upscale_scale = float(upscale.scale)
        form.upscale_upscaler = upscale.upscaler
        form.upscale_sd_tiles = bool(upscale.sd_tiles)


def upscale_request(form: ViewModel, picture: Image.Image) -> GenerationRequest:
    """Enlarge `picture` with the form's upscale settings (and, with SD tiles, repaint it
    with the form's prompt, steps and strength)."""
    request = form.build_request(init_image=picture.convert("RGB"))
    upscaler = form.upscale_upscaler.strip()
    return request.with_changes(
        width=picture.width,
        height=picture.height,
        batch_size=1,
        upscale=Upscale(
            scale=float(form.upscale_scale),
            upscaler=upscaler,
            sd_tiles=bool(form.upscale_sd_tiles),
        ),
    )


def hires_upscaler_names(models: tuple[str, ...]) -> list[str]:
    """The hires fix's choices: latent upscalers, pixel upscalers, then the model files."""
    return [*LATENT_UPSCALERS, *PIXEL_UPSCALERS, *models]


def upscaler_names(models: tuple[str, ...]) -> list[str]:
    """An upscale's choices: pixel upscalers and model files (no latent upscaler)."""
    return [name for name in hires_upscaler_names(models) if not is_latent(name)]
