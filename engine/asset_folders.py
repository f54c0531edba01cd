"""Where model files of each kind live: DiffusionDesk's own data folder and the model
trees of other tools (AUTOMATIC1111/Forge `models/`, ComfyUI `models/`) a person adds.

Pure paths, no torch and no Qt, so the window, the CLI and the engine share one answer to
"which folders hold LoRAs?". Scanning and the model list live in engine/library.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path


class AssetKind(StrEnum):
    """Kinds of files a model folder holds."""

    CHECKPOINT = "checkpoint"
    LORA = "lora"
    EMBEDDING = "embedding"
    VAE = "vae"
    CONTROLNET = "controlnet"
    UPSCALER = "upscaler"
    TEXT_ENCODER = "text_encoder"


# Sub-folder names per kind, in DiffusionDesk's own layout first, then A1111/Forge
# (`models/Stable-diffusion`, `models/Lora`, top-level `embeddings/`) and ComfyUI.
SUBFOLDERS: dict[AssetKind, tuple[str, ...]] = {
    AssetKind.CHECKPOINT: ("checkpoints", "Stable-diffusion", "diffusion_models", "unet"),
    AssetKind.LORA: ("loras", "Lora", "LyCORIS"),
    AssetKind.EMBEDDING: ("embeddings", "../embeddings"),
    AssetKind.VAE: ("vae", "VAE"),
    AssetKind.CONTROLNET: ("controlnet", "ControlNet"),
    AssetKind.UPSCALER: ("upscale_models", "ESRGAN", "RealESRGAN"),
    AssetKind.TEXT_ENCODER: ("text_encoders", "clip", "text_encoder"),
}

WEIGHT_SUFFIXES = (".safetensors", ".gguf")


def data_dir() -> Path:
    """DiffusionDesk's own data folder (XDG on Linux; DIFFUSIONDESK_DATA overrides)."""
    override = os.environ.get("DIFFUSIONDESK_DATA")
    if override:
        return Path(override)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "DiffusionDesk"


def default_roots() -> list[Path]:
    """The model roots used when a person has added none: our own `models/` folder."""
    return [data_dir() / "models"]


def asset_folders(kind: AssetKind, roots: Iterable[Path]) -> list[Path]:
    """Existing folders that hold files of `kind` under each root, in root order.

    A root may be DiffusionDesk's models folder, an A1111/Forge `models/` folder or a
    ComfyUI `models/` folder; a root that itself is such a sub-folder counts too.
    """
    found: list[Path] = []
    for root in roots:
        root = Path(root).expanduser()
        candidates = [root / name for name in SUBFOLDERS[kind]]
        if root.name in SUBFOLDERS[kind]:
            candidates.insert(0, root)
        for folder in candidates:
            folder = folder.resolve() if folder.exists() else folder
            if folder.is_dir() and folder not in found:
                found.append(folder)
    return found


def find_asset(
    kind: AssetKind, name: str, roots: Iterable[Path], suffixes: Sequence[str] = WEIGHT_SUFFIXES
) -> Path | None:
    """The file called `name` (with or without suffix, in any sub-folder) or None.

    A1111 names LoRAs and embeddings by file stem (`<lora:detail_v2:0.7>`), searching
    sub-folders too; the first root wins, then the shallowest match.
    """
    wanted = name.strip()
    if not wanted or "\x00" in wanted:
        return None
    for folder in asset_folders(kind, roots):
        direct = [folder / wanted] + [folder / f"{wanted}{s}" for s in suffixes]
        for path in direct:
            if path.is_file() and path.suffix.lower() in suffixes:
                return path
        stem = Path(wanted).stem if Path(wanted).suffix.lower() in suffixes else wanted
        matches = sorted(
            (p for s in suffixes for p in folder.rglob(f"*{s}") if p.stem == stem),
            key=lambda p: (len(p.parts), str(p)),
        )
        if matches:
            return matches[0]
    return None
