"""Tokenizers for the text encoders that ship as separate files (T5-XXL, Qwen, Gemma).

A text-encoder file holds weights only; its tokenizer is a few megabytes of vocabulary
that DiffusionDesk does not bundle (the CLIP vocabulary is the exception: it ships in
engine/model_configs/clip_tokenizer). The first time a model needs one, only the
tokenizer files are fetched from a public (not gated) hub repository that holds the same
tokenizer, into DiffusionDesk's data folder, and used from there ever after, offline.
Offline, the message says which files to put in which folder.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import snapshot_download

from engine.api import EngineError, ErrorKind, JobCancelled, ShouldCancel
from engine.asset_folders import data_dir

# Files that make a tokenizer folder usable (a fast tokenizer, or BPE vocab + merges).
_USABLE = ("tokenizer.json", "vocab.json", "spiece.model", "tokenizer.model")
_WANTED = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
]


@dataclass(frozen=True)
class TokenizerSource:
    """Where a tokenizer comes from on the hub."""

    name: str  # what a message calls it
    repo_id: str
    subfolder: str
    approx_size: str


# Public repositories holding each text encoder's tokenizer (apache-2.0 / MIT models).
SOURCES: dict[str, TokenizerSource] = {
    "t5": TokenizerSource("T5-XXL", "black-forest-labs/FLUX.1-schnell", "tokenizer_2", "2.5 MB"),
    "qwen2.5-vl": TokenizerSource("Qwen2.5-VL", "Qwen/Qwen-Image", "tokenizer", "7 MB"),
    "qwen3": TokenizerSource("Qwen3", "Tongyi-MAI/Z-Image-Turbo", "tokenizer", "11 MB"),
    "gemma2": TokenizerSource(
        "Gemma 2", "Efficient-Large-Model/Sana_1600M_1024px_diffusers", "tokenizer", "35 MB"
    ),
}


def is_usable(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _USABLE)


def cache_folder(kind: str, root: Path | None = None) -> Path:
    """Where the `kind` tokenizer lives once fetched: <data folder>/tokenizers/<kind>."""
    return (root or data_dir()) / "tokenizers" / kind


def ensure(kind: str, should_cancel: ShouldCancel, root: Path | None = None) -> Path:
    """A folder holding the `kind` tokenizer, fetching its files once if need be."""
    folder = cache_folder(kind, root)
    if is_usable(folder):
        return folder
    source = SOURCES.get(kind)
    if source is None:
        raise EngineError(ErrorKind.MODEL, f"DiffusionDesk has no source for a {kind} tokenizer.")
    if should_cancel():
        raise JobCancelled()
    staging = folder.with_name(folder.name + ".partial")
    try:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise ConnectionError("HF_HUB_OFFLINE is set")
        snapshot_download(
            source.repo_id,
            allow_patterns=[f"{source.subfolder}/{name}" for name in _WANTED],
            local_dir=staging,
            # Read at call time (huggingface_hub reads it once, at import): tests and
            # mirrors set it later.
            endpoint=os.environ.get("HF_ENDPOINT") or None,
        )
    except Exception as exc:  # whatever the network or the hub did, the way out is the same
        url = f"huggingface.co/{source.repo_id}/tree/main/{source.subfolder}"
        raise EngineError(
            ErrorKind.MODEL,
            f"The {source.name} tokenizer is needed for this model and is not on this computer; "
            f"DiffusionDesk fetches it once (about {source.approx_size}) from {url}, and that "
            f"failed ({type(exc).__name__}). Connect to the internet and try again, or copy "
            f"tokenizer.json, tokenizer_config.json and special_tokens_map.json from that page "
            f"into {folder}.",
        ) from exc
    fetched = staging / source.subfolder
    if not is_usable(fetched):
        raise EngineError(
            ErrorKind.MODEL,
            f"{source.repo_id}/{source.subfolder} no longer holds a {source.name} tokenizer; "
            f"put tokenizer.json and tokenizer_config.json into {folder} yourself.",
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.is_dir():  # an unusable leftover (an empty folder made by hand)
        shutil.rmtree(folder)
    fetched.replace(folder)  # whole folder at once: never a half-fetched tokenizer
    shutil.rmtree(staging, ignore_errors=True)
    return folder
