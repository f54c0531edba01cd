"""Textual-inversion embeddings: A1111 files from the embeddings folders, loaded when
their name appears in the prompt or the negative prompt, unloaded when it no longer does.

Files are .safetensors in A1111's layouts: SD 1.x/2.x `emb_params` (or a flattened
`string_to_param.*`, or any single tensor), SDXL `clip_l` + `clip_g`. The token is the
file's stem, as in A1111, and loading is diffusers' `load_textual_inversion` (one call
per text encoder for SDXL); diffusers' `maybe_convert_prompt`, which prompt_encoding
calls, turns the name of a multi-vector embedding into its n tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from engine.addons.lora import FAMILY_NAMES
from engine.api import EngineError, ErrorKind

_SD_KEYS = ("emb_params", "string_to_param.*", "*")


@dataclass(frozen=True)
class EmbeddingFile:
    name: str  # the file's stem: the word that calls it in a prompt
    path: Path


def _refuse(path: Path, why: str) -> EngineError:
    return EngineError(ErrorKind.BAD_INPUT, f"The embedding {path.name} {why}")


def read_embedding(path: Path, family: str) -> dict[str, torch.Tensor]:
    """{"text_encoder": vectors} (SD 1.x/2.x) or both encoders' vectors (SDXL)."""
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise _refuse(path, f"could not be read ({exc}).") from exc
    if "clip_l" in tensors and "clip_g" in tensors:
        if family != "sdxl":
            raise _refuse(
                path,
                f"was made for SDXL and this model is {FAMILY_NAMES.get(family, family)}; "
                "remove its name from the prompt or choose an SDXL model.",
            )
        return {"text_encoder": tensors["clip_l"], "text_encoder_2": tensors["clip_g"]}
    vectors = next((tensors[k] for k in _SD_KEYS if k in tensors), None)
    if vectors is None and len(tensors) == 1:
        vectors = next(iter(tensors.values()))
    if vectors is None:
        raise _refuse(path, "is not in a textual-inversion layout DiffusionDesk knows.")
    if family == "sdxl":
        raise _refuse(
            path,
            "was made for Stable Diffusion 1.x or 2.x and this model is SDXL; remove its "
            "name from the prompt or choose an SD 1.x/2.x model.",
        )
    return {"text_encoder": vectors}


class EmbeddingSet:
    """The embeddings loaded into one model; worker thread only."""

    def __init__(self, pipe: Any, family: str) -> None:
        self._pipe = pipe
        self._family = family
        self.loaded: dict[str, Path] = {}
        self._vectors: dict[str, int] = {}  # diffusers adds name, name_1, ... per vector

    def _pairs(self) -> dict[str, tuple[Any, Any]]:
        pipe = self._pipe
        pairs = {"text_encoder": (pipe.tokenizer, pipe.text_encoder)}
        if getattr(pipe, "text_encoder_2", None) is not None:
            pairs["text_encoder_2"] = (pipe.tokenizer_2, pipe.text_encoder_2)
        return pairs

    def sync(self, wanted: dict[str, Path]) -> None:
        """Load what is wanted and not loaded; unload what is loaded and not wanted."""
        for name in [n for n, p in self.loaded.items() if wanted.get(n) != p]:
            self._unload(name)
        for name, path in wanted.items():
            if name not in self.loaded:
                self._load(name, path)

    def _load(self, name: str, path: Path) -> None:
        vectors = read_embedding(path, self._family)
        pairs = self._pairs()
        for component, (tokenizer, _) in pairs.items():
            if component in vectors and name in tokenizer.get_vocab():
                raise _refuse(
                    path,
                    f'has the name "{name}", which is already a word of the tokenizer; '
                    "rename the file.",
                )
        done = []
        try:
            for component, tensor in vectors.items():
                tokenizer, encoder = pairs[component]
                width = encoder.get_input_embeddings().weight.shape[1]
                if tensor.ndim == 1:
                    tensor = tensor[None]
                self._vectors[name] = tensor.shape[0]
                if tensor.shape[-1] != width:
                    raise _refuse(
                        path,
                        f"has vectors of width {tensor.shape[-1]} but this model's text "
                        f"encoder takes {width}; it was made for another model family.",
                    )
                self._pipe.load_textual_inversion(
                    tensor.to(encoder.dtype), token=name, tokenizer=tokenizer, text_encoder=encoder
                )
                done.append(component)
        except Exception:
            for component in done:
                tokenizer, encoder = pairs[component]
                self._pipe.unload_textual_inversion(
                    self._tokens(name), tokenizer=tokenizer, text_encoder=encoder
                )
            raise
        self.loaded[name] = path

    def _tokens(self, name: str) -> list[str]:
        return [name] + [f"{name}_{i}" for i in range(1, self._vectors.get(name, 1))]

    def _unload(self, name: str) -> None:
        for tokenizer, encoder in self._pairs().values():
            if name in tokenizer.get_vocab():
                self._pipe.unload_textual_inversion(
                    self._tokens(name), tokenizer=tokenizer, text_encoder=encoder
                )
        del self.loaded[name]
        self._vectors.pop(name, None)
