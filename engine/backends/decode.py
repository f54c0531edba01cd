"""The final decode of a run: VAE tiling for large pictures, and "fast decode" with a
tiny autoencoder (TAESD family) instead of the full VAE.

Both apply for the duration of one pipeline call and are undone after it, so the
pipelines stay shared between jobs. Fast decode replaces only the VAE's decode(): the
image-to-image and inpainting encodes still use the full VAE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from diffusers.models.autoencoders.vae import DecoderOutput

# Above about one megapixel the VAE decode's activations take gigabytes; tiles of
# diffusers' enable_tiling keep it to a few hundred megabytes at a small seam cost.
TILING_PIXELS = 1024 * 1024
NO_TINY_VAE = (
    "Fast decode needs tiny-autoencoder weights for this model's family (taesd, taesdxl, "
    "taesd3 or taef1) and none were found (a folder of that name beside the model or in the models "
    "folder's vae_approx/; FLUX.2, Qwen-Image and SANA have none diffusers can load); the "
    "full VAE decoded the picture."
)


def _to_tiny_latents(vae: Any, tiny_vae: Any, z: torch.Tensor) -> torch.Tensor:
    """Undo the pipeline's unscaling, then apply the tiny autoencoder's own: TAESD (scale
    1) decodes the scaled latents the UNet makes, taesd3/taef1 the VAE's own latents."""
    config = vae.config
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, len(mean), 1, 1)
        mean_t = torch.tensor(mean, device=z.device, dtype=z.dtype).view(shape)
        std_t = torch.tensor(std, device=z.device, dtype=z.dtype).view(shape)
        return (z - mean_t) * config.scaling_factor / std_t
    shift = float(getattr(config, "shift_factor", None) or 0.0)
    scaled = (z - shift) * config.scaling_factor
    tiny = tiny_vae.config
    tiny_shift = float(getattr(tiny, "shift_factor", None) or 0.0)
    return scaled / float(getattr(tiny, "scaling_factor", 1.0) or 1.0) + tiny_shift


@contextlib.contextmanager
def final_decode(
    vae: Any, tiny_vae: Any, *, width: int, height: int, fast: bool
) -> Iterator[list[str]]:
    """Set up the pipeline's VAE for one call; yields the warnings for the job."""
    warnings: list[str] = []
    tiled = width * height > TILING_PIXELS
    was_tiled = bool(getattr(vae, "use_tiling", False))
    if tiled and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    patched, before = False, vars(vae).get("decode")  # another backend's decode, if any
    if fast and tiny_vae is None:
        warnings.append(NO_TINY_VAE)
    elif fast:

        def decode(z: torch.Tensor, return_dict: bool = True, generator: Any = None) -> Any:
            latents = _to_tiny_latents(vae, tiny_vae, z).to(tiny_vae.device, tiny_vae.dtype)
            sample = tiny_vae.decode(latents).sample.clamp(-1, 1)
            return DecoderOutput(sample=sample) if return_dict else (sample,)

        vae.decode = decode  # an instance attribute hides the method for this call
        patched = True
    try:
        yield warnings
    finally:
        if patched and before is not None:
            vae.decode = before
        elif patched:
            del vae.decode
        if tiled and not was_tiled and hasattr(vae, "disable_tiling"):
            vae.disable_tiling()
