"""Super-resolution model files (ESRGAN family) into runnable modules.

spandrel, the maintained library that knows dozens of these architectures, is used when
it is installed (`pip install 'diffusiondesk[upscalers]'`). Otherwise a built-in loader
reads the common ones: ESRGAN/RRDBNet in the old ("model.1.sub.0.RDB1…") and the newer
BasicSR ("body.0.rdb1…") key layouts, with Real-ESRGAN's pixel-unshuffle x2/x1 variants,
and Real-ESRGAN's compact SRVGGNet. Sizes are read off the weights, never from code in
the file: .safetensors is read as tensors; a pickle (.pth, .pt) only with the person's
pickle consent (--allow-pickle), and then with torch's weights-only unpickler.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.addons import files
from engine.api import EngineError, ErrorKind
from engine.asset_folders import AssetKind, asset_folders, find_asset
from engine.model_code import load_pickle_weights
from engine.model_files import ALLOW_PICKLE_HINT, PICKLE_REASON, is_pickle
from engine.upscale_options import UPSCALER_MODEL_SUFFIXES
from engine.upscalers.architectures import RRDBNet, SRVGGNetCompact

StateDict = dict[str, torch.Tensor]
_WRAPPERS = ("params_ema", "params", "state_dict", "model")


@dataclass
class SRModel:
    """A loaded upscaler: forward(N x C x H x W in 0..1) -> N x C x sH x sW."""

    name: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    scale: int
    module: torch.nn.Module
    architecture: str


def upscaler_path(name: str, model_folders: tuple[str, ...] | list[str]) -> Path:
    """The file an upscaler name means: a path, or a file name (with or without suffix)
    in the upscaler folders (upscale_models/, A1111's ESRGAN/ and RealESRGAN/)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    roots = files.roots_of(model_folders)
    found = find_asset(AssetKind.UPSCALER, name, roots, suffixes=UPSCALER_MODEL_SUFFIXES)
    if found is None:
        where = ", ".join(str(p) for p in asset_folders(AssetKind.UPSCALER, roots)) or (
            f"{roots[0] / 'upscale_models'} (it does not exist yet)"
        )
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"There is no upscaler called {name!r}: choose Lanczos, or put the model's "
            f".safetensors file in {where} or give its path.",
        )
    return found


def read_state_dict(path: Path, allow_pickle: bool) -> StateDict:
    if is_pickle(path):
        if not allow_pickle:
            raise EngineError(
                ErrorKind.MODEL,
                f"{path.name} is a pickle file and was refused because {PICKLE_REASON}. "
                f"Use a .safetensors version of it, or {ALLOW_PICKLE_HINT}.",
            )
        state = load_pickle_weights(path)
    else:
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # header damaged, truncated file ...
            raise EngineError(
                ErrorKind.MODEL,
                f"{path.name} could not be read as a .safetensors file ({str(exc)[:160]}); "
                "it may be truncated: download it again.",
            ) from exc
    for key in _WRAPPERS:  # BasicSR and some trainers nest the weights one level down
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EngineError(ErrorKind.MODEL, f"{path.name} does not hold plain weights.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_upscaler(
    name: str, model_folders: tuple[str, ...] | list[str] = (), *, allow_pickle: bool = False
) -> SRModel:
    """The upscaler model a name or path means, in eval mode on the CPU."""
    path = upscaler_path(name, model_folders)
    state = read_state_dict(path, allow_pickle)
    model = _with_spandrel(path.stem, state)
    if model is None:
        model = from_state_dict(path.stem, state)
    model.module.eval().requires_grad_(False)
    return model


def _with_spandrel(name: str, state: StateDict) -> SRModel | None:
    try:
        import spandrel
    except ImportError:  # the optional extra is not installed: the built-in loader serves
        return None
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    except Exception:  # an architecture spandrel does not know: maybe ours does
        return None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        return None
    return SRModel(
        name, descriptor, int(descriptor.scale), descriptor.model, descriptor.architecture.name
    )


def from_state_dict(name: str, state: StateDict) -> SRModel:
    """The built-in loader: recognise the architecture by its keys, size it by its weights."""
    try:
        if "conv_first.weight" in state:
            module: torch.nn.Module = _rrdbnet(_new_layout(state))
            architecture = "ESRGAN"
        elif "model.0.weight" in state and any(".RDB1." in k for k in state):
            module = _rrdbnet(_old_layout(state))
            architecture = "ESRGAN"
        elif "body.0.weight" in state:
            module = _srvgg(state)
            architecture = "RealESRGAN compact"
        else:
            raise EngineError(
                ErrorKind.MODEL,
                f"{name} is not an upscaler model DiffusionDesk can read (it knows ESRGAN and "
                "Real-ESRGAN models; install the 'upscalers' extra for more architectures).",
            )
    except (KeyError, ValueError, RuntimeError, IndexError) as exc:
        raise EngineError(
            ErrorKind.MODEL, f"{name} looks like an ESRGAN-family model but its weights do not "
            f"fit one ({str(exc).splitlines()[0][:160]})."
        ) from exc  # fmt: skip
    return SRModel(name, module, int(module.scale), module, architecture)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- RRDBNet


def _new_layout(state: StateDict) -> StateDict:
    renamed = {}
    for key, value in state.items():
        match = re.fullmatch(r"conv_up(\d+)\.(weight|bias)", key)
        renamed[f"ups.{int(match[1]) - 1}.{match[2]}" if match else key] = value
    return renamed


def _old_layout(state: StateDict) -> StateDict:
    """ESRGAN's original numbering: model.0 first conv, model.1.sub.N the trunk (its last
    entry the trunk conv), then the upsampling convs, the HR conv and the last conv."""
    trunk = re.compile(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)")
    trunk_conv = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)")
    top = re.compile(r"model\.(\d+)\.(weight|bias)")
    renamed: StateDict = {}
    later: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if m := trunk.fullmatch(key):
            renamed[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
        elif m := trunk_conv.fullmatch(key):
            renamed[f"conv_body.{m[2]}"] = value
        elif (m := top.fullmatch(key)) and m[1] != "0":
            later.setdefault(int(m[1]), {})[m[2]] = value
        elif m := top.fullmatch(key):
            renamed[f"conv_first.{m[2]}"] = value
        else:
            raise ValueError(f"unexpected key {key}")
    order = sorted(later)
    if len(order) < 2:
        raise ValueError("the HR and last convolutions are missing")
    names = [f"ups.{i}" for i in range(len(order) - 2)] + ["conv_hr", "conv_last"]
    for name, index in zip(names, order, strict=True):
        for kind, value in later[index].items():
            renamed[f"{name}.{kind}"] = value
    return renamed


def _rrdbnet(state: StateDict) -> RRDBNet:
    features, first_in = state["conv_first.weight"].shape[:2]
    out_channels = state["conv_last.weight"].shape[0]
    growth = state["body.0.rdb1.conv1.weight"].shape[0]
    blocks = len({k.split(".")[1] for k in state if k.startswith("body.")})
    upsamples = len({k.split(".")[1] for k in state if k.startswith("ups.")})
    unshuffle = round((first_in / out_channels) ** 0.5)
    if unshuffle * unshuffle * out_channels != first_in:
        raise ValueError(f"{first_in} input channels for {out_channels} output channels")
    module = RRDBNet(out_channels, out_channels, features, growth, blocks, upsamples, unshuffle)
    module.load_state_dict(state, strict=True)
    return module


# ----------------------------------------------------------------------------- SRVGG


def _srvgg(state: StateDict) -> SRVGGNetCompact:
    indices = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.")})
    convs = [i for i in indices if state[f"body.{i}.weight"].ndim == 4]
    prelu = any(state[f"body.{i}.weight"].ndim == 1 for i in indices)
    features, channels = state["body.0.weight"].shape[:2]
    last = state[f"body.{convs[-1]}.weight"].shape[0]
    scale = round((last / channels) ** 0.5)
    if scale * scale * channels != last:
        raise ValueError(f"last convolution has {last} outputs for {channels} channels")
    module = SRVGGNetCompact(channels, features, len(convs) - 2, scale, prelu=prelu)
    if not prelu:  # activations without weights: the file numbers them all the same
        state = {
            f"body.{2 * convs.index(int(k.split('.')[1]))}.{k.split('.')[2]}": v
            for k, v in state.items()
        }
    module.load_state_dict(state, strict=True)
    return module
