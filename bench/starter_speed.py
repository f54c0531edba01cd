"""How fast the bundled starter model generates through the engine on this CPU.

    python bench/starter_speed.py [--runs 7] [--steps 20] [--guidance 5] [--baseline DIR]

A 20-step generation with classifier-free guidance at 128x128, previews every step,
timed from submit() to the Finished event; median of several runs after one warm-up
(which also loads the model). Also prints the time from submit() to the first preview.
Prints one JSON object; the goal is a median of at most 0.5 s.

This machine is shared, so absolute times drift from run to run. --baseline times a
second model folder (e.g. an older export of the starter model) in a second engine,
alternating with the starter run by run, and reports the ratio of the two medians,
which the drift affects far less.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.api import Event, Finished, GenerationRequest, Step  # noqa: E402
from engine.worker import Engine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a diffusers model folder to time alternately with the starter model",
    )
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "model_index.json").is_file():
        raise SystemExit(
            f"--baseline {args.baseline}: not a diffusers model folder (no model_index.json)"
        )

    def timed(engine: Engine, run: int, model: str | None = None) -> tuple[float, float, Finished]:
        """One generation: (seconds to Finished, seconds to the first preview, result)."""
        first_step = threading.Event()
        first_at: list[float] = []

        def on_event(event: Event) -> None:
            if isinstance(event, Step) and not first_step.is_set():
                first_at.append(time.perf_counter())
                first_step.set()

        request = GenerationRequest(
            prompt="a large red circle in the centre on a blue background",
            steps=args.steps,
            guidance_scale=args.guidance,
            seed=run,
        )
        if model is not None:
            request = request.with_changes(model=model)
        engine.add_listener(on_event)
        try:
            start = time.perf_counter()
            job = engine.submit(request)
            result = engine.wait(job, timeout=300)
            end = time.perf_counter()
        finally:
            engine.remove_listener(on_event)
        if not isinstance(result, Finished):
            raise SystemExit(f"generation did not finish: {result}")
        return end - start, first_at[0] - start, result

    engine = Engine()
    baseline = Engine() if args.baseline is not None else None
    try:
        totals, firsts, sampling, baseline_totals = [], [], [], []
        for run in range(args.runs + 1):
            # Run 0 of each engine is a warm-up that also loads its model.
            if baseline is not None:
                elapsed, _, _ = timed(baseline, run, str(args.baseline.resolve()))
                if run > 0:
                    baseline_totals.append(elapsed)
            elapsed, first, result = timed(engine, run)
            if run == 0:
                load = result.timings.get("load", float("nan"))
                continue
            totals.append(elapsed)
            firsts.append(first)
            sampling.append(result.timings.get("sampling", float("nan")))
        median = statistics.median(totals)
        compared = {}
        if baseline_totals:
            baseline_median = statistics.median(baseline_totals)
            compared = {
                "baseline": str(args.baseline),
                "baseline_median_s": round(baseline_median, 4),
                "ratio_to_baseline": round(median / baseline_median, 3),
            }
        print(
            json.dumps(
                {
                    "benchmark": "starter_speed",
                    "model": "starter (resources/starter-model)",
                    "device": engine.device_description,
                    "torch_threads": torch.get_num_threads(),
                    "steps": args.steps,
                    "guidance": args.guidance,
                    "size": "128x128",
                    "runs": args.runs,
                    "median_s": round(median, 4),
                    "min_s": round(min(totals), 4),
                    "max_s": round(max(totals), 4),
                    "median_first_preview_s": round(statistics.median(firsts), 4),
                    "median_sampling_s": round(statistics.median(sampling), 4),
                    "model_load_s": round(load, 3),
                    "goal_s": 0.5,
                    "meets_goal": median <= 0.5,
                    **compared,
                }
            )
        )
    finally:
        engine.shutdown()
        if baseline is not None:
            baseline.shutdown()


if __name__ == "__main__":
    main()
