"""Which family a single transformer file belongs to, from its tensor names alone.

The window's form and the command line pick a family's defaults (steps, guidance, the
samplers it takes) before anything loads: for a diffusers folder its JSON files say
(engine/families.describe_source); for a transformer file its header does, read here
without torch (the window imports this) and without reading a tensor. A file this does
not recognise is None: the engine names its family once it loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.api import ModelFamily

_DIFFUSION = "model.diffusion_model."
# The Qwen-Image MMDiT: a text RMS norm before txt_in, and per-block image modulation.
_QWEN_IMAGE = ("txt_norm.weight", "transformer_blocks.0.img_mod.1.weight")
_GGUF = ".gguf"


def is_qwen_image(keys: Sequence[str]) -> bool:
    """A Qwen-Image transformer's tensor names (bare or under model.diffusion_model.)."""
    names = set(keys)
    return all(m in names or _DIFFUSION + m in names for m in _QWEN_IMAGE)


def tensor_names(path: Path) -> list[str]:
    """The tensor names of a .safetensors or .gguf file; [] when it is neither or unreadable."""
    try:
        if path.suffix.lower() == _GGUF:
            from gguf import GGUFReader

            return [t.name for t in GGUFReader(str(path)).tensors]
        from engine.library import read_safetensors_header

        return [k for k in read_safetensors_header(path) if k != "__metadata__"]
    except (OSError, ValueError, KeyError, IndexError):
        return []


def file_family(path: Path) -> tuple[ModelFamily, str] | None:
    """(family, variant name) of a transformer file the names tell, else None."""
    names = tensor_names(path)
    if is_qwen_image(names):
        return ModelFamily.QWEN_IMAGE, ""
    return None
