"""The CLI's ControlNet and region arguments, read into ControlUnit and RegionPrompt
records (no torch, so a bad argument is named before anything heavy is imported).

    --control MODEL:IMAGE[:WEIGHT[:START[:END]]]   a ControlNet or T2I adapter; repeat
    --preprocess canny                             one for all units, or one per unit
    --region "PROMPT=MASK.png"                     repeat for several regions
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from engine.api import ControlUnit, Preprocessor, RegionPrompt

OpenImage = Callable[[Path, str], Image.Image]
"""open_image(path, flag) -> picture; raises the CLI's error with a sentence."""


class ArgumentProblem(ValueError):
    """A --control, --preprocess or --region argument that cannot be used."""


def add_arguments(group: argparse.ArgumentParser) -> None:
    group.add_argument(
        "--control",
        action="append",
        default=[],
        metavar="MODEL:IMAGE[:WEIGHT[:START[:END]]]",
        help="a ControlNet or T2I adapter unit (told apart by the file's contents): its "
        "folder or .safetensors file (an adapter's .pth with --allow-pickle), its control "
        "image, and optionally its weight (1), start (0) and end (1) as fractions of the "
        "steps; repeat for several",
    )
    group.add_argument(
        "--preprocess",
        action="append",
        default=[],
        choices=[p.value for p in Preprocessor],
        help="turn the control image into a map first; once for all units or once per unit",
    )
    group.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="PROMPT=MASK",
        help="a regional prompt that acts where the mask picture is white; repeat for "
        "several (--prompt is the base prompt, acting everywhere)",
    )


def _number(text: str, what: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ArgumentProblem(
            f"--control {spec}: the {what} must be a number, got {text!r}"
        ) from None


def parse_control(spec: str) -> tuple[str, Path, list[float]]:
    """MODEL:IMAGE[:WEIGHT[:START[:END]]] -> (model, image path, numbers). Paths may hold
    colons (C:\\...): trailing numbers are taken first, then the split that names an
    existing image wins."""
    parts = spec.split(":")
    numbers: list[str] = []
    while len(parts) > 2 and len(numbers) < 3 and _is_number(parts[-1]):
        numbers.insert(0, parts.pop())
    if len(parts) < 2:
        raise ArgumentProblem(
            f"--control {spec}: give MODEL:IMAGE, e.g. --control canny.safetensors:edges.png:0.8"
        )
    splits = [(":".join(parts[:i]), ":".join(parts[i:])) for i in range(1, len(parts))]
    model, image = next((s for s in splits if Path(s[1]).is_file()), splits[0])
    names = ("weight", "start", "end")
    return model, Path(image), [_number(n, names[i], spec) for i, n in enumerate(numbers)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def controls(args: argparse.Namespace, open_image: OpenImage) -> tuple[ControlUnit, ...]:
    specs, pre = args.control, args.preprocess
    if pre and not specs:
        raise ArgumentProblem("--preprocess needs a --control unit to preprocess")
    if len(pre) > 1 and len(pre) != len(specs):
        raise ArgumentProblem(
            f"give one --preprocess for all units or one per unit ({len(specs)}), got {len(pre)}"
        )
    units = []
    for n, spec in enumerate(specs):
        model, path, numbers = parse_control(spec)
        weight, start, end = [*numbers, *(1.0, 0.0, 1.0)[len(numbers) :]]
        preprocessor = pre[n] if len(pre) > 1 else (pre[0] if pre else Preprocessor.NONE.value)
        image = open_image(path, "--control")
        units.append(
            ControlUnit(model, image, weight, start, end, preprocessor, str(path.resolve()))
        )
    return tuple(units)


def regions(args: argparse.Namespace, open_image: OpenImage) -> tuple[RegionPrompt, ...]:
    found = []
    for spec in args.region:
        prompt, sep, mask = spec.rpartition("=")
        if not sep or not prompt.strip() or not mask:
            raise ArgumentProblem(
                f'--region {spec!r}: give PROMPT=MASK, e.g. --region "a red circle=left.png"'
            )
        found.append(RegionPrompt(prompt, open_image(Path(mask), "--region").convert("L")))
    return tuple(found)
