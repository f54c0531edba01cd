"""Generation parameters in PNG files: written with each image, read back into a request.

Two text chunks: "parameters" in the AUTOMATIC1111 format that other tools read and
write, and "diffusiondesk", a complete JSON record of the request. Reading prefers our
JSON and falls back to parsing A1111 text (from us or from other tools).

This module must not import torch: the window uses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.api import STARTER_MODEL, GenerationRequest, Mode, ResumeFrom, SchedulerName
from engine.atomic_file import atomic_write
from engine.model_files import is_checkpoint

A1111_KEY = "parameters"
JSON_KEY = "diffusiondesk"
RECORD_VERSION = 1
APP_NAME = "DiffusionDesk"

# Request fields that hold images: not stored, only noted in the record.
_IMAGE_FIELDS = ("init_image", "mask")
# Request fields that describe this machine, not the picture: never stored.
_LOCAL_FIELDS = ("model_folders",)

# Sampler names other tools write (A1111, Forge, ComfyUI savers), lower-cased, mapped
# to ours. Samplers we do not have map to the closest one of the same kind (ancestral
# samplers to "Euler a", deterministic ones to "Euler").
_SAMPLERS: dict[str, SchedulerName] = {
    "euler": SchedulerName.EULER,
    "euler a": SchedulerName.EULER_A,
    "euler ancestral": SchedulerName.EULER_A,
    "dpm++ 2m": SchedulerName.DPMPP_2M,
    "dpm++ 2m karras": SchedulerName.DPMPP_2M_KARRAS,
    "dpm++ sde": SchedulerName.DPMPP_SDE,
    "dpm++ sde karras": SchedulerName.DPMPP_SDE,
    "dpm++ 2m sde": SchedulerName.DPMPP_SDE,
    "dpm++ 2m sde karras": SchedulerName.DPMPP_SDE,
    "dpm++ 2m sde exponential": SchedulerName.DPMPP_SDE,
    "dpm++ 2m sde heun": SchedulerName.DPMPP_SDE,
    "dpm++ 3m sde": SchedulerName.DPMPP_SDE,
    "dpm++ 3m sde karras": SchedulerName.DPMPP_SDE,
    "ddim": SchedulerName.DDIM,
    "ddpm": SchedulerName.DDPM,
    "unipc": SchedulerName.UNIPC,
    "lcm": SchedulerName.LCM,
    "lms": SchedulerName.EULER,
    "lms karras": SchedulerName.EULER,
    "heun": SchedulerName.EULER,
    "dpm2": SchedulerName.EULER,
    "dpm2 karras": SchedulerName.EULER,
    "plms": SchedulerName.EULER,
    "dpm2 a": SchedulerName.EULER_A,
    "dpm2 a karras": SchedulerName.EULER_A,
    "dpm++ 2s a": SchedulerName.EULER_A,
    "dpm++ 2s a karras": SchedulerName.EULER_A,
    "dpm fast": SchedulerName.EULER,
    "dpm adaptive": SchedulerName.EULER,
    "restart": SchedulerName.EULER,
}

# "Key: value" pairs of the A1111 parameters line; values with commas are JSON-quoted.
_PARAM = re.compile(r'\s*(\w[\w \-/+.()]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
_NEGATIVE = "Negative prompt:"


# ----------------------------------------------------------------------------- writing


def _quote(value: str) -> str:
    if "," not in value and "\n" not in value and ":" not in value and '"' not in value:
        return value
    return json.dumps(value, ensure_ascii=False)


def model_name(model: str) -> str:
    """The short model name for the A1111 "Model" field: a file or folder's stem."""
    if model == STARTER_MODEL:
        return model
    path = Path(model)
    if is_checkpoint(path) or path.is_absolute() or path.exists():
        return path.stem or model
    return model  # a hub id stays whole


def format_a1111(request: GenerationRequest, seed: int) -> str:
    """The "parameters" text: prompt, "Negative prompt: ..." line, then "Key: value, ..."."""
    params: list[tuple[str, str]] = [
        ("Steps", str(request.steps)),
        ("Sampler", str(request.scheduler)),
        ("CFG scale", str(float(request.guidance_scale))),
        ("Seed", str(seed)),
        ("Size", f"{request.width}x{request.height}"),
        ("Model", model_name(request.model)),
    ]
    if request.batch_size != 1:
        params.append(("Batch size", str(request.batch_size)))
    if request.mode is not Mode.TXT2IMG:
        params.append(("Denoising strength", str(float(request.strength))))
    if request.mode is Mode.INPAINT:
        params.append(("Mask blur", str(request.mask_blur)))
        if request.inpaint_only_masked:
            params.append(("Inpaint area", "Only masked"))
            params.append(("Masked area padding", str(request.inpaint_padding)))
    if request.guidance_cutoff is not None and request.guidance_cutoff < 1:
        # Not an A1111 field: other tools show it and ignore it; we read it back.
        params.append(("Guidance cutoff", str(float(request.guidance_cutoff))))
    params += addon_params(request)
    params.append(("Version", APP_NAME))
    lines = [request.prompt]
    if request.negative_prompt:
        lines.append(f"{_NEGATIVE} {request.negative_prompt}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in params))
    return "\n".join(lines)


def to_record(request: GenerationRequest, seed: int) -> dict[str, Any]:
    """Every field of the request (images only as flags), with this image's seed."""
    record: dict[str, Any] = {"app": APP_NAME, "version": RECORD_VERSION}
    for f in dataclasses.fields(GenerationRequest):
        value = getattr(request, f.name)
        if f.name in _LOCAL_FIELDS:
            continue
        if f.name in _IMAGE_FIELDS:
            record[f"has_{f.name}"] = value is not None
        elif isinstance(value, ResumeFrom):
            record[f.name] = dataclasses.asdict(value)
        else:
            record[f.name] = value
    record["seed"] = seed
    record["mode"] = request.mode
    return record


def png_info(request: GenerationRequest, seed: int) -> PngInfo:
    info = PngInfo()
    info.add_text(A1111_KEY, format_a1111(request, seed))  # iTXt if not Latin-1
    info.add_text(JSON_KEY, json.dumps(to_record(request, seed), ensure_ascii=True))
    return info


def save_png(
    image: Image.Image, path: str | os.PathLike[str], request: GenerationRequest, seed: int
) -> Path:
    """Write image as a PNG with its parameters, atomically: the file at path is either
    the old one or the complete new one, never half written."""
    info = png_info(request, seed)
    return atomic_write(Path(path), lambda f: image.save(f, format="PNG", pnginfo=info))


# ----------------------------------------------------------------------------- reading


def read_texts(source: str | os.PathLike[str] | Image.Image) -> dict[str, str]:
    """The text chunks of a PNG (or an already opened image); {} if it has none. For
    JPEG and WebP, an EXIF UserComment stands for the "parameters" chunk."""
    if isinstance(source, Image.Image):
        return _texts_of(source)
    with Image.open(source) as image:
        return _texts_of(image)


def _texts_of(image: Image.Image) -> dict[str, str]:
    texts: dict[str, str] = {}
    for key, value in {**image.info, **getattr(image, "text", {})}.items():
        if isinstance(value, str):
            texts[key] = value
        elif isinstance(value, bytes) and key == A1111_KEY:
            texts[key] = value.decode("utf-8", errors="replace")
    if A1111_KEY not in texts:
        comment = _exif_user_comment(image)
        if comment:
            texts[A1111_KEY] = comment
    return texts


_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286


def _exif_user_comment(image: Image.Image) -> str | None:
    """A1111 writes the parameters of JPEG and WebP images into EXIF UserComment:
    an 8-byte charset prefix, then the text (UTF-16 for "UNICODE")."""
    try:
        raw = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # malformed EXIF is not our problem to report
        return None
    if isinstance(raw, str):
        return raw.strip("\x00").strip() or None
    if not isinstance(raw, bytes) or len(raw) <= 8:
        return None
    prefix, body = raw[:8], raw[8:]
    if prefix.startswith(b"UNICODE"):
        # The standard says big-endian, but some writers use little-endian: keep the
        # reading that looks most like text.
        readings = [body.decode(enc, errors="replace") for enc in ("utf_16_be", "utf_16_le")]
        text = max(readings, key=lambda t: sum(c.isascii() and c.isprintable() for c in t))
    else:
        text = body.decode("utf-8", errors="replace")
    return text.strip("\x00").strip() or None


def read_parameters(source: str | os.PathLike[str] | Image.Image) -> GenerationRequest | None:
    """The request an image was made with: from our JSON when present, else from the
    A1111 "parameters" text; None when the image carries neither."""
    texts = read_texts(source)
    if JSON_KEY in texts:
        request = from_record(texts[JSON_KEY])
        if request is not None:
            return request
    if A1111_KEY in texts:
        return parse_a1111(texts[A1111_KEY])
    return None


def from_record(text: str) -> GenerationRequest | None:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
        return None
    known = {f.name: f for f in dataclasses.fields(GenerationRequest)}
    values: dict[str, Any] = {}
    defaults = GenerationRequest(prompt="")
    for name, value in record.items():
        if name not in known or name in _IMAGE_FIELDS or name in _LOCAL_FIELDS:
            continue
        if name == "resume":
            values[name] = _resume(value)
            continue
        if name == "guidance_cutoff":  # optional number: None when off or unreadable
            values[name] = _optional_float(value)
            continue
        default = getattr(defaults, name)
        values[name] = _coerce(value, default)
    return GenerationRequest(**values)


def _resume(value: Any) -> ResumeFrom | None:
    if isinstance(value, dict):
        try:
            return ResumeFrom(job_id=int(value["job_id"]), step=int(value["step"]))
        except (KeyError, TypeError, ValueError):
            return None
    return None


def _optional_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _coerce(value: Any, default: Any) -> Any:
    """value converted to the default's type; the default when it does not fit."""
    if value is None:
        return None if default is None else default
    try:
        if isinstance(default, bool):
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, str):
            return str(value)
    except (TypeError, ValueError):
        return default
    return value


def sampler_from_name(name: str) -> str | None:
    """Our scheduler name for a sampler name another tool wrote, or None if unknown."""
    key = " ".join(name.strip().lower().replace("_", " ").split())
    key = key.replace("dpmpp", "dpm++").replace("ancestral", "a")
    if key in _SAMPLERS:
        return _SAMPLERS[key].value
    for ours in SchedulerName:  # our own names, exact
        if ours.value.lower() == key:
            return ours.value
    return None


def parse_a1111_fields(text: str) -> tuple[str, str, dict[str, str]]:
    """Split A1111 text into (prompt, negative prompt, {key: value}), as A1111 does:
    the last line holds the "Key: value" pairs, a line starting with "Negative prompt:"
    starts the negative prompt, and everything before it is the prompt."""
    *lines, last = text.strip().split("\n")
    pairs = _PARAM.findall(last)
    if len(pairs) < 3:  # no parameters line: it is part of the prompt
        lines.append(last)
        pairs = []
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        if line.startswith(_NEGATIVE) and not in_negative:
            in_negative = True
            line = line[len(_NEGATIVE) :].lstrip()
        (negative if in_negative else prompt).append(line)
    fields: dict[str, str] = {}
    for key, value in pairs:
        value = value.strip()
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        fields[key.strip()] = value
    return "\n".join(prompt).strip(), "\n".join(negative).strip(), fields


def parse_a1111(text: str) -> GenerationRequest:
    """A request from A1111-format text; keys we do not know are ignored."""
    prompt, negative, fields = parse_a1111_fields(text)
    values: dict[str, Any] = {"prompt": prompt, "negative_prompt": negative}

    def number(key: str, kind: type) -> Any:
        raw = fields.get(key)
        if raw is None:
            return None
        try:
            return kind(float(raw)) if kind is int else kind(raw)
        except ValueError:
            return None

    for key, name, kind in (
        ("Steps", "steps", int),
        ("CFG scale", "guidance_scale", float),
        ("Seed", "seed", int),
        ("Batch size", "batch_size", int),
        ("Mask blur", "mask_blur", int),
        ("Masked area padding", "inpaint_padding", int),
        ("Guidance cutoff", "guidance_cutoff", float),
    ):
        value = number(key, kind)
        if value is not None:
            values[name] = value
    size = _SIZE.match(fields.get("Size", ""))
    if size:
        values["width"], values["height"] = int(size.group(1)), int(size.group(2))
    sampler = fields.get("Sampler")
    if sampler:
        schedule = fields.get("Schedule type", "").strip().lower()
        if schedule == "karras" and "karras" not in sampler.lower():
            sampler = f"{sampler} Karras"
        mapped = sampler_from_name(sampler)
        if mapped is not None:
            values["scheduler"] = mapped
    # With hires fix, "Denoising strength" belongs to the upscaling pass, not to us.
    if not any(k.startswith("Hires") for k in fields):
        strength = number("Denoising strength", float)
        if strength is not None:
            values["strength"] = strength
    if fields.get("Inpaint area", "").strip().lower() == "only masked":
        values["inpaint_only_masked"] = True
    values.update(addon_values(fields))
    return GenerationRequest(**values)


# ----------------------------------------------------------------------------- add-ons


def addon_params(request: GenerationRequest) -> list[tuple[str, str]]:
    """A1111's add-on fields for a request: Clip skip, TI hashes, Lora hashes, VAE hash
    and VAE, with the hashes computed as A1111 computes them (engine/addons/hashes.py).
    The `<lora:…>` tags stay in the prompt, which is written as it was typed."""
    from engine.addons import files, hashes
    from engine.prompts import lora_names

    params: list[tuple[str, str]] = []
    if isinstance(request.clip_skip, int) and request.clip_skip > 1:
        params.append(("Clip skip", str(request.clip_skip)))
    roots = files.roots_of(request.model_folders)
    embeddings = files.embedding_files(roots)
    used = files.mentioned([request.prompt, request.negative_prompt], embeddings)
    if used:
        ti = {name: hashes.embedding_hash(embeddings[name]) for name in used}
        params.append(("TI hashes", hashes.format_hashes(ti)))
    loras = {}
    for name in lora_names(request.prompt):
        path = files.lora_path(name, roots)
        if path is not None:
            loras[name] = hashes.lora_hash(path)
    if loras:
        params.append(("Lora hashes", hashes.format_hashes(loras)))
    if request.vae:
        path = files.vae_path(request.vae, roots)
        if path is not None and path.is_file():
            params.append(("VAE hash", hashes.vae_hash(path)))
        params.append(("VAE", path.name if path is not None else request.vae))
    return params


def addon_values(fields: dict[str, str]) -> dict[str, Any]:
    """Request values from A1111's add-on fields (Clip skip, VAE)."""
    values: dict[str, Any] = {}
    try:
        clip_skip = int(fields.get("Clip skip", "1").strip())
    except ValueError:
        clip_skip = 1
    if 1 <= clip_skip <= 12:
        values["clip_skip"] = clip_skip
    vae = fields.get("VAE", "").strip()
    if vae and vae.lower() not in ("none", "automatic"):
        values["vae"] = vae
    return values


def missing_addons(
    source: str | os.PathLike[str] | Image.Image, model_folders: tuple[str, ...] = ()
) -> list[str]:
    """Sentences naming the LoRAs, embeddings and VAE a picture was made with that are
    not on this machine (or are a different file of the same name, by hash)."""
    from engine.addons import files, hashes
    from engine.prompts import lora_names

    texts = read_texts(source)
    if A1111_KEY not in texts:
        return []
    prompt, negative, fields = parse_a1111_fields(texts[A1111_KEY])
    roots = files.roots_of(model_folders)
    lora_hashes = hashes.parse_hashes(fields.get("Lora hashes", ""))
    ti_hashes = hashes.parse_hashes(fields.get("TI hashes", ""))
    found: list[str] = []
    for name in lora_names(prompt):
        path = files.lora_path(name, roots)
        if path is None:
            found.append(f"the LoRA {name} is not in the LoRA folders")
        elif name in lora_hashes and hashes.lora_hash(path) != lora_hashes[name]:
            found.append(f"the LoRA {name} here is a different file (hash {lora_hashes[name]})")
    embeddings = files.embedding_files(roots)
    for name, value in ti_hashes.items():
        if name not in embeddings:
            found.append(f"the embedding {name} is not in the embeddings folders")
        elif hashes.embedding_hash(embeddings[name]) != value:
            found.append(f"the embedding {name} here is a different file (hash {value})")
    vae = addon_values(fields).get("vae")
    if vae and files.vae_path(vae, roots) is None:
        found.append(f"the VAE {vae} is not in the VAE folders")
    return found
