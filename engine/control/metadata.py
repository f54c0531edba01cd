"""How a picture's ControlNet units and regions are written into its PNG text, and read back.

A1111's ControlNet extension (sd-webui-controlnet) writes one "ControlNet N" field per
unit, a quoted list of "Key: value" pairs ("Module", "Model", "Weight", "Guidance Start",
"Guidance End", ...); other tools read those, and so do we. Where the control image came
from is ours, "Control image N" (a file's path, "canvas" or "sketch"), named so that it does
not start with "ControlNet", which sd-webui-controlnet reads as a unit. Regions have no
A1111 field: "Region N" holds a region's prompt and "Region N mask" its mask on the
latent grid (one bit per 8x8 cell, packed, zlib, base64: a few hundred characters), which
is all the engine uses of a mask. Our JSON record holds the same, whole.

Reading gives unit settings (everything but the picture: a control image file may have
moved, and a canvas picture or sketch is not in the file) and regions with their masks.
No torch here.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.api import ControlUnit, GenerationRequest, Preprocessor, RegionPrompt
from engine.control.checks import MAX_REGIONS, MAX_UNITS, MAX_WEIGHT

CELL = 8  # pixels per side of one mask cell: the latent grid
MAX_CELLS = 512 * 512  # a mask of at most 4096 x 4096 pixels
CANVAS, SKETCH = "canvas", "sketch"  # ControlUnit.source for the canvas picture and a drawing
_UNIT_KEY = re.compile(r"^ControlNet (\d{1,2})$")
_REGION_KEY = re.compile(r"^Region (\d{1,2})$")


@dataclass(frozen=True)
class UnitSetting:
    """A control unit as a picture's record holds it: all but the image, and where the
    image came from (ControlUnit.source). image: the unit's picture when it is at hand
    (a run of this session), None when read from a file."""

    model: str
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocessor: str = Preprocessor.NONE.value
    source: str = ""
    image: Image.Image | None = None


def settings_of(units: tuple[ControlUnit, ...]) -> tuple[UnitSetting, ...]:
    return tuple(
        UnitSetting(u.model, u.weight, u.start, u.end, u.preprocessor, u.source, u.image)
        for u in units
    )


# ----------------------------------------------------------------------------- masks


def encode_mask(mask: Image.Image) -> str:
    """ "WxH:base64" of the mask's cells (a cell is on where half its pixels are)."""
    w, h = math.ceil(mask.width / CELL), math.ceil(mask.height / CELL)
    cells = np.asarray(mask.convert("L").resize((w, h), Image.Resampling.BOX)) >= 128
    packed = zlib.compress(np.packbits(cells).tobytes(), 9)
    return f"{w}x{h}:{base64.b64encode(packed).decode('ascii')}"


def decode_mask(text: str, size: tuple[int, int]) -> Image.Image:
    """The mask at size (width, height); ValueError (a sentence's end) if it is not one."""
    cells, _, data = text.strip().partition(":")
    w_text, _, h_text = cells.partition("x")
    if not (w_text.isdigit() and h_text.isdigit()):
        raise ValueError("cells as WxH:data")
    w, h = int(w_text), int(h_text)
    if not 0 < w * h <= MAX_CELLS:
        raise ValueError(f"at most {MAX_CELLS} cells")
    need = (w * h + 7) // 8
    try:
        inflate = zlib.decompressobj()
        raw = inflate.decompress(base64.b64decode(data, validate=True), need + 1)
    except (binascii.Error, zlib.error):
        raise ValueError("packed cells in base64") from None
    if len(raw) != need:
        raise ValueError(f"{w}x{h} cells")
    bits = np.unpackbits(np.frombuffer(raw, np.uint8))[: w * h].reshape(h, w)
    small = Image.fromarray(bits * np.uint8(255), "L")
    return small.resize(size, Image.Resampling.NEAREST)


# ----------------------------------------------------------------------------- writing


def _model_name(model: str) -> str:
    return Path(model).stem or model


def a1111_params(request: GenerationRequest) -> list[tuple[str, str]]:
    """("ControlNet 0", "Module: canny, Model: ..., Weight: 1.0, ..."), one per unit,
    with its image's source; then each region's prompt and mask."""
    params = []
    for n, unit in enumerate(request.controls):
        fields = [
            ("Module", unit.preprocessor),
            ("Model", _model_name(unit.model)),
            ("Weight", str(float(unit.weight))),
            ("Resize Mode", "Just Resize"),
            ("Guidance Start", str(float(unit.start))),
            ("Guidance End", str(float(unit.end))),
            ("Pixel Perfect", "False"),
            ("Control Mode", "Balanced"),
        ]
        params.append((f"ControlNet {n}", ", ".join(f"{k}: {v}" for k, v in fields)))
        if unit.source:
            params.append((f"Control image {n}", unit.source))
    if request.regions:
        params.append(("Regions", str(len(request.regions))))
    for n, region in enumerate(request.regions, 1):
        params.append((f"Region {n}", region.prompt))
        params.append((f"Region {n} mask", encode_mask(region.mask)))
    return params


def record(request: GenerationRequest) -> dict[str, Any]:
    """The JSON record's entries: each unit without its picture, each region whole."""
    return {
        "controls": [
            {
                "model": u.model,
                "weight": float(u.weight),
                "start": float(u.start),
                "end": float(u.end),
                "preprocessor": u.preprocessor,
                "source": u.source,
            }
            for u in request.controls
        ],
        "regions": [{"prompt": r.prompt, "mask": encode_mask(r.mask)} for r in request.regions],
    }


# ----------------------------------------------------------------------------- reading


def _fraction(value: Any, low: float, high: float) -> float:
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError
    return number


def _preprocessor(module: str) -> str:
    """Ours for an A1111 module name ("canny", "softedge_pidinet", "lineart_realistic",
    "scribble_hed"); any other ("depth_midas", "openpose") takes its image as the map."""
    name = module.strip().lower()
    for kind in (Preprocessor.CANNY, Preprocessor.SOFT_EDGE, Preprocessor.LINEART,
                 Preprocessor.SCRIBBLE):  # fmt: skip
        if name.startswith(kind.value):
            return kind.value
    return Preprocessor.NONE.value


def _setting(n: int, values: dict[str, Any], source: Any) -> UnitSetting:
    """A checked unit; ValueError names what is wrong."""
    model = values.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 4096:
        raise ValueError(f"ControlNet {n} (it names no model)")
    model = re.sub(r"\s*\[[0-9a-fA-F]{6,}\]$", "", model.strip())  # A1111's " [hash]"
    try:
        weight = _fraction(values.get("weight", 1.0), 0, MAX_WEIGHT)
        start = _fraction(values.get("start", 0.0), 0, 1)
        end = _fraction(values.get("end", 1.0), 0, 1)
    except (TypeError, ValueError):
        raise ValueError(f"ControlNet {n} (its weight, start or end is out of range)") from None
    if start >= end:
        raise ValueError(f"ControlNet {n} (its start {start:g} is not before its end {end:g})")
    source = source if isinstance(source, str) and len(source) <= 4096 else ""
    return UnitSetting(model, weight, start, end, _preprocessor(str(values.get("module", ""))),
                       source)  # fmt: skip


def _region(n: int, prompt: Any, mask: Any, size: tuple[int, int]) -> RegionPrompt:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"Region {n} (it has no prompt)")
    if not isinstance(mask, str):
        raise ValueError(f"Region {n} (it has no mask)")
    try:
        return RegionPrompt(prompt, decode_mask(mask, size))
    except ValueError as exc:
        raise ValueError(f"Region {n}'s mask (it must be {exc})") from None


@dataclass(frozen=True)
class Carried:
    """Units and regions read from a picture, and a note for each one left out."""

    units: tuple[UnitSetting, ...] = ()
    regions: tuple[RegionPrompt, ...] = ()
    left_out: tuple[str, ...] = ()


def from_fields(fields: dict[str, str], size: tuple[int, int]) -> Carried:
    """Units and regions from A1111 text's fields; size: the picture's (width, height)."""
    from engine.metadata import scan_pairs

    units: list[UnitSetting] = []
    regions: list[RegionPrompt] = []
    left_out: list[str] = []
    for key, text in fields.items():
        match = _UNIT_KEY.match(key)
        if match is None or len(units) >= MAX_UNITS:
            continue
        pairs = {k.strip().lower(): v.strip() for k, v in scan_pairs(text)}
        values = {
            "model": pairs.get("model"),
            "module": pairs.get("module", ""),
            "weight": pairs.get("weight", "1"),
            "start": pairs.get("guidance start", "0"),
            "end": pairs.get("guidance end", "1"),
        }
        try:
            source = fields.get(f"Control image {match[1]}", "")
            units.append(_setting(int(match[1]), values, source))
        except ValueError as exc:
            left_out.append(str(exc))
    for key, prompt in fields.items():
        match = _REGION_KEY.match(key)
        if match is None or len(regions) >= MAX_REGIONS:
            continue
        try:
            regions.append(_region(int(match[1]), prompt, fields.get(f"{key} mask"), size))
        except ValueError as exc:
            left_out.append(str(exc))
    return Carried(tuple(units), tuple(regions), tuple(left_out))


def from_record(record: dict[str, Any], size: tuple[int, int]) -> Carried:
    """Units and regions from our JSON record (its "controls" and "regions")."""
    units: list[UnitSetting] = []
    regions: list[RegionPrompt] = []
    left_out: list[str] = []
    controls = record.get("controls")
    for n, entry in enumerate(controls[:MAX_UNITS] if isinstance(controls, list) else []):
        try:
            if not isinstance(entry, dict):
                raise ValueError(f"ControlNet {n} (it is not a unit)")
            values = {**entry, "module": entry.get("preprocessor", "")}
            units.append(_setting(n, values, entry.get("source", "")))
        except ValueError as exc:
            left_out.append(str(exc))
    found = record.get("regions")
    for n, entry in enumerate(found[:MAX_REGIONS] if isinstance(found, list) else [], 1):
        entry = entry if isinstance(entry, dict) else {}
        try:
            regions.append(_region(n, entry.get("prompt"), entry.get("mask"), size))
        except ValueError as exc:
            left_out.append(str(exc))
    return Carried(tuple(units), tuple(regions), tuple(left_out))
