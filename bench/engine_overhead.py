"""What the engine (worker thread, previews every step, stored latents, prompt handling,
compositing) costs over a plain diffusers pipeline call with the same model, prompt,
seed, steps and sampler, per model family and variant.

    python bench/engine_overhead.py [--family sd3 [--variant 3.5-large-turbo]] [--pairs 12]
    OMP_NUM_THREADS=1 python bench/engine_overhead.py --all   # every family and variant

Prints one JSON line per family/variant (and with --all a last summary line). The plain
call runs under torch.inference_mode(), as the engine does, so the ratio is the engine's
own work and not a difference in autograd bookkeeping.

How the two paths are made comparable (a fixed cost of a few milliseconds is what the
ratio must see, not the machine's jitter):
- Each case runs in a process of its own, forked from a parent that has imported
  everything but built nothing, so every case starts from the same state: no model,
  engine, cache or allocator history of an earlier case. (Run one after another in one
  process, the FLUX.1 cases read 1.09-1.15 in a full run and 0.95-1.00 alone.)
- glibc's allocator is told to keep freed memory: one arena for every thread, no
  trimming, no blocks mapped on their own (those are unmapped when freed). By default
  every job gave back and faulted in again 80-240 MB of intermediate tensors: 20,000-
  60,000 page faults, 40-100 ms of system time in a 0.4-1 s FLUX job, different in the
  main thread's arena and the worker thread's, and different again after each earlier
  case (FLUX.1 dev first: plain 59,000 faults a job, engine 2,400; after SD 3.5 Large:
  engine 36,000). That, not leaked engines, threads, objects or garbage collections
  (all checked: none), is what moved ratios from case to case. One arena, because a
  thread's own heaps are 64 MB each: larger blocks were mapped afresh on every job in
  the engine's worker thread and not in the main thread (Qwen-Image's VAE decode:
  69,000 page faults a job in any thread but the main one, a plain call run in a thread
  too). With these settings neither path faults after warm-up ("page_faults_median");
  --default-allocator shows the faults.
- Warm-up: two jobs each way. Then pairs in ABBA order (engine, plain, plain, engine,
  then the mirror), and the figure is the median over quads of engine / plain time,
  with quartiles and range: drift in machine load that is linear over a quad cancels.
- Before every timed job the garbage collector runs, so neither path pays for the
  other's garbage; torch's thread count is the same in the worker thread as in the
  main thread (both reported).
- Other programs: while they hold the CPUs, our threads wait in the run queue, which
  Linux counts per thread (/proc/self/task/*/schedstat). Each job's wall time less those
  waits is what it takes on an idle machine, thread hand-overs and all; "ok" goes by the
  median ratio of that ("median_ratio_without_cpu_waits", where schedstat is there, else
  of wall time). On a quiet machine the waits are near nothing and both ratios agree; on a
  loaded one (load 10 on 2 cores: waits were 50-75% of the wall time) the plain wall
  ratio scatters by 5-15% from quad to quad, and is reported beside it.
The same median is given for CPU time (process time).

Models: the starter model for sd1 (a small random SD model where it is missing), else a
random-weight model of the family's architecture (tests/tiny_models.py,
tiny_flow_models.py, tiny_new_families.py), sized so that a step takes about 60-200 ms
on one core (FLUX.1: 2 double- and 3 single-stream blocks; SD 3: 4 layers; the starter
and SDXL at 256 px, Z-Image at 384 px). A real model's step takes seconds on a CPU, so a
fixed cost of a few milliseconds a job or a fraction of one a step is what the ratio is
meant to see; against steps of 14-50 ms (the sizes before) it read as several per cent,
and the pair-to-pair jitter of such short jobs hid the rest. The whole --all run stays
within about 10 minutes on a quiet 2-core machine. Steps: the variant's default, at most
--steps (few-step variants run their own). The preview share is the time inside the step
callback (previews, stored latents, step events) over sampling, in wall time and in the
worker thread's CPU time (the one "ok" goes by: a loaded machine stretches wall time
inside the callback as much as anywhere, CPU time counts only its work). A real model's
step costs far more than these, so the callback's milliseconds per step at the variant's
default picture size are reported too (the engine's step callback on latents of that
size; no model runs for it).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_models import FixedModels, starter_or_random  # noqa: E402

from engine import compositing, families  # noqa: E402
from engine.api import STARTER_MODEL, Finished, GenerationRequest, GuidanceKind, Mode  # noqa: E402
from engine.models import LoadedModel  # noqa: E402
from engine.schedulers import make_scheduler, max_steps_for  # noqa: E402
from engine.worker import Engine  # noqa: E402

LIMIT = 1.02  # engine / plain
PREVIEW_LIMIT = 0.02  # step callback / sampling

# Every family and variant --all runs, in this order (SANA's 2K and 4K variants run
# SANA's code path and differ only in their default size).
CASES: tuple[tuple[str, str], ...] = (
    ("sd1", ""),
    ("sdxl", ""),
    ("sd3", ""),
    ("sd3", "3.5-medium"),
    ("sd3", "3.5-large"),
    ("sd3", "3.5-large-turbo"),
    ("flux1", "dev"),
    ("flux1", "schnell"),
    ("flux1", "fill"),
    ("zimage", "turbo"),
    ("zimage", "base"),
    ("qwen_image", ""),
    ("sana", ""),
    ("sana", "sprint"),
    ("flux2", "distilled"),
    ("flux2", "base"),
)


def _loaded(pipe: Any, family: str, variant: str, factors: Any = None) -> LoadedModel:
    pipe.set_progress_bar_config(disable=True)
    inpaint_only = families.profile(family).modes(variant) == (Mode.INPAINT,)
    return LoadedModel(f"random-{family}", family, pipe, factors, None, inpaint_only,
                       torch.device("cpu"), torch.float32, variant)  # fmt: skip


def _sd1(variant: str) -> tuple[LoadedModel, str, int]:
    model, _, description = starter_or_random()
    return model, description, 256  # at 128 px a starter step took 14 ms


def _sdxl(variant: str) -> tuple[LoadedModel, str, int]:
    from tiny_models import tiny_sdxl_pipeline

    # 256 px and a 96-wide UNet: at 128 px and 32 a step took 10 ms, so small that the
    # callback's fixed fraction of a millisecond read as a share of a real SDXL step.
    pipe = tiny_sdxl_pipeline(Path(tempfile.mkdtemp()), unet_width=96)
    return _loaded(pipe, "sdxl", variant), "cpu (float32)", 256


def _flow(family: str) -> Callable[[str], tuple[LoadedModel, str, int]]:
    def build(variant: str) -> tuple[LoadedModel, str, int]:
        from tiny_flow_models import tiny_flux_pipeline, tiny_sd3_pipeline

        tmp = Path(tempfile.mkdtemp())
        if family == "sd3":
            pipe = tiny_sd3_pipeline(tmp, layers=4, heads=4, head_dim=64)
        else:  # 2 double-stream and 3 single-stream blocks
            pipe = tiny_flux_pipeline(tmp, variant=variant, layers=2, heads=4, head_dim=64)
        return _loaded(pipe, family, variant), "cpu (float32)", 256

    return build


# (family, variant) -> tests/tiny_new_families.py's name for it
_NEW_FAMILIES = {
    ("zimage", "turbo"): "zimage",
    ("zimage", "base"): "zimage",
    ("qwen_image", ""): "qwen-image",
    ("sana", ""): "sana",
    ("sana", "sprint"): "sana-sprint",
    ("flux2", "distilled"): "flux2-klein",
    ("flux2", "base"): "flux2-klein-base",
}


def _new_family(family: str) -> Callable[[str], tuple[LoadedModel, str, int]]:
    """Z-Image, Qwen-Image, SANA / SANA-Sprint, FLUX.2 klein with a mid-sized transformer
    (4 heads of 64, 4 layers)."""

    def build(variant: str) -> tuple[LoadedModel, str, int]:
        from tiny_new_families import tiny_family_pipeline

        from engine.latent_fit import fit_latent_rgb

        pipe = tiny_family_pipeline(_NEW_FAMILIES[(family, variant)], bench=True)
        factors = None
        if not families.profile(family).latent_rgb[0]:  # as the loader does for SANA
            factors = fit_latent_rgb(pipe.vae, int(pipe.vae_scale_factor))
        # 256 tokens each: 256 px at 1/16 for these, 512 px at 1/32 for SANA's DC-AE;
        # Z-Image's transformer is the fastest of them, so it draws 384 px (576 tokens).
        size = {"sana": 512, "zimage": 384}.get(family, 256)
        return _loaded(pipe, family, variant, factors), "cpu (float32)", size

    return build


BUILDERS: dict[str, Callable[[str], tuple[LoadedModel, str, int]]] = {
    "sd1": _sd1,
    "sdxl": _sdxl,
    "sd3": _flow("sd3"),
    "flux1": _flow("flux1"),
    "zimage": _new_family("zimage"),
    "qwen_image": _new_family("qwen_image"),
    "flux2": _new_family("flux2"),
    "sana": _new_family("sana"),
}


@dataclass(frozen=True)
class Case:
    family: str
    variant: str
    model: LoadedModel
    name: str
    description: str
    size: int


def _picture(size: int) -> tuple[Image.Image, Image.Image]:
    picture = Image.new("RGB", (size, size), (90, 140, 200))
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return picture, mask


def request_for(case: Case, size: int, steps_cap: int, scheduler: str | None) -> GenerationRequest:
    profile = families.profile(case.family)
    variant = profile.variant(case.variant)
    name = scheduler or variant.scheduler.value
    steps = min(variant.steps, steps_cap, max_steps_for(name))  # sCM (SANA-Sprint): at most 4
    extra: dict[str, Any] = {}
    if profile.modes(case.variant) == (Mode.INPAINT,):  # FLUX.1 Fill only inpaints
        extra["init_image"], extra["mask"] = _picture(size)
    return GenerationRequest(
        prompt="a red circle on a blue background",
        steps=steps,
        guidance_scale=variant.guidance_scale,
        seed=1234,
        width=size,
        height=size,
        scheduler=name,
        model=case.name,
        strength=1.0,
        **extra,
    )


def plain_call(case: Case, request: GenerationRequest) -> Callable[[], None]:
    """The job as one plain diffusers call (what a script would write)."""
    model, pipe = case.model, case.model.pipe
    profile = families.profile(case.family)
    variant = profile.variant(case.variant)
    base_config = pipe.scheduler.config

    def run() -> None:
        pipe.scheduler = make_scheduler(
            request.scheduler,
            base_config,
            flow=profile.flow,
            offered=profile.samplers_for(model.variant),
        )
        call: dict[str, Any] = dict(
            prompt=request.prompt,
            num_inference_steps=request.steps,
            guidance_scale=0.0 if variant.guidance is GuidanceKind.NONE else request.guidance_scale,
            width=request.width,
            height=request.height,
            generator=[torch.Generator("cpu").manual_seed(request.seed or 0)],
        )
        if variant.guidance is GuidanceKind.CFG:
            call["negative_prompt"] = request.negative_prompt
        if request.mask is not None and request.init_image is not None:
            setup = compositing.inpaint_setup(request.init_image, request.mask, request.mask_blur)
            call.update(image=setup.original, mask_image=setup.pipe_mask, strength=1.0)
        with torch.inference_mode():
            if profile.call_arguments is not None:  # the family's own argument names
                call = profile.call_arguments(pipe, call, model.variant)
            pipe(**call)

    return run


@dataclass(frozen=True)
class Sample:
    """One timed job."""

    wall: float  # seconds
    cpu: float  # CPU seconds of the whole process
    waits: float  # seconds its threads were ready to run but waited for a CPU
    faults: int  # minor page faults

    @property
    def unwaited(self) -> float:
        """Wall time less the waits for a CPU: what an idle machine would have taken."""
        return self.wall - self.waits


def _cpu_waits() -> dict[str, int]:
    """Per thread of this process, the nanoseconds it has waited in the run queue (Linux
    schedstat: runnable, but another program had the CPU); empty where not available."""
    waits = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir("/proc/self/task"):
            path = f"/proc/self/task/{tid}/schedstat"
            with contextlib.suppress(OSError, ValueError, IndexError), open(path) as stat:
                waits[tid] = int(stat.read().split()[1])
    return waits


def _timed(run: Callable[[], Any]) -> Sample:
    """run() timed, after a collection so that neither path pays for the other's garbage."""
    gc.collect()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    waits = _cpu_waits()
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = _cpu_waits()
    waited = sum(after[tid] - before for tid, before in waits.items() if tid in after)
    faulted = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return Sample(wall, cpu, waited / 1e9, faulted)


# mallopt's parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -3, -4, -8


def steady_allocator() -> str:
    """Make glibc keep freed memory for the next job (see the module's docstring);
    says what was set."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None:
        return "default (no glibc mallopt)"
    # One arena (set before any thread allocates): a thread's own heaps are 64 MB each.
    one_arena = mallopt(_M_ARENA_MAX, 1)
    trim = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    no_mmap = mallopt(_M_MMAP_MAX, 0)  # large blocks from the heap too, kept when freed
    if trim != 1 or no_mmap != 1 or one_arena != 1:
        return "default (mallopt refused)"
    return "glibc: one arena, no trimming, no mmap"


def _quartiles(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [round(values[0], 4)] * 2
    q = statistics.quantiles(values, n=4)
    return [round(q[0], 4), round(q[2], 4)]


class HookClock:
    """Thread CPU time inside the engine's step callback and over sampling, per job.

    Wall time inside the callback counts every moment the worker thread waits for a
    core, which on a loaded machine is most of it; CPU time counts only the work. It
    wraps sampling.StepHook (begin() marks the start of sampling) for one measurement."""

    def __init__(self) -> None:
        self.jobs: list[list[float]] = []  # [CPU in the callback, CPU since begin()]
        self.worker_threads = 0  # torch's thread count in the thread that samples

    def __enter__(self) -> HookClock:
        from engine.sampling import StepHook

        self._saved = StepHook.begin, StepHook.__call__
        begin, call = self._saved
        jobs = self.jobs

        clock = self

        def timed_begin(hook: Any) -> None:
            clock.worker_threads = torch.get_num_threads()
            hook.cpu_job = [0.0, 0.0]
            hook.cpu_start = time.thread_time()
            jobs.append(hook.cpu_job)
            begin(hook)

        def timed_call(hook: Any, *args: Any) -> Any:
            start = time.thread_time()
            try:
                return call(hook, *args)
            finally:
                now = time.thread_time()
                hook.cpu_job[0] += now - start
                hook.cpu_job[1] = now - hook.cpu_start

        StepHook.begin, StepHook.__call__ = timed_begin, timed_call  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        from engine.sampling import StepHook

        StepHook.begin, StepHook.__call__ = self._saved  # type: ignore[method-assign]

    def share(self) -> float:
        """The newest job's callback share of its sampling, in CPU time."""
        inside, sampling = self.jobs[-1]
        return inside / sampling if sampling > 0 else 0.0


def measure(
    family: str, variant_name: str, pairs: int, steps_cap: int, scheduler: str | None,
    full_size: bool,
) -> dict[str, Any]:  # fmt: skip
    started = time.perf_counter()
    profile = families.profile(family)
    variant = profile.variant(variant_name)
    model, description, size = BUILDERS[family](variant.name)
    name = f"random-{family}" + (f"-{variant.name}" if variant.name else "")
    if family == "sd1" and model.source == STARTER_MODEL:
        name = "starter"
    case = Case(family, variant.name, model, name, description, size)
    request = request_for(case, size, steps_cap, scheduler)
    # backend "torch": the same compute on both paths ("auto" may pick OpenVINO for a UNet).
    engine = Engine(FixedModels(model, description), backend="torch")
    shares: list[float] = []
    cpu_shares: list[float] = []
    callback_ms: list[float] = []
    shapes: list[tuple[int, ...]] = []
    clock = HookClock()

    def through_engine() -> None:
        result = engine.generate(request, 600)
        assert isinstance(result, Finished), result
        assert len(result.step_previews) == request.steps, len(result.step_previews)
        shares.append(result.timings["previews"] / result.timings["sampling"])
        cpu_shares.append(clock.share())
        callback_ms.append(1000 * result.timings["previews"] / request.steps)
        if not shapes:  # the latents as the pipeline holds them, for the default size
            trajectory = engine.trajectory(result.job_id)
            assert trajectory is not None
            shapes.append(tuple(trajectory.latents[0].shape))

    plain = plain_call(case, request)
    quads = max(1, (pairs + 1) // 2)
    try:
        clock.__enter__()
        for _ in range(2):  # warm up both paths
            plain(), through_engine()
        shares.clear()
        cpu_shares.clear()
        callback_ms.clear()
        samples: dict[str, list[Sample]] = {"plain": [], "engine": []}
        quad_ratios: list[dict[str, float]] = []
        for q in range(quads):  # ABBA, then BAAB
            engine_first = (("engine", through_engine), ("plain", plain))
            pair = engine_first if q % 2 == 0 else engine_first[::-1]
            quad: dict[str, list[Sample]] = {"plain": [], "engine": []}
            for which, run in (*pair, *pair[::-1]):
                quad[which].append(_timed(run))
            for which, taken in quad.items():
                samples[which] += taken
            quad_ratios.append(
                {
                    kind: sum(getattr(x, kind) for x in quad["engine"])
                    / sum(getattr(x, kind) for x in quad["plain"])
                    for kind in ("wall", "cpu", "unwaited")
                }
            )
    finally:
        clock.__exit__()
        engine.shutdown(10)
    at_default = _step_hook_ms_at_default_size(case, request, shapes[0]) if full_size else None
    ratios = [r["wall"] for r in quad_ratios]
    unwaited = [r["unwaited"] for r in quad_ratios]
    ratio, unwaited_ratio = statistics.median(ratios), statistics.median(unwaited)
    waits = _cpu_waits() != {}
    judged = unwaited_ratio if waits else ratio
    walls = {k: [x.wall for x in v] for k, v in samples.items()}
    share = statistics.median(shares)
    cpu_share = statistics.median(cpu_shares)
    return {
        "benchmark": "engine_overhead",
        "family": family,
        "variant": variant.name,
        "label": variant.label,
        "model": name,
        "device": description,
        "mode": str(Mode.INPAINT if request.mask is not None else Mode.TXT2IMG),
        "size": f"{size}x{size}",
        "steps": request.steps,
        "scheduler": request.scheduler,
        "guidance": str(variant.guidance),
        "pairs": 2 * quads,
        "torch_threads": {"main": torch.get_num_threads(), "worker": clock.worker_threads},
        "plain_median_s": round(statistics.median(walls["plain"]), 4),
        "engine_median_s": round(statistics.median(walls["engine"]), 4),
        "median_ratio": round(ratio, 4),
        "ratio_quartiles": _quartiles(ratios),
        "ratio_range": [round(min(ratios), 4), round(max(ratios), 4)],
        "ratio_of_medians": round(
            statistics.median(walls["engine"]) / statistics.median(walls["plain"]), 4
        ),
        "median_ratio_without_cpu_waits": round(unwaited_ratio, 4) if waits else None,
        "without_cpu_waits_quartiles": _quartiles(unwaited) if waits else None,
        "cpu_wait_share_median": round(
            statistics.median(x.waits / x.wall for v in samples.values() for x in v), 4
        ),
        "cpu_median_ratio": round(statistics.median(r["cpu"] for r in quad_ratios), 4),
        # Memory the allocator gave back and took again within a job (see steady_allocator).
        "page_faults_median": {
            k: int(statistics.median(x.faults for x in v)) for k, v in samples.items()
        },
        "preview_share_median": round(share, 4),
        "preview_share_cpu_median": round(cpu_share, 4),
        "preview_ms_per_step": round(statistics.median(callback_ms), 3),
        "default_size": f"{variant.width}x{variant.height}",
        "preview_ms_per_step_at_default_size": at_default,
        "limit": LIMIT,
        "preview_limit": PREVIEW_LIMIT,
        "ok": judged <= LIMIT and cpu_share < PREVIEW_LIMIT,
        "load_average": round(os.getloadavg()[0], 2),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _step_hook_ms_at_default_size(
    case: Case, request: GenerationRequest, shape: tuple[int, ...], repeats: int = 15
) -> float:
    """The engine's step callback (sampling.StepHook: stored latents, NaN check, x0 and
    noisy previews, inpaint compositing, step event) in milliseconds per step at the
    variant's default picture size, on latents of the shape the pipeline holds there
    (the bench size's, scaled), with the engine's own preview set-up. No model runs, so
    the random model's size limits (SD 3's position embeddings) do not enter. CPU time:
    the callback runs on one thread, and CPU time is what a loaded machine leaves alone."""
    from engine.compositing import PreviewCompositor, inpaint_setup
    from engine.preview import MAX_PREVIEW_SIDE, Previewer, X0Tap, family_factors
    from engine.sampling import StepHook, Trajectory, _unpacker

    model = case.model
    profile = families.profile(case.family)
    variant = profile.variant(case.variant)
    width, height = variant.width, variant.height
    # Exact ratios, not whole multiples: 1328 px is no multiple of the bench's 256.
    if len(shape) == 3:  # packed tokens: their number grows with the area
        tokens = shape[1] * width * height // (request.width * request.height)
        shape = (shape[0], tokens, shape[2])
    else:
        rows, cols = shape[-2] * height // request.height, shape[-1] * width // request.width
        shape = (*shape[:-2], rows, cols)
    scheduler = make_scheduler(
        request.scheduler,
        model.pipe.scheduler.config,
        flow=profile.flow,
        offered=profile.samplers_for(model.variant),
    )
    tap = X0Tap(scheduler, flow=profile.flow)
    previewer = Previewer(
        model.latent_rgb or family_factors(model.family),
        model.tiny_vae,
        _unpacker(profile, width, height),
    )
    compositor = None
    if request.mask is not None:
        picture, mask = _picture(width)
        setup = inpaint_setup(picture, mask, request.mask_blur)
        compositor = PreviewCompositor(setup, MAX_PREVIEW_SIDE)
    trajectory = Trajectory(request.scheduler, request.steps, 0, width, height, None)
    hook = StepHook(trajectory, tap, previewer, compositor, lambda *_: None, lambda: False)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(shape, generator=generator).to(model.dtype)
    tap.x0 = torch.randn(shape, generator=generator)[:1].to(model.dtype)
    hook.begin()
    times = []
    for i in range(repeats):  # CPU time of this thread: what a busy machine cannot stretch
        start = time.thread_time()
        hook(model.pipe, i, None, {"latents": latents})
        times.append(time.thread_time() - start)
    return round(1000 * statistics.median(times[1:]), 3)  # the first builds the layouts


def isolated(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """run() in a child forked from this process, which has built nothing yet, so each
    case starts from the same state; its JSON line comes back through a pipe. Where
    there is no fork, run() here."""
    if not hasattr(os, "fork"):
        return run()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, answer, and leave without the parent's clean-up
        os.close(read)
        try:
            answer = json.dumps(run())
        except BaseException as exc:  # the parent reports it
            answer = json.dumps({"error": f"{type(exc).__name__}: {exc}",
                                 "detail": traceback.format_exc()})  # fmt: skip
        with os.fdopen(write, "w") as pipe:
            pipe.write(answer)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not text:
        return {"error": f"the case's process ended with status {status} and no result"}
    return json.loads(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--all", action="store_true", help="every family and variant")
    parser.add_argument("--family", default="sd1", choices=sorted(BUILDERS))
    parser.add_argument("--variant", default="", help="e.g. schnell, sprint, base, 3.5-large-turbo")
    parser.add_argument(
        "--pairs", type=int, default=12, help="engine/plain pairs, run as ABBA quads (default 12)"
    )
    parser.add_argument("--steps", type=int, default=8, help="at most this many steps (default 8)")
    parser.add_argument("--scheduler", default=None, help="default: the variant's own")
    parser.add_argument(
        "--no-default-size",
        action="store_true",
        help="skip timing the step callback at the variant's default picture size",
    )
    parser.add_argument(
        "--same-process",
        action="store_true",
        help="with --all: run the cases one after another in this process (not isolated)",
    )
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="leave glibc's allocator as it is (to see the page faults it costs)",
    )
    args = parser.parse_args()
    if args.pairs < 1 or args.steps < 1:
        parser.error("--pairs and --steps must be at least 1")
    cases = list(CASES) if args.all else [(args.family, args.variant)]
    if not args.all:
        known = [v.name for v in families.profile(args.family).variants]
        if args.variant not in known:
            parser.error(f"{args.family} has the variants {', '.join(map(repr, known))}")
    allocator = "default (--default-allocator)" if args.default_allocator else steady_allocator()
    started, load = time.perf_counter(), os.getloadavg()[0]
    lines = []
    for family, variant in cases:

        def run(family: str = family, variant: str = variant) -> dict[str, Any]:
            return measure(
                family,
                variant,
                args.pairs,
                args.steps,
                args.scheduler,
                not args.no_default_size,
            ) | {"allocator": allocator}

        if args.all and not args.same_process:
            line = isolated(run)
        else:
            line = run()
            gc.collect()
        if "error" in line:
            line = {"family": family, "variant": variant, "ok": False} | line
        lines.append(line)
        print(json.dumps(line), flush=True)
    if args.all:
        measured = [line for line in lines if "error" not in line]
        worst = max(measured, key=lambda line: line["median_ratio"], default=None)
        unwaited = [line for line in measured if line["median_ratio_without_cpu_waits"]]
        worst_unwaited = max(
            unwaited, key=lambda line: line["median_ratio_without_cpu_waits"], default=None
        )
        worst_share = max(measured, key=lambda line: line["preview_share_cpu_median"], default=None)
        print(
            json.dumps(
                {
                    "benchmark": "engine_overhead",
                    "summary": True,
                    "cases": len(lines),
                    "ok": sum(bool(line["ok"]) for line in lines),
                    "all_ok": all(line["ok"] for line in lines),
                    "failed": [
                        f"{line['family']} {line['variant']}".strip()
                        for line in lines
                        if "error" in line
                    ],  # fmt: skip
                    "worst_median_ratio": worst and [worst["label"], worst["median_ratio"]],
                    "worst_median_ratio_without_cpu_waits": worst_unwaited
                    and [
                        worst_unwaited["label"],
                        worst_unwaited["median_ratio_without_cpu_waits"],
                    ],
                    "cpu_wait_share_median": round(
                        statistics.median(line["cpu_wait_share_median"] for line in measured), 4
                    )
                    if measured
                    else None,
                    "worst_cpu_median_ratio": max(
                        (line["cpu_median_ratio"] for line in measured), default=None
                    ),
                    "worst_preview_share": worst_share
                    and [worst_share["label"], worst_share["preview_share_cpu_median"]],
                    "isolated": not args.same_process and hasattr(os, "fork"),
                    "allocator": allocator,
                    "load_average_start": round(load, 2),
                    "load_average_end": round(os.getloadavg()[0], 2),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
