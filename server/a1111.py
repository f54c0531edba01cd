"""The subset of AUTOMATIC1111's `/sdapi/v1/` web API that existing clients use.

txt2img, img2img (with a mask; override_settings sd_model_checkpoint, sd_vae and
CLIP_stop_at_last_layers; for FLUX.1 dev Forge's distilled_cfg_scale beside cfg_scale as
true CFG), progress (with the current preview), interrupt,
sd-models, samplers, schedulers, options (the model switch) and png-info, translated
into GenerationRequests for the same JobHub the streaming channel uses. A1111 is a
one-user API; here each client address has its own current run, so progress and
interrupt see only that client's jobs. Features we lack (face restoration, tiling,
scripts) are refused with a sentence rather than silently ignored.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from PIL import Image, ImageOps

from engine import families, metadata, wire
from engine.api import (
    TERMINAL_KINDS,
    EngineError,
    ErrorKind,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    GuidanceKind,
    HiresFix,
    SchedulerName,
    Started,
    Step,
)
from engine.wire import WireError
from server.catalog import ModelCatalog
from server.hub import JobHub
from server.security import RateLimiter, client_key

PREFIX = "/sdapi/v1"
MAX_ITERATIONS = 16  # n_iter: batches run one after another
DISTILLED_CFG = "distilled_cfg_scale"  # Forge's field for FLUX's guidance input
_STATUS = {
    ErrorKind.BAD_INPUT: 422,
    ErrorKind.MODEL: 404,
    ErrorKind.OUT_OF_MEMORY: 507,
    ErrorKind.INTERNAL: 500,
    ErrorKind.CONNECTION: 503,
}
_UNSUPPORTED = {
    "restore_faces": "face restoration",
    "tiling": "tiling",
}


class A1111Error(Exception):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


def _bad(message: str) -> A1111Error:
    return A1111Error(ErrorKind.BAD_INPUT, message)


@dataclass(eq=False)
class A1111Run:
    """The jobs of one txt2img/img2img call: what progress reports and interrupt stops."""

    loop: asyncio.AbstractEventLoop
    count: int
    started_at: float = field(default_factory=time.time)
    publics: list[str] = field(default_factory=list)
    results: dict[str, Event] = field(default_factory=dict)
    step: int = 0
    total: int = 0
    preview: np.ndarray | None = None
    current: str = ""
    interrupted: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sink(self, public: str, event: Event) -> None:
        """On the engine's thread."""
        finished = False
        with self.lock:
            match event:
                case Started():
                    self.current, self.step, self.total = public, 0, event.total_steps
                case Step():
                    self.current, self.step, self.total = public, event.step, event.total
                    self.preview = event.preview
            if event.kind in TERMINAL_KINDS:
                self.results[public] = event
                finished = len(self.results) == self.count
        if finished:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.done.set)

    def progress(self) -> tuple[float, int, int, int, np.ndarray | None]:
        """(fraction of the whole call, job number, step, steps, newest preview)."""
        with self.lock:
            ended = len(self.results)
            part = self.step / self.total if self.total and self.current not in self.results else 0
            return (ended + part) / max(1, self.count), ended, self.step, self.total, self.preview


class A1111State:
    """Per-server A1111 state: the current model, and each client's current run."""

    def __init__(self, hub: JobHub, limiter: RateLimiter) -> None:
        self.hub, self.limiter = hub, limiter
        names = hub.catalog.names()
        self.model = "starter" if "starter" in names else (names[0] if names else "starter")
        self.runs: dict[str, A1111Run] = {}


def router(state: A1111State) -> APIRouter:
    api = APIRouter(prefix=PREFIX)

    @api.post("/txt2img")
    async def txt2img(request: Request) -> JSONResponse:
        return await _generate(state, request, img2img=False)

    @api.post("/img2img")
    async def img2img(request: Request) -> JSONResponse:
        return await _generate(state, request, img2img=True)

    @api.get("/progress")
    async def progress(request: Request, skip_current_image: bool = False) -> dict[str, Any]:
        run = state.runs.get(_owner(request))
        if run is None:
            return _progress_body(0.0, 0.0, 0, 0, 0, 0, False, time.time())
        fraction, number, step, steps, preview = run.progress()
        image = None
        if preview is not None and not skip_current_image and not run.done.is_set():
            image = await asyncio.to_thread(wire.encode_array, preview, "PNG")
        remaining = 0 if run.done.is_set() else run.count
        elapsed = time.time() - run.started_at
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        body = _progress_body(fraction, eta, remaining, number, step, steps, run.interrupted, run)
        body["current_image"] = image
        return body

    @api.post("/interrupt")
    async def interrupt(request: Request) -> dict[str, Any]:
        owner = _owner(request)
        run = state.runs.get(owner)
        if run is not None and not run.done.is_set():
            run.interrupted = True
            for public in run.publics:
                state.hub.cancel(public, owner)
        return {}

    @api.post("/skip")
    async def skip(request: Request) -> dict[str, Any]:
        owner = _owner(request)
        run = state.runs.get(owner)
        if run is not None and run.current:
            state.hub.cancel(run.current, owner)
        return {}

    @api.get("/sd-models")
    async def sd_models() -> list[dict[str, Any]]:
        return [
            {
                "title": name,
                "model_name": Path(name).stem or name,
                "hash": None,
                "sha256": None,
                "filename": name,
                "config": None,
            }
            for name in state.hub.catalog.names()
        ]

    @api.post("/refresh-checkpoints")
    async def refresh_checkpoints() -> dict[str, Any]:
        await asyncio.to_thread(state.hub.catalog.rescan)
        return {}

    @api.get("/samplers")
    async def samplers() -> list[dict[str, Any]]:
        return [
            {"name": s.value, "aliases": [s.value.lower()], "options": {}} for s in SchedulerName
        ]

    @api.get("/schedulers")
    async def schedulers() -> list[dict[str, Any]]:
        return [
            {"name": "automatic", "label": "Automatic", "aliases": None},
            {"name": "karras", "label": "Karras", "aliases": None},
        ]

    @api.get("/scripts")
    async def scripts() -> dict[str, list[str]]:
        return {"txt2img": [], "img2img": []}

    @api.get("/options")
    async def get_options() -> dict[str, Any]:
        return {"sd_model_checkpoint": state.model, "sd_checkpoint_hash": None}

    @api.post("/options")
    async def set_options(request: Request) -> JSONResponse:
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        if "sd_model_checkpoint" in body:
            name = _model_name(body["sd_model_checkpoint"])
            try:
                state.hub.catalog.resolve(name)
            except EngineError as exc:
                return _error(exc.kind, exc.message)
            state.model = name
        return JSONResponse({"changed": sorted(k for k in body if k == "sd_model_checkpoint")})

    @api.post("/png-info")
    async def png_info(request: Request) -> JSONResponse:
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            image = await asyncio.to_thread(wire.decode_image, body.get("image"), "image")
        except WireError as exc:
            return _error(ErrorKind.BAD_INPUT, str(exc))
        texts = metadata.read_texts(image)
        info = texts.pop(metadata.A1111_KEY, "")
        parameters: dict[str, Any] = {}
        if info:
            prompt, negative, fields = metadata.parse_a1111_fields(info)
            parameters = {"Prompt": prompt, "Negative prompt": negative, **fields}
        return JSONResponse({"info": info, "items": texts, "parameters": parameters})

    return api


# ----------------------------------------------------------------------------- generation


async def _generate(state: A1111State, request: Request, *, img2img: bool) -> JSONResponse:
    owner = _owner(request)
    if not state.limiter.allow(client_key(request.scope)):
        return _error(ErrorKind.BAD_INPUT, "Too many requests; slow down.", status=429)
    body = await _json_body(request)
    if isinstance(body, JSONResponse):
        return body
    try:
        requests = await asyncio.to_thread(
            _requests_of, body, state.model, img2img, state.hub.catalog
        )
    except A1111Error as exc:
        return _error(exc.kind, exc.message)
    except WireError as exc:
        return _error(ErrorKind.BAD_INPUT, str(exc))
    previous = state.runs.get(owner)
    if previous is not None and not previous.done.is_set():
        return _error(
            ErrorKind.BAD_INPUT, "You already have a generation running; wait or interrupt it.", 409
        )
    run = A1111Run(asyncio.get_running_loop(), len(requests))
    state.runs[owner] = run
    try:
        for r in requests:
            run.publics.append(state.hub.submit(r, owner, run.sink))
    except EngineError as exc:
        for public in run.publics:
            state.hub.cancel(public, owner)
        run.count = len(run.publics)
        if not run.publics:
            run.done.set()
        return _error(exc.kind, exc.message)
    await run.done.wait()
    return await asyncio.to_thread(_response, run, body)


def _response(run: A1111Run, body: dict[str, Any]) -> JSONResponse:
    results = [run.results[p] for p in run.publics]
    finished = [r for r in results if isinstance(r, Finished)]
    failures = [r for r in results if isinstance(r, Failed)]
    if failures and not finished:
        return _error(failures[0].error, failures[0].message)
    images: list[str] = []
    seeds: list[int] = []
    infotexts: list[str] = []
    for result in finished:
        for image, seed in zip(result.images, result.seeds, strict=True):
            images.append(_png_with_parameters(image, result, seed))
            seeds.append(seed)
            infotexts.append(metadata.format_a1111(result.request, seed, result.model_info))
    first = finished[0].request if finished else None
    info = {
        "prompt": body.get("prompt", ""),
        "negative_prompt": body.get("negative_prompt", ""),
        "seed": seeds[0] if seeds else -1,
        "all_seeds": seeds,
        "steps": first.steps if first else body.get("steps"),
        **_scales_info(finished[0] if finished else None, body),
        "width": first.width if first else body.get("width"),
        "height": first.height if first else body.get("height"),
        "sampler_name": first.scheduler if first else body.get("sampler_name"),
        "sd_model_name": first.model if first else None,
        "denoising_strength": first.strength if first and first.init_image is not None else None,
        "infotexts": infotexts,
        "interrupted": run.interrupted,
        "warnings": [w for r in finished for w in r.warnings],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(run.started_at)),
    }
    parameters = {k: v for k, v in body.items() if k not in ("init_images", "mask")}
    return JSONResponse({"images": images, "parameters": parameters, "info": json.dumps(info)})


def _scales_info(result: Finished | None, body: dict[str, Any]) -> dict[str, Any]:
    """cfg_scale, and Forge's distilled_cfg_scale for a model that takes its guidance as an
    input (cfg_scale is then the true CFG scale), as the job ran them."""
    if result is None:
        return {"cfg_scale": body.get("cfg_scale")}
    info = result.model_info
    if info is not None and info.guidance == GuidanceKind.DISTILLED:
        r = result.request
        return {"cfg_scale": r.true_cfg_scale, DISTILLED_CFG: r.guidance_scale}
    return {"cfg_scale": result.request.guidance_scale}


def _png_with_parameters(image: Image.Image, result: Finished, seed: int) -> str:
    buffer = io.BytesIO()
    info = metadata.png_info(result.request, seed, result.model_info)
    image.save(buffer, format="PNG", pnginfo=info, compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _requests_of(
    body: dict[str, Any], model: str, img2img: bool, catalog: ModelCatalog | None = None
) -> list[GenerationRequest]:
    """One GenerationRequest per iteration (n_iter), each with its own seeds; catalog: the
    server's models, whose files tell how a model takes its guidance."""
    for key, what in _UNSUPPORTED.items():
        if body.get(key):
            raise _bad(f"{what} ({key}) is not supported by this server; turn it off")
    if body.get("script_name"):
        raise _bad(
            f"scripts are not supported by this server (script_name={body['script_name']!r})"
        )
    if _number(body, "subseed_strength", 0.0) not in (0, 0.0):
        raise _bad("variation seeds (subseed_strength) are not supported by this server; use 0")
    overrides = body.get("override_settings") or {}
    if not isinstance(overrides, dict):
        raise _bad("override_settings must be an object")
    if "sd_model_checkpoint" in overrides:
        model = _model_name(overrides["sd_model_checkpoint"])
    vae = overrides.get("sd_vae") or ""
    if not isinstance(vae, str):
        raise _bad("sd_vae must be a VAE's file name")
    if vae.lower() in ("automatic", "none"):
        vae = ""
    clip_skip = overrides.get("CLIP_stop_at_last_layers", 1)
    width, height = int(_number(body, "width", 512)), int(_number(body, "height", 512))
    seed = int(_number(body, "seed", -1))
    batch = int(_number(body, "batch_size", 1))
    iterations = int(_number(body, "n_iter", 1))
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise _bad(f"n_iter must be 1 to {MAX_ITERATIONS}, got {iterations}")
    guidance_scale, true_cfg_scale = _guidance_of(body, _variant_of(catalog, model))
    base = GenerationRequest(
        prompt=_text(body, "prompt"),
        negative_prompt=_text(body, "negative_prompt"),
        steps=int(_number(body, "steps", 20)),
        guidance_scale=guidance_scale,
        true_cfg_scale=true_cfg_scale,
        seed=None if seed < 0 else seed,
        batch_size=batch,
        width=width,
        height=height,
        scheduler=_scheduler(body),
        model=model,
        vae=vae,
        clip_skip=clip_skip,
    )
    if img2img:
        base = _with_images(base, body)
    elif body.get("enable_hr"):
        base = base.with_changes(hires=_hires_of(body, width, height))
    if iterations == 1:
        return [base]
    # A1111 draws one seed and counts up from it, a batch's worth per iteration.
    first = secrets.randbelow(2**32) if base.seed is None else base.seed
    return [base.with_changes(seed=first + i * batch) for i in range(iterations)]


def _variant_of(catalog: ModelCatalog | None, model: str) -> families.Variant | None:
    """The variant a model's files say it is before it loads (None where they do not tell:
    the engine then names the family as it loads)."""
    if catalog is None:
        return None
    try:
        source = catalog.resolve(model)
    except EngineError:
        return None  # the hub refuses the unknown name when the job is submitted
    described = families.describe_source(source)
    return described[0].variant(described[1]) if described else None


def _guidance_of(body: dict[str, Any], variant: families.Variant | None) -> tuple[float, float]:
    """(guidance scale, true CFG scale): cfg_scale as A1111 means it; for a model that
    takes its guidance as an input (FLUX.1 dev), as Forge's API reads them:
    distilled_cfg_scale is that guidance (the variant's default when left out) and
    cfg_scale the true CFG scale beside it (1, off, when left out). Other models ignore
    distilled_cfg_scale, as Forge does."""
    if variant is None or variant.guidance != GuidanceKind.DISTILLED:
        return float(_number(body, "cfg_scale", 7.0)), 1.0
    distilled = float(_number(body, DISTILLED_CFG, variant.guidance_scale))
    return distilled, float(_number(body, "cfg_scale", 1.0))


def _hires_of(body: dict[str, Any], width: int, height: int) -> HiresFix:
    """A1111's hires fix fields (enable_hr, hr_scale or hr_resize_x/y, hr_upscaler,
    hr_second_pass_steps, denoising_strength, hr_prompt, hr_negative_prompt)."""
    scale = float(_number(body, "hr_scale", 2.0))
    resize_x, resize_y = _number(body, "hr_resize_x", 0), _number(body, "hr_resize_y", 0)
    if resize_x or resize_y:  # A1111's "resize to": the larger ratio of the two
        scale = max(resize_x / max(width, 1), resize_y / max(height, 1))
    upscaler = _text(body, "hr_upscaler") or "Latent"
    return HiresFix(
        scale=scale,
        upscaler=upscaler,
        steps=int(_number(body, "hr_second_pass_steps", 0)),
        denoising_strength=float(_number(body, "denoising_strength", 0.7)),
        prompt=_text(body, "hr_prompt"),
        negative_prompt=_text(body, "hr_negative_prompt"),
    )


def _with_images(base: GenerationRequest, body: dict[str, Any]) -> GenerationRequest:
    images = body.get("init_images")
    if not isinstance(images, list) or not images:
        raise _bad("img2img needs init_images: a list with one base64 picture")
    size = (base.width, base.height)
    init = wire.decode_image(images[0], "init image").convert("RGB")
    if init.size != size:  # A1111's "just resize"
        init = init.resize(size, Image.Resampling.LANCZOS)
    changes: dict[str, Any] = {
        "init_image": init,
        "strength": float(_number(body, "denoising_strength", 0.75)),
    }
    if body.get("mask"):
        mask = _mask(wire.decode_image(body["mask"], "mask"))
        if mask.size != size:
            mask = mask.resize(size, Image.Resampling.NEAREST)
        if _number(body, "inpainting_mask_invert", 0):
            mask = ImageOps.invert(mask)
        changes.update(
            mask=mask,
            mask_blur=int(_number(body, "mask_blur", 4)),
            inpaint_only_masked=bool(body.get("inpaint_full_res", True)),
            inpaint_padding=int(_number(body, "inpaint_full_res_padding", 32)),
        )
    return base.with_changes(**changes)


def _mask(image: Image.Image) -> Image.Image:
    """White repaints. A mask drawn on a transparent layer marks the painted part."""
    if image.mode in ("RGBA", "LA"):
        low, _high = image.getchannel("A").getextrema()
        if isinstance(low, int) and low < 255:
            return image.getchannel("A")
    return image.convert("L")


def _scheduler(body: dict[str, Any]) -> str:
    name = body.get("sampler_name") or body.get("sampler_index") or SchedulerName.EULER_A.value
    if not isinstance(name, str):
        raise _bad(f"sampler_name must be text, got {name!r}")
    schedule = str(body.get("scheduler") or "automatic").strip().lower()
    if schedule == "karras" and "karras" not in name.lower():
        name = f"{name} Karras"
    elif schedule not in ("automatic", "karras"):
        raise _bad(f"the schedule type {schedule!r} is not supported; use Automatic or Karras")
    ours = metadata.sampler_from_name(name)
    if ours is None:
        known = ", ".join(s.value for s in SchedulerName)
        raise _bad(f"unknown sampler {name[:60]!r}; this server has: {known}")
    return ours


def _model_name(value: object) -> str:
    """A1111 titles carry a hash in brackets ("model.safetensors [6ce0161689]")."""
    if not isinstance(value, str):
        raise _bad("sd_model_checkpoint must be a model's name")
    name = value.strip()
    if name.endswith("]") and " [" in name:
        name = name[: name.rindex(" [")]
    return name


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{key} must be a number, got {str(value)[:40]!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise _bad(f"{key} must be a finite number")
    return value


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"{key} must be text, got {type(value).__name__}")
    return value


# ----------------------------------------------------------------------------- helpers


def _owner(request: Request) -> str:
    return "a1111:" + client_key(request.scope)


async def _json_body(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _error(ErrorKind.BAD_INPUT, "The request body must be JSON.")
    if not isinstance(body, dict):
        return _error(ErrorKind.BAD_INPUT, "The request body must be a JSON object.")
    return body


def _error(kind: ErrorKind, message: str, status: int | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": kind.value, "detail": message}, status_code=status or _STATUS.get(kind, 500)
    )


def _progress_body(
    fraction: float,
    eta: float,
    job_count: int,
    job_no: int,
    step: int,
    steps: int,
    interrupted: bool,
    run: A1111Run | float,
) -> dict[str, Any]:
    started = run.started_at if isinstance(run, A1111Run) else run
    return {
        "progress": round(fraction, 4),
        "eta_relative": round(eta, 2),
        "state": {
            "skipped": False,
            "interrupted": interrupted,
            "job": f"job {job_no}" if job_count else "",
            "job_count": job_count,
            "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(started)),
            "job_no": job_no,
            "sampling_step": step,
            "sampling_steps": steps,
        },
        "current_image": None,
        "textinfo": None,
    }
