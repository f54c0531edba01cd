"""How fast the bundled starter model generates through the engine on this CPU.

    python bench/starter_speed.py [--runs 7] [--steps 20] [--guidance 5]

A 20-step generation with classifier-free guidance at 128x128, previews every step,
timed from submit() to the Finished event; median of several runs after one warm-up
(which also loads the model). Also prints the time from submit() to the first preview.
Prints one JSON object; the goal is a median of at most 0.5 s.
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
    args = parser.parse_args()

    first_preview: dict[int, float] = {}
    lock = threading.Lock()

    def on_event(event: Event) -> None:
        if isinstance(event, Step):
            with lock:
                first_preview.setdefault(event.job_id, time.perf_counter())

    engine = Engine()
    engine.add_listener(on_event)
    try:
        totals, firsts, sampling = [], [], []
        for run in range(args.runs + 1):
            request = GenerationRequest(
                prompt="a large red circle in the centre on a blue background",
                steps=args.steps,
                guidance_scale=args.guidance,
                seed=run,
            )
            start = time.perf_counter()
            job = engine.submit(request)
            result = engine.wait(job, timeout=300)
            end = time.perf_counter()
            if not isinstance(result, Finished):
                raise SystemExit(f"generation did not finish: {result}")
            if run == 0:
                load = result.timings.get("load", float("nan"))
                continue  # warm-up: loads the model
            totals.append(end - start)
            firsts.append(first_preview[job] - start)
            sampling.append(result.timings.get("sampling", float("nan")))
        median = statistics.median(totals)
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
                }
            )
        )
    finally:
        engine.shutdown()


if __name__ == "__main__":
    main()
