"""The registry of model families: one FamilyProfile per ModelFamily, one module each.

To add a family: write engine/families/<name>.py holding PROFILE (see profile.py and
flux1.py), add its ModelFamily value in engine/api.py, and list the module in _MODULES
below, before any family whose class names it shares. Everything else (plan, loading,
previews, the form) reads the profile. No torch here: the window reads defaults too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.api import STARTER_MODEL, EngineError, ErrorKind, ModelFamily
from engine.families import flux1, flux2, qwen_image, sana, sd1, sd2, sd3, sdxl, zimage
from engine.families.profile import FamilyProfile, FolderFacts, Variant

__all__ = [
    "PROFILES",
    "FamilyProfile",
    "FolderFacts",
    "Variant",
    "describe_source",
    "detect",
    "folder_facts",
    "profile",
]

# Detection tries them in this order.
_MODULES = (sdxl, sd3, flux1, flux2, zimage, qwen_image, sana, sd2, sd1)
PROFILES: dict[ModelFamily, FamilyProfile] = {m.PROFILE.family: m.PROFILE for m in _MODULES}
SUPPORTED_WORDS = ", ".join(p.label for p in PROFILES.values())


def profile(family: ModelFamily | str) -> FamilyProfile:
    """The family's profile; EngineError(MODEL) for a family with none yet."""
    found = PROFILES.get(ModelFamily(family))
    if found is None:
        raise EngineError(
            ErrorKind.MODEL,
            f"{family} models are not supported by this version of DiffusionDesk; it runs "
            f"{SUPPORTED_WORDS}.",
        )
    return found


def detect(facts: FolderFacts, source: str = "") -> tuple[FamilyProfile, str]:
    """The family and variant name of a diffusers folder, from its files alone."""
    for candidate in PROFILES.values():
        if candidate.matches(facts):
            return candidate, candidate.variant_of(facts)
    # Folders with a UNet and a custom pipeline name load as Stable Diffusion, as before.
    if facts.component_class("unet"):
        if "XL" in facts.class_name or facts.component_class("text_encoder_2"):
            return PROFILES[ModelFamily.SDXL], ""
        family = ModelFamily.SD2 if sd1.text_width(facts) == 1024 else ModelFamily.SD1
        return PROFILES[family], ""
    kind = facts.class_name or "an unknown pipeline"
    raise EngineError(
        ErrorKind.MODEL,
        f"{source or facts.name} is a {kind}, not a model family DiffusionDesk runs "
        f"({SUPPORTED_WORDS}); choose another model.",
    )


def folder_facts(folder: Path, index: Mapping[str, Any], name: str = "") -> FolderFacts:
    """Read the component configs detection looks at (small JSON files)."""
    configs: dict[str, Mapping[str, Any]] = {}
    for component in ("unet", "transformer", "text_encoder"):
        path = folder / component / "config.json"
        if path.is_file():
            try:
                loaded = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise EngineError(
                    ErrorKind.MODEL, f"{path} is not a readable config file: {exc}"
                ) from exc
            if isinstance(loaded, dict):
                configs[component] = loaded
    return FolderFacts(index=index, configs=configs, name=name or folder.name)


def _cached_snapshot(repo_id: str) -> Path | None:
    """The hub cache's folder of a repository downloaded before (HF_HOME), or None; only
    the cache on disk is looked at, never the network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "model_index.json")
    except (OSError, ValueError):
        return None
    return Path(found).parent if isinstance(found, str) else None


def describe_source(source: str) -> tuple[FamilyProfile, str] | None:
    """The family and variant of a model source from its small JSON files alone, for the
    window's form before anything loads: the starter model, a local diffusers folder, a
    model file engine/file_family.py recognises, a hub id already in the hub cache. None
    where the files do not tell (a hub id not yet downloaded, other single files: the
    engine names the family when it loads them)."""
    from engine.resources import starter_model_dir

    folder = starter_model_dir() if source == STARTER_MODEL else Path(source).expanduser()
    name = ""  # a hub snapshot's folder is a commit hash: the repository's name tells
    from engine.downloads import is_hub_id

    if not folder.exists() and is_hub_id(source):
        folder, name = _cached_snapshot(source) or folder, source
    if folder.is_file():  # a transformer file: its tensor names may tell
        from engine.file_family import file_family

        found = file_family(folder)
        return (PROFILES[found[0]], found[1]) if found else None
    index_path = folder / "model_index.json"
    try:
        if not index_path.is_file():
            return None
        index = json.loads(index_path.read_text())
        if not isinstance(index, dict):
            return None
        return detect(folder_facts(folder, index, name), source)
    except (OSError, ValueError, EngineError):
        return None
