"""Input checks with messages a person understands, in the spirit of diffusers' check_inputs.

No torch here: the window calls this module too, before it submits a request.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import TypeGuard

from PIL import Image

from engine import outpaint, upscale_options
from engine.api import EngineError, ErrorKind, ForwardProcess, GenerationRequest, ResumeFrom
from engine.control import checks as control_checks
from engine.schedulers import MAX_STEPS, NAMES, max_steps_for

MAX_GUIDANCE = 100.0
MAX_BATCH = 16
MAX_SIDE = 4096
# Width x height x batch beyond which a job would not fit in memory on ordinary hardware.
MAX_PIXELS = 2048 * 2048
MAX_SEED = 2**64 - 1
MAX_MASK_BLUR = 256
MAX_PADDING = MAX_SIDE
# Far beyond any text encoder's window (77 tokens is about 300 characters); longer text
# is a paste gone wrong, and tokenizing megabytes would stall the job.
MAX_PROMPT_CHARS = 20_000
MAX_CLIP_SKIP = 12  # CLIP ViT-L has 12 layers; the engine checks the loaded model's own count
MAX_DEEP_CACHE = 10  # deep features reused for up to 9 steps; DeepCache's paper stops at 10


def short(value: object, limit: int = 40) -> str:
    """value for a message: repr'd, cut to about limit characters; huge numbers by size
    (repr itself refuses ints of more than 4300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails still gets a message
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def without_lone_surrogates(text: str) -> str:
    """text with every lone surrogate (what invalid UTF-8 decodes to with
    surrogateescape, or a broken JSON escape) replaced by U+FFFD; a pair of surrogates
    that spells a character becomes that character."""
    if not text or not has_lone_surrogates(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def has_lone_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def cleaned(request: GenerationRequest) -> tuple[GenerationRequest, list[str]]:
    """The request with text every later stage can encode (tokenizer, PNG text chunk,
    JSON), and a warning for each change made."""
    changes: dict[str, str] = {}
    notes: list[str] = []
    for name, label in (("prompt", "prompt"), ("negative_prompt", "negative prompt")):
        text = getattr(request, name)
        if isinstance(text, str) and has_lone_surrogates(text):
            changes[name] = without_lone_surrogates(text)
            notes.append(
                f"The {label} held characters that are not valid text (from invalid UTF-8); "
                "they were replaced with \ufffd."
            )
    return (request.with_changes(**changes) if changes else request), notes


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _finite(value: object) -> bool:
    try:
        return math.isfinite(value)  # type: ignore[arg-type]  # checked _is_number first
    except OverflowError:  # an int too large for a float is finite, and far too large
        return True


def _size_problems(name: str, value: object) -> list[str]:
    if not _is_int(value):
        return [f"{name} must be a whole number of pixels, got {short(value)}"]
    if value <= 0:
        return [f"{name} must be a positive number of pixels, got {short(value)}"]
    if value > MAX_SIDE:
        return [f"{name} {short(value)} is too large; the most is {MAX_SIDE} pixels"]
    if value % 8:
        lower = max(8, value - value % 8)
        return [f"{name} must be a multiple of 8, got {value} (try {lower} or {lower + 8})"]
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
    for label, text in (("prompt", r.prompt), ("negative prompt", r.negative_prompt)):
        if not isinstance(text, str):
            found.append(f"the {label} must be text, got {type(text).__name__}")
        elif len(text) > MAX_PROMPT_CHARS:
            found.append(
                f"the {label} is {len(text):,} characters long; the most is "
                f"{MAX_PROMPT_CHARS:,} (a text encoder reads about 300)"
            )
    if not _is_int(r.steps):
        found.append(f"steps must be a whole number, got {short(r.steps)}")
    elif not 1 <= r.steps <= max_steps_for(r.scheduler):
        found.append(
            f"steps must be between 1 and {max_steps_for(r.scheduler)}"
            f"{' for ' + str(r.scheduler) if max_steps_for(r.scheduler) < MAX_STEPS else ''}"
            f", got {short(r.steps)}"
        )
    if not _is_number(r.guidance_scale) or not _finite(r.guidance_scale):
        found.append(f"guidance scale must be a number, got {short(r.guidance_scale)}")
    elif r.guidance_scale < 0:
        found.append(f"guidance scale must be 0 or more, got {short(r.guidance_scale)}")
    elif r.guidance_scale > MAX_GUIDANCE:
        found.append(
            f"guidance scale must be at most {MAX_GUIDANCE:g}, got {short(r.guidance_scale)}"
        )
    true_cfg = r.true_cfg_scale
    if not _is_number(true_cfg) or not _finite(true_cfg) or not 1 <= true_cfg <= MAX_GUIDANCE:
        found.append(
            f"true CFG scale must be a number from 1 (off) to {MAX_GUIDANCE:g}, "
            f"got {short(true_cfg)}"
        )
    if not _is_int(r.batch_size) or not 1 <= r.batch_size <= MAX_BATCH:
        found.append(f"batch size must be between 1 and {MAX_BATCH}, got {short(r.batch_size)}")
    top_seed = MAX_SEED - MAX_BATCH
    if r.seed is not None and (not _is_int(r.seed) or not 0 <= r.seed <= top_seed):
        found.append(f"seed must be a whole number from 0 to {top_seed}, got {short(r.seed)}")
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
    if not isinstance(r.scheduler, str) or r.scheduler not in NAMES:
        found.append(f"unknown scheduler {short(r.scheduler)}; choose one of: {', '.join(NAMES)}")
    if not isinstance(r.model, str) or not r.model.strip():
        found.append("no model given: name a model folder, a .safetensors file or a hub id")
    cutoff = r.guidance_cutoff
    if cutoff is not None and (
        not _is_number(cutoff) or not _finite(cutoff) or not 0 <= cutoff <= 1
    ):
        found.append(
            "guidance cut-off must be a fraction of the steps from 0 to 1 (or off), "
            f"got {short(cutoff)}"
        )
    if not _is_int(r.deep_cache) or not 1 <= r.deep_cache <= MAX_DEEP_CACHE:
        found.append(
            f"deep cache must be a whole number of steps from 1 (off) to {MAX_DEEP_CACHE}, "
            f"got {short(r.deep_cache)}"
        )
    if not _is_int(r.clip_skip) or not 1 <= r.clip_skip <= MAX_CLIP_SKIP:
        found.append(
            f"clip skip must be a whole number from 1 to {MAX_CLIP_SKIP} (1 uses the text "
            f"encoder's last layer), got {short(r.clip_skip)}"
        )
    if not isinstance(r.vae, str):
        found.append(f"the VAE must be a file name or path, got {type(r.vae).__name__}")
    if not isinstance(r.model_folders, tuple | list) or not all(
        isinstance(p, str) for p in r.model_folders
    ):
        found.append("model folders must be a list of folder paths")
    if not isinstance(r.model_files, tuple | list) or not all(
        isinstance(p, str) for p in r.model_files
    ):
        found.append("model files must be a list of file paths (text encoders, VAE)")
    found += upscale_options.problems(r, max_steps_for)
    found += control_checks.problems(r)
    if r.resume is not None:
        if not isinstance(r.resume, ResumeFrom):
            found.append(f"resume must be a ResumeFrom, got {type(r.resume).__name__}")
        elif not _is_int(r.resume.step) or r.resume.step < 1:
            found.append(f"resume step must be 1 or more, got {short(r.resume.step)}")
        return found  # size, images and strength come from the resumed job
    if r.expand is not None:
        found += outpaint.problems(r)
    elif r.init_image is not None:
        found += _image_problems("init image", r.init_image, r.width, r.height)
    if r.forward is not None:
        found += _forward_problems(r)
    if r.init_image is not None or r.mask is not None:
        if not _is_number(r.strength) or not 0 < r.strength <= 1:
            found.append(f"strength must be more than 0 and at most 1, got {short(r.strength)}")
        elif _is_int(r.steps) and 1 <= r.steps <= MAX_STEPS and int(r.steps * r.strength) < 1:
            found.append(
                f"strength {r.strength} with {r.steps} steps leaves no step to run; "
                "raise the strength or the steps"
            )
    if r.mask is not None:
        found += _mask_problems(r)
    return found


def _forward_problems(r: GenerationRequest) -> list[str]:
    f = r.forward
    if not isinstance(f, ForwardProcess):
        return [f"forward must be a ForwardProcess, got {type(f).__name__}"]
    found: list[str] = []
    if r.init_image is None:
        found.append("the forward process needs a picture to noise (an init image)")
    if r.mask is not None or r.expand is not None:
        found.append("the forward process works on the whole picture: clear the mask")
    top = r.steps if _is_int(r.steps) else MAX_STEPS
    low = 1 if f.denoise is True else 0
    if not _is_int(f.level) or not low <= f.level <= top:
        found.append(
            f"the noise level must be a whole number of steps from {low} to {top} "
            f"(the steps), got {short(f.level)}"
        )
    if not isinstance(f.denoise, bool):
        found.append(f"denoise must be true or false, got {short(f.denoise)}")
    if r.batch_size != 1:
        found.append("the forward process makes one picture at a time; set the batch size to 1")
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
        found.append(
            f"mask blur must be between 0 and {MAX_MASK_BLUR} pixels, got {short(r.mask_blur)}"
        )
    if not _is_int(r.inpaint_padding) or not 0 <= r.inpaint_padding <= MAX_PADDING:
        found.append(
            f"inpaint padding must be between 0 and {MAX_PADDING} pixels, "
            f"got {short(r.inpaint_padding)}"
        )
    return found


def check_request(request: GenerationRequest, *, max_pixels: int = MAX_PIXELS) -> None:
    """Raise EngineError(BAD_INPUT) naming every problem; do nothing if the request is fine."""
    if not isinstance(request, GenerationRequest):
        raise EngineError(
            ErrorKind.BAD_INPUT, f"Expected a GenerationRequest, got {type(request).__name__}."
        )
    found = problems(request, max_pixels=max_pixels)
    if found:
        message = "; ".join(found)
        raise EngineError(ErrorKind.BAD_INPUT, message[0].upper() + message[1:] + ".")
