"""What ControlNet units cost: the starter model with none, one and two units.

    python bench/controlnet.py [--runs 5] [--steps 20]

The units are ControlNets made from the starter UNet (diffusers' ControlNetModel.from_unet,
the same size as the UNet's encoder half, as real ControlNets are), each with a canny
unit on a drawn picture, 128x128 through the engine with previews. Runs alternate
between the three set-ups so that load on the machine affects each alike; prints one
JSON object with the median seconds per picture and the ratios to the plain run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffusers import ControlNetModel, UNet2DConditionModel  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from engine.api import STARTER_MODEL, ControlUnit, Finished, GenerationRequest  # noqa: E402
from engine.models import ModelManager  # noqa: E402
from engine.resources import starter_model_dir  # noqa: E402
from engine.worker import Engine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="dd-bench-cn-"))
    unet = UNet2DConditionModel.from_pretrained(str(starter_model_dir() / "unet"))
    nets = []
    for i in range(2):
        folder = scratch / f"cn{i}"
        ControlNetModel.from_unet(unet).save_pretrained(folder)
        nets.append(str(folder))
    picture = Image.new("RGB", (128, 128), "white")
    ImageDraw.Draw(picture).ellipse((24, 24, 104, 104), fill="red")
    setups = {
        "plain": (),
        "one_unit": (ControlUnit(nets[0], picture, preprocessor="canny"),),
        "two_units": tuple(ControlUnit(n, picture, preprocessor="canny") for n in nets),
    }
    engine = Engine(ModelManager(device=args.device))
    times: dict[str, list[float]] = {name: [] for name in setups}
    try:
        for run in range(args.runs + 1):  # the first round warms up and loads
            for name, units in setups.items():
                request = GenerationRequest(
                    prompt="a red circle on a white background", steps=args.steps,
                    width=128, height=128, seed=run, model=STARTER_MODEL, controls=units,
                )  # fmt: skip
                start = time.perf_counter()
                result = engine.generate(request, 600)
                if not isinstance(result, Finished):
                    raise SystemExit(f"{name} did not finish: {result}")
                if run:
                    times[name].append(time.perf_counter() - start)
    finally:
        engine.shutdown()
    median = {name: statistics.median(t) for name, t in times.items()}
    print(
        json.dumps(
            {
                "runs": args.runs,
                "steps": args.steps,
                "device": engine.device_description,
                **{f"seconds_{name}": round(s, 3) for name, s in median.items()},
                "ratio_one_unit": round(median["one_unit"] / median["plain"], 3),
                "ratio_two_units": round(median["two_units"] / median["plain"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
