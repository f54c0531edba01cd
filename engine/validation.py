"""Input checks with messages a person understands, in the spirit of diffusers' check_inputs.

No torch here: the window calls this module too, before it submits a request.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import TypeGuard

from PIL import Image

from engine.api import EngineError, ErrorKind, GenerationRequest
from engine.schedulers import MAX_STEPS, NAMES, max_steps_for

MAX_GUIDANCE = 100.0
MAX_BATCH = 16
MAX_SIDE = 4096
# Width x height x batch beyond which a job would not fit in memory on ordinary hardware.
MAX_PIXELS = 2048 * 2048
MAX_SEED = 2**64 - 1
MAX_MASK_BLUR = 256
MAX_CLIP_SKIP = 12  # CLIP ViT-L has 12 layers; the engine checks the loaded model's own count


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _size_problems(name: str, value: object) -> list[str]:
    if not _is_int(value):
        return [f"{name} must be a whole number of pixels, got {value!r}"]
    if value <= 0:
        return [f"{name} must be a positive number of pixels, got {value}"]
    if value % 8:
        lower = max(8, value - value % 8)
        return [f"{name} must be a multiple of 8, got {value} (try {lower} or {lower + 8})"]
    if value > MAX_SIDE:
        return [f"{name} {value} is too large; the most is {MAX_SIDE} pixels"]
    return []


def _image_problems(name: str, image: object, width: object, height: object) -> list[str]:
    if not isinstance(image, Image.Image):
        return [f"the {name} is not an image (got {type(image).__name__})"]
    if _is_int(width) and _is_int(height) and image.size != (width, height):
        return [
            f"the {name} is {image.size[0]}x{image.size[1]} but the requested size is "
            f"{width}x{height}; resize it or change width and height"
        ]
    return []


def problems(request: GenerationRequest, *, max_pixels: int = MAX_PIXELS) -> list[str]:
    """Every problem with the request, each as a sentence; empty if it can run."""
    r = request
    found: list[str] = []
    if not isinstance(r.prompt, str):
        found.append(f"the prompt must be text, got {type(r.prompt).__name__}")
    if not isinstance(r.negative_prompt, str):
        found.append(f"the negative prompt must be text, got {type(r.negative_prompt).__name__}")
    if not _is_int(r.steps):
        found.append(f"steps must be a whole number, got {r.steps!r}")
    elif not 1 <= r.steps <= max_steps_for(r.scheduler):
        found.append(
            f"steps must be between 1 and {max_steps_for(r.scheduler)}"
            f"{' for ' + str(r.scheduler) if max_steps_for(r.scheduler) < MAX_STEPS else ''}"
            f", got {r.steps}"
        )
    if not _is_number(r.guidance_scale) or not math.isfinite(r.guidance_scale):
        found.append(f"guidance scale must be a number, got {r.guidance_scale!r}")
    elif r.guidance_scale < 0:
        found.append(f"guidance scale must be 0 or more, got {r.guidance_scale}")
    elif r.guidance_scale > MAX_GUIDANCE:
        found.append(f"guidance scale must be at most {MAX_GUIDANCE:g}, got {r.guidance_scale}")
    if not _is_int(r.batch_size) or not 1 <= r.batch_size <= MAX_BATCH:
        found.append(f"batch size must be between 1 and {MAX_BATCH}, got {r.batch_size!r}")
    top_seed = MAX_SEED - MAX_BATCH
    if r.seed is not None and (not _is_int(r.seed) or not 0 <= r.seed <= top_seed):
        found.append(f"seed must be a whole number from 0 to {top_seed}, got {r.seed!r}")
    size = _size_problems("width", r.width) + _size_problems("height", r.height)
    found += size
    if not size and _is_int(r.batch_size) and r.batch_size >= 1:
        pixels = r.width * r.height * r.batch_size
        if pixels > max_pixels:
            found.append(
                f"{r.width}x{r.height} x {r.batch_size} image(s) is too large for memory "
                f"({pixels / 1e6:.1f} megapixels; the most is {max_pixels / 1e6:.1f}); "
                "choose a smaller size or batch"
            )
    if r.scheduler not in NAMES:
        found.append(f"unknown scheduler {r.scheduler!r}; choose one of: {', '.join(NAMES)}")
    if not isinstance(r.model, str) or not r.model.strip():
        found.append("no model given: name a model folder, a .safetensors file or a hub id")
    cutoff = r.guidance_cutoff
    if cutoff is not None and (
        not _is_number(cutoff) or not math.isfinite(cutoff) or not 0 <= cutoff <= 1
    ):
        found.append(
            f"guidance cut-off must be a fraction of the steps from 0 to 1 (or off), got {cutoff!r}"
        )
    if not _is_int(r.clip_skip) or not 1 <= r.clip_skip <= MAX_CLIP_SKIP:
        found.append(
            f"clip skip must be a whole number from 1 to {MAX_CLIP_SKIP} (1 uses the text "
            f"encoder's last layer), got {r.clip_skip!r}"
        )
    if not isinstance(r.vae, str):
        found.append(f"the VAE must be a file name or path, got {type(r.vae).__name__}")
    if not isinstance(r.model_folders, tuple | list) or not all(
        isinstance(p, str) for p in r.model_folders
    ):
        found.append("model folders must be a list of folder paths")
    if r.resume is not None:
        if not _is_int(r.resume.step) or r.resume.step < 1:
            found.append(f"resume step must be 1 or more, got {r.resume.step!r}")
        return found  # size, images and strength come from the resumed job
    if r.init_image is not None:
        found += _image_problems("init image", r.init_image, r.width, r.height)
    if r.init_image is not None or r.mask is not None:
        if not _is_number(r.strength) or not 0 < r.strength <= 1:
            found.append(f"strength must be more than 0 and at most 1, got {r.strength!r}")
        elif _is_int(r.steps) and r.steps >= 1 and int(r.steps * r.strength) < 1:
            found.append(
                f"strength {r.strength} with {r.steps} steps leaves no step to run; "
                "raise the strength or the steps"
            )
    if r.mask is not None:
        found += _mask_problems(r)
    return found


def _mask_problems(r: GenerationRequest) -> list[str]:
    found: list[str] = []
    if r.init_image is None:
        found.append("a mask needs an init image to paint into")
    if not isinstance(r.mask, Image.Image):
        return [*found, f"the mask is not an image (got {type(r.mask).__name__})"]
    if isinstance(r.init_image, Image.Image) and r.mask.size != r.init_image.size:
        found.append(
            f"the mask is {r.mask.size[0]}x{r.mask.size[1]} but the image is "
            f"{r.init_image.size[0]}x{r.init_image.size[1]}; they must be the same size"
        )
    elif r.init_image is None:
        found += _image_problems("mask", r.mask, r.width, r.height)
    if r.mask.convert("L").getbbox() is None:
        found.append("the mask is empty: paint the area to repaint in white")
    if not _is_int(r.mask_blur) or not 0 <= r.mask_blur <= MAX_MASK_BLUR:
        found.append(f"mask blur must be between 0 and {MAX_MASK_BLUR} pixels, got {r.mask_blur!r}")
    if not _is_int(r.inpaint_padding) or r.inpaint_padding < 0:
        found.append(f"inpaint padding must be 0 or more pixels, got {r.inpaint_padding!r}")
    return found


def check_request(request: GenerationRequest, *, max_pixels: int = MAX_PIXELS) -> None:
    """Raise EngineError(BAD_INPUT) naming every problem; do nothing if the request is fine."""
    found = problems(request, max_pixels=max_pixels)
    if found:
        message = "; ".join(found)
        raise EngineError(ErrorKind.BAD_INPUT, message[0].upper() + message[1:] + ".")
