"""Runs a Plan through diffusers' own pipelines (text-to-image, image-to-image, inpaint).

PipelineRunner.run() reads top to bottom in numbered steps, as diffusers' __call__ does.
Each mode's pipeline is built once per loaded model from the same components (from_pipe)
and gets a fresh scheduler per job. The pipeline's callback_on_step_end is a StepHook: it
stores the step's latents (for replay and resume), makes the whole-picture previews,
reports the step, guards against NaN and honours cancel. ("Sampler" is what users call
the scheduler, hence the runner's name.)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from engine import families, guidance_cutoff, pipe_reuse, regions, unit_placement
from engine.addons.apply import Addons
from engine.addons.prompt_encoding import encode_prompts
from engine.api import EngineError, ErrorKind, GuidanceKind, JobCancelled, Mode, ShouldCancel
from engine.backends.decode import final_decode
from engine.compositing import InpaintSetup, PreviewCompositor, final_composite
from engine.control import same_noise
from engine.control import units as control_units
from engine.control.adapters import AdapterInjection
from engine.deep_cache import deep_cache
from engine.families.profile import MODE_WORDS, accepts
from engine.guidance_cutoff import GuidanceCutoff
from engine.plan import Plan
from engine.preview import MAX_PREVIEW_SIDE, Previewer, X0Tap, family_factors, k_space, vp_scale
from engine.protocols import Pipeline, PipelineClass, Scheduler
from engine.schedulers import make_scheduler

if TYPE_CHECKING:
    from engine.models import LoadedModel

StepReport = Callable[[int, int, float, np.ndarray, np.ndarray], None]
"""on_step(step, total, elapsed, x0 preview, noisy preview)"""

NAN_MESSAGE = (
    "The model produced {what} (its numbers overflowed, which often happens in half "
    "precision); choose float32 in the device settings (--dtype float32) and try again."
)


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


# ----------------------------------------------------------------------------- helpers


def _start_at(scheduler: Scheduler, offset: int) -> Callable[[], None]:
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

    # wraps: pipelines read set_timesteps' signature (FLUX passes sigmas where it may).
    @functools.wraps(set_timesteps)
    def trimmed_set_timesteps(*args: Any, **kwargs: Any) -> None:
        set_timesteps(*args, **kwargs)
        full[:] = [scheduler.timesteps]
        scheduler.timesteps = scheduler.timesteps[offset:]
        if set_begin_index is not None:
            set_begin_index(offset)

    def shifted_set_begin_index(begin_index: int = 0) -> None:
        assert set_begin_index is not None
        set_begin_index(offset + begin_index)

    def restore() -> None:
        if full:
            scheduler.timesteps = full[0]

    scheduler.set_timesteps = trimmed_set_timesteps
    if set_begin_index is not None:
        patched: Any = scheduler  # not every scheduler declares set_begin_index
        patched.set_begin_index = shifted_set_begin_index
    return restore


class _CancelHooks:
    """Lets cancel interrupt a long UNet or VAE forward pass between blocks."""

    def __init__(self, modules: list[torch.nn.Module], should_cancel: ShouldCancel) -> None:
        def check(*_: Any) -> None:
            if should_cancel():
                raise JobCancelled()

        self._handles = [m.register_forward_pre_hook(check) for m in modules]

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def _blocks(pipe: Pipeline) -> list[torch.nn.Module]:
    blocks: list[torch.nn.Module] = []
    unet = getattr(pipe, "unet", None)
    # A UNet whose forward a backend replaced (OpenVINO, torch.compile) runs no blocks.
    if unet is not None and "forward" not in vars(unet):
        blocks += [*unet.down_blocks, *unet.up_blocks]
    transformer = getattr(pipe, "transformer", None)
    if transformer is not None and "forward" not in vars(transformer):
        for name in ("transformer_blocks", "single_transformer_blocks", "layers"):
            blocks += list(getattr(transformer, name, []))
    decoder = getattr(getattr(pipe, "vae", None), "decoder", None)
    if decoder is not None:
        blocks += list(getattr(decoder, "up_blocks", []))
    return blocks


def _unpacker(
    profile: families.FamilyProfile, width: int, height: int
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The family's unpack rule bound to the picture's size (None: nothing packed)."""
    unpack = profile.unpack
    if unpack is None:
        return None

    def bound(latents: np.ndarray) -> np.ndarray:
        return unpack(latents, width, height)

    return bound


def _is_black(image: Image.Image) -> bool:
    return image.convert("RGB").getbbox() is None


# ----------------------------------------------------------------------------- step hook


class StepHook:
    """The pipeline's callback_on_step_end, in the spirit of diffusers' PipelineCallback:
    stores the step's latents, makes the previews, reports the step and checks cancel."""

    tensor_inputs = ["latents"]

    def __init__(
        self,
        trajectory: Trajectory,
        tap: X0Tap,
        previewer: Previewer,
        compositor: PreviewCompositor | None,
        report: StepReport,
        should_cancel: ShouldCancel,
    ) -> None:
        self.trajectory = trajectory
        self.tap = tap
        self.previewer = previewer
        self.compositor = compositor
        self.report = report
        self.should_cancel = should_cancel
        self.in_k_space = k_space(tap.scheduler)
        self.start = self.last = 0.0
        self.seconds = 0.0  # spent inside the hook

    def begin(self) -> None:
        self.start = self.last = time.perf_counter()

    def __call__(self, pipe: Pipeline, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        now = time.perf_counter()
        latents = kwargs["latents"]
        state = latents.detach().to("cpu", copy=True)
        values = (state if state.dtype == torch.float32 else state.float()).numpy()
        if not np.isfinite(values).all():
            raise EngineError(ErrorKind.MODEL, NAN_MESSAGE.format(what="NaN values"))
        elapsed = now - self.start
        x0 = self.tap.x0 if self.tap.x0 is not None else latents
        preview = self._placed(self.previewer.x0(x0, elapsed))
        scale = vp_scale(self.tap.scheduler, self.in_k_space)
        noisy = self._placed(self.previewer.noisy(values[0] * scale))
        trajectory = self.trajectory
        trajectory.latents.append(state)
        trajectory.previews.append(preview)
        trajectory.noisy_previews.append(noisy)
        self.report(len(trajectory.latents), trajectory.total, elapsed, preview, noisy)
        if self.should_cancel():
            raise JobCancelled()
        self.last = time.perf_counter()
        self.seconds += self.last - now
        return kwargs

    def _placed(self, rgb: np.ndarray) -> np.ndarray:
        return rgb if self.compositor is None else self.compositor(rgb)


# ----------------------------------------------------------------------------- runner


class PipelineRunner:
    """Owns the per-mode pipelines of the loaded model and runs plans. Worker thread only."""

    def __init__(self) -> None:
        self._base: Pipeline | None = None
        self._base_scheduler_config: Any = None
        self._pipes: dict[PipelineClass, Pipeline] = {}
        self.addons = Addons()  # LoRAs, embeddings and VAE of the loaded model
        self.controls = control_units.ControlModels()  # ControlNets and adapters in use

    def reset(self) -> None:
        self._base = None
        self._base_scheduler_config = None
        self._pipes.clear()
        self.addons.reset()
        self.controls.reset()

    def _follow(self, model: LoadedModel) -> None:
        """Forget the pipelines, add-ons and ControlNets of a model no longer loaded."""
        if self._base is not model.pipe:
            self.reset()
            self._base = model.pipe
            self._base_scheduler_config = model.pipe.scheduler.config

    def pipeline(self, model: LoadedModel, cls: PipelineClass, **extra: Any) -> Pipeline:
        """The loaded model's pipeline of class cls, sharing its components; extra
        components (a job's ControlNets) give a pipeline of their own, not kept."""
        self._follow(model)
        if extra:
            pipe = pipe_reuse.from_pipe(cls, model.pipe, model.dtype, **extra)
            pipe.set_progress_bar_config(disable=True)
            return pipe
        if cls not in self._pipes:
            same = type(model.pipe) is cls
            pipe = model.pipe if same else pipe_reuse.from_pipe(cls, model.pipe, model.dtype)
            pipe.set_progress_bar_config(disable=True)
            self._pipes[cls] = pipe
        return self._pipes[cls]

    def run(
        self,
        plan: Plan,
        model: LoadedModel,
        *,
        on_step: StepReport,
        should_cancel: ShouldCancel,
        keep: Callable[[Trajectory], None] = lambda _: None,
    ) -> RunResult:
        """Run one plan; keep() receives the trajectory at once, so a cancelled run has one."""
        r = plan.request

        # 1. The pipeline for the plan's mode, with a fresh scheduler and the request's
        #    LoRAs, embeddings and VAE (before the prompts are encoded).
        #    ControlNet units bring their models and control maps.
        #    T2I adapter units feed the UNet through a hook (engine/control/adapters.py).
        extra: dict[str, Any] = {}
        control_args: dict[str, Any] = {}
        adapters = AdapterInjection((), 1)
        if r.controls:
            self._follow(model)
            first = plan.resume.offset if plan.resume is not None else plan.start_index
            units = r.controls
            if plan.resume is not None:  # start and end on the remaining steps
                units = unit_placement.continued(r, plan.resume.step, plan.total)
            prepared = control_units.prepare(
                self.controls,
                units,
                model,
                mode=plan.mode,
                size=(plan.width, plan.height),
                folders=r.model_folders,
                steps=plan.steps - first,
            )
            extra, control_args, adapters = (
                prepared.components,
                prepared.arguments,
                prepared.adapters,
            )
        pipe = self.pipeline(model, plan.pipeline_class, **extra)
        if extra:  # FLUX's ControlNet pipelines: the plain pipeline's noise (same_noise.py)
            same_noise.draw_as_plain(pipe, plan.seeds)
        profile = families.profile(model.family)
        scheduler = make_scheduler(
            plan.scheduler,
            self._base_scheduler_config,
            flow=profile.flow,
            offered=profile.samplers_for(model.variant),
            family_label=model.label,
        )
        pipe.scheduler = scheduler
        tap = X0Tap(scheduler, flow=profile.flow)
        applied = self.addons.apply(model, pipe, r)

        # 2. The pipeline's arguments; the prompts go in as embeddings (A1111 weights,
        #    prompts past 77 tokens, clip skip: engine/addons/prompt_encoding.py).
        encoded = encode_prompts(
            pipe, model.family, r.prompt, r.negative_prompt, clip_skip=r.clip_skip
        )
        #    Regional prompts add their embeddings and mask the cross-attention.
        prompt_kwargs, regional = regions.prepare(pipe, model.family, r, plan, encoded.kwargs)
        args = pipeline_arguments(plan) | prompt_kwargs | control_args
        warnings = applied.warnings + encoded.warnings  # e.g. a prompt past the chunk limit
        if plan.guidance is not GuidanceKind.CFG:
            # Distilled and unguided models take no negative prompt, but with true CFG.
            warnings += _true_cfg(args, plan, profile.variant(model.variant), model.label)

        # 3. A resume starts from the stored latents, part way along the full schedule;
        #    "denoise from here" from the forward process's noised latents.
        trajectory = Trajectory(
            plan.scheduler, plan.steps, plan.start_index, plan.width, plan.height, plan.inpaint
        )
        done = plan.resume.step if plan.resume is not None else 0
        fraction = r.guidance_cutoff
        if guidance_cutoff.is_on(fraction) and plan.mode not in profile.cutoff_modes(model.variant):
            what = f"{model.label} models' {MODE_WORDS[plan.mode]}"
            warnings.append(guidance_cutoff.UNSUPPORTED.format(what=what))
            fraction = None
        cutoff = GuidanceCutoff(fraction, plan.total, done=done)
        if not cutoff.guided_from_start:
            args["guidance_scale"] = 1.0  # resumed past the guidance cut-off: unguided
        if plan.resume is not None:
            source, k = plan.resume.source, plan.resume.step
            if len(plan.seeds) != source.latents[0].shape[0]:
                raise EngineError(
                    ErrorKind.BAD_INPUT,
                    "Resuming needs the batch size of the job's run "
                    f"({source.latents[0].shape[0]}).",
                )
            if not profile.flow:  # flow schedules start at sigma 1 (and may need mu)
                scheduler.set_timesteps(plan.steps, device=model.device)
            sigma0 = getattr(scheduler, "init_noise_sigma", 1.0)  # prepare_latents multiplies by it
            args["latents"] = (source.latents[k - 1] / sigma0).to(model.device, model.dtype)
            tap.before_first_step = _start_at(scheduler, plan.resume.offset)
            trajectory.latents = source.latents[:k]
            trajectory.previews = source.previews[:k]
            trajectory.noisy_previews = source.noisy_previews[:k]
        elif plan.start_latents is not None:
            if not profile.flow:
                scheduler.set_timesteps(plan.steps, device=model.device)
            sigma0 = getattr(scheduler, "init_noise_sigma", 1.0)
            args["latents"] = (plan.start_latents / sigma0).to(model.device, model.dtype)
            tap.before_first_step = _start_at(scheduler, plan.start_index)
        if profile.call_arguments is not None:  # e.g. Qwen-Image's true_cfg_scale
            with torch.inference_mode():
                args = profile.call_arguments(pipe, args, model.variant)

        # 4. Keep the trajectory now, so that a cancelled run leaves one.
        keep(trajectory)

        # 5. The step hook: previews decoded from latents, placed in the whole picture.
        previewer = Previewer(
            model.latent_rgb or family_factors(model.family),
            model.tiny_vae,
            _unpacker(profile, plan.width, plan.height),
        )
        compositor = None
        if plan.inpaint is not None:
            compositor = PreviewCompositor(plan.inpaint, MAX_PREVIEW_SIDE)
        hook = StepHook(trajectory, tap, previewer, compositor, on_step, should_cancel)

        # 6. The denoising loop (the pipeline's own), cancellable between UNet/VAE blocks.
        #    The guidance cut-off acts after the hook; the final decode may be the tiny
        #    autoencoder's ("fast decode") or tiled (large pictures); deep features may be
        #    reused between steps (deep cache).
        def step_end(p: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            adapters.advance(i)
            return cutoff(p, i, hook(p, i, t, tensors))

        cancel_hooks = _CancelHooks(_blocks(pipe), should_cancel)
        decode = final_decode(
            pipe.vae, model.tiny_vae, width=plan.width, height=plan.height, fast=r.fast_decode
        )
        try:
            cached = deep_cache(getattr(pipe, "unet", None), r.deep_cache)
            fed = adapters.attached(getattr(pipe, "unet", None))
            seeded = same_noise.seeded_global_rng(plan.seeds[0], model.device)
            with torch.inference_mode(), decode as decode_warnings, regional, cached, fed, seeded:
                hook.begin()
                images = pipe(
                    **args,
                    callback_on_step_end=step_end,
                    callback_on_step_end_tensor_inputs=[
                        *hook.tensor_inputs,
                        *cutoff.tensor_inputs(pipe),
                    ],
                ).images
        finally:
            cancel_hooks.close()
        warnings = warnings + decode_warnings
        end = time.perf_counter()

        # 7. Guard against overflow, and put inpainted images back over the original.
        if any(_is_black(image) for image in images):
            raise EngineError(ErrorKind.MODEL, NAN_MESSAGE.format(what="a black image"))
        if plan.inpaint is not None:
            images = [final_composite(plan.inpaint, image) for image in images]
        return RunResult(
            images=list(images),
            trajectory=trajectory,
            warnings=warnings,
            sampling_seconds=hook.last - hook.start,
            decode_seconds=end - hook.last,
            callback_seconds=hook.seconds,
        )


def _true_cfg(args: dict[str, Any], plan: Plan, variant: families.Variant, label: str) -> list[str]:
    """For a model without true CFG, drop the negative prompt; for FLUX.1 dev with a true
    CFG scale above 1, hand the pipeline that scale and the negative prompt (as text, ""
    too: FluxPipeline runs true CFG only when it is given one). Returns the warnings."""
    scale = plan.request.true_cfg_scale
    if scale > 1 and variant.true_cfg and accepts(plan.pipeline_class, "true_cfg_scale"):
        args["true_cfg_scale"] = scale
        args["negative_prompt"] = args.get("negative_prompt") or ""
        return []
    for key in ("negative_prompt", "negative_prompt_embeds"):
        args.pop(key, None)
    if scale > 1:
        return [f"{label} models take no true CFG scale; it was left out."]
    return []


def pipeline_arguments(plan: Plan) -> dict[str, Any]:
    """The keyword arguments of the pipeline's __call__ for a plan, but for the prompts
    (step 2 of the run encodes them)."""
    r = plan.request
    args: dict[str, Any] = {
        "num_inference_steps": plan.steps,
        # Unguided (few-step distilled) models: 0 turns off the CFG of pipelines that have it.
        "guidance_scale": 0.0 if plan.guidance is GuidanceKind.NONE else r.guidance_scale,
        "num_images_per_prompt": len(plan.seeds),
        "generator": [torch.Generator("cpu").manual_seed(s) for s in plan.seeds],
        "output_type": "pil",
    }
    if plan.mode is Mode.IMG2IMG:
        image = plan.image_input
        if image is None:
            assert r.init_image is not None
            image = r.init_image.convert("RGB")
        args.update(image=image, strength=plan.strength)
    if plan.mode is not Mode.IMG2IMG or accepts(plan.pipeline_class, "width"):
        # SD's image-to-image takes the picture's size; FLUX's and SD 3's default to 1024.
        args.update(width=plan.width, height=plan.height)
    if plan.inpaint is not None:
        args.update(
            image=plan.inpaint.original,
            mask_image=plan.inpaint.pipe_mask,
            strength=plan.strength,
        )
        if plan.inpaint.padding is not None:  # FluxFillPipeline has no crop (plan checks)
            args["padding_mask_crop"] = plan.inpaint.padding
    return args
