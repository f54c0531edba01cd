"""Tiny random-weight LoRAs made with peft on the tiny models, written in the layouts
people download: kohya/A1111, diffusers/PEFT, LyCORIS LoCon and LoHa."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from safetensors.torch import save_file

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.2"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def peft_layers(
    module: torch.nn.Module, targets: list[str], rank: int = 4, seed: int = 0
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module name: (A, B)} of a random (not zero-initialised) peft LoRA on a copy."""
    torch.manual_seed(seed)
    model = inject_adapter_in_model(
        LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights=False),
        copy.deepcopy(module),
    )
    state = get_peft_model_state_dict(model)
    layers = {}
    for key, a in state.items():
        if key.endswith(".lora_A.weight"):
            name = key[: -len(".lora_A.weight")]
            b = state[f"{name}.lora_B.weight"]
            layers[name] = (a.detach().clone() * 0.5, b.detach().clone() * 0.5)
    return layers


def make_lora(pipe, *, rank: int = 4, seed: int = 0, text_encoder: bool = True) -> dict:
    """{component: {module: (A, B)}} for the pipeline's UNet and text encoder(s)."""
    lora = {"unet": peft_layers(pipe.unet, UNET_TARGETS, rank, seed)}
    if text_encoder:
        lora["text_encoder"] = peft_layers(pipe.text_encoder, TE_TARGETS, rank, seed + 1)
        if getattr(pipe, "text_encoder_2", None) is not None:
            lora["text_encoder_2"] = peft_layers(pipe.text_encoder_2, TE_TARGETS, rank, seed + 2)
    return lora


def _te_name(module: str) -> str:
    # Files name text-encoder layers under `text_model.` (transformers 4's layout).
    return module if module.startswith("text_model.") else f"text_model.{module}"


_KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}


def write_kohya(
    lora: dict, path: Path, *, alpha: float = 2.0, family: str = "sd_v1", sdxl: bool = False
) -> Path:
    """kohya/A1111 keys: lora_unet_…/lora_te_… with lora_down, lora_up and alpha."""
    tensors = {}
    for component, layers in lora.items():
        prefix = _KOHYA_PREFIX[component]
        if sdxl and component == "text_encoder":
            prefix = "lora_te1_"
        for module, (a, b) in layers.items():
            name = module if component == "unet" else _te_name(module)
            key = prefix + name.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = a.to(torch.float16)
            tensors[f"{key}.lora_up.weight"] = b.to(torch.float16)
            tensors[f"{key}.alpha"] = torch.tensor(alpha)
    save_file(tensors, str(path), metadata={"ss_base_model_version": family})
    return path


def write_peft(lora: dict, path: Path, *, lora_alpha: float | None = None) -> Path:
    """diffusers' save_lora_weights layout: unet.…lora_A.weight, text_encoder.…lora_B.weight."""
    tensors = {}
    metadata = {}
    for component, layers in lora.items():
        for module, (a, b) in layers.items():
            name = module if component == "unet" else _te_name(module)
            tensors[f"{component}.{name}.lora_A.weight"] = a
            tensors[f"{component}.{name}.lora_B.weight"] = b
        if lora_alpha is not None:
            rank = next(iter(layers.values()))[0].shape[0]
            metadata[f"{component}.lora_alpha"] = lora_alpha
            metadata[f"{component}.r"] = rank
    extra = {"lora_adapter_metadata": json.dumps(metadata)} if metadata else None
    save_file(tensors, str(path), metadata=extra)
    return path


def write_locon(pipe, path: Path, *, rank: int = 4, seed: int = 0) -> tuple[Path, dict]:
    """LyCORIS LoCon: kohya keys that also cover the ResNet 3x3 convolutions."""
    torch.manual_seed(seed)
    layers = {}
    for name, module in pipe.unet.named_modules():
        if isinstance(module, torch.nn.Conv2d) and name.endswith(("conv1", "conv2")):
            out, inp, kh, kw = module.weight.shape
            layers[name] = (
                torch.randn(rank, inp, kh, kw) * 0.1,
                torch.randn(out, rank, 1, 1) * 0.1,
            )
    write_kohya({"unet": layers}, path, alpha=float(rank))
    return path, {"unet": layers}


def write_loha(path: Path) -> Path:
    key = "lora_unet_down_blocks_1_attentions_0_proj_in"
    save_file(
        {
            f"{key}.hada_w1_a": torch.zeros(16, 2),
            f"{key}.hada_w1_b": torch.zeros(2, 16),
            f"{key}.hada_w2_a": torch.zeros(16, 2),
            f"{key}.hada_w2_b": torch.zeros(2, 16),
            f"{key}.alpha": torch.tensor(2.0),
        },
        str(path),
    )
    return path


def expected_weight(
    weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float
) -> torch.Tensor:
    delta = b.float().reshape(b.shape[0], -1) @ a.float().reshape(a.shape[0], -1)
    return weight.float() + scale * delta.reshape(weight.shape)
