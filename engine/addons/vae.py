"""The VAE override: a separate VAE replaces the loaded model's own for a job.

A VAE is named by the request's `vae` field: a file name from the VAE folders (with or
without `.safetensors`), a path to a .safetensors file, or a diffusers VAE folder (one
with config.json, or a model folder with a `vae/` sub-folder). Single files are read with
diffusers' `AutoencoderKL.from_single_file` against the bundled configuration of the
model's family (engine/model_configs), so nothing is fetched from the network; a file
already in diffusers' key layout is loaded into that configuration directly. The loaded
VAE is kept until another is asked for; an empty `vae` puts the model's own back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from safetensors import safe_open

from engine.addons.files import vae_path
from engine.api import EngineError, ErrorKind

SUFFIX = ".safetensors"


def _refuse(message: str) -> EngineError:
    return EngineError(ErrorKind.BAD_INPUT, message)


def resolve(name: str, roots: list[Path]) -> Path:
    """The VAE file or folder a request names; EngineError if there is none."""
    found = vae_path(name, roots)
    if found is None:
        raise _refuse(
            f'The VAE "{name}" is neither a file nor a folder, and no VAE folder holds a file '
            "of that name; put it in a VAE folder or give its full path."
        )
    return found


def _is_diffusers_layout(path: Path) -> bool:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return any(k.startswith("decoder.up_blocks.") for k in f.keys())  # noqa: SIM118


def _vae_class(config_dir: Path) -> Any:
    """The family's autoencoder class, as its bundled config names it (SANA's DC-AE is
    not a KL autoencoder)."""
    import diffusers

    config = config_dir / "vae" / "config.json"
    name = json.loads(config.read_text()).get("_class_name", "") if config.is_file() else ""
    return getattr(diffusers, name, AutoencoderKL)


def load_vae(path: Path, config_dir: Path, dtype: torch.dtype) -> AutoencoderKL:
    """The family's autoencoder from a .safetensors file or a diffusers folder."""
    vae_class = _vae_class(config_dir)
    try:
        if path.is_dir():
            sub = "vae" if (path / "vae" / "config.json").is_file() else None
            if sub is None and not (path / "config.json").is_file():
                raise _refuse(
                    f"{path} is not a VAE folder: it has neither config.json nor a vae/ folder."
                )
            vae = vae_class.from_pretrained(
                path, subfolder=sub, torch_dtype=dtype, local_files_only=True, use_safetensors=True
            )
        elif path.suffix.lower() != SUFFIX:
            raise _refuse(f"The VAE {path.name} is not a .safetensors file.")
        elif _is_diffusers_layout(path):
            from safetensors.torch import load_file

            vae = vae_class.from_config(vae_class.load_config(config_dir / "vae"))
            vae.load_state_dict(load_file(str(path)))
            vae = vae.to(dtype)
        elif vae_class.__name__ == "AutoencoderKLFlux2":  # diffusers has no single-file map
            from engine.flux2_files import load_vae as load_flux2_vae

            vae = load_flux2_vae(path, "", config_dir, dtype, path.name)
        else:
            vae = vae_class.from_single_file(
                str(path),
                config=str(config_dir),
                subfolder="vae",
                torch_dtype=dtype,
                local_files_only=True,
            )
    except EngineError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise _refuse(
            f"The VAE {path.name} could not be loaded ({first}); is it a VAE for this model's "
            "family?"
        ) from exc
    if any(p.is_meta for p in vae.parameters()):
        raise _refuse(f"The VAE {path.name} lacks weights this model's VAE needs.")
    return vae.eval()


def _qwen_vae(path: Path, own: Any) -> Any:
    """A Qwen-Image (Wan 2.1) VAE file, in the shape and precision of the model's own."""
    from engine import component_files, qwen_files

    part = component_files.inspect(path)
    if part.kind != component_files.WAN_VAE:
        raise _refuse(
            f"The VAE {path.name} is not a Qwen-Image VAE (Wan 2.1's layout); choose "
            "qwen_image_vae.safetensors or leave the VAE on the model's own."
        )
    try:
        return qwen_files.load_vae(own.config, part, own.dtype).to(own.device)
    except EngineError as exc:
        raise _refuse(exc.message) from exc


class VaeSwitch:
    """Which VAE the model's pipelines decode with; worker thread only."""

    def __init__(self, pipe: Any, config_dir: Path) -> None:
        self._own = pipe.vae
        self._config_dir = config_dir
        self._loaded: tuple[tuple[Any, ...], AutoencoderKL] | None = None
        self.current: Path | None = None

    def choose(self, path: Path | None) -> AutoencoderKL:
        """The VAE to use: the model's own for None, else the (cached) loaded file."""
        if path is None:
            self.current = None
            return self._own
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if self._loaded is None or self._loaded[0] != key:
            self._loaded = None  # the old one's memory goes before the new one loads
            own = self._own
            if type(own).__name__ == "AutoencoderKLQwenImage":  # Wan's layout, not SD's
                vae = _qwen_vae(path, own)
            else:
                vae = load_vae(path, self._config_dir, own.dtype).to(own.device)
            self._loaded = (key, vae)
        self.current = path
        return self._loaded[1]
