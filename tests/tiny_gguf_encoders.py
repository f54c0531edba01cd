"""Tiny text encoders written as the GGUF files ComfyUI-GGUF users have.

llama.cpp's converter (convert_hf_to_gguf.py) names each tensor of a published checkpoint
through gguf's own tensor-name table (`gguf.get_tensor_name_map`): `token_embd.weight`,
`blk.N.attn_q.weight`, `enc.blk.N.ffn_gate.weight` ...; it stores Gemma's RMS norm weights
plus one, keeps norms and vectors in F32 and quantizes matrices (Q8_0 here). This writes a
tiny transformers encoder the same way, under the names its published checkpoint has
(the decoder-only encoders' `model.` weights of a causal LM).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch

# Our text-encoder kinds -> llama.cpp's architecture, and whether the published checkpoint
# is a causal LM (its weights under `model.`).
ARCHITECTURES = {
    "t5": (gguf.MODEL_ARCH.T5ENCODER, False),
    "qwen3": (gguf.MODEL_ARCH.QWEN3, True),
    "gemma2": (gguf.MODEL_ARCH.GEMMA2, True),
    "qwen2.5-vl": (gguf.MODEL_ARCH.QWEN2VL, True),
}


def _blocks(encoder: torch.nn.Module) -> int:
    config = encoder.config  # type: ignore[attr-defined]
    text = getattr(config, "text_config", config)
    return int(getattr(text, "num_hidden_layers", None) or text.num_layers)


def write_gguf_encoder(
    encoder: torch.nn.Module, kind: str, target: Path, quantize: bool = True, name: str = ""
) -> Path:
    """`encoder` (a tiny T5EncoderModel, Qwen3Model, Gemma2Model ...) as llama.cpp writes
    the GGUF of its published checkpoint; quantize: matrices in Q8_0 (else F32); name: the
    model name in its metadata (general.name)."""
    arch, causal = ARCHITECTURES[kind]
    names = gguf.get_tensor_name_map(arch, _blocks(encoder))
    writer = gguf.GGUFWriter(str(target), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(name or f"tiny {kind} encoder")
    written: set[str] = set()
    for key, tensor in encoder.state_dict().items():
        published = ("model." + key) if causal and not key.startswith("model.") else key
        stem, _, suffix = published.rpartition(".")
        tensor_name = names.get_name(stem)
        if tensor_name is None or f"{tensor_name}.{suffix}" in written:
            continue  # no llama.cpp tensor (T5's tied copy of the embedding, rotary buffers)
        written.add(f"{tensor_name}.{suffix}")
        values = tensor.detach().float().numpy()
        if kind == "gemma2" and published.endswith("norm.weight"):
            values = values + 1  # llama.cpp stores Gemma's (1 + weight) norms
        if quantize and values.ndim == 2 and values.shape[1] % 32 == 0:
            packed = gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q8_0)
            q8 = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(f"{tensor_name}.{suffix}", packed, raw_dtype=q8)
        else:
            writer.add_tensor(f"{tensor_name}.{suffix}", values.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target
