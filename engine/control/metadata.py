"""How a picture's ControlNet units and regions are written into its PNG text.

A1111's ControlNet extension writes one "ControlNet N" field per unit, a quoted list of
"Key: value" pairs; other tools read those. Regions have no A1111 field; their prompts go
into DiffusionDesk's JSON record. The control images and masks themselves are not
stored, so these fields describe a picture and are not read back into a request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.api import GenerationRequest


def _model_name(model: str) -> str:
    return Path(model).stem or model


def a1111_params(request: GenerationRequest) -> list[tuple[str, str]]:
    """("ControlNet 0", "Module: canny, Model: ..., Weight: 1.0, ..."), one per unit."""
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
    if request.regions:
        params.append(("Regions", str(len(request.regions))))
    return params


def record(request: GenerationRequest) -> dict[str, Any]:
    """The JSON record's entries: each unit and region without its picture."""
    return {
        "controls": [
            {
                "model": _model_name(u.model),
                "weight": float(u.weight),
                "start": float(u.start),
                "end": float(u.end),
                "preprocessor": u.preprocessor,
            }
            for u in request.controls
        ],
        "regions": [{"prompt": r.prompt} for r in request.regions],
    }
