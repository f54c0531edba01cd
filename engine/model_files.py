"""The one table of model-file kinds: which suffixes are checkpoints and which of those are
pickles, with the words that explain why pickles are refused. No torch here: the CLI, the
metadata reader and the window's file dialogs read it too."""

from __future__ import annotations

from pathlib import Path

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})
CHECKPOINT_SUFFIXES = PICKLE_SUFFIXES | {SAFETENSORS_SUFFIX}
PICKLE_REASON = (
    "pickle files (.ckpt, .pt, .pth, .bin) can hide arbitrary code that runs when they "
    "are opened (with --allow-pickle they are read as plain weights only)"
)
ALLOW_PICKLE_HINT = "start DiffusionDesk with --allow-pickle"


def is_checkpoint(path: Path) -> bool:
    return path.suffix.lower() in CHECKPOINT_SUFFIXES


def is_pickle(path: Path) -> bool:
    return path.suffix.lower() in PICKLE_SUFFIXES
