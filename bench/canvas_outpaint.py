"""Outpainting on the bundled starter model: which fill hides the seam best, what the seam
band adds, and what an expansion costs against a plain generation of the same size.

    python bench/canvas_outpaint.py [--seeds 4] [--steps 20] [--runs 3]

Seam: each seed makes a 128x128 picture, which is expanded 64 px to the right with each
fill (edge, blur, noise) at strengths 0.8 and 1.0, with the seam band and without.
The seam step is how much larger the mean step across the seam (columns 127 | 128) is
than the mean step between neighbouring columns near it (104..126, 129..150), in grey
levels: about 0 means the seam does not show; lower is better. Means over seeds and two
prompts (the starter model paints flat shapes, so near-seam texture is low and a ratio
of steps would be ill-conditioned).

Time: the median of --runs expansions (128 -> 192 x 128, one run) and of plain text-to-
image generations at 192 x 128, same steps, taken in turns in one process; the ratio is
what the figures mean on this shared machine. Prints one JSON object.
bench/canvas.py (the canvas lane's bench) imports `measure()`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.api import Expand, Finished, GenerationRequest, OutpaintFill  # noqa: E402
from engine.worker import Engine  # noqa: E402

PROMPTS = ("a red circle on a blue background", "a green square on a yellow background")
SIDE = 128
GROW = 64


def seam_step(image: np.ndarray, seam: int) -> float:
    """How much larger the step across the seam (columns seam-1 | seam) is than the steps
    between neighbouring columns near it, in grey levels (0..255) averaged over rows and
    channels: about 0 when the seam does not show."""
    rgb = image.astype(np.float32)
    steps = np.abs(np.diff(rgb, axis=1)).mean(axis=(0, 2))  # steps[x]: column x | x+1
    near = np.concatenate([steps[seam - 24 : seam - 2], steps[seam + 1 : seam + 23]])
    return float(steps[seam - 1] - near.mean())


def _run(engine: Engine, request: GenerationRequest) -> Finished:
    result = engine.generate(request, timeout=600)
    if not isinstance(result, Finished):
        raise SystemExit(f"the job did not finish: {result}")
    return result


def measure(seeds: int = 4, steps: int = 20, runs: int = 3) -> dict[str, Any]:
    engine = Engine(device="cpu")
    try:
        base = GenerationRequest(prompt=PROMPTS[0], steps=steps, width=SIDE, height=SIDE)
        scores: dict[str, list[float]] = {}
        for prompt in PROMPTS:
            for seed in range(seeds):
                picture = _run(engine, base.with_changes(prompt=prompt, seed=seed)).images[0]
                for strength in (0.8, 1.0):
                    for fill in OutpaintFill:
                        for band in (0, Expand.band):
                            r = base.with_changes(
                                prompt=prompt,
                                seed=seed,
                                init_image=picture,
                                width=SIDE + GROW,
                                strength=strength,
                                expand=Expand(right=GROW, fill=fill.value, band=band),
                            )
                            out = np.asarray(_run(engine, r).images[0])
                            key = f"{fill.value} strength {strength} band {band}"
                            scores.setdefault(key, []).append(seam_step(out, SIDE))
        seam = {k: round(statistics.mean(v), 3) for k, v in sorted(scores.items())}
        best = min(seam, key=lambda k: seam[k])

        picture = _run(engine, base.with_changes(seed=0)).images[0]
        expand = base.with_changes(
            seed=1, init_image=picture, width=SIDE + GROW, strength=1.0,
            expand=Expand(right=GROW),
        )  # fmt: skip
        plain = base.with_changes(seed=1, width=SIDE + GROW)
        outpaint_s: list[float] = []
        plain_s: list[float] = []
        for _ in range(runs):
            for request, times in ((expand, outpaint_s), (plain, plain_s)):
                began = time.perf_counter()
                _run(engine, request)
                times.append(time.perf_counter() - began)
        return {
            "model": "starter",
            "steps": steps,
            "seeds": seeds * len(PROMPTS),
            "seam_step_levels": seam,
            "best": best,
            "outpaint_median_s": round(statistics.median(outpaint_s), 3),
            "plain_median_s": round(statistics.median(plain_s), 3),
            "outpaint_vs_plain": round(
                statistics.median(outpaint_s) / statistics.median(plain_s), 3
            ),
            "size": f"{SIDE}x{SIDE} -> {SIDE + GROW}x{SIDE}",
        }
    finally:
        engine.shutdown(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.seeds, args.steps, args.runs)))


if __name__ == "__main__":
    main()
