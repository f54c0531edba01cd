"""Where a model family's tiny autoencoder is found, for step previews and fast decode.

A tiny autoencoder is a diffusers AutoencoderTiny folder (config.json and .safetensors
weights, as madebyollin publishes them on the hub: taesd for SD 1/2, taesdxl, taesd3 for
SD 3, taef1 for FLUX.1 and Z-Image, which shares FLUX.1's VAE). The first found wins:

1. beside the model: inside a diffusers folder, `taesd/` or the family's name (`taef1/`);
   next to a single file, a folder with the family's name;
2. in the model folders (DiffusionDesk's own `models/`, or the A1111/ComfyUI trees a
   person added): `vae_approx/<name>` (ComfyUI's folder for them) or `<name>`;
3. bundled with the application: resources/<name>.

A folder whose latent channels differ from the family's is passed over (a TAESD left
beside a FLUX model would fail every preview). FLUX.2, Qwen-Image (Wan 2.1's VAE) and
SANA (DC-AE) have tiny autoencoders of their own (taef2, taew2_1, taesana), but their
layers are not AutoencoderTiny's (mid-block pooling, temporal blocks, channel changes
between stages), so diffusers cannot load them and those families preview through their
linear latent-to-RGB map. Only JSON is read here; loading is the model manager's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from engine.model_files import is_checkpoint

APPROX_FOLDER = "vae_approx"  # ComfyUI's name for the tiny autoencoders' folder


def candidates(
    name: str,
    *,
    model_dir: Path | None,
    source: str,
    roots: Sequence[Path],
    bundled: Path | None,
) -> list[Path]:
    """The folders to try, in order, for a family whose tiny autoencoder is `name`."""
    found: list[Path] = []
    if model_dir is not None:
        found += [model_dir / "taesd", model_dir / name]
    path = Path(source).expanduser() if source else None
    if path is not None and is_checkpoint(path):
        found.append(path.parent / name)
    for root in roots:
        found += [root / APPROX_FOLDER / name, root / name]
    if bundled is not None:
        found.append(bundled)
    unique: list[Path] = []
    for folder in found:
        if folder not in unique:
            unique.append(folder)
    return unique


def latent_channels(folder: Path) -> int | None:
    """The latent channels of an AutoencoderTiny folder with safetensors weights; None
    for anything else (no config, another class, only pickled weights)."""
    config_path = folder / "config.json"
    if not config_path.is_file() or not any(folder.glob("*.safetensors")):
        return None
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get("_class_name", "AutoencoderTiny") != (
        "AutoencoderTiny"
    ):
        return None
    channels = config.get("latent_channels", 4)
    return channels if isinstance(channels, int) else None


def find(
    name: str,
    channels: int,
    *,
    model_dir: Path | None,
    source: str,
    roots: Sequence[Path],
    bundled: Path | None,
) -> Path | None:
    """The first folder holding a tiny autoencoder for latents of `channels` channels."""
    if not name:
        return None
    folders = candidates(name, model_dir=model_dir, source=source, roots=roots, bundled=bundled)
    for folder in folders:
        if latent_channels(folder) == channels:
            return folder
    return None
