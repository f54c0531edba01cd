"""LoRA files merged into a loaded model's weights, and taken out again exactly.

Reading: a .safetensors LoRA in the kohya/A1111 layout (`lora_unet_…`, `lora_te_…`,
`lora_te1_/lora_te2_` for SDXL, LyCORIS LoCon included), the diffusers layout or the
PEFT layout goes through diffusers' own `lora_state_dict` (its kohya and SDXL block
conversions) and `convert_*_to_peft`, so the key names are diffusers' business, not
ours. What comes out is, per target layer, a down (A) and an up (B) matrix in the
model's dtype with the kohya alpha/rank scale folded into B once, cached between jobs
(a LoRA used again costs no file read, conversion or dtype cast).

Applying: each touched layer gets `W += weight · B @ A` in place, computed in W's own
dtype (float32, bfloat16 or float16) with one `addmm_`, and W's original values are
kept (while the model stays loaded, as A1111 keeps its backups, so later switches copy
rather than allocate); removing LoRAs copies them back, so the model is bit for bit
what it was, and a LoRA of weight 0 is never touched at all.

Why not diffusers' `load_lora_weights` + peft's `fuse_lora`: peft first wraps every
target layer (building and initialising LoRA layers), then fuses with a float32 matmul
per layer and an up-cast of half weights, then unwraps; an earlier attempt measured a
LoRA switch of about two UNet steps that way (53 % in the fuse matmul, 30 % in
float16->float32 loads), while the direct in-place `addmm_` on cached, already-cast
factors costs a fraction of that. (transformers 5 also refuses peft < 0.22, the newest
on PyPI today, for text-encoder adapters.) Merged weights make a denoising step cost
exactly what it costs without LoRAs.

LyCORIS LoHa and LoKr, and DoRA, are refused with a sentence: diffusers converts
them for none of SD 1.x, 2.x or SDXL.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from engine.api import EngineError, ErrorKind

FAMILY_NAMES = {"sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x", "sdxl": "SDXL"}
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
_CACHE_ENTRIES = 4  # converted LoRAs kept between jobs
_UNSUPPORTED = {
    ".hada_w1_a": "a LyCORIS LoHa",
    ".lokr_w1": "a LyCORIS LoKr",
    ".lokr_w1_a": "a LyCORIS LoKr",
    ".lokr_w2": "a LyCORIS LoKr",
    ".lora_mid.weight": "a LyCORIS LoCon with Tucker decomposition",
    ".dora_scale": "a DoRA",
    ".oft_blocks": "a LyCORIS OFT",
}


@dataclass(frozen=True)
class LoraLayer:
    down: torch.Tensor  # A: [rank, in] (or [rank, in, kh, kw] for convolutions)
    up: torch.Tensor  # B: [out, rank], the alpha/rank scale folded in


@dataclass
class LoraFile:
    """A LoRA read and converted: layers per component ("unet", "text_encoder", ...)."""

    path: Path
    layers: dict[str, dict[str, LoraLayer]]
    family: str | None  # what it says or shows it was trained for, when known

    @property
    def size(self) -> int:
        return sum(
            layer.down.numel() + layer.up.numel()
            for component in self.layers.values()
            for layer in component.values()
        )


@dataclass(frozen=True)
class LoraUse:
    """One LoRA of a job: the file and its weights (A1111: te and unet multipliers)."""

    name: str
    path: Path
    unet_weight: float
    te_weight: float


# ----------------------------------------------------------------------------- threads


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to `count` for a while (the worker thread is the
    only one running torch ops meanwhile)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _merge_threads() -> int:
    """Threads for merging: the usual ones on a quiet machine, one on a busy one.

    A switch is hundreds of small casts, copies and rank-r products; each parallel op
    waits for all its threads, and on a CPU shared with other work a descheduled thread
    makes every op wait (measured on this 2-core machine at load 15: casting a 150 MB
    LoRA's factors took 38.7 s on 2 threads and 1.9 s on 1; a rank-128 product ran at
    16 GFLOPS on 2 threads and 19 on 1)."""
    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:
        busy = False
    return 1 if busy else torch.get_num_threads()


# ----------------------------------------------------------------------------- reading


def _refuse(path: Path, why: str) -> EngineError:
    return EngineError(ErrorKind.BAD_INPUT, f"The LoRA {path.name} {why}")


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return dict(f.metadata() or {})


def _declared_family(metadata: dict[str, str], keys: list[str]) -> str | None:
    base = metadata.get("ss_base_model_version", "")
    architecture = metadata.get("modelspec.architecture", "")
    if base.startswith("sdxl") or architecture.startswith("stable-diffusion-xl"):
        return "sdxl"
    if base.startswith("sd_v2") or metadata.get("ss_v2") == "True":
        return "sd2"
    if base.startswith("sd_v1") or architecture.startswith("stable-diffusion-v1"):
        return "sd1"
    if any(k.startswith(("lora_te2_", "lora_te1_", "text_encoder_2.")) for k in keys):
        return "sdxl"
    if any("input_blocks" in k or "output_blocks" in k for k in keys):
        return "sdxl"
    return None


def _kohya_scales(raw: dict[str, torch.Tensor]) -> dict[int, float]:
    """kohya's W += alpha/rank · up @ down: the alpha/rank of each up tensor, by the
    tensor's identity (the key conversion renames keys but keeps the tensors); the
    alphas are taken out of the state dict."""
    scales: dict[int, float] = {}
    for key in [k for k in raw if k.endswith(".alpha")]:
        alpha = raw.pop(key)
        name = key[: -len(".alpha")]
        down, up = raw.get(f"{name}.lora_down.weight"), raw.get(f"{name}.lora_up.weight")
        if down is not None and up is not None:
            scales[id(up)] = float(alpha) / down.shape[0]
    return scales


def _peft_keys(component: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from diffusers.utils.state_dict_utils import (
        convert_state_dict_to_diffusers,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    if component == "unet":
        return convert_unet_state_dict_to_peft(state)
    return convert_state_dict_to_peft(convert_state_dict_to_diffusers(state))


def _adapter_scales(metadata: dict[str, str], component: str) -> tuple[float | None, dict]:
    """(lora_alpha, alpha_pattern) diffusers wrote into a PEFT-layout file's metadata."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return None, {}
    try:
        config = json.loads(raw)
    except ValueError:
        return None, {}
    alpha = config.get(f"{component}.lora_alpha")
    pattern = config.get(f"{component}.alpha_pattern") or {}
    return (float(alpha) if alpha is not None else None), dict(pattern)


def _loader(family: str) -> Any:
    """The diffusers pipeline class whose `lora_state_dict` reads this family's LoRAs;
    a newer family is added here (with its components in COMPONENTS)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return {
        "sd1": StableDiffusionPipeline,
        "sd2": StableDiffusionPipeline,
        "sdxl": StableDiffusionXLPipeline,
    }.get(family)


def read_lora(path: Path, family: str, dtype: torch.dtype) -> LoraFile:
    """Read and convert a LoRA file for a model of `family` whose weights are `dtype`."""
    loader = _loader(family)
    if loader is None:
        raise _refuse(
            path,
            f"cannot be used: LoRAs for {FAMILY_NAMES.get(family, family)} models are not "
            "supported yet.",
        )
    if path.suffix.lower() != ".safetensors":
        raise _refuse(path, "is not a .safetensors file; only .safetensors LoRAs are read.")
    try:
        metadata = _metadata(path)
        raw = load_file(str(path))
    except Exception as exc:  # a damaged file is the file's problem, said in one line
        raise _refuse(path, f"could not be read ({exc}).") from exc
    for marker, kind in _UNSUPPORTED.items():
        if any(k.endswith(marker) for k in raw):
            raise _refuse(
                path,
                f"is {kind}; diffusers cannot load that kind for SD 1.x, 2.x or SDXL, so "
                "DiffusionDesk cannot either. Use a plain LoRA (or LoCon) version.",
            )
    keys = list(raw)
    declared = _declared_family(metadata, keys)
    scales = _kohya_scales(raw)
    try:
        state, _ = loader.lora_state_dict(raw)
    except Exception as exc:
        raise _refuse(
            path, f"is not in a LoRA layout DiffusionDesk knows ({str(exc)[:200]})."
        ) from exc
    layers: dict[str, dict[str, LoraLayer]] = {}
    for component in COMPONENTS:
        prefix = component + "."
        part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not part:
            continue
        peft = _peft_keys(component, part)
        alpha, pattern = _adapter_scales(metadata, component)
        found: dict[str, LoraLayer] = {}
        for key, down in peft.items():
            if not key.endswith(".lora_A.weight"):
                continue
            module = key[: -len(".lora_A.weight")]
            up = peft.get(f"{module}.lora_B.weight")
            if up is None:
                continue
            scale = scales.get(id(up), 1.0)
            module_alpha = pattern.get(module, alpha)
            if module_alpha is not None:
                scale = float(module_alpha) / down.shape[0]
            # One pass each: cast to the model's dtype, then scale the (small) up factor
            # in place; the file's tensors are ours, so in place is safe.
            up = up.to(dtype).contiguous()
            if scale != 1.0:
                up.mul_(scale)
            found[module] = LoraLayer(down.to(dtype).contiguous(), up)
        if found:
            layers[component] = found
    if not layers:
        raise _refuse(path, "holds no LoRA layers DiffusionDesk recognises.")
    return LoraFile(path, layers, declared)


# ----------------------------------------------------------------------------- merging


def _modules(root: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return dict(root.named_modules())


def _find(modules: dict[str, torch.nn.Module], name: str) -> torch.nn.Module | None:
    # transformers 5 dropped the `text_model.` level that LoRA files still name.
    for candidate in (name, name.removeprefix("text_model."), "text_model." + name):
        if candidate in modules:
            return modules[candidate]
    return None


def _delta_shape_fits(weight: torch.Tensor, layer: LoraLayer) -> bool:
    out, rank = layer.up.shape[0], layer.down.shape[0]
    if layer.up.shape[1] != rank or weight.shape[0] != out:
        return False
    return weight[0].numel() == layer.down[0].numel()


@dataclass
class _Target:
    weight: torch.Tensor
    layer: LoraLayer
    scale: float


@dataclass
class LoraMerger:
    """Merges LoRAs into one loaded model and restores it. Worker thread only."""

    components: dict[str, torch.nn.Module]
    family: str
    # id(weight) -> (weight, its LoRA-free values). Kept while the model is loaded (as
    # A1111 keeps its backups): the next switch then copies instead of allocating.
    originals: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    merged: set[int] = field(default_factory=set)  # weights that now hold a LoRA
    active: tuple[tuple[Any, ...], ...] = ()

    def _targets(self, lora: LoraFile, use: LoraUse) -> tuple[list[_Target], list[str]]:
        targets: list[_Target] = []
        missing: list[str] = []
        mismatched: list[str] = []
        for component, layers in lora.layers.items():
            weight = use.unet_weight if component == "unet" else use.te_weight
            root = self.components.get(component)
            if root is None:
                missing += [f"{component}.{m}" for m in layers]
                continue
            modules = _modules(root)
            for name, layer in layers.items():
                module = _find(modules, name)
                param = getattr(module, "weight", None) if module is not None else None
                if not isinstance(param, torch.Tensor):
                    missing.append(f"{component}.{name}")
                elif not _delta_shape_fits(param, layer):
                    mismatched.append(f"{component}.{name}")
                elif weight != 0:
                    targets.append(_Target(param, layer, weight))
        total = sum(len(v) for v in lora.layers.values())
        if mismatched or len(missing) > total // 10:
            raise self._mismatch(use, lora, mismatched or missing)
        return targets, missing

    def _mismatch(self, use: LoraUse, lora: LoraFile, names: list[str]) -> EngineError:
        ours = FAMILY_NAMES.get(self.family, self.family)
        if lora.family is not None and lora.family != self.family:
            made_for = f"was made for {FAMILY_NAMES[lora.family]}"
        else:
            made_for = "does not fit"
        return EngineError(
            ErrorKind.BAD_INPUT,
            f"The LoRA {use.name} ({use.path.name}) {made_for} and this model is {ours}: "
            f"{len(names)} of its layers have no place here (e.g. {names[0]}). Choose a "
            f"LoRA made for {ours}, or remove <lora:{use.name}> from the prompt.",
        )

    def apply(self, uses: list[tuple[LoraUse, LoraFile]]) -> list[str]:
        """Make the model's weights base + these LoRAs; returns warnings."""
        key = tuple((u.path, u.unet_weight, u.te_weight, id(f)) for u, f in uses)
        if key == self.active:
            return []
        plans = []
        warnings = []
        for use, lora in uses:  # check every LoRA before touching any weight
            targets, missing = self._targets(lora, use)
            plans.append(targets)
            if missing:
                warnings.append(
                    f"The LoRA {use.name}: {len(missing)} of its layers do not exist in this "
                    "model and were left out."
                )
        with torch.no_grad(), _threads(_merge_threads()):
            fresh: set[int] = set()  # weights back at their original values this switch
            for targets in plans:
                for target in targets:
                    key_ = id(target.weight)
                    if key_ not in fresh:
                        self._original(target.weight)
                        fresh.add(key_)
                    self._merge(target)
            for key_ in self.merged - fresh:  # held a LoRA before and none now
                weight, original = self.originals[key_]
                weight.copy_(original)
            self.merged = fresh
        self.active = key
        return warnings

    def _original(self, weight: torch.Tensor) -> None:
        """Put weight back to its LoRA-free values, keeping a copy of them first."""
        entry = self.originals.get(id(weight))
        if entry is None:
            self.originals[id(weight)] = (weight, weight.detach().clone())
        elif id(weight) in self.merged:
            weight.copy_(entry[1])

    def _merge(self, target: _Target) -> None:
        weight, layer = target.weight, target.layer
        down, up = layer.down, layer.up
        if down.dtype != weight.dtype:
            down, up = down.to(weight.dtype), up.to(weight.dtype)
        flat_up = up.reshape(up.shape[0], -1)
        flat_down = down.reshape(down.shape[0], -1)
        if weight.is_contiguous() and weight.device == down.device:
            weight.view(weight.shape[0], -1).addmm_(flat_up, flat_down, alpha=target.scale)
        else:  # e.g. channels_last convolution weights: a separate delta, then add
            delta = (flat_up @ flat_down.to(weight.device)).reshape(weight.shape)
            weight.add_(delta.to(weight.device), alpha=target.scale)

    def restore(self) -> None:
        """Put back every touched weight exactly as it was."""
        with torch.no_grad(), _threads(1):
            for key in self.merged:
                weight, original = self.originals[key]
                weight.copy_(original)
        self.merged = set()
        self.active = ()


class LoraCache:
    """Converted LoRA files kept between jobs, keyed by file identity and dtype."""

    def __init__(self, entries: int = _CACHE_ENTRIES) -> None:
        self._entries = entries
        self._files: OrderedDict[tuple[Any, ...], LoraFile] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, family: str, dtype: torch.dtype) -> LoraFile:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, family, dtype)
        with self._lock:
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]
        with _threads(1):  # casts are memory-bound: one thread is as fast, and never waits
            lora = read_lora(path, family, dtype)
        with self._lock:
            self._files[key] = lora
            while len(self._files) > self._entries:
                self._files.popitem(last=False)
        return lora

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
