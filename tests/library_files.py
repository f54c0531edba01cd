"""Fake model files for library tests: real .safetensors headers, no weights needed."""

from __future__ import annotations

import json
import struct
from pathlib import Path

SD1_KEYS = {
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
    "cond_stage_model.transformer.text_model.final_layer_norm.weight": [768],
    "first_stage_model.decoder.conv_in.weight": [512, 4, 3, 3],
}
SD2_KEYS = {
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
    "cond_stage_model.model.ln_final.weight": [1024],
    "first_stage_model.decoder.conv_in.weight": [512, 4, 3, 3],
}
SDXL_KEYS = {
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
    "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": [768],
    "conditioner.embedders.1.model.ln_final.weight": [1280],
    "first_stage_model.decoder.conv_in.weight": [512, 4, 3, 3],
}
FLUX_KEYS = {"double_blocks.0.img_attn.norm.key_norm.scale": [128]}
LORA_SD1_KEYS = {
    "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": [4, 768],
    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": [320, 4],
}
LORA_SDXL_KEYS = {
    "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": [4, 768],
    "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": [4, 1280],
}
EMBEDDING_SD1_KEYS = {"emb_params": [2, 768]}
EMBEDDING_SDXL_KEYS = {"clip_l": [2, 768], "clip_g": [2, 1280]}
VAE_KEYS = {"encoder.down.0.block.0.conv1.weight": [128, 128, 3, 3], "decoder.up.0.x": [1]}


def write_safetensors(
    path: Path, keys: dict[str, list[int]], metadata: dict | None = None, data: bytes = b""
) -> Path:
    """A .safetensors file whose header names `keys` (with shapes) and `data` after it."""
    header: dict = {
        k: {"dtype": "F16", "shape": s, "data_offsets": [0, 0]} for k, s in keys.items()
    }
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def write_diffusers_folder(path: Path, class_name: str) -> Path:
    (path / "unet").mkdir(parents=True, exist_ok=True)
    (path / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    (path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 100)
    return path
