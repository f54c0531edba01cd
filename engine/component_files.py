"""The separate files a transformer-only model needs, told apart and found on disk.

Model sites and ComfyUI share FLUX, SD3 and newer models as one file per part: the
transformer (`models/diffusion_models/`), each text encoder (`models/text_encoders/` or
`models/clip/`: clip_l, clip_g, t5xxl, Qwen2.5-VL, Qwen3, Gemma) and the VAE
(`models/vae/`). This module reads only safetensors headers (names, shapes) and GGUF
indexes (engine/gguf_text_encoders.py), never a tensor, and no torch: what kind of text
encoder a file is and how wide; which files of a kind sit in the folders next to a model,
in ComfyUI's tree above it, or in DiffusionDesk's own models folder; and the sentence
naming a file that is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.asset_folders import SUBFOLDERS, AssetKind, asset_folders, default_roots
from engine.library import read_safetensors_header

# Text-encoder kinds, by the tensor every such file holds (after any prefix).
CLIP, T5, QWEN25_VL, QWEN3, GEMMA2 = "clip", "t5", "qwen2.5-vl", "qwen3", "gemma2"
# VAE kinds: the SD / FLUX.1 2-D layout, and Wan 2.1's video VAE (Qwen-Image's), whose
# convolutions are 3-D; both have 16 latent channels, so the layout tells them apart.
VAE, WAN_VAE = "vae", "vae-wan"
_WAN_VAE_OUT = ("encoder.head.2.weight", "encoder.conv_out.weight")  # original, diffusers
_CLIP_EMBEDDING = "embeddings.token_embedding.weight"  # under "text_model." in most files
_T5_EMBEDDINGS = ("shared.weight", "encoder.embed_tokens.weight")
_T5_BLOCK = "encoder.block.0.layer.0.SelfAttention.q.weight"
_LLM_EMBEDDING = "model.embed_tokens.weight"
_VAE_CONV_OUT = ("encoder.conv_out.weight",)
_VAE_PREFIXES = ("", "first_stage_model.", "vae.")
# DC-AE (SANA's autoencoder) in MIT Han Lab's layout and in diffusers': told by its stages;
# its width is what the decoder's first convolution takes in.
_DC_AE_MARKS = ("decoder.stages.", "decoder.up_blocks.0.0.")
_DC_AE_DECODER_IN = ("decoder.project_in.main.conv.weight", "decoder.conv_in.weight")
SUFFIXES = (".safetensors", ".sft")
GGUF_SUFFIX = ".gguf"  # text encoders only (engine/gguf_text_encoders.py)
# In every missing-file message: the window offers a file dialog when it sees it.
MISSING_FILE_MARK = "and none was found (looked in"


@dataclass(frozen=True)
class WeightFile:
    """What one file's header says it holds."""

    path: Path
    kind: str  # a text-encoder kind above, a VAE kind, or "" when neither
    width: int  # hidden size of a text encoder, latent channels of a VAE; 0 if unknown
    prefix: str  # the key prefix the weights sit under ("" for ComfyUI's files)


def _kind_of(keys: Sequence[str], shapes: dict[str, list[int]]) -> tuple[str, int, str]:
    def width(key: str, axis: int = -1) -> int:
        shape = shapes.get(key) or [0]
        return int(shape[axis])

    for key in keys:
        if key.endswith(_CLIP_EMBEDDING):
            return CLIP, width(key), key[: -len(_CLIP_EMBEDDING)].removesuffix("text_model.")
    for key in keys:
        if key.endswith(_T5_BLOCK):
            prefix = key[: -len(_T5_BLOCK)]
            return T5, width(key), prefix
    for key in keys:
        if key.endswith(_LLM_EMBEDDING):
            prefix = key[: -len(_LLM_EMBEDDING)]
            if any(k.startswith(prefix + "visual.") for k in keys):
                return QWEN25_VL, width(key), prefix
            if any(".pre_feedforward_layernorm." in k for k in keys[:400]):
                return GEMMA2, width(key), prefix
            if any(".self_attn.q_norm." in k for k in keys[:400]):
                return QWEN3, width(key), prefix
            if any(k.endswith(".self_attn.q_proj.bias") for k in keys):
                # Qwen2.5-VL's language model saved without its vision tower.
                return QWEN25_VL, width(key), prefix
            return "", width(key), prefix
    for prefix in _VAE_PREFIXES:
        for name in _WAN_VAE_OUT:
            shape = shapes.get(prefix + name) or []
            decoder = any(k.startswith(prefix + "decoder.") for k in keys)
            if len(shape) == 5 and decoder:  # 3-D convolutions; out: mean and log-variance
                return WAN_VAE, int(shape[0]) // 2, prefix
    for prefix in _VAE_PREFIXES:
        decoder_in = [prefix + k for k in _DC_AE_DECODER_IN if prefix + k in shapes]
        marks = tuple(prefix + m for m in _DC_AE_MARKS)
        if decoder_in and any(k.startswith(marks) for k in keys):
            return VAE, width(decoder_in[0], 1), prefix
    for prefix in _VAE_PREFIXES:
        conv_out = prefix + _VAE_CONV_OUT[0]
        if conv_out in shapes and any(k.startswith(prefix + "decoder.") for k in keys):
            # The encoder puts out a mean and a log-variance per latent channel.
            return VAE, width(conv_out, 0) // 2, prefix
    return "", 0, ""


def _header(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    try:
        header = read_safetensors_header(path)
    except (OSError, ValueError):
        return [], {}
    keys = [k for k in header if k != "__metadata__"]
    shapes = {
        k: v["shape"]
        for k, v in header.items()
        if isinstance(v, dict) and isinstance(v.get("shape"), list)
    }
    return keys, shapes


def inspect(path: Path) -> WeightFile:
    """What `path` holds, from its header; kind "" when it is unreadable or something else."""
    if path.suffix.lower() == GGUF_SUFFIX:
        from engine import gguf_text_encoders  # here: it imports this module's kinds

        kind, width = gguf_text_encoders.describe(path)
        return WeightFile(path, kind, width, "")
    keys, shapes = _header(path)
    kind, width, prefix = _kind_of(keys, shapes)
    return WeightFile(path, kind, width, prefix)


# Where all-in-one checkpoints (SD3 "incl_clips_t5xxl", ComfyUI's FLUX checkpoints) keep
# the parts beside the diffusion model.
EMBEDDED_PREFIXES = (
    "text_encoders.clip_l.transformer.",
    "text_encoders.clip_g.transformer.",
    "text_encoders.t5xxl.transformer.",
    "first_stage_model.",
    "vae.",
)


def embedded(path: Path) -> list[WeightFile]:
    """The text encoders and VAE an all-in-one model file carries (none for most)."""
    keys, shapes = _header(path)
    found: list[WeightFile] = []
    for outer in EMBEDDED_PREFIXES:
        inner_keys = [k[len(outer) :] for k in keys if k.startswith(outer)]
        if not inner_keys:
            continue
        inner_shapes = {k: shapes[outer + k] for k in inner_keys if outer + k in shapes}
        kind, width, prefix = _kind_of(inner_keys, inner_shapes)
        if kind:
            found.append(WeightFile(path, kind, width, outer + prefix))
    return found


def label_of(f: WeightFile) -> str:
    """How a message names a file or a part of one."""
    return f.path.name + (f" ({f.prefix.rstrip('.')})" if f.prefix else "")


def misfit_message(part: WeightFile, what: str, empty: Sequence[str]) -> str:
    """The sentence for an encoder file that leaves `empty` weights of `what` unloaded."""
    return (
        f"{label_of(part)} does not fit {what}: it lacks {len(empty)} weights (first "
        f"{empty[0]}); it may be another model's encoder or a damaged file."
    )


def _kind_folders(kind: AssetKind, model: Path, roots: Iterable[Path]) -> list[Path]:
    """Folders that may hold `kind` files for the model file `model`: its own folder, the
    kind's folders in any `models/` tree above it (ComfyUI, A1111), then the roots'."""
    found: list[Path] = [model.parent]
    for ancestor in list(model.parents)[1:4]:
        for name in SUBFOLDERS[kind]:
            folder = ancestor / name
            if folder.is_dir() and folder not in found:
                found.append(folder)
    for folder in asset_folders(kind, roots):
        if folder not in found:
            found.append(folder)
    return found


def candidates(
    kind: AssetKind, model: Path, roots: Iterable[Path] | None = None
) -> list[WeightFile]:
    """Every weight file (other than the model itself) in the folders `kind` files live."""
    roots = list(roots) if roots is not None else default_roots()
    seen: set[Path] = {model.resolve()}
    out: list[WeightFile] = []
    suffixes = SUFFIXES + ((GGUF_SUFFIX,) if kind == AssetKind.TEXT_ENCODER else ())
    for folder in _kind_folders(kind, model, roots):
        files = sorted(p for s in suffixes for p in folder.glob(f"*{s}") if p.is_file())
        if folder != model.parent:  # ComfyUI users sort encoders into sub-folders
            files += sorted(p for s in suffixes for p in folder.glob(f"*/*{s}") if p.is_file())
        for path in files:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            out.append(inspect(path))
    return out


def is_vae(kind: str) -> bool:
    return kind in (VAE, WAN_VAE)


@dataclass(frozen=True)
class Slot:
    """One separate file a family needs: which pipeline component it fills and how a
    person recognises it."""

    component: str  # the pipeline's name for it: "text_encoder_2", "vae"
    kind: str  # a text-encoder kind, or a VAE kind (VAE, WAN_VAE)
    hint: str  # what file names of it contain ("clip_l", "t5xxl", "ae")
    label: str  # how a message names it: "the T5-XXL text encoder (t5xxl_fp16.safetensors)"
    required: bool = True


def choose(slot: Slot, width: int, files: Sequence[WeightFile]) -> WeightFile | None:
    """The file that fills `slot` (a model whose config says this `width`): the right kind
    and width, preferring one whose name carries the slot's hint, then a .safetensors file
    to a GGUF one (read as it is rather than dequantized)."""
    fitting = [f for f in files if f.kind == slot.kind and (width == 0 or f.width == width)]
    if not fitting:
        return None
    named = [f for f in fitting if slot.hint.lower() in (f.prefix + f.path.name).lower()]
    return sorted(named or fitting, key=lambda f: f.path.suffix.lower() == GGUF_SUFFIX)[0]


def missing_message(
    family_label: str, slot: Slot, model: Path, folders: Sequence[Path], wrong: Sequence[WeightFile]
) -> str:
    """One sentence (or two) naming the missing file, where it was looked for and how to
    give it."""
    shown = ", ".join(str(f) for f in folders[:4]) + (" …" if len(folders) > 4 else "")
    text = (
        f"{family_label} needs {slot.label} beside {model.name}, {MISSING_FILE_MARK} "
        f"{shown}). Put the file in a text_encoders or vae folder (ComfyUI's models/ "
        "layout or DiffusionDesk's models folder), or choose it with --text-encoder / --vae "
        "on the command line or Choose file… in the window."
    )
    if is_vae(slot.kind):
        text = text.replace("--text-encoder / --vae", "--vae")
    if wrong:
        names = ", ".join(f"{label_of(f)} ({f.kind}, width {f.width})" for f in wrong[:3])
        text += f" Files of that kind that do not fit this model: {names}."
    return text


def searched_folders(slot: Slot, model: Path, roots: Iterable[Path] | None = None) -> list[Path]:
    kind = AssetKind.VAE if is_vae(slot.kind) else AssetKind.TEXT_ENCODER
    return _kind_folders(kind, model, list(roots) if roots is not None else default_roots())
