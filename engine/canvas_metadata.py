"""Outpainting and the forward process as A1111-style fields of a picture's parameters
text, written and read back. A1111 has no such fields, so the names are ours: other tools
show them and ignore them.

    Outpaint: left 16 right 8; fill edge; band 32      (and "Outpaint piece: 512" with
                                                        "Inpaint area: Only masked")
    Forward process: denoised from step 3 of 20        ("noised to step 3 of 20": the view)

The upscale's fields are A1111's own (engine/hires_metadata.py). No torch here.
"""

from __future__ import annotations

import re
from typing import Any

from engine.api import Expand, ForwardProcess, GenerationRequest, OutpaintFill
from engine.outpaint import MAX_BAND, SIDES

_FORWARD = re.compile(r"^(denoised from|noised to) step (\d{1,4}) of (\d{1,4})$")
_MAX_SIDE = 4096


def params(request: GenerationRequest) -> list[tuple[str, str]]:
    """The request's expansion and forward process as fields (empty when neither)."""
    out: list[tuple[str, str]] = []
    e = request.expand
    if isinstance(e, Expand):
        sides = [f"{side} {getattr(e, side)}" for side in SIDES if getattr(e, side)]
        out.append(("Outpaint", f"{' '.join(sides)}; fill {e.fill}; band {e.band}"))
        if request.inpaint_only_masked:
            out.append(("Outpaint piece", str(e.tile)))
    f = request.forward
    if isinstance(f, ForwardProcess):
        action = "denoised from" if f.denoise else "noised to"
        out.append(("Forward process", f"{action} step {f.level} of {request.steps}"))
    return out


def _expand(text: str, piece: str | None) -> Expand:
    """ValueError (the end of "it must be …") unless the text is an expansion we write."""
    parts = [p.strip() for p in text.split(";")]
    words = parts[0].split()
    values: dict[str, Any] = {}
    if len(words) % 2 or not words:
        raise ValueError("sides and pixels, e.g. 'left 64 right 64; fill edge; band 32'")
    for side, number in zip(words[::2], words[1::2], strict=True):
        if side not in SIDES or not number.isdigit() or int(number) % 8 or side in values:
            raise ValueError("sides (left, right, top, bottom) with multiples of 8 pixels")
        if int(number) > _MAX_SIDE:
            raise ValueError(f"at most {_MAX_SIDE} pixels a side")
        values[side] = int(number)
    for part in parts[1:]:
        key, _, value = part.partition(" ")
        value = value.strip()
        if key == "fill" and value in {f.value for f in OutpaintFill}:
            values["fill"] = value
        elif key == "band" and value.isdigit() and int(value) <= MAX_BAND:
            values["band"] = int(value)
        elif part:
            raise ValueError(f"a fill ({', '.join(f.value for f in OutpaintFill)}) and a band")
    if piece is not None:
        if not piece.strip().isdigit() or not 64 <= int(piece) <= _MAX_SIDE:
            raise ValueError(f"a piece of 64 to {_MAX_SIDE} pixels")
        values["tile"] = int(piece)
    return Expand(**values)


def from_fields(fields: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Request values ("expand", "forward") from the fields, and a note for each one
    left out."""
    values: dict[str, Any] = {}
    notes: list[str] = []
    if "Outpaint" in fields:
        try:
            values["expand"] = _expand(fields["Outpaint"], fields.get("Outpaint piece"))
        except ValueError as exc:
            notes.append(f"Outpaint {fields['Outpaint'][:60]!r} (it must be {exc})")
    if "Forward process" in fields:
        match = _FORWARD.match(fields["Forward process"].strip())
        level, steps = (int(match[2]), int(match[3])) if match else (0, 0)
        denoise = match is not None and match[1] == "denoised from"
        if match is None or not (1 if denoise else 0) <= level <= steps:
            notes.append(
                f"Forward process {fields['Forward process'][:60]!r} (it must be "
                "'denoised from step L of S' or 'noised to step L of S', L at most S)"
            )
        else:
            values["forward"] = ForwardProcess(level=level, denoise=denoise)
    return values, notes
