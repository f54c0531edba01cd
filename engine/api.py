"""The contract between the engine and anything that drives it (window, CLI, tests).

Requests are immutable records holding everything a job needs. Events are small
immutable records, one class per kind, each carrying the job id. Nothing here imports
torch or Qt: the window depends on this module only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
from PIL import Image

Progress = Callable[[str, float], None]
"""progress(stage in human words, fraction 0..1 or -1 when unknown), e.g. while loading."""
ShouldCancel = Callable[[], bool]
"""should_cancel(): True once the job has been cancelled; polled between stages and steps."""

STARTER_MODEL = "starter"
"""Model name meaning the small model bundled under resources/ (the default)."""


class SchedulerName(StrEnum):
    """Samplers by the names users know from other applications."""

    EULER = "Euler"
    EULER_A = "Euler a"
    DPMPP_2M = "DPM++ 2M"
    DPMPP_2M_KARRAS = "DPM++ 2M Karras"
    DPMPP_SDE = "DPM++ SDE"
    DDIM = "DDIM"
    DDPM = "DDPM"
    UNIPC = "UniPC"
    LCM = "LCM"
    SCM = "sCM"  # SANA-Sprint's own consistency sampler (flow families only)


class ModelFamily(StrEnum):
    """The architecture a model belongs to; decides pipelines, latents and previews.

    A family is one transformer/UNet architecture with one latent format. Variants that
    share them (FLUX.1 dev / schnell / Fill, SANA / SANA-Sprint, Z-Image Turbo, SD 3 / 3.5
    medium / large) are not families: the loaded model names its variant
    (LoadedModel.variant), and engine/families/ holds each variant's defaults.
    """

    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    SD3 = "sd3"  # Stable Diffusion 3 and 3.5
    FLUX1 = "flux1"  # FLUX.1 dev, schnell, Fill
    FLUX2 = "flux2"  # FLUX.2 klein
    ZIMAGE = "zimage"  # Z-Image, Z-Image Turbo
    QWEN_IMAGE = "qwen_image"
    SANA = "sana"  # SANA, SANA-Sprint


class GuidanceKind(StrEnum):
    """How a model is steered towards the prompt; decides what the form offers."""

    CFG = "cfg"  # true classifier-free guidance: a scale and a negative prompt
    DISTILLED = "distilled"  # a guidance scale the model takes as input; no negative prompt
    NONE = "none"  # few-step distilled models: neither scale nor negative prompt


class Mode(StrEnum):
    """What a job does with its inputs."""

    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"


class JobState(StrEnum):
    """Where a job stands, as the window and the CLI track it."""

    QUEUED = "queued"
    LOADING = "loading"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        return self in (JobState.FINISHED, JobState.CANCELLED, JobState.FAILED)


class ErrorKind(StrEnum):
    """Whose fault a failure was."""

    BAD_INPUT = "bad_input"  # the user can fix it (size, steps, mask ...)
    MODEL = "model"  # missing, corrupt or unsupported model file; offline hub id
    OUT_OF_MEMORY = "out_of_memory"  # suggest a smaller size or the CPU
    INTERNAL = "internal"  # a bug: the message carries the traceback in `detail`
    CONNECTION = "connection"  # a remote engine could not be reached, or the link broke


class EventKind(StrEnum):
    QUEUED = "queued"
    MODEL_LOADING = "model_loading"
    STARTED = "started"
    STEP = "step"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"


class EngineError(Exception):
    """An error with a kind and a message a person can act on."""

    def __init__(self, kind: ErrorKind, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail


class JobResultPruned(LookupError):
    """wait() on a job that ended so long ago that the engine no longer keeps its result."""

    def __init__(self, job_id: int, kept: int) -> None:
        super().__init__(
            f"Job {job_id} ended long ago and its result was pruned (the engine keeps the "
            f"results of the last {kept} jobs); wait() for a job soon after submitting it, "
            "or listen for its events."
        )
        self.job_id = job_id


class JobCancelled(Exception):
    """Raised inside the worker (e.g. between model-loading stages) when a job is cancelled."""


@dataclass(frozen=True)
class ResumeFrom:
    """Continue a finished (or cancelled) job's trajectory from one of its steps.

    The engine keeps every job's per-step latents; a request carrying ResumeFrom
    re-runs only the steps after `step` (1-based: the state after that many steps),
    with the request's own prompt, seed and guidance. Steps and scheduler come from
    the source job.
    """

    job_id: int
    step: int


class Preprocessor(StrEnum):
    """Built-in control-image preprocessors; none needs model weights."""

    NONE = "none"  # the image is already a control map (depth, pose, edges ...)
    CANNY = "canny"
    SOFT_EDGE = "softedge"  # Gaussian blur then Sobel gradient magnitude
    LINEART = "lineart"  # dark strokes by thresholding, white on black
    SCRIBBLE = "scribble"  # a drawing's strokes, thickened, white on black


@dataclass(frozen=True)
class ControlUnit:
    """One ControlNet (or T2I adapter) steering a job, as A1111's ControlNet units.

    model: a diffusers folder or a single .safetensors file; image: the control image
    (or the picture a preprocessor turns into one), resized to the request's size;
    weight: the conditioning scale; start and end: the fraction of the steps it acts on;
    source: where the image came from, for the picture's record and "Reuse parameters":
    a file's path, "canvas" (the picture on the canvas), "sketch" (drawn), or "" (unsaid).
    """

    model: str
    image: Image.Image
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocessor: str = Preprocessor.NONE.value
    source: str = ""


@dataclass(frozen=True)
class RegionPrompt:
    """A prompt that acts only where its mask is white (regional prompting).

    mask is a picture of the request's size; the request's own prompt is the base
    prompt and acts everywhere.
    """

    prompt: str
    mask: Image.Image


class OutpaintFill(StrEnum):
    """What the new area of an expanded canvas holds before the model paints it."""

    EDGE = "edge"  # the border pixels stretched outward
    BLUR = "blur"  # the border pixels stretched outward, then blurred
    NOISE = "noise"  # random pixels around the picture's mean colour


@dataclass(frozen=True)
class Expand:
    """Outpainting: grow the init image by this many pixels on each side (multiples of 8)
    and paint the new area; the original pixels come back exactly (engine/outpaint.py).

    band: pixels of the new area next to the original over which the model's painting is
    blended toward the original's colours, so the seam does not show. tile: with
    inpaint_only_masked, the most pixels on a side of each piece the model paints at once
    (a 512 px model extends a large picture piece by piece)."""

    left: int = 0
    right: int = 0
    top: int = 0
    bottom: int = 0
    fill: str = OutpaintFill.EDGE.value  # the least visible seam (bench/canvas_outpaint.py)
    band: int = 32
    tile: int = 512


@dataclass(frozen=True)
class ForwardProcess:
    """The forward process, made visible: the init image's latents noised `level` steps of
    the request's schedule deep (0: the picture itself; steps: the schedule's noisiest),
    with the seed's noise. Without denoise the job's one image is that noisy latent decoded;
    with denoise the reverse process runs the remaining `level` steps from exactly it."""

    level: int
    denoise: bool = False


@dataclass(frozen=True)
class HiresFix:
    """A1111's hires fix: after the first pass, enlarge by `scale` with `upscaler` (a latent
    upscaler such as "Latent (bicubic)", "Lanczos", or an upscaler model's file name or
    path), then run image-to-image at the larger size with these steps and strength.
    steps 0: as many as the first pass; empty prompts: the first pass's."""

    scale: float = 2.0
    upscaler: str = "Latent"
    steps: int = 0
    denoising_strength: float = 0.55
    prompt: str = ""
    negative_prompt: str = ""


@dataclass(frozen=True)
class Upscale:
    """Enlarge the request's init image by `scale` with `upscaler` ("Lanczos" or an
    upscaler model). With sd_tiles, then repaint it tile by tile with image-to-image at
    the request's strength (A1111's "SD upscale"): tiles of `tile` pixels overlapping by
    `overlap`, blended with feathered edges, so the picture may be larger than what fits
    in memory at once."""

    scale: float = 2.0
    upscaler: str = "Lanczos"
    sd_tiles: bool = False
    tile: int = 512
    overlap: int = 64


@dataclass(frozen=True)
class GenerationRequest:
    """One generation job. Text-to-image unless init_image is set; inpaint if mask is set.

    init_image and mask are PIL images of size width x height. The mask is white
    (255) where the picture is repainted and black where it is kept.
    """

    prompt: str
    negative_prompt: str = ""
    steps: int = 20
    guidance_scale: float = 5.0
    # True CFG beside distilled guidance (FLUX.1 dev: FluxPipeline's true_cfg_scale, with
    # the negative prompt); 1: off. Variants whose profile offers it only (engine/families/).
    true_cfg_scale: float = 1.0
    seed: int | None = None  # None: the engine picks one and reports it
    batch_size: int = 1
    width: int = 128
    height: int = 128
    scheduler: str = SchedulerName.DPMPP_2M.value
    model: str = STARTER_MODEL  # "starter", a diffusers folder, a .safetensors file, a hub id
    init_image: Image.Image | None = None
    strength: float = 0.75  # image-to-image and inpaint: how much is repainted
    mask: Image.Image | None = None
    mask_blur: int = 4  # pixels of feathering at the mask edge
    inpaint_only_masked: bool = False  # crop to the mask (+ padding), work at full size
    inpaint_padding: int = 32  # pixels around the mask when inpaint_only_masked
    resume: ResumeFrom | None = None
    # Speed-ups: stop guidance after this fraction of the steps (0..1; None: never), and
    # decode the final picture with the tiny autoencoder where its weights are present.
    guidance_cutoff: float | None = None
    fast_decode: bool = False
    # Deep-feature caching: the UNet's deep blocks run every deep_cache-th step and are
    # reused in between (engine/deep_cache.py); 1: every step runs all of the UNet.
    deep_cache: int = 1
    clip_skip: int = 1  # A1111's "Clip skip": 1 = the text encoder's last layer, 2 = the one before
    vae: str = ""  # a VAE to decode with instead of the model's own: file name, path or folder
    # Folders holding LoRAs, embeddings and VAEs (DiffusionDesk's, A1111's or ComfyUI's
    # models folder); empty: DiffusionDesk's own.
    model_folders: tuple[str, ...] = ()
    # Separate files a transformer-only model file needs (text encoders, VAE: paths),
    # used before those found beside it (engine/flow_single_file.py).
    model_files: tuple[str, ...] = ()
    hires: HiresFix | None = None  # text-to-image only: a second, larger pass
    upscale: Upscale | None = None  # enlarge init_image instead of generating
    # ControlNet units and regional prompts (engine/control/, engine/regions.py).
    controls: tuple[ControlUnit, ...] = ()
    regions: tuple[RegionPrompt, ...] = ()
    # Outpainting: width and height are the expanded size, init_image the picture to extend.
    expand: Expand | None = None
    forward: ForwardProcess | None = None  # show or denoise from a noised init image

    @property
    def mode(self) -> Mode:
        if self.mask is not None or self.expand is not None:
            return Mode.INPAINT
        if self.init_image is not None:
            return Mode.IMG2IMG
        return Mode.TXT2IMG

    def with_changes(self, **changes: Any) -> GenerationRequest:
        return replace(self, **changes)


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Queued:
    job_id: int
    position: int  # jobs ahead of this one (0 = next); sent again each time it changes
    kind: EventKind = field(default=EventKind.QUEUED, init=False)


@dataclass(frozen=True)
class ModelLoading:
    job_id: int
    model: str
    stage: str  # human words: "downloading unet/diffusion_pytorch_model.safetensors"
    progress: float  # 0..1 for the whole load, or -1 when unknown
    kind: EventKind = field(default=EventKind.MODEL_LOADING, init=False)


@dataclass(frozen=True)
class Started:
    job_id: int
    total_steps: int
    model: str
    device: str  # e.g. "cpu (float32)"
    seeds: tuple[int, ...]
    # The loaded model's family and variant (engine/families/) and what the status bar
    # says about them, e.g. "flux1", "schnell", "FLUX.1 schnell".
    family: str = ""
    variant: str = ""
    model_label: str = ""
    kind: EventKind = field(default=EventKind.STARTED, init=False)


@dataclass(frozen=True)
class Step:
    """One denoising step. Previews are uint8 arrays H x W x 3 of the first batch image.

    Every preview shows the whole picture in image coordinates, with the request's aspect
    ratio, at most preview.MAX_PREVIEW_SIDE on the long side. For inpainting it is already
    composited over the original with the final composite's feathered alpha (an "only
    masked area" crop pasted back at its box): show it as it is, never blend it again.
    """

    job_id: int
    step: int  # 1..total
    total: int
    elapsed: float  # seconds since sampling began
    preview: np.ndarray  # estimate of the final image (x0)
    noisy_preview: np.ndarray  # the noisy latent x_t itself
    kind: EventKind = field(default=EventKind.STEP, init=False)


@dataclass(frozen=True)
class ModelInfo:
    """What a picture's model was, beside its name: written into the picture's metadata
    and read back, so the form can show what the family uses."""

    family: str  # a ModelFamily value
    variant: str = ""  # "dev", "schnell", "fill", "3.5-large" ... ("" the plain model)
    guidance: str = ""  # a GuidanceKind value


@dataclass(frozen=True)
class Finished:
    job_id: int
    images: tuple[Image.Image, ...]
    seeds: tuple[int, ...]
    request: GenerationRequest  # the full parameters, seed filled in
    timings: dict[str, float]  # "load", "sampling", "decode", "total" (seconds)
    # The whole trajectory, one entry per step, for scrubbing after the run (as Step's).
    step_previews: tuple[np.ndarray, ...] = ()
    noisy_step_previews: tuple[np.ndarray, ...] = ()
    # Things the person should know that did not stop the job (e.g. a truncated prompt).
    warnings: tuple[str, ...] = ()
    # Numbers the job found that are not timings, e.g. the forward process's "t" and
    # "alpha_bar" (a_t) at the noise level shown.
    facts: dict[str, float] = field(default_factory=dict)
    model_info: ModelInfo | None = None  # family, variant and guidance of the model that ran
    kind: EventKind = field(default=EventKind.FINISHED, init=False)


@dataclass(frozen=True)
class Cancelled:
    job_id: int
    step: int  # steps completed before the cancel took effect (0 if never started)
    kind: EventKind = field(default=EventKind.CANCELLED, init=False)


@dataclass(frozen=True)
class Failed:
    job_id: int
    error: ErrorKind
    message: str  # one or two sentences a person can act on
    detail: str = ""  # traceback for INTERNAL errors
    kind: EventKind = field(default=EventKind.FAILED, init=False)


Event = Queued | ModelLoading | Started | Step | Finished | Cancelled | Failed

TERMINAL_KINDS = frozenset({EventKind.FINISHED, EventKind.CANCELLED, EventKind.FAILED})


class EngineLike(Protocol):
    """What the window and the CLI use. engine.worker.Engine implements it; GUI tests
    may use a scripted fake with the same surface."""

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call listener(event) for every event; it must be quick and thread-safe.

        Events come from the worker thread, except Queued (emitted inside submit) and
        the Cancelled of a job cancelled before it started (emitted inside cancel)."""

    def submit(self, request: GenerationRequest) -> int:
        """Queue a job and return its id at once (never blocks on the worker)."""

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued or running job; True if it was still pending or running."""

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel everything, stop the worker and join it within timeout seconds."""

    @property
    def device_description(self) -> str:
        """e.g. "cpu (float32)"; available before any model is loaded."""
