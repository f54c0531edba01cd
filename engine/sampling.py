"""Runs diffusers' own pipelines (text-to-image, image-to-image, inpaint) step by step.

Each mode's pipeline is built once per loaded model from the same components
(from_pipe), gets a fresh scheduler per job, and is driven through
callback_on_step_end: the callback stores the step's latents (for replay and resume),
makes the previews, reports the step and honours cancel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import (
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.image_processor import VaeImageProcessor
from PIL import Image, ImageFilter

from engine.api import EngineError, ErrorKind, GenerationRequest, JobCancelled
from engine.backends.decode import final_decode
from engine.guidance_cutoff import GuidanceCutoff
from engine.preview import Previewer, X0Tap, family_factors, k_space, vp_scale
from engine.schedulers import make_scheduler

if TYPE_CHECKING:
    from engine.models import LoadedModel

StepReport = Callable[[int, int, float, np.ndarray, np.ndarray], None]
"""on_step(step, total, elapsed, x0 preview, noisy preview)"""

_PIPELINES = {
    False: {
        "txt2img": StableDiffusionPipeline,
        "img2img": StableDiffusionImg2ImgPipeline,
        "inpaint": StableDiffusionInpaintPipeline,
    },
    True: {
        "txt2img": StableDiffusionXLPipeline,
        "img2img": StableDiffusionXLImg2ImgPipeline,
        "inpaint": StableDiffusionXLInpaintPipeline,
    },
}
NAN_MESSAGE = (
    "The model produced {what} (its numbers overflowed, which often happens in half "
    "precision); choose float32 in the device settings (--dtype float32) and try again."
)


@dataclass
class InpaintSetup:
    original: Image.Image  # the init image, RGB
    pipe_mask: Image.Image  # hard mask handed to the pipeline, grown to the latent grid
    alpha: np.ndarray  # H x W float32 in [0, 1], exactly 0 outside the user's mask
    crop: tuple[int, int, int, int] | None  # (x1, y1, x2, y2) for "only masked area"
    padding: int | None


@dataclass
class Trajectory:
    """What a job leaves behind for replay and "continue from here"."""

    scheduler: str
    steps: int  # length of the full schedule
    start_index: int  # schedule index of the first step run (img2img skips some)
    width: int
    height: int
    inpaint: InpaintSetup | None
    latents: list[torch.Tensor] = field(default_factory=list)  # on the CPU, after each step
    previews: list[np.ndarray] = field(default_factory=list)
    noisy_previews: list[np.ndarray] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.steps - self.start_index


@dataclass
class RunResult:
    images: list[Image.Image]
    trajectory: Trajectory
    warnings: list[str]
    sampling_seconds: float
    decode_seconds: float
    callback_seconds: float  # previews, stored latents and step events, inside sampling


# ----------------------------------------------------------------------------- masks


def feathered_alpha(mask: Image.Image, blur: int) -> np.ndarray:
    """Feather inward only: 1 deep inside the mask, falling to exactly 0 at its edge.

    Blurring the mask and keeping the upper half keeps the feather inside the painted
    area, and multiplying by the hard mask guarantees untouched pixels outside it.
    """
    hard = np.asarray(mask.convert("L")) > 127
    if blur <= 0:
        return hard.astype(np.float32)
    blurred = mask.convert("L").point(lambda v: 255 if v > 127 else 0)
    soft = np.asarray(blurred.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32) / 255
    return np.clip(2 * soft - 1, 0, 1) * hard


def pipeline_mask(mask: Image.Image) -> Image.Image:
    """The hard mask grown by one latent cell, so every touched 8x8 cell is repainted."""
    hard = mask.convert("L").point(lambda v: 255 if v > 127 else 0)
    return hard.filter(ImageFilter.MaxFilter(17))


def composite(original: Image.Image, generated: Image.Image, alpha: np.ndarray) -> Image.Image:
    orig = np.asarray(original.convert("RGB"), dtype=np.float32)
    gen = np.asarray(generated.convert("RGB").resize(original.size), dtype=np.float32)
    a = alpha[..., None]
    return Image.fromarray((orig * (1 - a) + gen * a).round().astype(np.uint8))


# ----------------------------------------------------------------------------- helpers


def truncation_warnings(pipe: Any, prompt: str, negative_prompt: str) -> list[str]:
    tokenizer = getattr(pipe, "tokenizer", None) or getattr(pipe, "tokenizer_2", None)
    if tokenizer is None:
        return []
    found = []
    limit = tokenizer.model_max_length
    for label, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
        if not text:
            continue
        ids = tokenizer(text, truncation=False).input_ids
        if len(ids) > limit:
            ignored = tokenizer.decode(ids[limit - 1 : -1]).strip()
            found.append(
                f"The {label} is {len(ids) - 2} tokens long but the text encoder takes "
                f'{limit - 2}; the end was ignored: "{ignored}".'
            )
    return found


def _start_at(scheduler: Any, offset: int) -> Callable[[], None]:
    """Make the pipeline run only the schedule's steps from `offset` on.

    diffusers' pipelines cannot start from a partly denoised state (only SDXL's
    denoising_start comes close), so the pipeline is shown the trimmed schedule while
    the scheduler keeps its full one: its step index starts at `offset` and multistep
    bookkeeping counts against the full length. Returns the hook that puts the full
    schedule back once the pipeline has taken its copy.
    """
    set_timesteps, set_begin_index = (
        scheduler.set_timesteps,
        getattr(scheduler, "set_begin_index", None),
    )
    full: list[torch.Tensor] = []

    def trimmed_set_timesteps(*args: Any, **kwargs: Any) -> None:
        set_timesteps(*args, **kwargs)
        full[:] = [scheduler.timesteps]
        scheduler.timesteps = scheduler.timesteps[offset:]
        if set_begin_index is not None:
            set_begin_index(offset)

    def shifted_set_begin_index(begin_index: int = 0) -> None:
        set_begin_index(offset + begin_index)

    def restore() -> None:
        if full:
            scheduler.timesteps = full[0]

    scheduler.set_timesteps = trimmed_set_timesteps
    if set_begin_index is not None:
        scheduler.set_begin_index = shifted_set_begin_index
    return restore


class _CancelHooks:
    """Lets cancel interrupt a long UNet or VAE forward pass between blocks."""

    def __init__(self, modules: list[torch.nn.Module], should_cancel: Callable[[], bool]):
        def check(*_: Any) -> None:
            if should_cancel():
                raise JobCancelled()

        self._handles = [m.register_forward_pre_hook(check) for m in modules]

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def _blocks(pipe: Any) -> list[torch.nn.Module]:
    blocks: list[torch.nn.Module] = []
    unet = getattr(pipe, "unet", None)
    # A UNet whose forward a backend replaced (OpenVINO, torch.compile) runs no blocks.
    if unet is not None and "forward" not in vars(unet):
        blocks += [*unet.down_blocks, *unet.up_blocks]
    decoder = getattr(getattr(pipe, "vae", None), "decoder", None)
    if decoder is not None:
        blocks += list(getattr(decoder, "up_blocks", []))
    return blocks


def _is_black(image: Image.Image) -> bool:
    return all(high == 0 for _, high in image.convert("RGB").getextrema())


# ----------------------------------------------------------------------------- sampler


class Sampler:
    """Owns the per-mode pipelines of the loaded model. Worker thread only."""

    def __init__(self) -> None:
        self._base: Any = None
        self._base_scheduler_config: Any = None
        self._pipes: dict[str, Any] = {}

    def reset(self) -> None:
        self._base = None
        self._base_scheduler_config = None
        self._pipes.clear()

    def pipeline(self, model: LoadedModel, kind: str) -> Any:
        if self._base is not model.pipe:
            self.reset()
            self._base = model.pipe
            self._base_scheduler_config = model.pipe.scheduler.config
        if kind not in self._pipes:
            cls = _PIPELINES[model.family == "sdxl"][kind]
            pipe = model.pipe if type(model.pipe) is cls else cls.from_pipe(model.pipe)
            pipe.set_progress_bar_config(disable=True)
            self._pipes[kind] = pipe
        return self._pipes[kind]

    def scheduler(self, name: str) -> Any:
        return make_scheduler(name, self._base_scheduler_config)

    def run(
        self,
        model: LoadedModel,
        request: GenerationRequest,
        seeds: list[int],
        *,
        on_step: StepReport,
        should_cancel: Callable[[], bool],
        resume: tuple[Trajectory, int] | None = None,
        keep: Callable[[Trajectory], None] = lambda _: None,
    ) -> RunResult:
        """Run one job; keep() receives the trajectory at once, so a cancelled run has one."""
        r = request
        if resume is not None:
            source, k = resume
            setup = source.inpaint
            scheduler_name, steps = source.scheduler, source.steps
            width, height = source.width, source.height
        else:
            setup = self._inpaint_setup(model, r)
            scheduler_name, steps, width, height = r.scheduler, r.steps, r.width, r.height
        # A resumed image-to-image run has its init image inside the latents already.
        kind = "inpaint" if setup is not None else "txt2img" if resume is not None else r.mode
        pipe = self.pipeline(model, kind)
        scheduler = self.scheduler(scheduler_name)
        pipe.scheduler = scheduler
        tap = X0Tap(scheduler)

        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        args: dict[str, Any] = {
            "prompt": r.prompt,
            "negative_prompt": r.negative_prompt or None,
            "num_inference_steps": steps,
            "guidance_scale": r.guidance_scale,
            "num_images_per_prompt": len(seeds),
            "generator": generators,
            "output_type": "pil",
        }
        if kind != "img2img":
            args.update(width=width, height=height)
        if kind == "img2img":
            args.update(image=r.init_image.convert("RGB"), strength=r.strength)
        if setup is not None:
            args.update(
                image=setup.original,
                mask_image=setup.pipe_mask,
                strength=r.strength if resume is None and r.init_image is not None else 1.0,
                padding_mask_crop=setup.padding,
            )

        trajectory = Trajectory(scheduler_name, steps, 0, width, height, setup)
        cutoff = GuidanceCutoff(r.guidance_cutoff)
        if resume is not None:
            source, k = resume
            cutoff = GuidanceCutoff(r.guidance_cutoff, source.total, done=k)
            if not cutoff.guided_from_start:
                args["guidance_scale"] = 1.0  # past the cut-off already: no guidance
            if len(seeds) != source.latents[0].shape[0]:
                raise EngineError(
                    ErrorKind.BAD_INPUT,
                    "Resuming needs the batch size of the job's run "
                    f"({source.latents[0].shape[0]}).",
                )
            offset = source.start_index + k
            scheduler.set_timesteps(steps, device=model.device)
            sigma0 = scheduler.init_noise_sigma  # prepare_latents multiplies by it
            args["latents"] = (source.latents[k - 1] / sigma0).to(model.device, model.dtype)
            tap.before_first_step = _start_at(scheduler, offset)
            trajectory.start_index = source.start_index
            trajectory.latents = source.latents[:k]
            trajectory.previews = source.previews[:k]
            trajectory.noisy_previews = source.noisy_previews[:k]

        keep(trajectory)
        kept = None
        if setup is not None:
            kept = (setup.original, Image.fromarray((setup.alpha * 255).astype(np.uint8)))
            if setup.crop is not None:
                kept = (kept[0].crop(setup.crop), kept[1].crop(setup.crop))
        factors = model.latent_rgb or family_factors(model.family)
        previewer = Previewer(factors, model.tiny_vae, kept)
        clock = {"start": 0.0, "last": 0.0, "callbacks": 0.0}
        space = {"k": False}

        def on_step_end(_pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            latents = kwargs["latents"]
            now = time.perf_counter()
            if resume is None and i == 0:
                trajectory.start_index = steps - _pipe.num_timesteps
                cutoff.set_total(trajectory.total)
            state = latents.detach().to("cpu", copy=True)
            values = (state if state.dtype == torch.float32 else state.float()).numpy()
            if not np.isfinite(values).all():
                raise EngineError(ErrorKind.MODEL, NAN_MESSAGE.format(what="NaN values"))
            if i == 0:
                space["k"] = k_space(scheduler)
            elapsed = now - clock["start"]
            x0 = tap.x0 if tap.x0 is not None else latents
            preview = previewer.x0(x0, elapsed)
            noisy = previewer.noisy(values[0] * vp_scale(scheduler, space["k"]))
            trajectory.latents.append(state)
            trajectory.previews.append(preview)
            trajectory.noisy_previews.append(noisy)
            on_step(len(trajectory.latents), trajectory.total, elapsed, preview, noisy)
            if should_cancel():
                raise JobCancelled()
            kwargs = cutoff(_pipe, i, kwargs)
            clock["last"] = time.perf_counter()
            clock["callbacks"] += clock["last"] - now
            return kwargs

        warnings = truncation_warnings(pipe, r.prompt, r.negative_prompt)
        hooks = _CancelHooks(_blocks(pipe), should_cancel)
        decode = final_decode(
            pipe.vae, model.tiny_vae, width=width, height=height, fast=r.fast_decode
        )
        try:
            with torch.inference_mode(), decode as decode_warnings:
                clock["start"] = clock["last"] = time.perf_counter()
                images = pipe(
                    **args,
                    callback_on_step_end=on_step_end,
                    callback_on_step_end_tensor_inputs=["latents", *cutoff.tensor_inputs(pipe)],
                ).images
        finally:
            hooks.close()
        warnings += decode_warnings
        end = time.perf_counter()
        if any(_is_black(image) for image in images):
            raise EngineError(ErrorKind.MODEL, NAN_MESSAGE.format(what="a black image"))
        if setup is not None:
            images = [composite(setup.original, image, setup.alpha) for image in images]
        return RunResult(
            images=list(images),
            trajectory=trajectory,
            warnings=warnings,
            sampling_seconds=clock["last"] - clock["start"],
            decode_seconds=end - clock["last"],
            callback_seconds=clock["callbacks"],
        )

    def _inpaint_setup(self, model: LoadedModel, r: GenerationRequest) -> InpaintSetup | None:
        if r.mask is not None:
            original = r.init_image.convert("RGB")
            mask = pipeline_mask(r.mask)
            crop = None
            if r.inpaint_only_masked:
                crop = VaeImageProcessor.get_crop_region(
                    mask, r.width, r.height, pad=r.inpaint_padding
                )
            return InpaintSetup(
                original=original,
                pipe_mask=mask,
                alpha=feathered_alpha(r.mask, r.mask_blur),
                crop=crop,
                padding=r.inpaint_padding if r.inpaint_only_masked else None,
            )
        if not model.is_inpaint_unet:
            return None
        # A 9-channel inpainting UNet only runs inside the inpaint pipeline: paint it all.
        size = (r.width, r.height)
        original = (
            r.init_image.convert("RGB")
            if r.init_image is not None
            else Image.new("RGB", size, (127, 127, 127))
        )
        full = Image.new("L", size, 255)
        return InpaintSetup(original, full, np.ones((r.height, r.width), np.float32), None, None)
