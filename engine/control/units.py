"""ControlNet and T2I-adapter units at run time: their models, pipelines and arguments.

ControlModels keeps the units' models loaded (a diffusers folder, or a single
.safetensors file read with the configs shipped in engine/model_configs/controlnet, never
the network) on the main model's device and dtype. The pipelines are diffusers' own
ControlNet pipelines, built with from_pipe so they share the loaded model's components;
several ControlNets run as diffusers' MultiControlNetModel, each with its own
conditioning scale and start/end. A unit whose model is a T2I adapter (told by its keys)
feeds the UNet through engine/control/adapters.py instead, beside any ControlNets.
Worker thread only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import torch
from diffusers import (
    ControlNetModel,
    FluxControlNetImg2ImgPipeline,
    FluxControlNetInpaintPipeline,
    FluxControlNetModel,
    FluxControlNetPipeline,
    FluxMultiControlNetModel,
    SD3ControlNetModel,
    SD3MultiControlNetModel,
    StableDiffusion3ControlNetPipeline,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
    StableDiffusionXLControlNetPipeline,
    T2IAdapter,
)
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
from PIL import Image
from safetensors import safe_open

from engine.addons.files import roots_of
from engine.api import ControlUnit, EngineError, ErrorKind, Mode, ModelFamily
from engine.asset_folders import AssetKind, asset_folders, find_asset
from engine.control import adapters as adapter_runs
from engine.control import flow_files
from engine.control.adapter_keys import is_adapter_path
from engine.control.preprocess import control_map
from engine.protocols import PipelineClass
from engine.resources import model_configs_dir

if TYPE_CHECKING:
    from engine.models import LoadedModel

Net: TypeAlias = ControlNetModel | FluxControlNetModel | SD3ControlNetModel
ControlModel: TypeAlias = Net | T2IAdapter

_SD_CONTROLNET = {
    Mode.TXT2IMG: StableDiffusionControlNetPipeline,
    Mode.IMG2IMG: StableDiffusionControlNetImg2ImgPipeline,
    Mode.INPAINT: StableDiffusionControlNetInpaintPipeline,
}
CONTROLNET_PIPELINES: dict[ModelFamily, dict[Mode, PipelineClass]] = {
    ModelFamily.SD1: _SD_CONTROLNET,
    ModelFamily.SD2: _SD_CONTROLNET,
    ModelFamily.SDXL: {
        Mode.TXT2IMG: StableDiffusionXLControlNetPipeline,
        Mode.IMG2IMG: StableDiffusionXLControlNetImg2ImgPipeline,
        Mode.INPAINT: StableDiffusionXLControlNetInpaintPipeline,
    },
    # diffusers' SD 3 ControlNet pipelines: text to image (its inpainting one needs an
    # inpainting ControlNet of its own).
    ModelFamily.SD3: {Mode.TXT2IMG: StableDiffusion3ControlNetPipeline},
    ModelFamily.FLUX1: {
        Mode.TXT2IMG: FluxControlNetPipeline,
        Mode.IMG2IMG: FluxControlNetImg2ImgPipeline,
        Mode.INPAINT: FluxControlNetInpaintPipeline,
    },
}
# Which kind of ControlNet each family runs, and how several of them are combined.
_NET_OF: dict[ModelFamily, type] = {
    ModelFamily.SD3: SD3ControlNetModel,
    ModelFamily.FLUX1: FluxControlNetModel,
}
_MULTI_OF: dict[type, type] = {
    ControlNetModel: MultiControlNetModel,
    FluxControlNetModel: FluxMultiControlNetModel,
    SD3ControlNetModel: SD3MultiControlNetModel,
}
# T2I adapters feed a UNet (diffusers has none for the transformer families).
ADAPTER_FAMILIES = (ModelFamily.SD1, ModelFamily.SD2, ModelFamily.SDXL)
ADAPTER_FAMILIES_MESSAGE = (
    "T2I adapters run with SD 1.x, SD 2.x and SDXL models (diffusers has adapters for "
    "UNet models only); use a ControlNet with this model, or remove the adapter unit."
)
_CLASSES = {
    "ControlNetModel": ControlNetModel,
    "FluxControlNetModel": FluxControlNetModel,
    "SD3ControlNetModel": SD3ControlNetModel,
    "T2IAdapter": T2IAdapter,
}


def _bad(message: str) -> EngineError:
    return EngineError(ErrorKind.BAD_INPUT, message)


def resolve(name: str, model_folders: tuple[str, ...]) -> Path:
    """A unit's model: a folder or file path, or a file name in the ControlNet folders."""
    path = Path(name).expanduser()
    if path.is_dir() or path.is_file():
        return path
    # T2I adapters come as .pth files too (read only with the pickle consent).
    suffixes = (".safetensors", ".pth", ".pt")
    roots = roots_of(model_folders)
    found = find_asset(AssetKind.CONTROLNET, name, roots, suffixes)
    if found is None:  # a diffusers folder, named as A1111 text names it
        folders = (f / name for f in asset_folders(AssetKind.CONTROLNET, roots))
        found = next((f for f in folders if "/" not in name and f.is_dir()), None)
    if found is None:
        raise EngineError(
            ErrorKind.MODEL,
            f"ControlNet or T2I adapter {name!r} was not found: give its folder or file, or "
            "put it in a ControlNet folder of your model folders.",
        )
    return found


def is_adapter(unit: ControlUnit, model_folders: tuple[str, ...]) -> bool:
    """Whether the unit's model is a T2I adapter (by its keys or config), not a ControlNet."""
    return is_adapter_path(resolve(unit.model, model_folders))


def _folder_class(folder: Path) -> type[ControlModel]:
    config = folder / "config.json"
    try:
        name = json.loads(config.read_text()).get("_class_name", "")
    except (OSError, ValueError) as exc:
        raise EngineError(
            ErrorKind.MODEL, f"{folder} has no readable config.json, so it is not a ControlNet."
        ) from exc
    if name not in _CLASSES:
        raise EngineError(
            ErrorKind.MODEL,
            f"{folder} holds a {name or 'model of unknown kind'}, not a ControlNet or T2I adapter.",
        )
    return _CLASSES[name]


def single_file_config(path: Path) -> Path:
    """The shipped config folder that fits a single-file ControlNet (SD 1.5 or SDXL),
    told from its keys: SDXL ControlNets carry the added time/text embedding."""
    try:
        with safe_open(str(path), "pt") as f:
            keys = list(f.keys())
    except Exception as exc:  # any reader failure means "not a safetensors file"
        raise EngineError(
            ErrorKind.MODEL, f"{path.name} is not a readable .safetensors file: {exc}"
        ) from exc
    if not any("input_hint_block" in k or "controlnet_cond_embedding" in k for k in keys):
        raise EngineError(ErrorKind.MODEL, f"{path.name} is not a ControlNet checkpoint.")
    sdxl = any("label_emb" in k or "add_embedding" in k for k in keys)
    return model_configs_dir() / "controlnet" / ("sdxl" if sdxl else "sd15")


def _flow_file(path: Path) -> bool:
    """Whether a .safetensors file holds an SD 3 or FLUX.1 ControlNet, in diffusers' or
    XLabs' layout (engine/control/flow_files.py)."""
    try:
        with safe_open(str(path), "pt") as f:
            keys = list(f.keys())
    except Exception:  # not readable: the SD path names the problem
        return False
    return flow_files.is_bfl_layout(keys) or flow_files.kind_of(keys) is not None


def load(
    path: Path,
    device: torch.device,
    dtype: torch.dtype,
    *,
    allow_pickle: bool = False,
    like: Any = None,
) -> ControlModel:
    """One unit's model from a diffusers folder or a single .safetensors file (a T2I
    adapter also from a .pth file, with the pickle consent). like: the main model's
    transformer config, for what an SD 3 or FLUX.1 ControlNet file does not record."""
    if not path.is_dir() and is_adapter_path(path):
        return adapter_runs.load_file_adapter(path, device, dtype, allow_pickle=allow_pickle)
    if path.is_dir():
        cls = _folder_class(path)
        loaded = cls.from_pretrained(
            str(path), torch_dtype=dtype, local_files_only=True, use_safetensors=True
        )
    elif path.suffix.lower() == ".safetensors" and _flow_file(path):
        loaded = flow_files.load(path, dtype, like)
    elif path.suffix.lower() == ".safetensors":
        loaded = ControlNetModel.from_single_file(
            str(path),
            config=str(single_file_config(path)),
            torch_dtype=dtype,
            local_files_only=True,
        )
    else:
        raise EngineError(
            ErrorKind.MODEL,
            f"{path.name}: ControlNets are read from .safetensors files or diffusers folders "
            "(pickled .pth/.bin files can run code and are not opened).",
        )
    return loaded.to(device).eval()


class ControlModels:
    """The units' models, loaded once and kept while the same main model stays loaded."""

    def __init__(self, allow_pickle: bool = False) -> None:
        self._loaded: dict[tuple[str, str, str], ControlModel] = {}
        self.allow_pickle = allow_pickle  # T2I adapters' .pth files, as plain weights

    def reset(self) -> None:
        self._loaded.clear()

    def keep_only(self, units: tuple[ControlUnit, ...], folders: tuple[str, ...]) -> None:
        """Let go of ControlNets this job does not use (each is hundreds of MB)."""
        wanted = {str(resolve(u.model, folders).resolve()) for u in units}
        for key in [k for k in self._loaded if k[0] not in wanted]:
            del self._loaded[key]

    def get(self, unit: ControlUnit, model: LoadedModel, folders: tuple[str, ...]) -> ControlModel:
        path = resolve(unit.model, folders)
        key = (str(path.resolve()), str(model.device), str(model.dtype))
        if key not in self._loaded:
            like = getattr(getattr(model.pipe, "transformer", None), "config", None)
            self._loaded[key] = load(
                path, model.device, model.dtype, allow_pickle=self.allow_pickle, like=like
            )
        loaded = self._loaded[key]
        _check_fits(loaded, model, unit.model)
        return loaded


def _check_fits(control: ControlModel, model: LoadedModel, name: str) -> None:
    if isinstance(control, T2IAdapter):
        if model.family not in ADAPTER_FAMILIES:
            raise _bad(ADAPTER_FAMILIES_MESSAGE)
        return
    wanted = _NET_OF.get(model.family, ControlNetModel)
    if type(control) is not wanted:
        raise _bad(
            f"The ControlNet {Path(name).name} is a {type(control).__name__}, but "
            f"{model.family.value} models run a {wanted.__name__}; choose a ControlNet of "
            "the model's family."
        )
    if wanted is not ControlNetModel:
        return
    want = model.pipe.unet.config.cross_attention_dim
    got = control.config.cross_attention_dim
    if want != got:
        kinds = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
        raise _bad(
            f"The ControlNet {Path(name).name} is made for {kinds.get(got, f'{got}-wide')} "
            f"models but the model is {model.family.value}; choose a ControlNet of the "
            "model's family."
        )


def component(models: list[Net]) -> Any:
    """The from_pipe controlnet: one ControlNet, or several as the family's multi model."""
    return models[0] if len(models) == 1 else _MULTI_OF[type(models[0])](models)


def control_maps(units: tuple[ControlUnit, ...], size: tuple[int, int]) -> list[Image.Image]:
    """Each unit's control map, preprocessed and at the picture's size."""
    return [control_map(u.image, u.preprocessor, size) for u in units]


def arguments(
    units: tuple[ControlUnit, ...], maps: list[Image.Image], mode: Mode, *, unet: bool = True
) -> dict[str, Any]:
    """The pipeline's keyword arguments for the units: images, weights, start and end."""
    one = len(units) == 1
    # One ControlNet takes a float scale; a MultiControlNetModel one per unit.
    weights: Any = float(units[0].weight) if one else [float(u.weight) for u in units]
    return {
        # The UNet families' text-to-image pipeline alone names it "image".
        "image" if unet and mode is Mode.TXT2IMG else "control_image": maps[0] if one else maps,
        "controlnet_conditioning_scale": weights,
        "control_guidance_start": [float(u.start) for u in units],
        "control_guidance_end": [float(u.end) for u in units],
    }


@dataclass
class Prepared:
    """A job's units resolved: the pipeline's controlnet component (none when every unit
    is a T2I adapter), its ControlNet arguments, and the adapters' UNet injection."""

    components: dict[str, Any]
    arguments: dict[str, Any]
    adapters: adapter_runs.AdapterInjection


def prepare(
    models: ControlModels,
    units: tuple[ControlUnit, ...],
    model: LoadedModel,
    *,
    mode: Mode,
    size: tuple[int, int],
    folders: tuple[str, ...],
    steps: int,
) -> Prepared:
    """The controlnet component, the pipeline arguments and the adapter injection for a
    job's units; steps: how many steps the pipeline runs (adapters count start/end in them)."""
    models.keep_only(units, folders)
    loaded = [models.get(u, model, folders) for u in units]
    maps = control_maps(units, size)
    found = list(zip(units, maps, loaded, strict=True))
    nets = [(u, m, c) for u, m, c in found if not isinstance(c, T2IAdapter)]
    adapters = [(u, m, c) for u, m, c in found if isinstance(c, T2IAdapter)]
    injection = adapter_runs.injection(adapters, model, size, steps)
    if not nets:
        return Prepared({}, {}, injection)
    unet = model.family not in _NET_OF
    net_args = arguments(tuple(u for u, _, _ in nets), [m for _, m, _ in nets], mode, unet=unet)
    return Prepared({"controlnet": component([c for _, _, c in nets])}, net_args, injection)
