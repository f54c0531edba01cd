"""Regional prompts on the starter model: how often each object lands in its region.

    python bench/regions.py [--runs 50] [--steps 20] [--base "on a white background"]
        [--dtype float32] [--bias 1.0] [--no-baseline]

"a red circle" is the left half's prompt and "a blue square" the right half's; a run
counts when the red pixels' centroid is left of the middle and the blue pixels' right of
it (engine/region_check.py). The same seeds also run without regions, with one prompt
naming both objects, as the baseline (about half by chance if the model places them
at random). Prints one JSON object: both rates, and the time per picture of each,
with their ratio (regions cost extra cross-attention tokens).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import region_check, regions  # noqa: E402
from engine.api import Finished  # noqa: E402
from engine.models import ModelManager  # noqa: E402
from engine.worker import Engine  # noqa: E402

GOAL = 0.8


def rate(engine: Engine, runs: int, steps: int, base: str, regional: bool) -> tuple[float, float]:
    """(share of runs placed right, seconds per picture)."""
    correct, seconds = 0, 0.0
    for seed in range(runs):
        start = time.perf_counter()
        result = engine.generate(
            region_check.request(seed, base, regional=regional, steps=steps), 600
        )
        seconds += time.perf_counter() - start
        if not isinstance(result, Finished):
            raise SystemExit(f"seed {seed} did not finish: {result}")
        correct += region_check.placement(result.images[0]).correct
    return correct / runs, seconds / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--base", default=region_check.BASE)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--bias", type=float, default=regions.REGION_BIAS, help="REGION_BIAS")
    parser.add_argument("--no-baseline", action="store_true", help="skip the no-regions runs")
    args = parser.parse_args()
    regions.REGION_BIAS = args.bias
    engine = Engine(ModelManager(device=args.device, dtype=args.dtype))
    try:
        engine.generate(region_check.request(0, args.base, steps=2), 600)  # load, warm up
        regional, regional_s = rate(engine, args.runs, args.steps, args.base, True)
        plain, plain_s = (
            (None, None)
            if args.no_baseline
            else rate(engine, args.runs, args.steps, args.base, False)
        )
    finally:
        engine.shutdown()
    print(
        json.dumps(
            {
                "runs": args.runs,
                "steps": args.steps,
                "base_prompt": args.base,
                "device": engine.device_description,
                "region_bias": args.bias,
                "regions_correct_rate": regional,
                "no_regions_correct_rate": plain,
                "goal": GOAL,
                "met": regional >= GOAL,
                "seconds_per_picture_regions": round(regional_s, 3),
                "seconds_per_picture_plain": plain_s and round(plain_s, 3),
                "time_ratio_regions_to_plain": plain_s and round(regional_s / plain_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
