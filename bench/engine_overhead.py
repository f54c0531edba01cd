"""What the engine (worker thread, previews every step, stored latents) costs over a
plain diffusers pipeline call: same model, prompt, seed, steps and sampler, the two
alternated in one run. Prints one JSON object; the median per-pair ratio must be <= 1.02.

    python bench/engine_overhead.py [--pairs 15] [--steps 20]

Uses the starter model (resources/starter-model) when it is there, else a small
random-weight SD model built from configs, and says which in the JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.api import STARTER_MODEL, Finished, GenerationRequest  # noqa: E402
from engine.models import LoadedModel, ModelManager  # noqa: E402
from engine.resources import starter_model_dir  # noqa: E402
from engine.schedulers import make_scheduler  # noqa: E402
from engine.worker import Engine  # noqa: E402


class _Fixed:
    """A model manager that always hands out one already loaded model."""

    def __init__(self, model: LoadedModel, description: str) -> None:
        self.model, self.device_description = model, description

    def get(self, source, progress, should_cancel, *_, **__) -> LoadedModel:
        return self.model

    def release(self) -> None:
        pass


def small_random_model() -> LoadedModel:
    from diffusers import StableDiffusionPipeline

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import tiny_components

    components = tiny_components(Path(tempfile.mkdtemp()), width=32)
    pipe = StableDiffusionPipeline(**components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel("random-small", "sd1", pipe, None, None, False, torch.device("cpu"),
                       torch.float32)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scheduler", default="DPM++ 2M")
    args = parser.parse_args()

    if (starter_model_dir() / "model_index.json").is_file():
        manager = ModelManager()
        model = manager.get(STARTER_MODEL, lambda *_: None, lambda: False)
        name, size, description = "starter", 128, manager.device_description
    else:
        model, name, size, description = small_random_model(), "random-small", 128, "cpu (float32)"
    request = GenerationRequest(
        prompt="a red circle on a blue background",
        steps=args.steps,
        guidance_scale=5.0,
        seed=1234,
        width=size,
        height=size,
        scheduler=args.scheduler,
        model=name,
    )
    pipe = model.pipe
    base_config = pipe.scheduler.config
    engine = Engine(_Fixed(model, description))

    def plain() -> float:
        pipe.scheduler = make_scheduler(args.scheduler, base_config)
        start = time.perf_counter()
        pipe(
            prompt=request.prompt,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            width=size,
            height=size,
            generator=[torch.Generator("cpu").manual_seed(request.seed)],
        )
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
                "scheduler": args.scheduler,
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
