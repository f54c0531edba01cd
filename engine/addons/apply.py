"""One call that puts a request's add-ons on the loaded model before its run.

The runner calls `Addons.apply(model, pipe, request)` once per job, before the prompts
are encoded (a LoRA's text-encoder part and the embeddings change the encoding):
- LoRAs named by `<lora:NAME:…>` tags in the prompt are merged into the weights, and
  those of the previous job taken out (engine/addons/lora.py);
- embeddings whose names appear in the prompt or negative prompt are loaded, others
  unloaded (engine/addons/embeddings.py);
- the request's `vae` replaces the model's VAE, or the model's own comes back
  (engine/addons/vae.py).
Files are looked up by name in the folders of `request.model_folders` (DiffusionDesk's
own models folder when empty; an A1111 or ComfyUI models folder works too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.addons.embeddings import EmbeddingSet
from engine.addons.files import (
    PICKLED,
    embedding_files,
    listing,
    lora_path,
    mentioned,
    roots_of,
)
from engine.addons.lora import LoraCache, LoraMerger, LoraUse
from engine.addons.vae import VaeSwitch, resolve
from engine.api import EngineError, ErrorKind, GenerationRequest
from engine.asset_folders import AssetKind, asset_folders
from engine.prompts import LoraTag, extract_extra_networks
from engine.resources import model_configs_dir


@dataclass
class AppliedAddons:
    """What a job ran with, beyond its model."""

    loras: list[LoraUse] = field(default_factory=list)
    embeddings: dict[str, Path] = field(default_factory=dict)
    vae: Path | None = None
    warnings: list[str] = field(default_factory=list)


def merged_tags(tags: list[LoraTag]) -> list[LoraTag]:
    """One tag per LoRA: a LoRA named twice gets both weights added, as both apply."""
    merged: dict[str, LoraTag] = {}
    for tag in tags:
        if tag.name in merged:
            old = merged[tag.name]
            tag = LoraTag(
                tag.name, old.te_weight + tag.te_weight, old.unet_weight + tag.unet_weight
            )
        merged[tag.name] = tag
    return list(merged.values())


def find_loras(tags: list[LoraTag], roots: list[Path]) -> list[LoraUse]:
    """The files of the tags; EngineError naming every LoRA that is not there."""
    uses, missing = [], []
    for tag in tags:
        if "/" in tag.name or "\\" in tag.name or tag.name.startswith("."):
            raise EngineError(
                ErrorKind.BAD_INPUT,
                f"<lora:{tag.name}> names a path; a LoRA is named by its file name (without "
                ".safetensors) in the LoRA folders.",
            )
        path = lora_path(tag.name, roots)
        if path is None:
            missing.append(tag.name)
        else:
            uses.append(LoraUse(tag.name, path, tag.unet_weight, tag.te_weight))
    if missing:
        folders = asset_folders(AssetKind.LORA, roots)
        where = ", ".join(str(f) for f in folders) if folders else "none found"
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"No LoRA file named {', '.join(missing)} in the LoRA folders ({where}); put the "
            ".safetensors file there, add its models folder in the settings, or remove the "
            "<lora:…> tag from the prompt.",
        )
    return uses


class Addons:
    """The add-on state of the loaded model. Worker thread only."""

    def __init__(self, *, config_root: Path | None = None) -> None:
        self._config_root = config_root
        self._cache = LoraCache()
        self._model: Any = None
        self._merger: LoraMerger | None = None
        self._embeddings: EmbeddingSet | None = None
        self._vae: VaeSwitch | None = None
        self._vae_pipes: list[Any] = []  # pipelines whose VAE apply() set

    def reset(self) -> None:
        """Give the model back as it was loaded (no LoRA, embedding or other VAE), then
        forget it; the LoRA cache stays. Called when the model is released or replaced,
        so that a model object that lives on elsewhere is never left changed."""
        if self._merger is not None:
            self._merger.restore()
        if self._embeddings is not None:
            self._embeddings.sync({})
        if self._vae is not None:
            own = self._vae.choose(None)
            for pipe in self._vae_pipes:
                pipe.vae = own
        self._model = self._merger = self._embeddings = self._vae = None
        self._vae_pipes = []

    def _attach(self, model: Any) -> None:
        if self._model is model:
            return
        self.reset()
        pipe = model.pipe
        components = {
            name: module
            for name in ("unet", "text_encoder", "text_encoder_2")
            if (module := getattr(pipe, name, None)) is not None
        }
        self._model = model
        self._merger = LoraMerger(components, model.family)
        self._embeddings = EmbeddingSet(pipe, model.family)
        self._vae = VaeSwitch(pipe, (self._config_root or model_configs_dir()) / model.family)

    def apply(self, model: Any, pipe: Any, request: GenerationRequest) -> AppliedAddons:
        """Put the request's LoRAs, embeddings and VAE on the model (and `pipe`)."""
        self._attach(model)
        assert self._merger and self._embeddings and self._vae
        roots = roots_of(request.model_folders)
        applied = AppliedAddons()
        _, tags, _ = extract_extra_networks(request.prompt)
        _, negative_tags, _ = extract_extra_networks(request.negative_prompt)
        if negative_tags:
            applied.warnings.append(
                "LoRA tags in the negative prompt do nothing and were ignored; put them in "
                "the prompt."
            )
        uses = find_loras(merged_tags(tags), roots)
        files = [(u, self._cache.get(u.path, model.family, model.dtype)) for u in uses]
        applied.warnings += self._merger.apply(files)
        applied.loras = uses

        names = embedding_files(roots)
        used = mentioned([request.prompt, request.negative_prompt], list(names))
        wanted = {name: names[name] for name in used}
        pickled = listing(AssetKind.EMBEDDING, roots, PICKLED)
        texts = [request.prompt, request.negative_prompt]
        for name in mentioned(texts, [n for n in pickled if n not in names]):
            applied.warnings.append(
                f"The embedding {name} is a {pickled[name].suffix} file (a pickle, which can "
                "run code when opened) and was not used; use a .safetensors version."
            )
        self._embeddings.sync(wanted)
        applied.embeddings = wanted

        vae_name = request.vae
        path = resolve(vae_name, roots) if vae_name else None
        pipe.vae = self._vae.choose(path)
        if all(p is not pipe for p in self._vae_pipes):
            self._vae_pipes.append(pipe)
        applied.vae = path
        return applied
