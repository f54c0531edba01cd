"""Tiny random-weight T2I adapters (no download), and their files in every layout.

The tiny UNets (tests/tiny_models.py) have two down blocks, 8 and 16 channels wide, both
adding their residual at 1/16 of the picture: an adapter of the SDXL type (16x16 pixel
patches, no downsampling between its first two levels) fits them, as diffusers' own
adapter tests size theirs to their tiny UNet. The original TencentARC layouts are written
here by renaming diffusers' keys back, independently of the loader under test.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import T2IAdapter
from safetensors.torch import save_file


def tiny_adapter(*, seed: int = 0, in_channels: int = 3) -> T2IAdapter:
    """An adapter whose features fit the tiny SD 1.x and SDXL UNets."""
    torch.manual_seed(seed)
    adapter = T2IAdapter(
        in_channels=in_channels,
        channels=[8, 16],
        num_res_blocks=1,
        downscale_factor=16,
        adapter_type="full_adapter_xl",
    )
    with torch.no_grad():  # strong enough features that a unit visibly steers
        for p in adapter.parameters():
            p.mul_(3.0)
    return adapter.eval()


def save_tiny_adapter(folder: Path, *, seed: int = 0, in_channels: int = 3) -> Path:
    """A tiny adapter as a diffusers folder (safetensors)."""
    tiny_adapter(seed=seed, in_channels=in_channels).save_pretrained(
        folder, safe_serialization=True
    )
    return folder


def full_adapter(*, in_channels: int = 1, seed: int = 3) -> T2IAdapter:
    """A small SD-type full adapter (8x8 patches, four levels, two resnets each)."""
    torch.manual_seed(seed)
    return T2IAdapter(
        in_channels=in_channels,
        channels=[8, 16, 32, 32],
        num_res_blocks=2,
        adapter_type="full_adapter",
    ).eval()


def light_adapter(*, seed: int = 4) -> T2IAdapter:
    torch.manual_seed(seed)
    return T2IAdapter(
        in_channels=3, channels=[8, 16, 32], num_res_blocks=2, adapter_type="light_adapter"
    ).eval()


def original_state(adapter: T2IAdapter) -> dict[str, torch.Tensor]:
    """The adapter's weights under TencentARC's original names (Adapter / Adapter_light)."""
    state = {k: v.contiguous() for k, v in adapter.state_dict().items()}
    per_level = adapter.config.num_res_blocks
    light = adapter.config.adapter_type == "light_adapter"
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        assert parts[0] == "adapter"
        if parts[1] == "conv_in":
            renamed[".".join(parts[1:])] = value
            continue
        level = int(parts[2])
        if parts[3] == "resnets":
            resnet, rest = int(parts[4]), ".".join(parts[5:])
            name = (
                f"body.{level}.body.{resnet}.{rest}"
                if light
                else f"body.{level * per_level + resnet}.{rest}"
            )
        else:  # in_conv / out_conv
            rest = ".".join(parts[3:])
            name = f"body.{level}.{rest}" if light else f"body.{level * per_level}.{rest}"
        renamed[name] = value
    return renamed


def save_single_file(adapter: T2IAdapter, path: Path, *, original: bool = False) -> Path:
    """One file: .safetensors, or a .pth (a pickle of plain tensors, as TencentARC ships)."""
    state = (
        original_state(adapter)
        if original
        else {k: v.contiguous() for k, v in adapter.state_dict().items()}
    )
    if path.suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    return path
