"""GGUF text encoders, as ComfyUI-GGUF users keep them: told apart, read or refused.

ComfyUI-GGUF users have their text encoders as llama.cpp GGUF files too: city96's
t5-v1_1-xxl-encoder-*.gguf (architecture `t5encoder`), Qwen3 4B / 8B (`qwen3`, Z-Image and
FLUX.2 klein), gemma-2-2b (`gemma2`, SANA) and Qwen2.5-VL-7B (`qwen2vl`, Qwen-Image). The
file's own metadata names its architecture and its token embedding gives the width, so
they are found beside a model like the .safetensors files (engine/component_files.py).
transformers reads GGUF for T5, Qwen3 and Gemma 2 (`load_gguf_checkpoint`, llama.cpp's
tensor names mapped to its own); those are dequantized once, to the job's precision, as
they load: they take the memory of an unquantized encoder. It cannot read Qwen2.5-VL's,
which is refused in a sentence naming the .safetensors file to use instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.component_files import GEMMA2, QWEN3, QWEN25_VL, T5

if TYPE_CHECKING:
    import torch

# llama.cpp's architecture names -> text-encoder kind.
_ARCHITECTURES = {
    "t5encoder": T5,
    "t5": T5,
    "qwen3": QWEN3,
    "gemma2": GEMMA2,
    "qwen2vl": QWEN25_VL,
}
# The transformers class whose parameter names llama.cpp's names map onto (the causal LMs
# for the decoder-only encoders: their `model.` weights are what the pipelines take).
_READ_AS = {T5: "T5EncoderModel", QWEN3: "Qwen3ForCausalLM", GEMMA2: "Gemma2ForCausalLM"}
# What to use instead, for the kinds transformers cannot read from GGUF.
_INSTEAD = {
    QWEN25_VL: "qwen_2.5_vl_7b_fp8_scaled.safetensors or qwen_2.5_vl_7b.safetensors "
    "(ComfyUI's Qwen-Image text encoder)",
}
_EMBEDDING = "token_embd.weight"


def describe(path: Path) -> tuple[str, int]:
    """(kind, width) of a GGUF text encoder from its metadata and index alone; ("", 0) for
    any other GGUF file (a transformer) or an unreadable one."""
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))  # memory-mapped: reads the index only
        field = reader.fields.get("general.architecture")
        architecture = str(field.contents()) if field is not None else ""
        named = reader.fields.get("general.name")
        name = str(named.contents()).lower() if named is not None else ""
        embedding = next((t for t in reader.tensors if t.name == _EMBEDDING), None)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "", 0
    kind = _ARCHITECTURES.get(architecture, "")
    if "umt5" in name:  # Wan's UMT5 shares T5-XXL's layout and width, not its vocabulary
        kind = ""
    if not kind or embedding is None:
        return "", 0
    # GGUF lists a tensor's sizes innermost first: (hidden size, vocabulary).
    return kind, int(embedding.shape[0])


def refusal(path: Path, kind: str, label: str) -> str | None:
    """The sentence refusing a GGUF encoder transformers cannot read; None if it can."""
    if kind in _READ_AS:
        return None
    instead = _INSTEAD.get(kind, "its .safetensors file")
    return (
        f"{path.name} is a GGUF {label}, which DiffusionDesk cannot read (transformers reads "
        f"GGUF text encoders of T5, Qwen3 and Gemma 2 only); use {instead} instead."
    )


def read(path: Path, kind: str, config: object, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The encoder's weights, dequantized to `dtype`, under the names of transformers' model
    of its architecture (`model.` ones for the causal LMs). ValueError for a kind
    transformers cannot read or a file it cannot parse."""
    import transformers
    from accelerate import init_empty_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    if kind not in _READ_AS:
        raise ValueError(f"transformers cannot read {kind or 'this'} GGUF text encoder")
    with init_empty_weights():  # only its parameter names are needed, for the name map
        names = getattr(transformers, _READ_AS[kind])(config)
    try:
        parsed = load_gguf_checkpoint(
            str(path), return_tensors=True, model_to_load=names, torch_dtype=dtype
        )
    except (KeyError, IndexError, NotImplementedError) as exc:
        raise ValueError(f"not a GGUF file transformers can read ({exc})") from exc
    return dict(parsed["tensors"])


def weights_bytes(path: Path, element_size: int) -> int:
    """What the encoder takes once dequantized at `element_size` bytes an element."""
    from gguf import GGUFReader

    return sum(int(t.n_elements) for t in GGUFReader(str(path)).tensors) * element_size
