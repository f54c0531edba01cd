"""No code from a model file or folder ever runs: the checks that make sure of it.

A model is data. Pickle checkpoints (.ckpt, .pt, .pth, .bin) are read with torch's
restricted unpickler (weights only), even when the person allowed pickles: a file that
needs anything else (a class, a function, a reduce call) is refused. A diffusers folder
may name only diffusers' own pipeline classes and diffusers or transformers components;
custom pipelines, components from other modules and transformers' `auto_map` (remote
code) are refused before anything is imported.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from engine.api import EngineError, ErrorKind

NEVER_RUNS_CODE = "DiffusionDesk never runs code from model files"
COMPONENT_LIBRARIES = ("diffusers", "transformers")
# Component config files that transformers reads and that could point at remote code.
_CONFIG_FILES = (
    "config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "processor_config.json",
)
_CODE_KEYS = ("auto_map", "custom_pipeline", "trust_remote_code")


def _refuse(message: str) -> EngineError:
    return EngineError(ErrorKind.MODEL, message)


def load_pickle_weights(path: Path) -> Any:
    """A pickle checkpoint's contents, unpickled with torch's weights-only loader."""
    import torch  # only here: the folder checks below need no torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refuse(
            f"{path.name} needs code to be run to open it (it is not plain weights), and "
            f"{NEVER_RUNS_CODE}; use a .safetensors version of the model."
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:  # truncated zip, wrong format ...
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise _refuse(
            f"{path.name} could not be read as a PyTorch checkpoint"
            + (f" ({reason})" if reason else "")
            + "; it may be truncated or damaged: download it again."
        ) from exc


def needed_code(exc: BaseException) -> bool:
    """Whether exc (or what caused it) is torch's weights-only unpickler refusing code:
    diffusers and transformers wrap it in errors of their own."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if (
            isinstance(current, pickle.UnpicklingError)
            or "Weights only load failed" in str(current)[:500]
        ):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _code_key(data: object) -> str | None:
    if isinstance(data, dict):
        return next((key for key in _CODE_KEYS if key in data), None)
    return None


def check_folder(folder: Path, index: dict[str, Any]) -> None:
    """Refuse a diffusers folder whose model_index.json or component configs would make
    diffusers or transformers import code that the folder (or a hub repo) supplies."""
    import diffusers  # the pipeline class names diffusers itself defines

    name = index.get("_class_name")
    if isinstance(name, list) or (isinstance(name, str) and not hasattr(diffusers, name)):
        shown = name[-1] if isinstance(name, list) and name else name
        raise _refuse(
            f"{folder} asks for a custom pipeline ({shown!s:.80}) whose code comes with the "
            f"model, and {NEVER_RUNS_CODE}; choose a standard Stable Diffusion model."
        )
    if not isinstance(name, str):
        raise _refuse(f"{folder}/model_index.json does not name its pipeline (_class_name).")
    key = _code_key(index)
    if key is not None:
        raise _refuse(f"{folder}/model_index.json asks to run code ({key}), and {NEVER_RUNS_CODE}.")
    for component, value in index.items():
        if component.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        library, cls_name = value
        if library is None and cls_name is None:
            continue
        if library not in COMPONENT_LIBRARIES or not isinstance(cls_name, str):
            raise _refuse(
                f"{folder}: the component {component} comes from {library!s:.80}, not from "
                f"diffusers or transformers, and {NEVER_RUNS_CODE}."
            )
        if library == "transformers" and cls_name.startswith("Auto"):
            raise _refuse(
                f"{folder}: the component {component} is a transformers {cls_name:.80}, which "
                f"may load code that comes with the model, and {NEVER_RUNS_CODE}."
            )
        check_component_configs(folder / component)


def check_component_configs(subfolder: Path) -> None:
    for config_name in _CONFIG_FILES:
        config = subfolder / config_name
        if not config.is_file():
            continue
        try:
            data = json.loads(config.read_text(encoding="utf-8", errors="replace"))
        except (OSError, ValueError, RecursionError) as exc:
            raise _refuse(f"{config} is not readable JSON; the model folder is damaged.") from exc
        key = _code_key(data)
        if key is not None:
            raise _refuse(
                f"{config} asks to run code that comes with the model ({key}), and "
                f"{NEVER_RUNS_CODE}."
            )
