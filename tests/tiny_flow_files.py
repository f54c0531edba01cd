"""Tiny random-weight SD3 and FLUX.1 models written as the files people download.

`write_flow_files` saves one family's transformer as a single file in the original
(BFL / Stability) layout, its text encoders as ComfyUI's separate files (clip_l, clip_g,
t5xxl) and its VAE as an ae.safetensors-style file, in a ComfyUI `models/` tree; and a
config root holding the tiny models' configurations under the names of
engine/model_configs/ (so ModelManager(config_root=...) loads them with no network).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import T5TokenizerFast

from tests.flow_checkpoint import DIFFUSION_PREFIX, flux_to_original, sd3_to_original
from tests.ldm_checkpoint import VAE, vae_to_ldm
from tests.tiny_flow_models import tiny_flux_pipeline, tiny_sd3_pipeline
from tests.tiny_models import _WORDS


def unigram_t5_tokenizer() -> T5TokenizerFast:
    """A T5 tokenizer of the kind the real one is (unigram, so it saves and loads back
    as T5TokenizerFast), trained on the test words; its ids fit the tiny T5's vocabulary
    and keep <pad> 0, </s> 1, <unk> 2."""
    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=64, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    captions = [" ".join(_WORDS[i : i + 5]) for i in range(len(_WORDS))] * 4
    backend.train_from_iterator(captions, trainer)
    return T5TokenizerFast(tokenizer_object=backend, extra_ids=0, model_max_length=512)


@dataclass
class FlowFiles:
    """Where write_flow_files put things."""

    config_root: Path  # pass as ModelManager(config_root=...)
    models: Path  # the ComfyUI `models/` folder
    transformer: Path
    text_encoders: dict[str, Path]  # clip_l / clip_g / t5xxl -> file
    vae: Path
    diffusers_folder: Path | None = None  # the same tiny model as a diffusers folder, if written


def _state(module: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Weights to save (copies: tied tensors saved twice); matrices in `dtype` if given,
    the rest in bf16 then, as fp8 files keep norms and biases."""

    def stored(v: torch.Tensor) -> torch.Tensor:
        if dtype is None or not v.is_floating_point():
            return v
        return v.to(dtype if v.ndim >= 2 else torch.bfloat16)

    return {k: stored(v).detach().clone().contiguous() for k, v in module.state_dict().items()}


def saved(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """`state` written as the .safetensors file `path` (its folder made); the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, path)
    return path


def _comfy_encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP weights as ComfyUI's clip_l / clip_g files hold them: under `text_model.`."""
    if not any(k.startswith("embeddings.") for k in state):
        return state
    return {
        k if k.startswith("text_projection") else "text_model." + k: v for k, v in state.items()
    }


def _write_configs(pipe: object, folder: Path) -> None:
    """The pipeline's configs (no weights) as a diffusers folder would hold them."""
    folder.mkdir(parents=True, exist_ok=True)
    index = {"_class_name": type(pipe).__name__, "_diffusers_version": "0.42.0"}
    for name, component in pipe.components.items():  # type: ignore[attr-defined]
        if component is None:
            index[name] = [None, None]
            continue
        index[name] = [component.__module__.split(".")[0], type(component).__name__]
        sub = folder / name
        if name.startswith("tokenizer"):
            component.save_pretrained(sub)
        elif hasattr(component, "save_config"):
            component.save_config(sub)
        else:
            sub.mkdir(parents=True, exist_ok=True)
            component.config.to_json_file(sub / "config.json")
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))


def write_flow_files(
    tmp: Path,
    family: str,
    *,
    variant: str | None = None,
    prefix: str = "",
    dtype: torch.dtype | None = None,
    transformer: torch.nn.Module | None = None,
) -> tuple[FlowFiles, object]:
    """Write `family` ("flux1" or "sd3") as separate files in a ComfyUI tree; return the
    files and the tiny diffusers pipeline (tests/tiny_flow_models.py) they came from.
    variant: a config folder name ("flux1-schnell", "flux1-fill"); prefix: the key prefix
    of the transformer's weights ("model.diffusion_model." as in some files); dtype: the
    transformer's storage (torch.float8_e4m3fn for an fp8 file); transformer: one to
    use instead of the tiny one (the memory bench's bigger ones)."""
    if family == "flux1":
        variant = variant or "flux1-dev"
        pipe: object = tiny_flux_pipeline(tmp / "src", variant=variant.removeprefix("flux1-"))
        if transformer is not None:
            pipe.transformer = transformer  # type: ignore[attr-defined]
        original = flux_to_original(_state(pipe.transformer, dtype), prefix)  # type: ignore[attr-defined]
        encoders = {"clip_l": pipe.text_encoder, "t5xxl": pipe.text_encoder_2}  # type: ignore[attr-defined]
    else:
        pipe = tiny_sd3_pipeline(tmp / "src")
        if transformer is not None:
            pipe.transformer = transformer  # type: ignore[attr-defined]
        variant = variant or "sd3-medium"
        original = sd3_to_original(_state(pipe.transformer, dtype), prefix)  # type: ignore[attr-defined]
        encoders = {
            "clip_l": pipe.text_encoder,  # type: ignore[attr-defined]
            "clip_g": pipe.text_encoder_2,  # type: ignore[attr-defined]
            "t5xxl": pipe.text_encoder_3,  # type: ignore[attr-defined]
        }
    for component in pipe.components.values():  # type: ignore[attr-defined]
        if isinstance(component, torch.nn.Module):
            component.eval()  # built in training mode: T5's dropout would make noise
    t5_tokenizer = unigram_t5_tokenizer()
    for name in ("tokenizer_2", "tokenizer_3"):
        if isinstance(getattr(pipe, name, None), T5TokenizerFast):
            setattr(pipe, name, t5_tokenizer)
    config_root = tmp / "configs"
    _write_configs(pipe, config_root / family)
    if variant not in (family, "flux1-dev"):  # a variant folder, as engine/model_configs has
        _write_configs(pipe, config_root / variant)
    models = tmp / "ComfyUI" / "models"
    transformer = saved(models / "diffusion_models" / f"tiny-{variant}.safetensors", original)
    written: dict[str, Path] = {}
    (models / "text_encoders").mkdir(parents=True)
    for name, encoder in encoders.items():
        written[name] = models / "text_encoders" / f"{name}_tiny.safetensors"
        save_file(_comfy_encoder(_state(encoder)), written[name])
    vae_state = vae_to_ldm(_state(pipe.vae), dict(pipe.vae.config))  # type: ignore[attr-defined]
    vae = saved(
        models / "vae" / f"{family}_ae.safetensors",
        {k.removeprefix(VAE): v for k, v in vae_state.items()},
    )
    return FlowFiles(config_root, models, transformer, written, vae), pipe


__all__ = ["DIFFUSION_PREFIX", "FlowFiles", "write_flow_files"]


def write_gguf(source: Path, target: Path, arch: str = "flux") -> Path:
    """The transformer file `source` as a GGUF file the way city96's converter writes
    one: matrices whose rows split into 32-value blocks in Q8_0, the rest in F32."""
    import gguf
    import numpy as np
    from safetensors.torch import load_file

    writer = gguf.GGUFWriter(str(target), arch)
    for name, tensor in load_file(source).items():
        values = tensor.float().numpy()
        if values.ndim == 2 and values.shape[1] % 32 == 0:
            packed = gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, packed, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, values.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def write_zimage_files(tmp: Path) -> tuple[FlowFiles, object]:
    """A tiny Z-Image (tests/tiny_new_families.py) as ComfyUI keeps it: the transformer in
    Tongyi's layout, the Qwen3 text encoder as a causal LM's `model.` weights, the FLUX.1
    style VAE; configs under config_root/zimage."""
    from diffusers import ZImagePipeline

    from tests.flow_checkpoint import zimage_to_original
    from tests.tiny_new_families import zimage_components

    pipe = ZImagePipeline(**zimage_components())
    pipe.set_progress_bar_config(disable=True)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    config_root = tmp / "configs"
    _write_configs(pipe, config_root / "zimage")
    models = tmp / "ComfyUI" / "models"
    transformer = saved(
        models / "diffusion_models" / "z_image_turbo_tiny.safetensors",
        zimage_to_original(_state(pipe.transformer)),
    )
    encoder = saved(
        models / "text_encoders" / "qwen_3_4b_tiny.safetensors",
        {f"model.{k}": v for k, v in _state(pipe.text_encoder).items()},
    )
    vae_state = vae_to_ldm(_state(pipe.vae), dict(pipe.vae.config))
    vae = saved(
        models / "vae" / "ae.safetensors", {k.removeprefix(VAE): v for k, v in vae_state.items()}
    )
    return FlowFiles(config_root, models, transformer, {"qwen3": encoder}, vae), pipe
