"""What the engine (worker thread, previews every step, stored latents) costs over a
plain diffusers pipeline call: same model, prompt, seed, steps and sampler, the two
alternated in one run. Prints one JSON object; the median per-pair ratio must be <= 1.02.

    python bench/engine_overhead.py [--pairs 15] [--steps 20] [--family sd3 [--variant dev]]

Uses the starter model (resources/starter-model) when it is there, else a small
random-weight SD model built from configs, and says which in the JSON. --family picks
another family (engine/families/): a random-weight model of that family's architecture,
mid-sized so a step costs what the engine's per-step work is measured against, run with
the family's guidance and its default sampler. A family adds itself to BUILDERS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_models import FixedModels, starter_or_random  # noqa: E402

from engine import families  # noqa: E402
from engine.api import Finished, GenerationRequest, GuidanceKind  # noqa: E402
from engine.models import LoadedModel  # noqa: E402
from engine.schedulers import make_scheduler, max_steps_for  # noqa: E402
from engine.worker import Engine  # noqa: E402


def _flow_model(family: str, variant: str) -> LoadedModel:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_flow_models import tiny_flux_pipeline, tiny_sd3_pipeline

    tmp = Path(tempfile.mkdtemp())
    if family == "sd3":
        pipe = tiny_sd3_pipeline(tmp, layers=4, heads=4, head_dim=64)
    else:
        pipe = tiny_flux_pipeline(tmp, variant=variant, layers=2, heads=4, head_dim=64)
    return LoadedModel(f"random-{family}", family, pipe, None, None, False,
                       torch.device("cpu"), torch.float32, variant)  # fmt: skip


def _new_family_model(family: str, variant: str) -> LoadedModel:
    """Z-Image, Qwen-Image, SANA / SANA-Sprint, FLUX.2 klein: tests/tiny_new_families.py's
    models with a mid-sized transformer (4 heads of 64, 4 layers)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_new_families import tiny_family_pipeline

    from engine.latent_fit import fit_latent_rgb

    name = {
        ("zimage", "turbo"): "zimage",
        ("zimage", "base"): "zimage",
        ("qwen_image", ""): "qwen-image",
        ("sana", ""): "sana",
        ("sana", "sprint"): "sana-sprint",
        ("flux2", "distilled"): "flux2-klein",
        ("flux2", "base"): "flux2-klein-base",
    }[(family, variant)]
    pipe = tiny_family_pipeline(name, bench=True)
    factors = None
    if not families.profile(family).latent_rgb[0]:  # as the loader does for SANA
        factors = fit_latent_rgb(pipe.vae, int(pipe.vae_scale_factor))
    return LoadedModel(f"random-{family}", family, pipe, factors, None, False,
                       torch.device("cpu"), torch.float32, variant)  # fmt: skip


# family -> (build(variant) -> a loaded random-weight model, picture side in pixels)
BUILDERS: dict[str, tuple[Callable[[str], LoadedModel], int]] = {
    "sd3": (lambda variant: _flow_model("sd3", variant), 256),
    "flux1": (lambda variant: _flow_model("flux1", variant), 256),
    # 256 tokens each: 256 px at 1/16 for these, 512 px at 1/32 for SANA's DC-AE.
    "zimage": (lambda variant: _new_family_model("zimage", variant), 256),
    "qwen_image": (lambda variant: _new_family_model("qwen_image", variant), 256),
    "flux2": (lambda variant: _new_family_model("flux2", variant), 256),
    "sana": (lambda variant: _new_family_model("sana", variant), 512),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument(
        "--steps", type=int, default=None, help="default 20; at most the sampler's most"
    )
    parser.add_argument("--scheduler", default=None, help="default: DPM++ 2M, or the family's")
    parser.add_argument("--family", default="sd1", choices=["sd1", *BUILDERS])
    parser.add_argument(
        "--variant",
        default="",
        help="e.g. dev or schnell for flux1, sprint for sana, base for flux2",
    )
    args = parser.parse_args()

    if args.family != "sd1":
        build, size = BUILDERS[args.family]
        profile = families.profile(args.family)
        variant = profile.variant(args.variant)
        model, description = build(variant.name), "cpu (float32)"
        name = f"random-{args.family}" + (f"-{variant.name}" if variant.name else "")
    else:
        (model, name, description), size = starter_or_random(), 128
    profile = families.profile(model.family)
    variant = profile.variant(model.variant)
    scheduler = args.scheduler or ("DPM++ 2M" if args.family == "sd1" else variant.scheduler.value)
    guidance = 5.0 if args.family == "sd1" else variant.guidance_scale
    steps = min(args.steps or 20, max_steps_for(scheduler))  # sCM (SANA-Sprint): at most 4
    request = GenerationRequest(
        prompt="a red circle on a blue background",
        steps=steps,
        guidance_scale=guidance,
        seed=1234,
        width=size,
        height=size,
        scheduler=scheduler,
        model=name,
    )
    pipe = model.pipe
    base_config = pipe.scheduler.config
    engine = Engine(FixedModels(model, description))
    # What the engine hands the pipeline for this family's guidance kind.
    extra: dict[str, object] = {}
    if variant.guidance is GuidanceKind.CFG:
        extra["negative_prompt"] = request.negative_prompt
    scale = 0.0 if variant.guidance is GuidanceKind.NONE else request.guidance_scale

    def plain() -> float:
        pipe.scheduler = make_scheduler(
            scheduler, base_config, flow=profile.flow, offered=profile.samplers_for(model.variant)
        )
        start = time.perf_counter()
        call: dict[str, object] = dict(
            prompt=request.prompt,
            num_inference_steps=request.steps,
            guidance_scale=scale,
            width=size,
            height=size,
            generator=[torch.Generator("cpu").manual_seed(request.seed)],
            **extra,
        )
        if profile.call_arguments is not None:  # the family's own argument names
            with torch.inference_mode():
                call = profile.call_arguments(pipe, call, model.variant)
        pipe(**call)
        return time.perf_counter() - start

    shares: list[float] = []

    def through_engine() -> float:
        start = time.perf_counter()
        result = engine.generate(request, 600)
        elapsed = time.perf_counter() - start
        assert isinstance(result, Finished), result
        assert len(result.step_previews) == request.steps
        shares.append(result.timings["previews"] / result.timings["sampling"])
        return elapsed

    plain(), through_engine()  # warm up both paths
    shares.clear()
    plains, engines, ratios = [], [], []
    for i in range(args.pairs):
        # Alternate which goes first, so drift in machine load hits both alike.
        if i % 2:
            e, p = through_engine(), plain()
        else:
            p, e = plain(), through_engine()
        plains.append(p)
        engines.append(e)
        ratios.append(e / p)
    engine.shutdown(10)
    ratio = statistics.median(ratios)
    of_medians = statistics.median(engines) / statistics.median(plains)
    print(
        json.dumps(
            {
                "benchmark": "engine_overhead",
                "model": name,
                "device": description,
                "size": f"{size}x{size}",
                "steps": request.steps,
                "family": model.family,
                "variant": model.variant,
                "scheduler": scheduler,
                "pairs": args.pairs,
                "plain_median_s": round(statistics.median(plains), 4),
                "engine_median_s": round(statistics.median(engines), 4),
                "median_ratio": round(ratio, 4),
                "ratio_of_medians": round(of_medians, 4),
                # Time inside the step callback (previews, stored latents, events) as a
                # share of sampling: the engine's own cost, less exposed to machine load.
                "preview_share_median": round(statistics.median(shares), 4),
                "limit": 1.02,
                "ok": ratio <= 1.02,
            }
        )
    )


if __name__ == "__main__":
    main()
