"""Hires fix and upscale records in a picture's parameters, written and read back.

A1111 writes a hires fix as "Denoising strength", "Hires upscale" (or "Hires resize: WxH"),
"Hires steps", "Hires upscaler" and, when they differ, "Hires prompt" and "Hires negative
prompt"; its Extras tab writes "Postprocess upscale by" and "Postprocess upscaler", and
its SD upscale script "SD upscale overlap" and "SD upscale upscaler". metadata.py calls
these functions; no torch here.
"""

from __future__ import annotations

import math
from typing import Any

from engine.api import GenerationRequest, HiresFix, Upscale
from engine.upscale_options import MAX_SCALE, MIN_SCALE


class Rejected(ValueError):
    """A value that cannot be used; the message completes "it must be …"."""


def params(request: GenerationRequest) -> list[tuple[str, str]]:
    """The A1111 fields of the request's hires fix or upscale (empty when neither)."""
    out: list[tuple[str, str]] = []
    hires = request.hires
    if isinstance(hires, HiresFix):
        out += [
            ("Denoising strength", str(float(hires.denoising_strength))),
            ("Hires upscale", f"{float(hires.scale):g}"),
        ]
        if hires.steps:
            out.append(("Hires steps", str(hires.steps)))
        out.append(("Hires upscaler", hires.upscaler))
        if hires.prompt and hires.prompt != request.prompt:
            out.append(("Hires prompt", hires.prompt))
        if hires.negative_prompt and hires.negative_prompt != request.negative_prompt:
            out.append(("Hires negative prompt", hires.negative_prompt))
    up = request.upscale
    if isinstance(up, Upscale):
        if up.sd_tiles:
            out += [
                ("SD upscale upscaler", up.upscaler),
                ("SD upscale overlap", str(up.overlap)),
                ("SD upscale tile", str(up.tile)),
                ("SD upscale by", f"{float(up.scale):g}"),
            ]
        else:
            out += [("Postprocess upscale by", f"{float(up.scale):g}"),
                    ("Postprocess upscaler", up.upscaler)]  # fmt: skip
    return out


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise Rejected(f"a number from {MIN_SCALE:g} to {MAX_SCALE:g}") from None
    if not math.isfinite(value) or not MIN_SCALE <= value <= MAX_SCALE:
        raise Rejected(f"a number from {MIN_SCALE:g} to {MAX_SCALE:g}")
    return value


def hires_from_fields(
    fields: dict[str, str], width: int, height: int
) -> tuple[HiresFix | None, list[str]]:
    """The hires fix an A1111 parameters text describes, and notes on values left out.
    width, height: the first pass's size (for "Hires resize")."""
    keys = ("Hires upscale", "Hires resize", "Hires upscaler", "Hires steps")
    if not any(k in fields for k in keys):
        return None, []
    left_out: list[str] = []
    values: dict[str, Any] = {}
    try:
        if "Hires upscale" in fields:
            values["scale"] = _scale(fields["Hires upscale"])
        elif "Hires resize" in fields:
            w, _, h = fields["Hires resize"].lower().partition("x")
            values["scale"] = _scale(str(max(int(w) / width, int(h) / height)))
    except (Rejected, ValueError) as exc:
        left_out.append(f"Hires upscale (it must be {exc})")
    upscaler = fields.get("Hires upscaler", "").strip()
    if upscaler and upscaler.lower() != "none" and len(upscaler) < 4096:
        values["upscaler"] = upscaler
    steps = fields.get("Hires steps", "").strip()
    if steps:
        if steps.isdigit() and int(steps) <= 1000:
            values["steps"] = int(steps)
        else:
            left_out.append(f"Hires steps {steps[:20]!r} (it must be a whole number)")
    strength = fields.get("Denoising strength", "").strip()
    try:
        value = float(strength)
        if 0 < value <= 1:
            values["denoising_strength"] = value
    except ValueError:
        if strength:
            left_out.append(f"Denoising strength {strength[:20]!r} (it must be a number)")
    for key, name in (("Hires prompt", "prompt"), ("Hires negative prompt", "negative_prompt")):
        if key in fields:
            values[name] = fields[key]
    return HiresFix(**values), left_out


def upscale_from_fields(fields: dict[str, str]) -> tuple[Upscale | None, list[str]]:
    """The upscale A1111 text describes ("Postprocess upscale by/upscaler" of the Extras
    tab, or the SD upscale script's fields), and notes on values left out."""
    tiled = "SD upscale upscaler" in fields or "SD upscale by" in fields
    prefix = "SD upscale" if tiled else "Postprocess upscale"
    if not tiled and "Postprocess upscale by" not in fields:
        return None, []
    values: dict[str, Any] = {"sd_tiles": tiled}
    left_out: list[str] = []
    try:
        values["scale"] = _scale(fields.get(f"{prefix} by", "2"))
    except Rejected as exc:
        left_out.append(f"{prefix} by (it must be {exc})")
    upscaler = fields.get("SD upscale upscaler" if tiled else "Postprocess upscaler", "").strip()
    if upscaler and upscaler.lower() != "none" and len(upscaler) < 4096:
        values["upscaler"] = upscaler
    for key, name in (("SD upscale tile", "tile"), ("SD upscale overlap", "overlap")):
        text = fields.get(key, "").strip() if tiled else ""
        if text.isdigit() and len(text) < 6:
            values[name] = int(text)
        elif text:
            left_out.append(f"{key} {text[:20]!r} (it must be a whole number of pixels)")
    try:
        return _record(Upscale, values), left_out
    except Rejected as exc:
        return None, [*left_out, f"the upscale (it must be {exc})"]


def _record(kind: type, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Rejected(f"a {kind.__name__} record")
    names = {"scale", "upscaler", "steps", "denoising_strength", "prompt", "negative_prompt"}
    if kind is Upscale:
        names = {"scale", "upscaler", "sd_tiles", "tile", "overlap"}
    unknown = set(value) - names
    if unknown:
        raise Rejected(f"a {kind.__name__} record without {sorted(unknown)[0]!r}")
    record = kind(**value)
    from engine.upscale_options import hires_problems, upscale_problems

    if kind is HiresFix:
        found = hires_problems(GenerationRequest(prompt="", hires=record), record, 1000)
    else:
        probe = GenerationRequest(prompt="", upscale=record)
        found = [p for p in upscale_problems(probe, record) if "needs a picture" not in p]
    if found:
        raise Rejected(found[0])
    return record


def check_hires_record(value: Any) -> HiresFix | None:
    """A HiresFix from our JSON record (a dict of its fields)."""
    return _record(HiresFix, value)


def check_upscale_record(value: Any) -> Upscale | None:
    return _record(Upscale, value)
