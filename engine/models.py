"""Model sources, loading and release.

A model is named by a source string: "starter" (the bundled model), a local diffusers
folder, a single-file checkpoint (.safetensors; pickles only when allowed) or a hub
repo id. ModelManager keeps one model loaded, reuses it across jobs and releases it
before another one is loaded.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderTiny

from engine import (
    devices,
    families,
    flow_single_file,
    hub,
    memory_policy,
    model_code,
    sana_files,
    single_file,
    tiny_autoencoders,
)
from engine.api import (
    STARTER_MODEL,
    EngineError,
    ErrorKind,
    JobCancelled,
    Mode,
    ModelFamily,
    Progress,
    ShouldCancel,
)
from engine.asset_folders import default_roots
from engine.latent_fit import cached_fit
from engine.memory import free_memory
from engine.model_files import ALLOW_PICKLE_HINT, PICKLE_REASON, is_checkpoint, is_pickle
from engine.out_of_memory import is_out_of_memory
from engine.protocols import Pipeline
from engine.resources import model_configs_dir, resources_dir, starter_model_dir

# Components a text-to-image pipeline can do without (we never load a safety checker).
_SKIPPED_COMPONENTS = frozenset({"safety_checker", "feature_extractor", "image_encoder"})
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def default_tiny_vae_dirs() -> dict[ModelFamily, Path]:
    """Where bundled tiny autoencoder weights would live: resources/<the profile's folder>
    (taesd for SD 1/2, taesdxl for SDXL, taesd3, taef1 ...)."""
    root = resources_dir()
    return {
        family: root / profile.tiny_vae_folder
        for family, profile in families.PROFILES.items()
        if profile.tiny_vae_folder
    }


@dataclass
class LoadedModel:
    source: str  # as requested ("starter", folder, file, hub id)
    family: ModelFamily
    pipe: Pipeline  # the family's pipeline of its first mode (text-to-image mostly)
    # Model-shipped latent-to-RGB (factors per latent channel, bias); None: family default.
    latent_rgb: tuple[list[list[float]], list[float]] | None
    tiny_vae: AutoencoderTiny | None  # only when TAESD weights are present locally
    # Inpaint-only: a 9-channel inpainting UNet or FLUX.1 Fill; text-to-image and
    # image-to-image run through the inpaint pipeline over the whole picture.
    is_inpaint_unet: bool
    device: torch.device
    dtype: torch.dtype
    variant: str = ""  # the family's variant (engine/families/): "schnell", "fill" ...
    # What the status bar adds about the loaded weights: quantization, memory placement.
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """What the status bar says, e.g. "FLUX.1 schnell"."""
        return families.profile(self.family).variant(self.variant).label


def _check_cancel(should_cancel: ShouldCancel) -> None:
    if should_cancel():
        raise JobCancelled()


def _model_error(message: str) -> EngineError:
    return EngineError(ErrorKind.MODEL, message)


def read_latent_rgb(path: Path) -> tuple[list[list[float]], list[float]] | None:
    """Read {"factors": [[r, g, b] per latent channel], "bias": [r, g, b]} if present."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        factors = [[float(v) for v in row] for row in data["factors"]]
        bias = [float(v) for v in data.get("bias", [0.0, 0.0, 0.0])]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _model_error(f"{path} is not a valid latent-to-RGB file: {exc}") from exc
    if not factors or any(len(row) != 3 for row in factors) or len(bias) != 3:
        raise _model_error(
            f"{path} must hold "
            '{"factors": [[r, g, b] for each latent channel], "bias": [r, g, b]}.'
        )
    return factors, bias


def _only_variant(weight_files: list[str]) -> str | None:
    """The variant ("fp16") when a folder holds only variant weights, else None."""
    variants = {n.split(".")[-2] for n in weight_files if n.count(".") >= 2}
    plain = [n for n in weight_files if n.count(".") == 1]
    if plain or len(variants) != 1:
        return None
    return variants.pop()


class ModelManager:
    """Keeps at most one model loaded on the chosen device and dtype."""

    def __init__(
        self,
        device: str = "auto",
        dtype: str = "auto",
        allow_pickle: bool = False,
        *,
        config_root: Path | None = None,
        cache_dir: Path | None = None,
        tiny_vae_dirs: dict[ModelFamily, Path] | None = None,
    ) -> None:
        """device: "auto", "cuda", "mps" or "cpu"; dtype: "auto", "float32", "float16" or
        "bfloat16". config_root replaces engine/model_configs (tests); cache_dir the hub
        cache; tiny_vae_dirs maps a family to a folder with TAESD weights."""
        self._policy = devices.resolve(device, dtype)
        self.allow_pickle = allow_pickle
        self._config_root = config_root
        self._cache_dir = cache_dir
        self._tiny_vae_dirs = dict(
            default_tiny_vae_dirs() if tiny_vae_dirs is None else tiny_vae_dirs
        )
        self._current: LoadedModel | None = None
        self._current_key: str | None = None
        self._extra_files: tuple[str, ...] = ()
        self._roots: tuple[str, ...] = ()

    @property
    def device(self) -> torch.device:
        return self._policy.device

    @property
    def dtype(self) -> torch.dtype:
        return self._policy.dtype

    @property
    def device_description(self) -> str:
        return self._policy.description

    @property
    def policy(self) -> devices.DevicePolicy:
        return self._policy

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def get(
        self,
        source: str,
        progress: Progress,
        should_cancel: ShouldCancel,
        files: Sequence[str] = (),
        roots: Sequence[str] = (),
    ) -> LoadedModel:
        """Return the model for source, loading it (and releasing another) if needed.

        files: separate text-encoder / VAE files a transformer-only model file needs
        (engine/flow_single_file.py; others are found beside it); roots: the model
        folders to search for them too (DiffusionDesk's own when empty)."""
        key = self._key(source) + "\0" + "\0".join(files)
        self._extra_files, self._roots = tuple(files), tuple(roots)
        if self._current is not None and self._current_key == key:
            return self._current
        self.release()
        _check_cancel(should_cancel)
        try:
            model = self._load(source, progress, should_cancel)
        except (EngineError, JobCancelled):
            raise
        except Exception as exc:  # any library failure while loading is a model problem
            if is_out_of_memory(exc):
                raise EngineError(
                    ErrorKind.OUT_OF_MEMORY,
                    f"Not enough memory to load {source} on {self.device_description}; "
                    "close other programs or choose a smaller model"
                    + ("." if self.device.type == "cpu" else ", or the CPU."),
                ) from exc
            if model_code.needed_code(exc):  # diffusers or transformers read a .bin
                raise EngineError(
                    ErrorKind.MODEL,
                    f"{source} holds pickle weights that need code to be run to open them, and "
                    f"{model_code.NEVER_RUNS_CODE}; use a .safetensors version of the model.",
                ) from exc
            text = str(exc).strip()
            first = text.splitlines()[0][:300] if text else type(exc).__name__
            raise EngineError(
                ErrorKind.MODEL,
                f"Could not load the model {source}: {first}",
                detail=traceback.format_exc(),
            ) from exc
        self._current, self._current_key = model, key
        return model

    def release(self) -> None:
        """Drop the loaded model and give its memory back."""
        if self._current is None:
            return
        self._current = None
        self._current_key = None
        free_memory()

    # ------------------------------------------------------------------ sources

    def _key(self, source: str) -> str:
        if source == STARTER_MODEL:
            return str(starter_model_dir())
        path = Path(source).expanduser()
        if path.exists():
            return str(path.resolve())
        return source

    def _load(self, source: str, progress: Progress, should_cancel: ShouldCancel) -> LoadedModel:
        if source == STARTER_MODEL:
            folder = starter_model_dir()
            if not (folder / "model_index.json").is_file():
                raise _model_error(
                    f"The bundled starter model is missing from {folder}; reinstall "
                    "DiffusionDesk or open another model."
                )
            return self._load_folder(folder, source, progress, should_cancel)
        path = Path(source).expanduser()
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                raise _model_error(
                    f"{path} is not a diffusers model folder (it has no model_index.json); "
                    "open the folder that contains model_index.json, or a .safetensors file."
                )
            return self._load_folder(path, source, progress, should_cancel)
        if path.is_file():
            return self._load_single_file(path, source, progress, should_cancel)
        if (
            is_checkpoint(path)
            or path.is_absolute()
            or source.startswith(("./", "../", "~"))
            or path.parent != Path(".")
            and path.parent.is_dir()  # "models/x" beside "models/"
        ):
            raise _model_error(
                f"The model file or folder {source} does not exist; check the path or choose "
                "another model."
            )
        if _HUB_ID.match(source):
            folder = hub.download(
                source,
                progress,
                should_cancel,
                cache_dir=self._cache_dir,
                variant="fp16" if self.dtype == torch.float16 else None,
            )
            return self._load_folder(folder, source, progress, should_cancel)
        raise _model_error(
            f"The model {source} does not exist: it is neither a local folder or file nor a "
            'Hugging Face hub id like "stabilityai/sd-turbo".'
        )

    # ------------------------------------------------------------------ folders

    def _load_folder(
        self, folder: Path, source: str, progress: Progress, should_cancel: ShouldCancel
    ) -> LoadedModel:
        hub.check_supported(source, folder / "model_index.json")
        index = json.loads((folder / "model_index.json").read_text())
        facts = families.folder_facts(folder, index, name=source)
        profile, variant = families.detect(facts, source)
        model_code.check_folder(folder, index)
        pipe_cls = profile.pipeline_class(profile.modes(variant)[0], variant)
        wanted = [
            name
            for name, value in index.items()
            if not name.startswith("_")
            and isinstance(value, list)
            and len(value) == 2
            and value[0] is not None
            and name not in _SKIPPED_COMPONENTS
        ]
        # Tokenizers and schedulers are quick; load the big parts last so progress moves.
        wanted.sort(key=lambda n: ("tokenizer" not in n and "scheduler" not in n, n))
        memory = memory_policy.choose(
            memory_policy.folder_parts(folder, wanted, self.dtype), self.device, what=source
        )
        progress(f"memory: {memory.label}", 0.0)
        components: dict[str, object] = {}
        for i, name in enumerate(wanted):
            _check_cancel(should_cancel)
            progress(f"loading {name}", i / (len(wanted) + 1))
            library, cls_name = index[name]
            components[name] = self._load_component(folder, name, library, cls_name)
        _check_cancel(should_cancel)
        progress(f"moving to {self.device}", len(wanted) / (len(wanted) + 1))
        accepted = inspect.signature(pipe_cls.__init__).parameters
        skipped = {
            n: None
            for n in _SKIPPED_COMPONENTS
            if (n in index or n == "safety_checker") and n in accepted
        }
        pipe = pipe_cls.from_pretrained(
            folder,
            **components,
            **skipped,
            local_files_only=True,
            **({"requires_safety_checker": False} if "requires_safety_checker" in accepted else {}),
        )
        model = self._finish(
            pipe,
            source,
            read_latent_rgb(folder / "latent_rgb.json"),
            folder,
            profile.family,
            variant,
            memory,
        )
        progress("ready", 1.0)
        return model

    def _load_component(self, folder: Path, name: str, library: str, cls_name: str) -> object:
        if library not in ("diffusers", "transformers"):
            raise _model_error(
                f"{folder} needs the component {name} from {library!r}, which DiffusionDesk "
                "does not load; only diffusers and transformers components are supported."
            )
        cls = getattr(importlib.import_module(library), cls_name, None)
        if cls is None:
            raise _model_error(
                f"{folder}: the component {name} is a {library}.{cls_name}, which this "
                f"version of {library} does not know."
            )
        sub = folder / name
        is_module = isinstance(cls, type) and issubclass(cls, torch.nn.Module)
        if not is_module:
            return cls.from_pretrained(folder, subfolder=name, local_files_only=True)
        safetensors = sorted(p.name for p in sub.glob("*.safetensors"))
        if not safetensors:
            pickles = [p for p in sub.glob("*") if is_pickle(p)]
            if pickles and not self.allow_pickle:
                raise _model_error(
                    f"{folder}: the {name} weights are only in pickle format ({pickles[0].name}); "
                    f"they are refused because {PICKLE_REASON}. Use a .safetensors version, or "
                    f"{ALLOW_PICKLE_HINT} if you trust the source."
                )
            if not pickles:
                raise _model_error(f"{folder}: the {name} weights are missing from {sub}.")
        return cls.from_pretrained(
            folder,
            subfolder=name,
            torch_dtype=self.dtype,
            local_files_only=True,
            use_safetensors=bool(safetensors),
            variant=_only_variant(safetensors),
        )

    # ------------------------------------------------------------------ common

    def _finish(
        self,
        pipe: Pipeline,
        source: str,
        latent_rgb: tuple[list[list[float]], list[float]] | None,
        local_dir: Path | None,
        family: ModelFamily,
        variant: str = "",
        memory: memory_policy.MemoryPlan | None = None,
    ) -> LoadedModel:
        if memory is None:
            pipe = pipe.to(self.device)
        else:
            memory_policy.apply(pipe, memory, self.device)
        pipe.set_progress_bar_config(disable=True)
        tiny_vae = self._find_tiny_vae(family, local_dir, source)
        unet = getattr(pipe, "unet", None)
        devices.apply_layout(self._policy, unet, pipe.vae, tiny_vae)
        profile = families.profile(family)
        inpaint_only = profile.modes(variant) == (Mode.INPAINT,)
        if latent_rgb is None and not profile.latent_rgb[0]:  # no published factors
            scale = int(getattr(pipe, "vae_scale_factor", 8))
            latent_rgb = cached_fit(pipe.vae, scale, local_dir)
        return LoadedModel(
            source=source,
            family=family,
            pipe=pipe,
            latent_rgb=latent_rgb,
            tiny_vae=tiny_vae,
            is_inpaint_unet=inpaint_only
            or (unet is not None and int(unet.config.in_channels) == 9),
            device=self.device,
            dtype=self.dtype,
            variant=variant,
            notes=memory.notes if memory is not None else (),
        )

    def _find_tiny_vae(
        self, family: ModelFamily, local_dir: Path | None, source: str = ""
    ) -> AutoencoderTiny | None:
        """The family's tiny autoencoder where one is present (engine/tiny_autoencoders.py)."""
        profile = families.profile(family)
        bundled = self._tiny_vae_dirs.get(family)
        folder = tiny_autoencoders.find(
            profile.tiny_vae_folder,
            profile.latent_channels,
            model_dir=local_dir,
            source=source,
            roots=[Path(r).expanduser() for r in self._roots] or default_roots(),
            bundled=Path(bundled) if bundled is not None else None,
        )
        if folder is None:
            return None
        tiny = AutoencoderTiny.from_pretrained(
            folder, torch_dtype=self.dtype, local_files_only=True, use_safetensors=True
        )
        return tiny.to(self.device).eval()

    # ------------------------------------------------------------------ single files

    def _load_single_file(
        self, path: Path, source: str, progress: Progress, should_cancel: ShouldCancel
    ) -> LoadedModel:
        if flow_single_file.is_transformer_file(path):
            return self._load_transformer_file(path, source, progress, should_cancel)
        if not is_checkpoint(path):
            raise _model_error(
                f"{path.name} is not a model checkpoint DiffusionDesk can open; choose a "
                ".safetensors file or a diffusers model folder."
            )
        if is_pickle(path) and not self.allow_pickle:
            raise _model_error(
                f"{path.name} is a pickle checkpoint and was refused because {PICKLE_REASON}. "
                f"Use a .safetensors version of the model, or {ALLOW_PICKLE_HINT} if you "
                "trust where it came from."
            )
        progress(f"reading {path.name}", 0.0)
        memory = memory_policy.choose(
            memory_policy.checkpoint_parts(
                path,
                self.dtype,
                {"unet": (single_file.UNET_PREFIX,), "vae": single_file.VAE_PREFIXES},
                rest="text encoders",
            ),
            self.device,
            what=path.name,
        )
        progress(f"memory: {memory.label}", 0.01)  # from the header, before any weight
        checkpoint = single_file.read_checkpoint(path)
        _check_cancel(should_cancel)
        if sana_files.is_sana(list(checkpoint)):  # NVIDIA's .pth: the transformer alone
            return self._load_transformer_file(path, source, progress, should_cancel, checkpoint)
        spec = single_file.inspect_checkpoint(checkpoint, path)
        config_dir = (self._config_root or model_configs_dir()) / spec.family
        stages = single_file.component_loaders(spec, checkpoint, config_dir, self.dtype)
        components: dict[str, object] = {}
        for i, (name, load) in enumerate(stages):
            _check_cancel(should_cancel)
            progress(f"loading {name}", (i + 1) / (len(stages) + 2))
            components[name] = load()
        n_stages = len(stages)
        del checkpoint, stages, load  # the loaders hold the checkpoint too
        _check_cancel(should_cancel)
        progress(f"moving to {self.device}", (n_stages + 1) / (n_stages + 2))
        pipe = single_file.assemble(spec, components, config_dir)
        sidecar = path.with_name(path.stem + ".latent_rgb.json")
        model = self._finish(
            pipe, source, read_latent_rgb(sidecar), None, spec.family, memory=memory
        )
        progress("ready", 1.0)
        return model

    def _load_transformer_file(
        self,
        path: Path,
        source: str,
        progress: Progress,
        should_cancel: ShouldCancel,
        weights: dict | None = None,
    ) -> LoadedModel:
        """A transformer-only file (SD3, FLUX.1, Z-Image, SANA; GGUF or fp8 too) and its
        separate files; weights: a pickle's tensors, already read as weights only."""
        progress(f"reading {path.name}", 0.0)
        load = flow_single_file.prepare(
            path,
            self._config_root or model_configs_dir(),
            self.dtype,
            self.device,
            should_cancel,
            explicit=[Path(f).expanduser() for f in self._extra_files],
            roots=[Path(r).expanduser() for r in self._roots] or None,
            weights=weights,
        )
        del weights  # the transformer stage holds them until it has converted them
        progress(f"memory: {load.memory.label}", 0.02)
        components: dict[str, object] = {}
        for i, (name, stage) in enumerate(load.stages):
            _check_cancel(should_cancel)
            progress(f"loading {name}", (i + 1) / (len(load.stages) + 2))
            components[name] = stage()
        _check_cancel(should_cancel)
        progress(
            f"placing on {self.device}: {load.memory.placement}", 1 - 1 / (len(load.stages) + 2)
        )
        pipe = flow_single_file.assemble(load.configs, components)
        del components
        sidecar = path.with_name(path.stem + ".latent_rgb.json")
        model = self._finish(
            pipe,  # type: ignore[arg-type]
            source,
            read_latent_rgb(sidecar),
            None,
            load.family,
            load.variant,
            load.memory,
        )
        model.notes = load.notes
        progress("ready", 1.0)
        return model
