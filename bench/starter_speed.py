"""How fast the bundled starter model generates through the engine on this CPU.

    python bench/starter_speed.py [--runs 7] [--steps 20] [--guidance 5] [--baseline DIR]

A 20-step generation with classifier-free guidance at 128x128, previews every step,
timed from submit() to the Finished event; median of several runs after one warm-up
(which also loads the model). Also prints the time from submit() to the first preview.
Prints one JSON object; the goal is a median of at most 0.5 s.

This machine is shared, so absolute times drift from run to run. --baseline also times
a second model folder (e.g. an older export of the starter model) and reports the
ratio of the two medians, which the drift affects far less. The two models take turns
in blocks (--blocks, default 3), each block a fresh process: two engines in one
process made each other about twice as slow here (their torch thread pools compete),
which would have measured that instead of the models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.api import STARTER_MODEL, Event, Finished, GenerationRequest, Step  # noqa: E402
from engine.worker import Engine  # noqa: E402

GOAL_S = 0.5


def timed(engine: Engine, request: GenerationRequest) -> tuple[float, float, Finished]:
    """One generation: (seconds to Finished, seconds to the first preview, result)."""
    first_step = threading.Event()
    first_at: list[float] = []

    def on_event(event: Event) -> None:
        if isinstance(event, Step) and not first_step.is_set():
            first_at.append(time.perf_counter())
            first_step.set()

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


def measure(model: str, runs: int, steps: int, guidance: float) -> dict:
    """Times `runs` generations after one warm-up in this process's own engine."""
    engine = Engine()
    try:
        totals, firsts, sampling = [], [], []
        load = float("nan")
        for run in range(runs + 1):
            request = GenerationRequest(
                prompt="a large red circle in the centre on a blue background",
                steps=steps,
                guidance_scale=guidance,
                seed=run,
                model=model,
            )
            elapsed, first, result = timed(engine, request)
            if run == 0:  # warm-up: loads the model
                load = result.timings.get("load", float("nan"))
                continue
            totals.append(elapsed)
            firsts.append(first)
            sampling.append(result.timings.get("sampling", float("nan")))
        return {
            "device": engine.device_description,
            "totals": totals,
            "firsts": firsts,
            "sampling": sampling,
            "load": load,
        }
    finally:
        engine.shutdown()


def measure_in_child(model: str, runs: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--model", model, "--runs", str(runs), "--raw"]
    command += ["--steps", str(args.steps), "--guidance", str(args.guidance)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"timing {model} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def alternate(args: argparse.Namespace) -> tuple[dict, dict]:
    """Starter and baseline in turns, one fresh process per block."""
    per_block = max(1, -(-args.runs // args.blocks))
    starter: dict = {"totals": [], "firsts": [], "sampling": [], "load": []}
    baseline: dict = {"totals": [], "firsts": [], "sampling": [], "load": []}
    for _ in range(args.blocks):
        for into, model in ((starter, args.model), (baseline, str(args.baseline.resolve()))):
            block = measure_in_child(model, per_block, args)
            for key in ("totals", "firsts", "sampling"):
                into[key] += block[key]
            into["load"].append(block["load"])
            into["device"] = block["device"]
    for into in (starter, baseline):
        into["load"] = statistics.median(into["load"])
    return starter, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument(
        "--model", default=STARTER_MODEL, help="model to time (default: the starter model)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a diffusers model folder to time in turns with the model, for a ratio",
    )
    parser.add_argument("--blocks", type=int, default=3, help="turns each with --baseline")
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.raw:
        print(json.dumps(measure(args.model, args.runs, args.steps, args.guidance)))
        return
    compared = {}
    if args.baseline is not None:
        if not (args.baseline / "model_index.json").is_file():
            raise SystemExit(
                f"--baseline {args.baseline}: not a diffusers model folder (no model_index.json)"
            )
        result, base = alternate(args)
        baseline_median = statistics.median(base["totals"])
        compared = {
            "baseline": str(args.baseline),
            "blocks": args.blocks,
            "baseline_median_s": round(baseline_median, 4),
            "ratio_to_baseline": round(statistics.median(result["totals"]) / baseline_median, 3),
        }
    else:
        result = measure(args.model, args.runs, args.steps, args.guidance)
    totals = result["totals"]
    median = statistics.median(totals)
    name = "starter (resources/starter-model)" if args.model == STARTER_MODEL else args.model
    print(
        json.dumps(
            {
                "benchmark": "starter_speed",
                "model": name,
                "device": result["device"],
                "torch_threads": torch.get_num_threads(),
                "steps": args.steps,
                "guidance": args.guidance,
                "size": "128x128",
                "runs": len(totals),
                "median_s": round(median, 4),
                "min_s": round(min(totals), 4),
                "max_s": round(max(totals), 4),
                "median_first_preview_s": round(statistics.median(result["firsts"]), 4),
                "median_sampling_s": round(statistics.median(result["sampling"]), 4),
                "model_load_s": round(result["load"], 3),
                "goal_s": GOAL_S,
                "meets_goal": median <= GOAL_S,
                **compared,
            }
        )
    )


if __name__ == "__main__":
    main()
