"""Measure how well a model follows shape prompts, with the deterministic analyser.

    python -m starter.evaluate [--model resources/starter-model] [--quick] [--json FILE]

Prompts are sampled with a fixed seed: single-object prompts (colour, size, shape,
position, background), two-object prompts with a relation, and inpainting cases (a
picture with one object, a mask over an empty cell, a prompt naming a new object
there). Generation uses diffusers' own pipelines at the defaults (20 steps, guidance 5).
Prints one JSON object; exits non-zero when a threshold is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline
from PIL import Image, ImageDraw

from starter.analyse import Analysis, analyse
from starter.captions import grid_cell, relation, sample_scene
from starter.export import DEFAULT_OUT
from starter.shapes import POSITIONS, Scene, ShapeObject, render

STEPS = 20
GUIDANCE = 5.0
EVAL_SEED = 2024

FULL = {"single": 300, "pair": 120, "inpaint": 100}
QUICK = {"single": 40, "pair": 20, "inpaint": 12}
THRESHOLDS = {
    "colour": 0.95,
    "background": 0.95,
    "shape": 0.90,
    "position": 0.90,
    "pair": 0.75,
    "inpaint": 0.90,
}
QUICK_THRESHOLDS = {
    "colour": 0.85,
    "background": 0.85,
    "shape": 0.70,
    "position": 0.75,
    "pair": 0.5,
    "inpaint": 0.65,
}


@dataclass(frozen=True)
class InpaintCase:
    scene: Scene  # the picture before
    new: ShapeObject  # what the prompt asks for inside the mask
    box: tuple[int, int, int, int]  # mask rectangle, 8-pixel aligned


def describe(obj: ShapeObject, with_position: bool = True) -> str:
    from starter.captions import POSITION_PHRASES, object_phrase

    text = object_phrase(obj, None, True)
    return f"{text} {POSITION_PHRASES[obj.position][0]}" if with_position else text


def single_prompt(scene: Scene) -> str:
    return f"{describe(scene.objects[0])} on a {scene.background} background"


def pair_prompt(scene: Scene) -> str:
    from starter.captions import RELATIONS

    a, b = scene.objects
    return (
        f"{describe(a, False)} {RELATIONS[relation(a, b)]} {describe(b, False)} "
        f"on a {scene.background} background"
    )


def sample_cases(counts: dict[str, int]) -> tuple[list[Scene], list[Scene], list[InpaintCase]]:
    rng = np.random.default_rng(EVAL_SEED)
    singles: list[Scene] = []
    pairs: list[Scene] = []
    while len(singles) < counts["single"] or len(pairs) < counts["pair"]:
        scene = sample_scene(rng)
        if len(scene.objects) == 1 and len(singles) < counts["single"]:
            singles.append(scene)
        elif len(scene.objects) == 2 and len(pairs) < counts["pair"]:
            pairs.append(scene)
    cases = []
    while len(cases) < counts["inpaint"]:
        scene = sample_scene(rng)
        if len(scene.objects) != 1:
            continue
        old = scene.objects[0]
        free = [
            p
            for p in POSITIONS
            if max(abs(a - b) for a, b in zip(grid_cell(p), grid_cell(old.position), strict=True))
            >= 2
        ]
        if not free:
            continue
        pos = free[rng.integers(len(free))]
        colours = [
            c
            for c in (
                "red",
                "orange",
                "yellow",
                "green",
                "cyan",
                "blue",
                "purple",
                "pink",
                "brown",
                "white",
                "black",
                "gray",
            )
            if c not in (scene.background, old.colour)
        ]
        new = ShapeObject(
            colour=colours[rng.integers(len(colours))],
            shape=("circle", "square", "triangle", "star", "heart", "diamond", "cross", "ring")[
                rng.integers(8)
            ],
            size="small",
            position=pos,
        )
        fx, fy = POSITIONS[pos]
        half = 24
        cx, cy = int(round(fx * 128 / 8) * 8), int(round(fy * 128 / 8) * 8)
        box = (max(0, cx - half), max(0, cy - half), min(128, cx + half), min(128, cy + half))
        cases.append(InpaintCase(scene, new, box))
    return singles, pairs, cases


def generate(pipe, prompts: list[str], seeds: list[int], chunk: int = 20) -> list[Image.Image]:
    images: list[Image.Image] = []
    for i in range(0, len(prompts), chunk):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + chunk]]
        images += pipe(
            prompts[i : i + chunk],
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            generator=gens,
            height=128,
            width=128,
        ).images
    return images


def found_match(analysis: Analysis, obj: ShapeObject) -> bool:
    return any(o.colour == obj.colour and o.shape == obj.shape for o in analysis.objects)


def score_pair(analysis: Analysis, scene: Scene) -> bool:
    a, b = scene.objects
    found_a = [o for o in analysis.objects if o.colour == a.colour and o.shape == a.shape]
    found_b = [o for o in analysis.objects if o.colour == b.colour and o.shape == b.shape]
    if not found_a or not found_b:
        return False
    (ax, ay), (bx, by) = found_a[0].centre, found_b[0].centre
    rel = relation(a, b)
    return {"left": ax < bx, "right": ax > bx, "above": ay < by, "below": ay > by}[rel]


def evaluate(model: Path, quick: bool) -> dict:
    torch.set_num_threads(2)
    counts = QUICK if quick else FULL
    singles, pairs, cases = sample_cases(counts)
    pipe = StableDiffusionPipeline.from_pretrained(model, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    hits = {"colour": 0, "background": 0, "shape": 0, "position": 0}
    images = generate(pipe, [single_prompt(s) for s in singles], list(range(len(singles))))
    for scene, image in zip(singles, images, strict=True):
        found = analyse(image)
        obj = scene.objects[0]
        hits["background"] += found.background == scene.background
        if found.objects:
            top = found.objects[0]
            hits["colour"] += top.colour == obj.colour
            hits["shape"] += top.shape == obj.shape
            hits["position"] += top.position == obj.position
    result = {k: v / len(singles) for k, v in hits.items()}

    images = generate(pipe, [pair_prompt(s) for s in pairs], list(range(1000, 1000 + len(pairs))))
    result["pair"] = sum(
        score_pair(analyse(i), s) for s, i in zip(pairs, images, strict=True)
    ) / len(pairs)

    inpaint = StableDiffusionInpaintPipeline.from_pipe(pipe)
    inpaint.set_progress_bar_config(disable=True)
    ok = 0
    outside_diff = 0
    for n, case in enumerate(cases):
        before = render(case.scene)
        mask = Image.new("L", before.size, 0)
        ImageDraw.Draw(mask).rectangle(
            [case.box[0], case.box[1], case.box[2] - 1, case.box[3] - 1], fill=255
        )
        prompt = f"{describe(case.new)} on a {case.scene.background} background"
        out = inpaint(
            prompt,
            image=before,
            mask_image=mask,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            strength=1.0,
            height=128,
            width=128,
            generator=torch.Generator().manual_seed(5000 + n),
        ).images[0]
        # The application keeps every pixel outside the mask (the engine composites the
        # same way); measure that the picture outside is unchanged.
        after = Image.composite(out, before, mask)
        keep = np.asarray(mask) == 0
        diff = np.abs(np.asarray(after, np.int16) - np.asarray(before, np.int16))[keep]
        outside_diff = max(outside_diff, int(diff.max()))
        x0, y0, x1, y1 = case.box
        region = analyse(after.crop((x0, y0, x1, y1)).resize((128, 128)), min_area=200)
        ok += found_match(region, case.new)
    result["inpaint"] = ok / len(cases)
    result["inpaint_outside_max_diff"] = outside_diff
    thresholds = QUICK_THRESHOLDS if quick else THRESHOLDS
    result["passed"] = all(result[k] >= v for k, v in thresholds.items()) and outside_diff == 0
    result["counts"] = counts
    result["thresholds"] = thresholds
    result["settings"] = {
        "steps": STEPS,
        "guidance": GUIDANCE,
        "size": "128x128",
        "scheduler": type(pipe.scheduler).__name__,
    }
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="fewer prompts, lower thresholds")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = evaluate(args.model, args.quick)
    text = json.dumps(result)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
