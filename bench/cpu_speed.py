"""How fast DiffusionDesk makes a Stable Diffusion picture on this CPU, against a plain
float32 diffusers call in the same run. Prints one JSON object (on stdout; nncf's and
OpenVINO's own messages go to stderr).

    python bench/cpu_speed.py [--size 512] [--steps 20] [--repeats 3] [--pictures 1]
                              [--paths bf16,openvino,openvino_int8,tiny]
                              [--cutoff 0.5] [--deep-cache 3]
                              [--no-starter]
                              [--no-rss]

The model is SD 1.5's architecture (engine/model_configs/sd1) with random weights built
here, so nothing is downloaded; speed does not depend on the weights' values. Measured:

- per path, one UNet call at batch 2 (a guided step) and one full VAE decode, the paths
  taking turns (median of --repeats): "plain" (float32 diffusers, the baseline), "bf16"
  (bfloat16 + channels_last, the default on CPUs with bfloat16 units), "openvino"
  (the OpenVINO backend), "openvino_int8" (its UNet quantized to int8 by nncf,
  calibrated on a --steps run of the bfloat16 graph at the size, and its VAE decoder,
  calibrated on that run's final latents), "openvino_pinned"
  (OpenVINO with ENABLE_CPU_PINNING and CPU_DENORMALS_OPTIMIZATION),
  "openvino_one_request" (OpenVINO with a guided step's two halves in one request on
  all threads, as before CPU streams; "openvino" runs them on two streams), "tiny" (the
  fast-decode tiny autoencoder), "compile" (the UNet under torch.compile, opt-in; the
  last two, "openvino_pinned" and "openvino_one_request" only when listed in --paths);
- correlation of each path's UNet output with float32's on the same inputs; the
  decodes take the final latents of a 4-step run (another seed than int8's
  calibration), and their PSNR is against float32's picture;
- a --steps guided picture through the engine with live previews and default settings
  (dtype and backend "auto"), alternating with the plain float32 pipeline call
  (--pictures rounds): seconds, ratio, and the two pictures' PSNR; the same with deep
  cache every --deep-cache steps (on OpenVINO where "auto" picks it), with all the
  optional speed-ups (guidance cut-off at --cutoff, deep cache, fast decode), and with
  the backend "openvino-int8" where openvino_int8 is in --paths (its calibrating first
  job is the warm-up); a 1-step unguided picture with the full VAE decode (also with
  "openvino-int8" and with fast decode where those paths are listed);
- OpenVINO's first-use conversion and compilation, cold and from its cache;
- peak RSS of each path, each in a fresh process making a 2-step picture;
- the starter model's 20-step picture (128x128) with default settings against float32.

The machine may be shared: absolute seconds drift, so compare the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_models import FixedModels

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffusers import (  # noqa: E402
    AutoencoderKL,
    AutoencoderTiny,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from engine import devices, single_file  # noqa: E402
from engine.api import Finished, GenerationRequest  # noqa: E402
from engine.backends import choice, decoder_int8, int8, openvino_backend  # noqa: E402
from engine.models import LoadedModel  # noqa: E402
from engine.resources import model_configs_dir  # noqa: E402
from engine.schedulers import make_scheduler  # noqa: E402
from engine.worker import Engine  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse"
NEGATIVE = "blurry, low quality"
GUIDANCE = 7.5
SCHEDULER = "DPM++ 2M"
CONFIGS = model_configs_dir() / "sd1"


# ----------------------------------------------------------------------------- models


def _config(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / name / "config.json").read_text())


def build_pipeline(dtype: torch.dtype, seed: int = 0) -> StableDiffusionPipeline:
    """SD 1.5's architecture with random weights, created directly in dtype."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        unet = UNet2DConditionModel.from_config(_config("unet"))
        vae = AutoencoderKL.from_config(_config("vae"))
        text = _config("text_encoder")
        text_encoder = CLIPTextModel(
            CLIPTextConfig(**{k: v for k, v in text.items() if not k.startswith("_")})
        )
    finally:
        torch.set_default_dtype(previous)
    scheduler = make_scheduler(
        SCHEDULER, json.loads((CONFIGS / "scheduler" / "scheduler_config.json").read_text())
    )
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=single_file._tokenizer(CONFIGS, "tokenizer"),
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def copy_as(pipe: StableDiffusionPipeline, dtype: torch.dtype) -> StableDiffusionPipeline:
    """A copy of pipe's weights in dtype; in bfloat16 the UNet and VAE go channels_last
    (what the default policy loads on a CPU with bfloat16 units)."""
    parts: dict[str, Any] = {}
    for name in ("unet", "vae"):
        module = getattr(pipe, name)
        state = {k: v.to(dtype).contiguous() for k, v in module.state_dict().items()}
        with torch.device("meta"):  # no second random initialisation on the way
            shell = type(module).from_config(module.config)
        shell.load_state_dict(state, assign=True)
        assert not any(t.is_meta for t in [*shell.parameters(), *shell.buffers()])
        parts[name] = shell.eval()
    parts["text_encoder"] = copy.deepcopy(pipe.text_encoder).to(dtype)
    policy = devices.DevicePolicy(torch.device("cpu"), dtype, channels_last=dtype == torch.bfloat16)
    devices.apply_layout(policy, parts["unet"], parts["vae"])
    out = StableDiffusionPipeline(
        **parts,
        tokenizer=pipe.tokenizer,
        scheduler=copy.deepcopy(pipe.scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out.set_progress_bar_config(disable=True)
    return out


def tiny_autoencoder(dtype: torch.dtype) -> AutoencoderTiny:
    """TAESD's architecture (diffusers' AutoencoderTiny defaults), random weights."""
    torch.manual_seed(0)
    tiny = AutoencoderTiny().to(dtype).eval()
    if dtype == torch.bfloat16:
        tiny.to(memory_format=torch.channels_last)
    return tiny


def loaded(pipe: StableDiffusionPipeline, tiny: AutoencoderTiny | None = None) -> LoadedModel:
    dtype = pipe.unet.dtype
    return LoadedModel("sd15-random", "sd1", pipe, None, tiny, False, torch.device("cpu"), dtype)


# ----------------------------------------------------------------------------- helpers


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM belongs to the process's own
    memory map; getrusage's ru_maxrss would carry the parent's peak across the exec of
    a child (every path then read as the benchmark's own 16 GB)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    x = a.detach().float().reshape(-1).numpy().astype(np.float64)
    y = b.detach().float().reshape(-1).numpy().astype(np.float64)
    return float(np.corrcoef(x, y)[0, 1])


def psnr(a: Any, b: Any) -> float:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def to_pixels(image: torch.Tensor) -> np.ndarray:
    """A decoded batch in [-1, 1] as 8-bit pixels, the way the pipelines save them."""
    scaled = (image.float().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).numpy()


def rounded(value: float, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def plain_picture(
    pipe: StableDiffusionPipeline, size: int, steps: int, guidance: float, seed: int
) -> Any:
    pipe.scheduler = make_scheduler(SCHEDULER, pipe.scheduler.config)
    return pipe(
        prompt=PROMPT,
        negative_prompt=NEGATIVE if guidance > 1 else None,
        num_inference_steps=steps,
        guidance_scale=guidance,
        width=size,
        height=size,
        generator=[torch.Generator("cpu").manual_seed(seed)],
    ).images[0]


def engine_request(size: int, steps: int, seed: int, **changes: Any) -> GenerationRequest:
    base = GenerationRequest(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        steps=steps,
        guidance_scale=GUIDANCE,
        seed=seed,
        width=size,
        height=size,
        scheduler=SCHEDULER,
        model="sd15-random",
    )
    return base.with_changes(**changes)


def engine_picture(engine: Engine, request: GenerationRequest) -> tuple[float, Finished]:
    seconds, result = timed(lambda: engine.generate(request, 7200))
    if not isinstance(result, Finished):
        raise SystemExit(f"the engine did not finish: {result}")
    return seconds, result


# ----------------------------------------------------------------------------- parts


def unet_and_vae(
    args: argparse.Namespace,
    fp32: StableDiffusionPipeline,
    bf16: StableDiffusionPipeline,
    ov_model: Any,
    tiny: AutoencoderTiny | None,
) -> dict[str, Any]:
    """UNet step (batch 2) and VAE decode per path, taking turns; UNet correlations."""
    latent = args.size // 8
    torch.manual_seed(1)
    sample = torch.randn(2, 4, latent, latent)
    hidden = torch.randn(2, 77, 768)
    step = torch.tensor(500.0)
    # The decodes take the final latents of a short run (as the pipeline hands them to
    # the VAE): int8's activation ranges are measured on such latents, not on noise.
    z = args.decode_latents
    z = torch.randn(1, 4, latent, latent) if z is None else z
    unets: dict[str, Any] = {"plain": lambda s, h: fp32.unet(s, step, h).sample}
    vaes: dict[str, Any] = {"plain": lambda z: fp32.vae.decode(z).sample}
    as_bf16 = torch.bfloat16
    if "bf16" in args.paths:
        unets["bf16"] = lambda s, h: bf16.unet(s.to(as_bf16), step, h.to(as_bf16)).sample
        vaes["bf16"] = lambda z: bf16.vae.decode(z.to(as_bf16)).sample
    if ov_model is not None:
        unets["openvino"] = lambda s, h: ov_model.unet_forward(s, step, h).sample
        vaes["openvino"] = lambda z: ov_model.vae_decode(z).sample
    for name, other in (args.ov_variants or {}).items():  # int8, pinned
        unets[name] = lambda s, h, other=other: other.unet_forward(s, step, h).sample
        if name in ("openvino_pinned", "openvino_int8"):
            vaes[name] = lambda z, other=other: other.vae_decode(z).sample
    if tiny is not None:
        vaes["tiny"] = lambda z: tiny.decode(z.to(tiny.dtype)).sample
    compile_s = None
    if "compile" in args.paths:
        compiled = torch.compile(type(bf16.unet).forward.__get__(bf16.unet))
        with torch.inference_mode():
            compile_s, _ = timed(lambda: compiled(sample.to(as_bf16), step, hidden.to(as_bf16)))
        unets["compile"] = lambda s, h: compiled(s.to(as_bf16), step, h.to(as_bf16)).sample

    unet_times: dict[str, list[float]] = {k: [] for k in unets}
    vae_times: dict[str, list[float]] = {k: [] for k in vaes}
    outputs: dict[str, torch.Tensor] = {}
    images: dict[str, Any] = {}
    with torch.inference_mode():
        for name, fn in unets.items():  # warm-up, and the outputs to compare
            outputs[name] = fn(sample, hidden).float()
        for name, fn in vaes.items():
            images[name] = to_pixels(fn(z))
        for r in range(args.repeats):
            order = list(unets) if r % 2 == 0 else list(reversed(unets))
            for name in order:
                unet_times[name].append(timed(lambda fn=unets[name]: fn(sample, hidden))[0])
            order = list(vaes) if r % 2 == 0 else list(reversed(vaes))
            for name in order:
                vae_times[name].append(timed(lambda fn=vaes[name]: fn(z))[0])
    unet_s = {k: statistics.median(v) for k, v in unet_times.items()}
    vae_s = {k: statistics.median(v) for k, v in vae_times.items()}
    return {
        "unet_step_batch2_s": {k: round(v, 3) for k, v in unet_s.items()},
        # The fastest of the repeats: on a shared machine the least disturbed run.
        "unet_step_batch2_best_s": {k: round(min(v), 3) for k, v in unet_times.items()},
        "unet_speedup_vs_float32": {k: round(unet_s["plain"] / v, 2) for k, v in unet_s.items()},
        "vae_decode_s": {k: round(v, 3) for k, v in vae_s.items()},
        "vae_decode_best_s": {k: round(min(v), 3) for k, v in vae_times.items()},
        "vae_speedup_vs_float32": {k: round(vae_s["plain"] / v, 2) for k, v in vae_s.items()},
        "unet_correlation_vs_float32": {
            k: round(correlation(v, outputs["plain"]), 6)
            for k, v in outputs.items()
            if k != "plain"
        },
        # The tiny autoencoder is another network (random weights here): no PSNR for it.
        "vae_decode_psnr_vs_float32_db": {
            k: rounded(psnr(v, images["plain"]), 1)
            for k, v in images.items()
            if k not in ("plain", "tiny")
        },
        "torch_compile_first_call_s": rounded(compile_s, 1),
    }


class _Int8Serving:
    """The int8 UNet and decoder graphs with OpenVINOModel.unet_forward's and
    vae_decode's call signatures."""

    def __init__(self, ov_model: Any, part: Any, decoder: Any) -> None:
        self.ov_model, self.part, self.decoder = ov_model, part, decoder

    def unet_forward(self, *args: Any, **kwargs: Any) -> Any:
        with self.ov_model.active(decode=False, unet_part=self.part):
            return self.ov_model.unet_forward(*args, **kwargs)

    def vae_decode(self, z: torch.Tensor) -> Any:
        self.ov_model.decoder_serving = self.decoder
        try:
            return self.ov_model.vae_decode(z)
        finally:
            self.ov_model.decoder_serving = None


def openvino_int8(
    bf16: StableDiffusionPipeline, ov_model: Any, args: argparse.Namespace
) -> tuple[dict, Any]:
    """The engine's int8 path by hand: a --steps guided run of the bfloat16 graph keeps
    its UNet inputs, nncf quantizes with them, the int8 graph compiles at batch 2."""
    size = int8.size_name(args.size, args.size)
    recorder = int8.Recorder(int8.calibration_file(ov_model.folder, size))
    calibrate_s, latents = timed(
        lambda: _calibration_run(bf16, ov_model, recorder, args.size, args.steps)
    )
    recorder.save()
    # As the engine does it: in a process of its own. Its peak memory: the largest child
    # so far, so only where it grew (an earlier, larger child hides it).
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    quantize_s, xml = timed(lambda: int8.quantize_unet_apart(ov_model.folder, size, lambda: False))
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    quantize_peak_mb = children_after / 1024 if children_after > children_before else None
    part = ov_model.int8_part(xml)
    compile_s, _ = timed(lambda: part.compile_for(ov_model.unet_shapes(2, args.size, args.size)))
    # The decoder: calibrated on the run's final latents, as the engine's next job would.
    kept = decoder_int8.LatentRecorder(decoder_int8.calibration_file(ov_model.folder))
    kept.add(latents.float().numpy() / bf16.vae.config.scaling_factor)
    kept.save()
    decoder_s, decoder_xml = timed(lambda: decoder_int8.quantize_decoder(ov_model.folder))
    decoder = ov_model.int8_decoder_part(decoder_xml)
    shapes = ov_model.decoder_shapes(1, args.size, args.size)
    decoder_compile_s, _ = timed(lambda: decoder.compile_for(shapes))
    # The engine's own check (what "auto" decides by), written where the engine reads it.
    check_s, checked = timed(lambda: int8.check(part, ov_model.unet_part, ov_model.folder, size))
    return {
        "calibration_run_s": round(calibrate_s, 1),
        "calibration_samples": len(int8.load_calibration(recorder.path)),
        "held_out_samples": len(int8.load_calibration(recorder.path, held_out=True)),
        "quantize_s": round(quantize_s, 1),
        "quantize_peak_rss_mb": rounded(quantize_peak_mb, 0),
        "compile_s": round(compile_s, 1),
        "check_s": round(check_s, 1),
        "check_correlation_vs_bfloat16": rounded(checked, 6) if checked is not None else None,
        "auto_runs_int8": checked is not None and checked > int8.QUALITY_BAR,
        "ir_size_mb": round(xml.with_suffix(".bin").stat().st_size / 2**20, 1),
        "decoder_calibration_tiles": len(decoder_int8.calibration_samples(kept.latents)),
        "decoder_quantize_s": round(decoder_s, 1),
        "decoder_compile_s": round(decoder_compile_s, 1),
        "decoder_ir_size_mb": round(decoder_xml.with_suffix(".bin").stat().st_size / 2**20, 1),
    }, _Int8Serving(ov_model, part, decoder)


def _calibration_run(
    pipe: StableDiffusionPipeline,
    ov_model: Any,
    recorder: Any,
    size: int,
    steps: int,
    seed: int = 0,
) -> torch.Tensor:
    """A guided run of the bfloat16 OpenVINO UNet; its final latents."""
    pipe.scheduler = make_scheduler(SCHEDULER, pipe.scheduler.config)
    with torch.inference_mode(), ov_model.active(decode=False, recorder=recorder):
        return pipe(
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE,
            width=size,
            height=size,
            output_type="latent",
            generator=torch.Generator("cpu").manual_seed(seed),
        ).images


PINNED = {"ENABLE_CPU_PINNING": True, "CPU_DENORMALS_OPTIMIZATION": True}


def openvino_pinned(bf16: StableDiffusionPipeline, ov_model: Any, size: int) -> Any:
    pinned = openvino_backend.OpenVINOModel(
        bf16.unet, bf16.vae, ov_model.folder, torch.bfloat16, settings=PINNED
    )
    pinned.unet_part.compile_for(pinned.unet_shapes(2, size, size))
    pinned.decoder_part.compile_for(pinned.decoder_shapes(1, size, size))
    return pinned


def openvino_one_request(bf16: StableDiffusionPipeline, ov_model: Any, size: int) -> Any:
    """The OpenVINO UNet with the guided batch in one request (no CPU streams)."""
    single = openvino_backend.OpenVINOModel(
        bf16.unet, bf16.vae, ov_model.folder, torch.bfloat16, streams=1
    )
    single.unet_part.compile_for(single.unet_shapes(2, size, size))
    return single


def openvino_times(bf16: StableDiffusionPipeline, cache: Path, size: int) -> tuple[dict, Any]:
    """First-use conversion and compilation, cold and from the cache."""
    folder = openvino_backend.cache_folder(cache, bf16.unet, bf16.vae)
    export_s, _ = timed(
        lambda: openvino_backend.convert_to_cache(
            bf16.unet, bf16.vae, folder, torch.bfloat16, lambda *_: None, lambda: False
        )
    )

    def compile_all() -> Any:
        model = openvino_backend.OpenVINOModel(bf16.unet, bf16.vae, folder, torch.bfloat16)
        model.unet_part.compile_for(model.unet_shapes(2, size, size))
        model.unet_part.compile_for(model.unet_shapes(1, size, size))
        model.decoder_part.compile_for(model.decoder_shapes(1, size, size))
        return model

    cold_s, _ = timed(compile_all)
    cached_s, model = timed(compile_all)
    return {
        "openvino_version": openvino_backend.version(),
        "export_cold_s": round(export_s, 1),
        "compile_cold_s": round(cold_s, 1),
        "compile_cached_s": round(cached_s, 1),
        "ir_size_mb": round(sum(p.stat().st_size for p in folder.glob("*.bin")) / 2**20, 1),
    }, model


def pictures(
    args: argparse.Namespace, fp32: StableDiffusionPipeline, bf16: StableDiffusionPipeline
) -> dict[str, Any]:
    """Whole pictures through the engine against plain float32, taking turns: default
    settings; deep cache alone; all the optional speed-ups (guidance cut-off, deep cache,
    and fast decode where the tiny autoencoder is in --paths)."""
    description = devices.resolve().description
    engine = Engine(FixedModels(loaded(bf16), description), backend=args.backend)
    fast_engine = Engine(FixedModels(loaded(bf16, args.tiny), description), backend=args.backend)
    size, steps = args.size, args.steps
    fast = args.tiny is not None
    speedups = {
        "guidance_cutoff": args.cutoff,
        "deep_cache": args.deep_cache,
        "fast_decode": fast,
    }
    variants: dict[str, tuple[Engine, dict[str, Any]]] = {
        "default": (engine, {}),
        "deep_cache": (engine, {"deep_cache": args.deep_cache}),
        "with_speedups": (fast_engine, speedups),
    }
    int8_engine = None
    if "openvino_int8" in args.paths:
        int8_engine = Engine(FixedModels(loaded(bf16), description), backend="openvino-int8")
        variants["int8"] = (int8_engine, {})
        variants["int8_with_speedups"] = (int8_engine, speedups)
    try:
        # Warm-up at the picture's shapes; "auto" measures its backends here (once).
        engine_picture(engine, engine_request(size, 1, 0))
        engine_picture(fast_engine, engine_request(size, 2, 0, **speedups))
        if int8_engine is not None:
            # openvino_int8() above calibrated and quantized into the same cache (what the
            # engine's first and second jobs at a size do): these compile.
            engine_picture(int8_engine, engine_request(size, 1, 0))
            engine_picture(int8_engine, engine_request(size, 2, 0, **speedups))
        choices = Path(args.cache) / choice.CHOICES_FILE
        chosen = json.loads(choices.read_text()) if choices.is_file() else args.backend
        seconds: dict[str, list[float]] = {name: [] for name in ["plain", *variants]}
        made: dict[str, Any] = {}
        for i in range(args.pictures):
            seed = 1000 + i
            order = ["plain", *variants]
            for name in order if i % 2 == 0 else reversed(order):  # a load drift is shared
                if name == "plain":
                    took, made[name] = timed(
                        lambda seed=seed: plain_picture(fp32, size, steps, GUIDANCE, seed)
                    )
                else:
                    which, changes = variants[name]
                    request = engine_request(size, steps, seed, **changes)
                    took, made[name] = engine_picture(which, request)
                seconds[name].append(took)
        plain_s = statistics.median(seconds["plain"])

        def figures(name: str) -> dict[str, Any]:
            ratios = [p / e for p, e in zip(seconds["plain"], seconds[name], strict=True)]
            return {
                "engine_s": round(statistics.median(seconds[name]), 1),
                "speedup": round(statistics.median(ratios), 2),
                "psnr_vs_float32_db": rounded(psnr(made[name].images[0], made["plain"]), 1),
            }

        default = made["default"]
        one_plain, _ = timed(lambda: plain_picture(fp32, size, 1, 0.0, 7))
        # Unguided is a batch-1 UNet: a new shape, compiled (OpenVINO) before it is timed.
        engine_picture(engine, engine_request(size, 1, 6, guidance_scale=0.0))
        one_step, one = engine_picture(engine, engine_request(size, 1, 7, guidance_scale=0.0))
        int8_step, int8_timings = None, None
        if int8_engine is not None:  # the int8 UNet at batch 1 and the int8 decoder
            one_int8 = engine_request(size, 1, 7, guidance_scale=0.0)
            engine_picture(int8_engine, one_int8)
            int8_step, done = engine_picture(int8_engine, one_int8)
            int8_timings = {k: round(v, 2) for k, v in done.timings.items()}
        fast_step = None
        if fast:
            one_fast = engine_request(size, 1, 7, guidance_scale=0.0, fast_decode=True)
            engine_picture(fast_engine, one_fast)
            fast_step, _ = engine_picture(fast_engine, one_fast)
        return {
            "engine_device": description,
            "auto_backend_choice": chosen,
            f"picture_{steps}_steps": {
                "plain_float32_s": round(plain_s, 1),
                **figures("default"),
                "engine_timings": {k: round(v, 2) for k, v in default.timings.items()},
                # Previews, stored latents and step events, as a share of the picture.
                "preview_share": rounded(default.timings["previews"] / default.timings["total"], 4),
            },
            f"picture_{steps}_steps_deep_cache_{args.deep_cache}": figures("deep_cache"),
            f"picture_{steps}_steps_with_speedups": {
                **speedups,
                **figures("with_speedups"),
                # The tiny autoencoder here has random weights of its own: a PSNR
                # against the full VAE's picture would say nothing.
                **({"psnr_vs_float32_db": None} if fast else {}),
            },
            **(
                {
                    f"picture_{steps}_steps_int8": figures("int8"),
                    f"picture_{steps}_steps_int8_with_speedups": {
                        **figures("int8_with_speedups"),
                        **({"psnr_vs_float32_db": None} if fast else {}),
                    },
                }
                if int8_engine is not None
                else {}
            ),
            "picture_1_step_unguided": {
                "plain_float32_s": round(one_plain, 2),
                "engine_default_s": round(one_step, 2),
                "engine_fast_decode_s": rounded(fast_step, 2),
                "engine_timings": {k: round(v, 2) for k, v in one.timings.items()},
                "engine_int8_s": rounded(int8_step, 2),
                "engine_int8_timings": int8_timings,
            },
        }
    finally:
        engine.shutdown(30)
        fast_engine.shutdown(30)
        if int8_engine is not None:
            int8_engine.shutdown(30)


def starter(args: argparse.Namespace) -> dict[str, Any]:
    """The starter model's 20-step picture: default settings against float32 + torch."""
    default, float32 = Engine(backend=args.backend), Engine(dtype="float32", backend="torch")
    try:
        request = GenerationRequest(
            prompt="a large red circle in the centre on a blue background", steps=20, seed=3
        )
        default.generate(request, 600), float32.generate(request, 600)  # load, warm up
        ratios, fast, slow = [], [], []
        for i in range(max(5, args.repeats)):
            pair = [(default, fast), (float32, slow)]
            for engine, times in pair if i % 2 == 0 else reversed(pair):
                seconds, result = timed(lambda engine=engine: engine.generate(request, 600))
                times.append(seconds)
                if engine is default:
                    image = result.images[0]
                else:
                    reference = result.images[0]
            ratios.append(slow[-1] / fast[-1])
        return {
            "device": default.device_description,
            "default_s": round(statistics.median(fast), 3),
            "float32_s": round(statistics.median(slow), 3),
            "speedup": round(statistics.median(ratios), 2),
            "psnr_vs_float32_db": rounded(psnr(image, reference), 1),
        }
    finally:
        default.shutdown(30)
        float32.shutdown(30)


# ----------------------------------------------------------------------------- memory


def rss_child(path: str, size: int, cache: str) -> None:
    """One path alone in this process: a 2-step guided picture; print the peak RSS."""
    if path == "plain":
        pipe = build_pipeline(torch.float32)
        plain_picture(pipe, size, 2, GUIDANCE, 1)
    else:
        pipe = build_pipeline(torch.bfloat16)
        policy = devices.DevicePolicy(torch.device("cpu"), torch.bfloat16, channels_last=True)
        devices.apply_layout(policy, pipe.unet, pipe.vae)
        tiny = tiny_autoencoder(torch.bfloat16) if path == "tiny" else None
        backend = {"openvino": "openvino", "openvino_int8": "openvino-int8"}.get(path, "torch")
        os.environ["DIFFUSIONDESK_CACHE"] = cache
        engine = Engine(
            FixedModels(loaded(pipe, tiny), "cpu"), backend=backend, compile_unet=path == "compile"
        )
        try:
            engine_picture(engine, engine_request(size, 2, 1, fast_decode=path == "tiny"))
            if path == "openvino_int8":  # the first job calibrated; this one quantizes
                engine_picture(engine, engine_request(size, 2, 1))
        finally:
            engine.shutdown(30)
    print(json.dumps({"path": path, "peak_rss_mb": round(peak_rss_mb())}), file=JSON_OUT)


def peak_rss_per_path(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    variants = ("openvino_pinned", "openvino_one_request")
    for path in ["plain", *[p for p in args.paths if p not in variants]]:
        command = [sys.executable, __file__, "--rss-child", path, "--size", str(args.size)]
        done = subprocess.run(
            [*command, "--cache", args.cache], capture_output=True, text=True, check=False
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        found[path] = json.loads(lines[-1])["peak_rss_mb"] if lines else done.stderr[-300:]
    return found


# ----------------------------------------------------------------------------- main


def _stdout_for_json_only() -> Any:
    """The real stdout for the JSON; everything else written to stdout (nncf's log and
    progress bars, OpenVINO's own messages) goes to stderr from here on."""
    sys.stdout.flush()
    real = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return real


JSON_OUT: Any = sys.stdout


def main() -> None:
    global JSON_OUT
    JSON_OUT = _stdout_for_json_only()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="UNet/VAE timings per path")
    parser.add_argument("--pictures", type=int, default=1, help="rounds of pictures (0: none)")
    parser.add_argument(
        "--paths",
        default="bf16,openvino,openvino_int8,tiny",
        help="also: compile, openvino_pinned, openvino_one_request",
    )
    parser.add_argument("--cutoff", type=float, default=0.5, help="guidance cut-off fraction")
    parser.add_argument("--deep-cache", type=int, default=3, help="deep cache interval")
    parser.add_argument("--backend", default="auto", help="the engine's (default: auto)")
    parser.add_argument("--no-starter", action="store_true")
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--cache", default=None, help="OpenVINO cache (default: a temp dir)")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.size, args.cache)
        JSON_OUT.flush()
        return
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not openvino_backend.available():
        args.paths = [p for p in args.paths if not p.startswith("openvino")]
    elif not int8.available() and "openvino_int8" in args.paths:
        args.paths.remove("openvino_int8")
    own_cache = args.cache is None
    args.cache = args.cache or tempfile.mkdtemp(prefix="cpu-speed-")
    os.environ["DIFFUSIONDESK_CACHE"] = args.cache  # the engine's OpenVINO cache
    try:
        print(json.dumps(run(args)), file=JSON_OUT, flush=True)
    finally:
        if own_cache:  # the converted model takes gigabytes
            shutil.rmtree(args.cache, ignore_errors=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "cpu_speed",
        "model": "SD 1.5 architecture, random weights",
        "size": f"{args.size}x{args.size}",
        "steps": args.steps,
        "scheduler": SCHEDULER,
        "guidance": GUIDANCE,
        "threads": torch.get_num_threads(),
        "cpu_bf16_units": devices.cpu_bf16_units(),
        "load_average_at_start": os.getloadavg()[0],
    }
    # bfloat16 first and the OpenVINO conversion before the float32 copy exists: the
    # conversion's peak memory then does not add to a float32 model's. The float32
    # baseline holds the same (bfloat16-representable) weights.
    bf16 = build_pipeline(torch.bfloat16)
    policy = devices.DevicePolicy(torch.device("cpu"), torch.bfloat16, channels_last=True)
    devices.apply_layout(policy, bf16.unet, bf16.vae)
    args.tiny = tiny_autoencoder(torch.bfloat16) if "tiny" in args.paths else None
    ov_model = None
    sections: dict[str, float] = {}  # seconds per part of this benchmark, to plan a run
    mark = time.perf_counter()

    def section(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        sections[name] = round(now - mark)
        mark = now

    args.ov_variants = {}
    if "openvino" in args.paths:
        report["openvino"], ov_model = openvino_times(bf16, Path(args.cache), args.size)
    section("openvino_export_and_compile")
    if "openvino" not in args.paths:  # int8 and pinned build on its conversion
        args.paths = [p for p in args.paths if not p.startswith("openvino_")]
    args.decode_latents = None
    if ov_model is not None:  # another seed than int8's calibration run
        latents = _calibration_run(bf16, ov_model, None, args.size, 4, seed=1)
        args.decode_latents = latents.float() / bf16.vae.config.scaling_factor
    if "openvino_int8" in args.paths:
        report["openvino_int8"], args.ov_variants["openvino_int8"] = openvino_int8(
            bf16, ov_model, args
        )
        section("openvino_int8_calibrate_quantize_compile")
    if "openvino_pinned" in args.paths:
        args.ov_variants["openvino_pinned"] = openvino_pinned(bf16, ov_model, args.size)
        report["openvino_pinned_settings"] = PINNED
    if "openvino_one_request" in args.paths:
        one = openvino_one_request(bf16, ov_model, args.size)
        args.ov_variants["openvino_one_request"] = one
    fp32 = copy_as(bf16, torch.float32)
    report.update(unet_and_vae(args, fp32, bf16, ov_model, args.tiny))
    section("unet_and_vae")
    del ov_model
    args.ov_variants = {}  # their compiled graphs' memory back before the pictures
    correlations = report["unet_correlation_vs_float32"]
    goals = {  # the bfloat16 paths; int8 (auto where its check holds) has its own line
        "unet_correlation_above_0.999": all(
            v > 0.999 for k, v in correlations.items() if k != "openvino_int8"
        )
    }
    if "openvino_int8" in correlations:
        goals["int8_unet_correlation_above_0.999"] = correlations["openvino_int8"] > 0.999
    if args.pictures > 0:  # --pictures 0: the per-path figures only
        report.update(pictures(args, fp32, bf16))
        section("pictures")
        picture = report[f"picture_{args.steps}_steps"]
        goals["picture_at_most_30_s"] = picture["engine_s"] <= 30
        goals["picture_at_least_4.5x"] = picture["speedup"] >= 4.5
        one_step = report["picture_1_step_unguided"]["engine_default_s"]
        goals["one_step_at_most_2.5_s"] = one_step <= 2.5
    report["goals"] = goals
    del fp32, bf16
    if not args.no_starter:
        report["starter_20_steps_128px"] = starter(args)
        section("starter")
    if not args.no_rss:
        report["peak_rss_mb_per_path"] = peak_rss_per_path(args)
        section("peak_rss")
    report["bench_section_seconds"] = sections
    report["load_average_at_end"] = os.getloadavg()[0]
    report["bench_seconds"] = round(time.perf_counter() - started)
    return report


if __name__ == "__main__":
    main()
