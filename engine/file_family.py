"""Which family a single model file belongs to, from its tensor names (and a shape).

The window's form and the command line pick a family's defaults (steps, guidance, the
samplers it takes) before anything loads: for a diffusers folder its JSON files say
(engine/families.describe_source); for a transformer file (every family's) or a whole
SD 1.x / 2.x / XL checkpoint its header does, read here without torch (the window imports
this) and without reading a tensor. A file this does not recognise is None: the engine
names its family once it loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.api import ModelFamily
from engine.diffusers_layout import telling_shapes
from engine.families import flux2, zimage
from engine.families.flux1 import FILL_IN_CHANNELS
from engine.families.profile import FolderFacts

_DIFFUSION = "model.diffusion_model."
# The Qwen-Image MMDiT: a text RMS norm before txt_in, and per-block image modulation.
_QWEN_IMAGE = ("txt_norm.weight", "transformer_blocks.0.img_mod.1.weight")
_GGUF = ".gguf"
_ZIMAGE_KEY = "layers.0.adaLN_modulation.0.weight"  # as engine/flow_single_file.py reads it
SD35_LARGE_BLOCKS = 38  # SD 3.5 Large's joint blocks (Medium has 24)


def is_qwen_image(keys: Sequence[str]) -> bool:
    """A Qwen-Image transformer's tensor names (bare or under model.diffusion_model.)."""
    names = set(keys)
    return all(m in names or _DIFFUSION + m in names for m in _QWEN_IMAGE)


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape of a .safetensors or .gguf file ({} when it is neither or is
    unreadable); GGUF lists a shape's sizes in reverse, which the tests here allow for."""
    try:
        if path.suffix.lower() == _GGUF:
            from gguf import GGUFReader

            return {t.name: [int(n) for n in t.shape] for t in GGUFReader(str(path)).tensors}
        from engine.library import read_safetensors_header

        header = read_safetensors_header(path)
    except (OSError, ValueError, KeyError, IndexError):
        return {}
    shapes: dict[str, list[int]] = {}
    for name, info in header.items():
        if name != "__metadata__":
            shape = info.get("shape") if isinstance(info, dict) else None
            shapes[name] = [int(n) for n in shape] if isinstance(shape, list) else []
    return shapes


def tensor_names(path: Path) -> list[str]:
    """The tensor names of a .safetensors or .gguf file; [] when it is neither or unreadable."""
    return list(tensor_shapes(path))


def _bare(shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """The names without ComfyUI's model.diffusion_model. prefix."""
    return {k.removeprefix(_DIFFUSION): v for k, v in shapes.items()}


def _flow_family(path: Path, shapes: dict[str, list[int]]) -> tuple[ModelFamily, str] | None:
    """FLUX.1 (dev, schnell, Fill), SD 3 / 3.5 and Z-Image transformer files (bare or in an
    all-in-one checkpoint), the way the loader (engine/flow_single_file.py) tells them."""
    bare = _bare(shapes)
    facts = FolderFacts(index={}, configs={}, name=path.stem)
    if any(k.startswith("double_blocks.") for k in bare):
        if FILL_IN_CHANNELS in bare.get("img_in.weight", []):
            return ModelFamily.FLUX1, "fill"
        guided = any(k.startswith("guidance_in.") for k in bare)
        return ModelFamily.FLUX1, "dev" if guided else "schnell"
    blocks = {int(k.split(".")[1]) for k in bare if k.startswith("joint_blocks.")}
    if blocks:
        if any(".x_block.attn2." in k for k in bare):
            return ModelFamily.SD3, "3.5-medium"
        if len(blocks) >= SD35_LARGE_BLOCKS:
            name = path.stem.lower()
            return ModelFamily.SD3, "3.5-large-turbo" if "turbo" in name else "3.5-large"
        return ModelFamily.SD3, ""
    if _ZIMAGE_KEY in bare:
        return ModelFamily.ZIMAGE, zimage.PROFILE.variant_of(facts)
    return None


def file_family(path: Path) -> tuple[ModelFamily, str] | None:
    """(family, variant name) of a model file the names tell, else None: a transformer
    file (its original layout or diffusers'), or a whole SD 1.x / 2.x / XL checkpoint."""
    shapes = telling_shapes(tensor_shapes(path))
    names = list(shapes)
    if is_qwen_image(names):
        return ModelFamily.QWEN_IMAGE, ""
    if flux2.is_klein_layout(names):
        return ModelFamily.FLUX2, flux2.file_variant(path.name)
    found = _flow_family(path, shapes)
    if found is not None:
        return found
    from engine import sana_files  # here: its file finders import this module

    if sana_files.is_sana(names):
        return ModelFamily.SANA, sana_files.profile_variant(shapes, path.name)
    from engine.checkpoint_keys import UNET_PREFIX, checkpoint_family, has_prefix

    family = checkpoint_family(names) if has_prefix(names, UNET_PREFIX) else None
    if family in {f.value for f in (ModelFamily.SD1, ModelFamily.SD2, ModelFamily.SDXL)}:
        return ModelFamily(family), ""
    return None
