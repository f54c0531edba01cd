"""T2I adapters told from their tensor names, their original layouts renamed to diffusers',
and their architecture read from tensor shapes. No torch: the window and the library scan
ask "is this file an adapter or a ControlNet?" from a safetensors header alone.

Three layouts exist in the wild:
- diffusers (`adapter.conv_in.`, `adapter.body.N.resnets.M.`): diffusers folders and the
  single .safetensors files A1111/Forge users download for SDXL adapters;
- TencentARC's original full adapter (`conv_in.`, `body.K.block1.`, `body.K.in_conv.`), the
  t2iadapter_*_sd14v1 files: K counts resnets across all levels;
- TencentARC's original light adapter (`body.N.in_conv.`, `body.N.body.M.block1.`,
  `body.N.out_conv.`), the colour adapter.
The renaming follows diffusers' scripts/convert_original_t2i_adapter.py, generalised to
any number of levels and resnets. The older sk=False variant (with `skep` and
`down_opt` convolutions) has no diffusers model and is refused by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.model_files import is_pickle

DIFFUSERS, ORIGINAL, ORIGINAL_LIGHT = "diffusers", "original", "original-light"
FULL, FULL_XL, LIGHT = "full_adapter", "full_adapter_xl", "light_adapter"
# The shipped config folder under engine/model_configs/t2i_adapter/ for each adapter type.
CONFIG_FOLDERS = {FULL: "sd15", LIGHT: "sd15-light", FULL_XL: "sdxl"}
_ORIGINAL_RESNET = re.compile(r"^body\.(\d+)\.(block1|block2|in_conv)\.(weight|bias)$")
_LIGHT_RESNET = re.compile(r"^body\.(\d+)\.body\.(\d+)\.(block1|block2)\.(weight|bias)$")
_LIGHT_CONV = re.compile(r"^body\.(\d+)\.(in_conv|out_conv)\.(weight|bias)$")
_DIFFUSERS_BLOCK = re.compile(r"^adapter\.body\.(\d+)\.")
_DIFFUSERS_RESNET = re.compile(r"^adapter\.body\.(\d+)\.resnets\.(\d+)\.")


class NotAnAdapter(ValueError):
    """The keys are not a T2I adapter's the way diffusers can run one; the message says why."""


def layout(keys: Collection[str]) -> str | None:
    """DIFFUSERS, ORIGINAL or ORIGINAL_LIGHT; None when the keys are not an adapter's."""
    if any(k.startswith("adapter.body.") for k in keys):
        return DIFFUSERS
    if "conv_in.weight" in keys and any(_ORIGINAL_RESNET.match(k) for k in keys):
        return ORIGINAL
    if any(_LIGHT_RESNET.match(k) for k in keys) and any(_LIGHT_CONV.match(k) for k in keys):
        return ORIGINAL_LIGHT
    return None


def is_adapter(keys: Collection[str]) -> bool:
    return layout(keys) is not None


def family(keys: Collection[str], shapes: Mapping[str, Sequence[int]]) -> str:
    """ "sdxl" or "sd1" (ModelFamily values) for an adapter's keys: only SDXL's adapters
    read 16x16 pixel patches (a 256- or 768-wide input convolution)."""
    conv_in = shapes.get("adapter.conv_in.weight") or shapes.get("conv_in.weight")
    wide = conv_in is not None and len(conv_in) > 1 and int(conv_in[1]) in (256, 768)
    return "sdxl" if wide else "sd1"


def is_adapter_path(path: Path) -> bool:
    """Whether a unit's model (a folder or a file) is a T2I adapter rather than a
    ControlNet: a folder by its config's class, a .safetensors file by its tensor names.
    A pickle counts as an adapter (ControlNets are read only from .safetensors files and
    folders); its tensors are checked once it may be read. Unreadable: False (the
    ControlNet loader then says what is wrong with it)."""
    if path.is_dir():
        try:
            config = json.loads((path / "config.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(config, dict) and config.get("_class_name") == "T2IAdapter"
    if is_pickle(path):
        return True
    from engine.library import read_safetensors_header  # the library's scan imports us

    try:
        header = read_safetensors_header(path)
    except (OSError, ValueError):
        return False
    return is_adapter([k for k in header if k != "__metadata__"])


def to_diffusers(keys: Sequence[str]) -> dict[str, str]:
    """original key -> diffusers key, for every key of an adapter file (diffusers' own
    keys map to themselves). NotAnAdapter when a key has no place in diffusers' model."""
    kind = layout(keys)
    if kind is None:
        raise NotAnAdapter("its tensors are not a T2I adapter's")
    if kind == DIFFUSERS:
        return {k: k for k in keys}
    if kind == ORIGINAL_LIGHT:
        return _light_names(keys)
    return _full_names(keys)


def _full_names(keys: Sequence[str]) -> dict[str, str]:
    if any(".skep." in k or ".down_opt." in k for k in keys):
        raise NotAnAdapter(
            "it is an early T2I adapter with skip and strided convolutions (sk=False), "
            "which diffusers has no model for; use a t2iadapter_*_sd14v1 or newer file"
        )
    resnets = sorted({int(m.group(1)) for k in keys if (m := _ORIGINAL_RESNET.match(k))})
    # Each level starts with the resnet whose in_conv changes the width, except the
    # first; levels of equal width (1280 -> 1280) are told apart by the resnet count,
    # which is the same for every level.
    starts = sorted(
        {
            int(m.group(1))
            for k in keys
            if (m := _ORIGINAL_RESNET.match(k)) and m.group(2) == "in_conv"
        }
    )
    per_level = starts[0] if starts else len(resnets)
    if per_level <= 0 or len(resnets) % per_level:
        raise NotAnAdapter("its resnet blocks do not divide into levels of equal depth")
    names: dict[str, str] = {}
    for key in keys:
        if key.startswith("conv_in."):
            names[key] = "adapter." + key
            continue
        m = _ORIGINAL_RESNET.match(key)
        if m is None:
            raise NotAnAdapter(f"its tensor {key!r} has no place in a T2I adapter")
        index, part, suffix = int(m.group(1)), m.group(2), m.group(3)
        level, resnet = divmod(index, per_level)
        if part == "in_conv":
            names[key] = f"adapter.body.{level}.in_conv.{suffix}"
        else:
            names[key] = f"adapter.body.{level}.resnets.{resnet}.{part}.{suffix}"
    return names


def _light_names(keys: Sequence[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for key in keys:
        if m := _LIGHT_RESNET.match(key):
            level, resnet, part, suffix = m.groups()
            names[key] = f"adapter.body.{level}.resnets.{resnet}.{part}.{suffix}"
        elif m := _LIGHT_CONV.match(key):
            level, part, suffix = m.groups()
            names[key] = f"adapter.body.{level}.{part}.{suffix}"
        else:
            raise NotAnAdapter(f"its tensor {key!r} has no place in a light T2I adapter")
    return names


def architecture(shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """T2IAdapter's config values (adapter_type, in_channels, channels, num_res_blocks,
    downscale_factor) read from the shapes of diffusers-named tensors."""
    blocks = 1 + max(
        (int(m.group(1)) for k in shapes if (m := _DIFFUSERS_BLOCK.match(k))), default=-1
    )
    resnets = 1 + max(
        (
            int(m.group(2))
            for k in shapes
            if (m := _DIFFUSERS_RESNET.match(k)) and m.group(1) == "0"
        ),
        default=-1,
    )
    if blocks == 0 or resnets == 0:
        raise NotAnAdapter("it has no adapter blocks")
    if "adapter.conv_in.weight" not in shapes:  # the light adapter has no input convolution
        first = shapes.get("adapter.body.0.in_conv.weight")
        outs = [shapes.get(f"adapter.body.{i}.out_conv.weight") for i in range(blocks)]
        if first is None or any(o is None for o in outs):
            raise NotAnAdapter("its light adapter blocks are incomplete")
        # LightAdapter repeats its last width in one extra block.
        channels = [int(o[0]) for o in outs[:-1] if o is not None]
        return _config(LIGHT, int(first[1]), 8, channels, resnets)
    width_in = int(shapes["adapter.conv_in.weight"][1])
    channels = []
    for i in range(blocks):
        shape = shapes.get(f"adapter.body.{i}.resnets.0.block1.weight")
        if shape is None:
            raise NotAnAdapter(f"its block {i} has no resnet")
        channels.append(int(shape[0]))
    # Only the pixel-unshuffle width tells SDXL's adapter (16x16 patches) from SD's (8x8).
    for kind, factor in ((FULL_XL, 16), (FULL, 8)):
        if width_in % factor**2 == 0 and width_in // factor**2 in (1, 3):
            return _config(kind, width_in, factor, channels, resnets)
    raise NotAnAdapter(
        f"its input convolution takes {width_in} channels, which is neither an SD nor an "
        "SDXL adapter's (1 or 3 colour channels in 8x8 or 16x16 patches)"
    )


def _config(
    kind: str, width_in: int, factor: int, channels: list[int], resnets: int
) -> dict[str, Any]:
    return {
        "adapter_type": kind,
        "in_channels": width_in // factor**2,
        "channels": channels,
        "num_res_blocks": resnets,
        "downscale_factor": factor,
    }
