"""Transformer-only single files (SD 3 / 3.5, FLUX.1, Z-Image, FLUX.2 klein, SANA,
Qwen-Image) with separate text encoders and VAE.

What a person downloads for these families is one transformer file (.safetensors in
Stability's or Black Forest Labs' layout, fp8 or bf16, or a .gguf) plus the text encoders
(clip_l, clip_g, t5xxl) and the VAE (ae.safetensors) as separate files. This module
tells the family and variant from the transformer's keys, finds the other files
(engine/component_files.py), and builds each component with no network: the configs
diffusers would fetch ship in engine/model_configs/<variant>/, tokenizers come from
engine/tokenizer_files.py. The loading stages are returned one by one so the model
manager can report progress and cancel between them.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKL, DiffusionPipeline

from engine import component_files as cf
from engine import (
    diffusers_layout,
    families,
    flux2_files,
    gguf_text_encoders,
    memory_policy,
    quantized,
    qwen_files,
    sana_files,
    tokenizer_files,
)
from engine.api import EngineError, ErrorKind, ModelFamily, ShouldCancel
from engine.families.flux2 import is_klein_layout, klein_file
from engine.families.profile import FolderFacts
from engine.flow_layouts import flux_to_diffusers, is_flux_layout

SD3, FLUX1, ZIMAGE = ModelFamily.SD3, ModelFamily.FLUX1, ModelFamily.ZIMAGE
FLUX2, SANA = ModelFamily.FLUX2, ModelFamily.SANA
QWEN_IMAGE = ModelFamily.QWEN_IMAGE
# Z-Image's transformer, as diffusers' single_file_utils tells it (before Lumina 2).
_ZIMAGE_KEY = "layers.0.adaLN_modulation.0.weight"
_DIFFUSION = "model.diffusion_model."
_CLIP_L = cf.Slot("text_encoder", cf.CLIP, "clip_l", "the CLIP-L text encoder (clip_l.safetensors)")
_CLIP_G = cf.Slot(
    "text_encoder_2", cf.CLIP, "clip_g", "the CLIP-G text encoder (clip_g.safetensors)"
)
_VAE = cf.Slot("vae", cf.VAE, "ae", "its VAE (ae.safetensors, or the family's vae.safetensors)")


def _t5(component: str) -> cf.Slot:
    return cf.Slot(component, cf.T5, "t5", "the T5-XXL text encoder (t5xxl_fp16.safetensors)")


@dataclass(frozen=True)
class FamilyFiles:
    """What one family's transformer file needs beside it."""

    family: str
    label: str  # as messages name it
    transformer_class: str  # a diffusers class name
    slots: tuple[cf.Slot, ...]
    # The family's own readers, where the shared ones below do not fit its files:
    # checkpoint names -> diffusers' names; (class, config folder, file, dtype) -> encoder;
    # (config folder, file, dtype) -> VAE.
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    text_encoder_loader: (
        Callable[[str, Path, cf.WeightFile, torch.dtype], torch.nn.Module] | None
    ) = None
    vae_loader: Callable[[Path, cf.WeightFile, torch.dtype], torch.nn.Module] | None = None
    unread: tuple[str, ...] = ()  # key prefixes its text encoder loader leaves unread


FAMILY_FILES: dict[str, FamilyFiles] = {
    SD3: FamilyFiles(
        SD3,
        "Stable Diffusion 3",
        "SD3Transformer2DModel",
        (_CLIP_L, _CLIP_G, _t5("text_encoder_3"), _VAE),
    ),
    ZIMAGE: FamilyFiles(
        ZIMAGE,
        "Z-Image",
        "ZImageTransformer2DModel",
        (
            cf.Slot(
                "text_encoder", cf.QWEN3, "qwen", "the Qwen3 text encoder (qwen_3_4b.safetensors)"
            ),
            _VAE,
        ),
    ),
    FLUX1: FamilyFiles(
        FLUX1,
        "FLUX.1",
        "FluxTransformer2DModel",
        (_CLIP_L, _t5("text_encoder_2"), _VAE),
        convert=flux_to_diffusers,  # diffusers' converter only reads 3072-wide FLUX files
    ),
    QWEN_IMAGE: FamilyFiles(
        QWEN_IMAGE,
        "Qwen-Image",
        "QwenImageTransformer2DModel",
        (qwen_files.TEXT_ENCODER, qwen_files.VAE),
        convert=qwen_files.to_diffusers,
        text_encoder_loader=qwen_files.load_text_encoder,
        vae_loader=qwen_files.load_vae,
        unread=qwen_files.UNREAD,
    ),
    SANA: FamilyFiles(SANA, "SANA", "SanaTransformer2DModel", sana_files.SLOTS),
}


def _klein(size: str, encoder: str) -> FamilyFiles:
    qwen = cf.Slot("text_encoder", cf.QWEN3, "qwen", f"the {encoder} text encoder")
    vae = cf.Slot("vae", "vae", "flux2", "the FLUX.2 VAE (flux2-vae.safetensors)")
    return FamilyFiles(FLUX2, f"FLUX.2 klein {size}", "Flux2Transformer2DModel", (qwen, vae))


# klein's text encoder depends on its size: looked up by variant before family.
FAMILY_FILES |= {
    "flux2-klein-4b": _klein("4B", "Qwen3 4B (qwen_3_4b.safetensors)"),
    "flux2-klein-9b": _klein("9B", "Qwen3 8B (qwen_3_8b.safetensors)"),
}


def _error(message: str) -> EngineError:
    return EngineError(ErrorKind.MODEL, message)


def _is_zimage(keys: Sequence[str]) -> bool:
    return _ZIMAGE_KEY in keys or _DIFFUSION + _ZIMAGE_KEY in keys


def is_flow_transformer(keys: Sequence[str]) -> bool:
    return (
        _is_zimage(keys)
        or diffusers_layout.is_diffusers_layout(keys)
        or sana_files.is_sana(keys)
        or qwen_files.is_qwen_image(keys)
        or any(
            k.startswith(m) or k.startswith(_DIFFUSION + m)
            for k in keys[:2000]
            for m in ("double_blocks.", "joint_blocks.")
        )
    )


@dataclass(frozen=True)
class FlowSpec:
    """A transformer file, read from its header: family, config variant, quantization."""

    family: ModelFamily
    variant: str  # config folder under engine/model_configs: "flux1-schnell", "sd35-medium"…
    path: Path
    quantization: str  # "", "GGUF Q8_0", "fp8 (e4m3fn)"
    storage_dtype: torch.dtype | None = None  # fp8 files: kept in this dtype
    # model_index.json entries the file decides (klein's is_distilled)
    index_overrides: dict[str, object] = field(default_factory=dict)


def files_for(spec: FlowSpec) -> FamilyFiles:
    """What the transformer needs beside it: the variant's list, else the family's."""
    return FAMILY_FILES.get(spec.variant) or FAMILY_FILES[spec.family]


def _inspect_klein(path: Path, header: quantized.Header) -> FlowSpec:
    klein = klein_file(path, header.shapes)
    overrides: dict[str, object] = {"is_distilled": klein.distilled}
    return FlowSpec(
        FLUX2, klein.config_folder, path, header.quantization, header.storage_dtype, overrides
    )


def inspect_transformer(path: Path, header: quantized.Header) -> FlowSpec:
    """Family and variant from the names (and a few shapes) of a transformer file's tensors,
    in its original layout or diffusers'."""
    header = dataclasses.replace(header, shapes=diffusers_layout.telling_shapes(header.shapes))
    keys = list(header.shapes)
    quant = header.quantization
    if is_klein_layout(keys):
        return _inspect_klein(path, header)
    if is_flux_layout(keys):
        img_in = header.shapes.get("img_in.weight") or header.shapes.get(
            _DIFFUSION + "img_in.weight"
        )
        width_in = int(img_in[1]) if img_in and len(img_in) == 2 else 64
        if width_in == 128:
            raise _error(
                f"{path.name} is FLUX.1 Depth, a control model DiffusionDesk does not run; "
                "use FLUX.1 dev, schnell or Fill."
            )
        if width_in == 384:
            variant = "flux1-fill"
        elif any("guidance_in." in k for k in keys):
            variant = "flux1-dev"
        else:
            variant = "flux1-schnell"
        return FlowSpec(FLUX1, variant, path, quant, header.storage_dtype)
    if any("joint_blocks." in k for k in keys):
        layers = {
            int(k.split("joint_blocks.")[1].split(".")[0]) for k in keys if "joint_blocks." in k
        }
        if any(".x_block.attn2." in k for k in keys):
            variant = "sd35-medium"
        elif len(layers) >= 38:
            variant = "sd35-large"
        else:
            variant = "sd3-medium"
        return FlowSpec(SD3, variant, path, quant, header.storage_dtype)
    if _is_zimage(keys):
        return FlowSpec(ZIMAGE, "zimage", path, quant, header.storage_dtype)
    if sana_files.is_sana(keys):
        folder = sana_files.config_folder(sana_files.describe(header.shapes, path.name))
        return FlowSpec(SANA, folder, path, quant, header.storage_dtype)
    if qwen_files.is_qwen_image(keys):
        qwen_files.check_transformer(path, keys)
        return FlowSpec(QWEN_IMAGE, "qwen_image", path, quant, header.storage_dtype)
    raise _error(
        f"{path.name} is not an SD3, FLUX.1, FLUX.2 klein, Z-Image, SANA or Qwen-Image transformer."
    )


@dataclass(frozen=True)
class Configs:
    """The shipped configs of a family (engine/model_configs/<family>/) and of a variant
    (<variant>/, holding only the files in which it differs from the family's)."""

    family_dir: Path
    variant_dir: Path
    overrides: dict[str, object] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: FlowSpec, root: Path) -> Configs:
        return cls(root / spec.family, root / spec.variant, spec.index_overrides)

    def dir_for(self, component: str) -> Path:
        """The folder whose `component/` sub-folder holds that component's config."""
        return self.variant_dir if (self.variant_dir / component).is_dir() else self.family_dir

    def index(self) -> dict:
        folder = self.variant_dir if (self.variant_dir / "model_index.json").is_file() else None
        folder = folder or self.family_dir
        if not (folder / "model_index.json").is_file():
            raise _error(f"The bundled configuration is missing from {folder}.")
        return dict(DiffusionPipeline.load_config(folder)) | self.overrides


@dataclass(frozen=True)
class ChosenFiles:
    """The file (and key prefix in it) each slot loads from (None: an optional slot left
    empty)."""

    files: dict[str, cf.WeightFile | None]


def _width_in_config(configs: Configs, slot: cf.Slot) -> int:
    import json

    path = configs.dir_for(slot.component) / slot.component / "config.json"
    if not path.is_file():
        return 0
    config = json.loads(path.read_text())
    if cf.is_vae(slot.kind):
        return int(config.get("latent_channels") or config.get("z_dim") or 0)
    return int(config.get("hidden_size") or config.get("d_model") or 0)


def choose_files(
    spec: FlowSpec,
    configs: Configs,
    explicit: Sequence[Path] = (),
    roots: Sequence[Path] | None = None,
) -> ChosenFiles:
    """A file for every slot of the family: the ones given first, then those found next to
    the model; a MODEL error naming the first required file that is missing."""
    family = files_for(spec)
    given = [cf.inspect(Path(p)) for p in explicit]
    for f in given:
        if not f.path.is_file():
            raise EngineError(ErrorKind.BAD_INPUT, f"The file {f.path} does not exist.")
        if not f.kind:  # named by hand, so never passed over in silence
            raise EngineError(
                ErrorKind.BAD_INPUT,
                f"{f.path.name} is not a text encoder or VAE that DiffusionDesk can read; "
                "give the .safetensors file of one (or a T5, Qwen3 or Gemma 2 GGUF encoder).",
            )
    own = [] if quantized.is_gguf(spec.path) else cf.embedded(spec.path)
    pools: dict[str, list[cf.WeightFile]] = {}
    chosen: dict[str, cf.WeightFile | None] = {}
    used: set[tuple[Path, str]] = set()
    for slot in family.slots:
        kind = cf.AssetKind.VAE if cf.is_vae(slot.kind) else cf.AssetKind.TEXT_ENCODER
        if kind not in pools:
            pools[kind] = cf.candidates(kind, spec.path, roots)
        width = _width_in_config(configs, slot)
        free = [f for f in given + own + pools[kind] if (f.path, f.prefix) not in used]
        pick = cf.choose(slot, width, free)
        if pick is None and slot.required:
            wrong = [f for f in free if f.kind == slot.kind]
            raise _error(
                cf.missing_message(
                    family.label,
                    slot,
                    spec.path,
                    cf.searched_folders(slot, spec.path, roots),
                    wrong,
                )
            )
        if pick is not None and quantized.is_gguf(pick.path):
            refused = gguf_text_encoders.refusal(pick.path, pick.kind, slot.label)
            if refused:
                raise _error(refused)
        chosen[slot.component] = pick
        if pick:
            used.add((pick.path, pick.prefix))
    return ChosenFiles(chosen)


# ---------------------------------------------------------------------------- components


def _align(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """The file's keys as the installed transformers names them: CLIP files hold
    `text_model.` keys, which some transformers versions' CLIPTextModel drops."""
    inner = "text_model."
    options = [
        state,
        {k.removeprefix(inner): v for k, v in state.items()},
        {
            (k if k.startswith(inner) or k.startswith("text_projection") else inner + k): v
            for k, v in state.items()
        },
        # Qwen / Gemma files as ComfyUI keeps them (a ...ForCausalLM's `model.` keys) for
        # the bare models the pipelines take.
        {k.removeprefix("model."): v for k, v in state.items() if not k.startswith("lm_head.")},
    ]
    return max(options, key=lambda o: len(expected.intersection(o)))


def _load_text_encoder(
    cls_name: str, configs: Configs, component: str, part: cf.WeightFile, dtype: torch.dtype
) -> torch.nn.Module:
    import transformers
    from accelerate import init_empty_weights

    cls = getattr(transformers, cls_name)
    config_dir = configs.dir_for(component)
    config = cls.config_class.from_pretrained(config_dir / component, local_files_only=True)
    if quantized.is_gguf(part.path):
        try:
            state = gguf_text_encoders.read(part.path, part.kind, config, dtype)
        except ValueError as exc:
            raise _error(f"{part.path.name} could not be read as a text encoder ({exc}).") from exc
    else:
        state = quantized.read_weights(part.path, part.prefix)
    with init_empty_weights():  # the weights come from the file: no random init of 5B params
        model = cls(config)
    try:
        model.load_state_dict(_align(state, set(model.state_dict())), strict=False, assign=True)
    except RuntimeError as exc:  # same names, other sizes: another model's encoder
        what = f"this model's {component.replace('_', ' ')}"
        reason = str(exc).splitlines()[-1].strip()
        raise _error(f"{cf.label_of(part)} does not fit {what}: {reason}") from exc
    model.tie_weights()
    head = getattr(model, "lm_head", None)
    if head is not None and head.weight.is_meta:
        # Encoder files leave out a language model's output head; the pipelines read
        # hidden states only, so it shares the embeddings rather than stay unloaded.
        head.weight = model.get_input_embeddings().weight
    empty = [n for n, p in model.named_parameters() if p.is_meta]
    if empty:
        raise _error(cf.misfit_message(part, f"this model's {component.replace('_', ' ')}", empty))
    return model.to(dtype).eval()


def _load_tokenizer(
    cls_name: str,
    configs: Configs,
    component: str,
    kind: str,
    should_cancel: ShouldCancel,
    data_root: Path | None,
) -> object:
    import transformers

    from engine.single_file import _tokenizer

    cls = getattr(transformers, cls_name)
    config_dir = configs.dir_for(component)
    folder = config_dir / component
    if tokenizer_files.is_usable(folder):
        return cls.from_pretrained(folder, local_files_only=True)
    if kind == cf.CLIP:
        return _tokenizer(config_dir, component)
    return cls.from_pretrained(
        tokenizer_files.ensure(kind, should_cancel, data_root), local_files_only=True
    )


def _load_transformer(
    spec: FlowSpec, configs: Configs, dtype: torch.dtype, weights: dict | None = None
) -> torch.nn.Module:
    files = files_for(spec)
    if spec.family == FLUX2:
        return flux2_files.load_transformer(
            spec.path,
            configs.dir_for("transformer"),
            dtype,
            spec.storage_dtype,
            files.label,
            weights,
        )
    cls = getattr(diffusers, files.transformer_class)
    # An all-in-one file's text encoders and VAE load as their own parts.
    checkpoint = (
        weights
        if weights is not None
        else quantized.read_weights(spec.path, skip=cf.EMBEDDED_PREFIXES)
    )
    if files.convert is not None:
        checkpoint = files.convert(checkpoint)
    if spec.family == SANA:  # around diffusers' converter: Sprint and q/k norms
        try:
            checkpoint = sana_files.to_diffusers(checkpoint)
        except (KeyError, ValueError, IndexError, RuntimeError) as exc:
            raise _error(f"{spec.path.name} is not a complete SANA transformer ({exc}).") from exc
    config = str(configs.dir_for("transformer"))
    return quantized.load_transformer(
        cls, checkpoint, spec.path, dtype, spec.storage_dtype, files.label, config
    )


def component_loaders(
    spec: FlowSpec,
    chosen: ChosenFiles,
    configs: Configs,
    dtype: torch.dtype,
    should_cancel: ShouldCancel,
    data_root: Path | None = None,
    weights: dict | None = None,
) -> list[tuple[str, Callable[[], object]]]:
    """The loading stages in order, each (component name, loader)."""
    index = configs.index()
    family = files_for(spec)
    stages: list[tuple[str, Callable[[], object]]] = []

    def scheduler() -> object:
        cls = getattr(diffusers, index["scheduler"][1])
        folder = configs.dir_for("scheduler")
        return cls.from_pretrained(folder, subfolder="scheduler", local_files_only=True)

    def tokenizer(name: str, kind: str) -> object:
        return _load_tokenizer(index[name][1], configs, name, kind, should_cancel, data_root)

    def text_encoder(name: str, part: cf.WeightFile) -> object:
        if family.text_encoder_loader is not None:
            folder = configs.dir_for(name) / name
            return family.text_encoder_loader(index[name][1], folder, part, dtype)
        return _load_text_encoder(index[name][1], configs, name, part, dtype)

    def vae(part: cf.WeightFile) -> object:
        if family.vae_loader is not None:
            return family.vae_loader(configs.dir_for("vae") / "vae", part, dtype)
        if index["vae"][1] == "AutoencoderKLFlux2":  # diffusers has no single-file map for it
            return flux2_files.load_vae(
                part.path, part.prefix, configs.dir_for("vae"), dtype, cf.label_of(part)
            )
        try:
            return getattr(diffusers, index["vae"][1], AutoencoderKL).from_single_file(
                quantized.read_weights(part.path, part.prefix),
                config=str(configs.dir_for("vae")),
                subfolder="vae",
                local_files_only=True,
                torch_dtype=dtype,
            )
        except (RuntimeError, ValueError, KeyError) as exc:
            raise _error(
                f"{cf.label_of(part)} could not be read as this model's VAE ({exc})."
            ) from exc

    stages.append(("scheduler", scheduler))
    for slot in family.slots:
        part = chosen.files.get(slot.component)
        if cf.is_vae(slot.kind) or part is None:
            continue
        tok_name = "tokenizer" + slot.component.removeprefix("text_encoder")
        stages.append((tok_name, functools.partial(tokenizer, tok_name, slot.kind)))
        stages.append((slot.component, functools.partial(text_encoder, slot.component, part)))
    stages.append(("transformer", lambda: _load_transformer(spec, configs, dtype, weights)))
    vae_part = chosen.files["vae"]
    if vae_part is not None:
        stages.append(("vae", functools.partial(vae, vae_part)))
    return stages


def assemble(configs: Configs, components: dict[str, object]) -> object:
    """The family's text-to-image (or Fill) pipeline from the loaded components."""
    index = configs.index()
    cls = getattr(diffusers, index["_class_name"])
    names = [n for n, v in index.items() if not n.startswith("_") and isinstance(v, list)]
    # Settings a pipeline keeps in model_index.json (klein's is_distilled), as from_pretrained.
    accepted = inspect.signature(cls.__init__).parameters
    settings = {n: v for n, v in index.items() if n in accepted and not isinstance(v, list)}
    return cls(**{n: components.get(n) for n in names}, **settings)


# ---------------------------------------------------------------------------- one load


@dataclass
class FlowLoad:
    """Everything decided before the first weight is read: what the file is, the files
    beside it, where the weights will live, and the stages that load them."""

    spec: FlowSpec
    configs: Configs
    chosen: ChosenFiles
    memory: memory_policy.MemoryPlan
    stages: list[tuple[str, Callable[[], object]]]
    family: ModelFamily
    variant: str  # the family profile's variant name ("schnell", "3.5-medium" …)
    encoder_notes: tuple[str, ...] = ()  # GGUF text encoders, dequantized as they load

    @property
    def notes(self) -> tuple[str, ...]:
        """For the status bar: the quantization, GGUF text encoders and an offloading
        placement, if any."""
        quantization = tuple(n for n in (self.spec.quantization,) if n)
        return quantization + self.encoder_notes + self.memory.notes


def is_transformer_file(path: Path) -> bool:
    """A GGUF file, or a .safetensors file whose names are an SD3 / FLUX.1 transformer's."""
    if quantized.is_gguf(path):
        return True
    try:
        header = quantized.read_header(path)
    except (OSError, ValueError):
        return False
    return is_flow_transformer(list(header.shapes))


def prepare(
    path: Path,
    config_root: Path,
    dtype: torch.dtype,
    device: torch.device,
    should_cancel: ShouldCancel,
    explicit: Sequence[Path] = (),
    roots: Sequence[Path] | None = None,
    weights: dict[str, torch.Tensor] | None = None,
) -> FlowLoad:
    """Read the transformer's header, find its companions, choose the memory placement.
    weights: the file's tensors when they are already read (a pickle, read as weights only)."""
    try:
        header = quantized.read_header(path) if weights is None else quantized.header_of(weights)
    except (OSError, ValueError) as exc:
        raise _error(f"{path.name} cannot be read ({exc}); download it again.") from exc
    spec = inspect_transformer(path, header)
    configs = Configs.of(spec, config_root)
    index = configs.index()
    transformer_config = json.loads(
        (configs.dir_for("transformer") / "transformer" / "config.json").read_text()
    )
    if spec.family == SANA:
        problem = sana_files.mismatch(
            sana_files.describe(header.shapes, path.name), transformer_config, path.name
        )
        if problem:
            raise _error(problem)
    facts = FolderFacts(index, {"transformer": transformer_config}, name=path.name)
    profile, variant = families.detect(facts, path.name)
    chosen = choose_files(spec, configs, explicit, roots)
    transformer_bytes = (
        memory_policy.file_bytes_at(
            path, None if quantized.is_gguf(path) else dtype, skip=cf.EMBEDDED_PREFIXES
        )
        if weights is None
        else memory_policy.tensors_bytes_at(weights.values(), dtype)
    )
    parts = {"transformer": transformer_bytes}
    unread = files_for(spec).unread
    dequantized: list[str] = []
    for component, part in chosen.files.items():
        if part is not None and quantized.is_gguf(part.path):
            size = torch.empty((), dtype=dtype).element_size()
            parts[component] = gguf_text_encoders.weights_bytes(part.path, size)
            quantization = quantized.read_header(part.path).quantization
            precision = str(dtype).removeprefix("torch.")
            dequantized.append(f"{part.path.name}: {quantization}, dequantized to {precision}")
        elif part is not None:
            # Encoders and VAEs run at `dtype`, whatever their file stores.
            skip = tuple(part.prefix + s for s in unread) if component != "vae" else ()
            parts[component] = memory_policy.file_bytes_at(
                part.path, dtype, part.prefix, skip, fp8_stays=False
            )
    label = profile.variant(variant).label
    plan = memory_policy.choose(parts, device, what=f"{label} ({path.name})")
    stages = component_loaders(spec, chosen, configs, dtype, should_cancel, weights=weights)
    return FlowLoad(
        spec, configs, chosen, plan, stages, profile.family, variant, tuple(dequantized)
    )
