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
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine import canvas_metadata, hires_metadata, validation
from engine.api import (
    STARTER_MODEL,
    Expand,
    ForwardProcess,
    GenerationRequest,
    GuidanceKind,
    HiresFix,
    Mode,
    ModelFamily,
    ModelInfo,
    ResumeFrom,
    SchedulerName,
    Upscale,
)
from engine.atomic_file import atomic_write
from engine.control import metadata as control_metadata
from engine.model_files import is_checkpoint
from engine.schedulers import NAMES

A1111_KEY = "parameters"
DISTILLED_CFG = "Distilled CFG Scale"  # Forge's name for FLUX's guidance
JSON_KEY = "diffusiondesk"
RECORD_VERSION = 1
APP_NAME = "DiffusionDesk"

# Request fields that hold images: not stored, only noted in the record.
_IMAGE_FIELDS = ("init_image", "mask")
# Request fields that describe this machine, not the picture: never stored.
_LOCAL_FIELDS = ("model_folders", "model_files")
# Control units and regions: read back apart (engine/control/metadata.py), units without
# their pictures.
_UNIT_FIELDS = ("controls", "regions")

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

# Texts longer than this are not read: a parameters text is a few hundred characters,
# and anything far longer is a file made to hurt the reader.
MAX_TEXT_CHARS = 200_000
# A key of the A1111 parameters line: a word character, then these (" Model hash").
_KEY_CHARS = frozenset(" -/+.()_")
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


def format_a1111(request: GenerationRequest, seed: int, model_info: ModelInfo | None = None) -> str:
    """The "parameters" text: prompt, "Negative prompt: ..." line, then "Key: value, ...".

    model_info: the model's family, variant and guidance kind ("Family", "Variant"; a
    distilled guidance scale is Forge's "Distilled CFG Scale", beside "CFG scale", which
    is then the true CFG scale as in Forge: 1 when off)."""
    distilled = model_info is not None and model_info.guidance == GuidanceKind.DISTILLED
    scale = float(request.true_cfg_scale) if distilled else float(request.guidance_scale)
    params: list[tuple[str, str]] = [
        ("Steps", str(request.steps)),
        ("Sampler", str(request.scheduler)),
        ("CFG scale", str(scale)),
        ("Seed", str(seed)),
        ("Size", f"{request.width}x{request.height}"),
        ("Model", model_name(request.model)),
    ]
    if distilled:
        params.append((DISTILLED_CFG, str(float(request.guidance_scale))))
    if model_info is not None and model_info.family:
        params.append(("Family", model_info.family))
        if model_info.variant:
            params.append(("Variant", model_info.variant))
    if request.batch_size != 1:
        params.append(("Batch size", str(request.batch_size)))
    if request.mode is not Mode.TXT2IMG:
        params.append(("Denoising strength", str(float(request.strength))))
    if request.mode is Mode.INPAINT:
        params.append(("Mask blur", str(request.mask_blur)))
        if request.inpaint_only_masked:
            params.append(("Inpaint area", "Only masked"))
            params.append(("Masked area padding", str(request.inpaint_padding)))
    params += canvas_metadata.params(request)
    if request.guidance_cutoff is not None and request.guidance_cutoff < 1:
        # Not an A1111 field: other tools show it and ignore it; we read it back.
        params.append(("Guidance cutoff", str(float(request.guidance_cutoff))))
    params += hires_metadata.params(request)
    if request.deep_cache > 1:
        params.append(("Deep cache", str(request.deep_cache)))
    params += addon_params(request)
    params += control_metadata.a1111_params(request)
    params.append(("Version", APP_NAME))
    lines = [request.prompt]
    if request.negative_prompt:
        lines.append(f"{_NEGATIVE} {request.negative_prompt}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in params))
    return "\n".join(lines)


def to_record(
    request: GenerationRequest, seed: int, model_info: ModelInfo | None = None
) -> dict[str, Any]:
    """Every field of the request (images only as flags), with this image's seed and
    the model's family, variant and guidance kind."""
    record: dict[str, Any] = {"app": APP_NAME, "version": RECORD_VERSION}
    for f in dataclasses.fields(GenerationRequest):
        value = getattr(request, f.name)
        if f.name in (*_LOCAL_FIELDS, *_UNIT_FIELDS):
            continue
        if f.name in _IMAGE_FIELDS:
            record[f"has_{f.name}"] = value is not None
        elif isinstance(value, ResumeFrom | Expand | ForwardProcess | HiresFix | Upscale):
            record[f.name] = dataclasses.asdict(value)
        else:
            record[f.name] = value
    record["seed"] = seed
    record["mode"] = request.mode
    if request.controls or request.regions:
        record |= control_metadata.record(request)
    if model_info is not None:
        record["model_info"] = dataclasses.asdict(model_info)
    return record


def png_info(request: GenerationRequest, seed: int, model_info: ModelInfo | None = None) -> PngInfo:
    info = PngInfo()
    info.add_text(A1111_KEY, format_a1111(request, seed, model_info))  # iTXt if not Latin-1
    record = to_record(request, seed, model_info)
    info.add_text(JSON_KEY, json.dumps(record, ensure_ascii=True))
    return info


def save_png(
    image: Image.Image,
    path: str | os.PathLike[str],
    request: GenerationRequest,
    seed: int,
    model_info: ModelInfo | None = None,
) -> Path:
    """Write image as a PNG with its parameters, atomically: the file at path is either
    the old one or the complete new one, never half written. Raises atomic_file.SaveError
    (an OSError) with a sentence saying what to do when the disk refuses."""
    info = png_info(request, seed, model_info)
    return atomic_write(path, lambda f: image.save(f, format="PNG", pnginfo=info))


# ----------------------------------------------------------------------------- reading
#
# Whatever a file holds, reading never raises, runs in time linear in the text, reads at
# most MAX_TEXT_CHARS of it, and hands on only values the engine accepts; the rest are
# named in ParametersReading.left_out.


class ParametersReading(NamedTuple):
    request: GenerationRequest | None  # None: the picture carries no parameters we can use
    left_out: tuple[str, ...]  # "Seed 1e999 (…)": each value that was not used, and why
    model_info: ModelInfo | None = None  # the model's family and variant, when written
    # ControlNet units without their pictures (the request's regions are whole).
    units: tuple[control_metadata.UnitSetting, ...] = ()


def model_info_of(family: Any, variant: Any = "") -> ModelInfo | None:
    """A checked ModelInfo from written values (None unless the family is one we know);
    the guidance kind comes from the family's profile, not from the file."""
    from engine import families

    if not isinstance(family, str) or family not in {f.value for f in ModelFamily}:
        return None
    variant = variant if isinstance(variant, str) else ""
    if family not in families.PROFILES:
        return ModelInfo(family, variant[:40])
    profile = families.profile(family)
    variant = profile.variant(variant).name  # an unknown variant: the family's default
    return ModelInfo(family, variant, str(profile.variant(variant).guidance))


class _Rejected(Exception):
    """A value that does not fit its field; the message says what it must be."""


def read_texts(source: str | os.PathLike[str] | Image.Image) -> dict[str, str]:
    """The text chunks of a PNG (or an already opened image); {} if it has none or the
    file cannot be read. For JPEG and WebP, an EXIF UserComment stands for the
    "parameters" chunk. Texts over MAX_TEXT_CHARS are left out."""
    return _read_texts(source)[0]


def _read_texts(source: str | os.PathLike[str] | Image.Image) -> tuple[dict[str, str], list[str]]:
    try:
        if isinstance(source, Image.Image):
            return _texts_of(source)
        with Image.open(source) as image:
            return _texts_of(image)
    except Exception:  # an unreadable file simply carries no parameters
        return {}, []


def _texts_of(image: Image.Image) -> tuple[dict[str, str], list[str]]:
    texts: dict[str, str] = {}
    notes: list[str] = []
    try:
        chunks = {**image.info, **getattr(image, "text", {})}
    except Exception:  # .text decodes the rest of a damaged file
        chunks = dict(image.info)
    for key, value in chunks.items():
        if isinstance(value, bytes) and key == A1111_KEY:
            value = value[: MAX_TEXT_CHARS * 4].decode("utf-8", errors="replace")
        if not isinstance(key, str) or not isinstance(value, str):
            continue
        if len(value) > MAX_TEXT_CHARS:
            notes.append(
                f"the {key!r} text ({len(value):,} characters; the most read is {MAX_TEXT_CHARS:,})"
            )
            continue
        texts[key] = value
    if A1111_KEY not in texts:
        comment = _exif_user_comment(image)
        if comment:
            texts[A1111_KEY] = comment
    return texts, notes


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
        return raw[:MAX_TEXT_CHARS].strip("\x00").strip() or None
    if not isinstance(raw, bytes) or len(raw) <= 8:
        return None
    prefix, body = raw[:8], raw[8 : 8 + 2 * MAX_TEXT_CHARS]
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
    A1111 "parameters" text; None when the image carries neither. Never raises."""
    return read_parameters_checked(source).request


def read_parameters_checked(source: str | os.PathLike[str] | Image.Image) -> ParametersReading:
    """read_parameters, and which values were left out (out of range, not numbers, too
    long, unknown samplers) so the window can say so. Never raises."""
    try:
        texts, skipped = _read_texts(source)
        left_out = tuple(skipped)
        if JSON_KEY in texts:
            reading = from_record_checked(texts[JSON_KEY])
            if reading.request is not None:
                return reading._replace(left_out=left_out + reading.left_out)
        if A1111_KEY in texts:
            reading = parse_a1111_checked(texts[A1111_KEY])
            return reading._replace(left_out=left_out + reading.left_out)
        return ParametersReading(None, left_out)
    except Exception:  # a reader bug must not reach a person as a traceback
        return ParametersReading(None, ("the parameters (they could not be read)",))


# ----------------------------------------------------------------------------- values


def _int_of(value: Any) -> int:
    if isinstance(value, bool):
        raise _Rejected("a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise _Rejected("a whole number")
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 40:
            return int(text)
        if len(text) <= 40:  # "20.0", "-5", "1e3"
            with contextlib.suppress(ValueError, OverflowError):
                number = float(text)
                if math.isfinite(number) and number.is_integer():
                    return int(number)
    raise _Rejected("a whole number")


def _float_of(value: Any) -> float:
    if isinstance(value, bool):
        raise _Rejected("a number")
    number: float | None = None
    if isinstance(value, int | float):
        with contextlib.suppress(OverflowError):
            number = float(value)
    elif isinstance(value, str) and len(value.strip()) <= 40:
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise _Rejected("a finite number")
    return number


def _whole(low: int, high: int, step: int = 1) -> Any:
    def check(value: Any) -> int:
        must = f"a whole number from {low} to {high}" + (
            f" and a multiple of {step}" if step > 1 else ""
        )
        try:
            number = _int_of(value)
        except _Rejected:
            raise _Rejected(must) from None
        if not low <= number <= high or number % step:
            raise _Rejected(must)
        return number

    return check


def _number(low: float, high: float, *, above_low: bool = False) -> Any:
    def check(value: Any) -> float:
        span = f"above {low:g} and at most {high:g}" if above_low else f"from {low:g} to {high:g}"
        must = f"a number {span}"
        try:
            number = _float_of(value)
        except _Rejected:
            raise _Rejected(must) from None
        if not (low < number if above_low else low <= number) or number > high:
            raise _Rejected(must)
        return number

    return check


def _text(limit: int) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _Rejected("text")
        if len(value) > limit:
            raise _Rejected(f"at most {limit:,} characters long")
        return validation.without_lone_surrogates(value)

    return check


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _Rejected("true or false")


def _scheduler(value: Any) -> str:
    if isinstance(value, str) and len(value) <= 100:
        mapped = sampler_from_name(value)
        if mapped is not None:
            return mapped
    raise _Rejected("a sampler DiffusionDesk has (" + ", ".join(NAMES) + ")")


def _model(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 4096 or "\x00" in value:
        raise _Rejected("a model folder, file or hub id")
    return value


def _resume(value: Any) -> ResumeFrom:
    if not isinstance(value, dict):
        raise _Rejected("a job and a step")
    job_id = _whole(1, 2**63 - 1)(value.get("job_id"))
    step = _whole(1, validation.MAX_STEPS)(value.get("step"))
    return ResumeFrom(job_id=job_id, step=step)


def _checked(check: Any, value: Any) -> Any:
    try:
        return check(value)
    except (hires_metadata.Rejected, TypeError) as exc:
        raise _Rejected(
            str(exc) if isinstance(exc, hires_metadata.Rejected) else "a record"
        ) from None


def _record_of(kind: type[Expand] | type[ForwardProcess], what: str) -> Any:
    """A nested record from our JSON (its fields checked by validation at submit)."""

    def check(value: Any) -> Any:
        names = {f.name for f in dataclasses.fields(kind)}
        if not isinstance(value, dict) or not set(value) <= names:
            raise _Rejected(what)
        if not all(isinstance(v, int | str | bool) for v in value.values()):
            raise _Rejected(what)
        return kind(**value)

    return check


_CHECKS: dict[str, Any] = {
    "prompt": _text(validation.MAX_PROMPT_CHARS),
    "negative_prompt": _text(validation.MAX_PROMPT_CHARS),
    "steps": _whole(1, validation.MAX_STEPS),
    "guidance_scale": _number(0, validation.MAX_GUIDANCE),
    "true_cfg_scale": _number(1, validation.MAX_GUIDANCE),
    "seed": _whole(0, validation.MAX_SEED - validation.MAX_BATCH),
    "batch_size": _whole(1, validation.MAX_BATCH),
    "width": _whole(8, validation.MAX_SIDE, 8),
    "height": _whole(8, validation.MAX_SIDE, 8),
    "scheduler": _scheduler,
    "model": _model,
    "strength": _number(0, 1, above_low=True),
    "mask_blur": _whole(0, validation.MAX_MASK_BLUR),
    "inpaint_only_masked": _flag,
    "inpaint_padding": _whole(0, validation.MAX_PADDING),
    "resume": _resume,
    "expand": _record_of(Expand, "sides, fill, band and piece of an expansion"),
    "forward": _record_of(ForwardProcess, "a noise level and whether to denoise"),
    "guidance_cutoff": _number(0, 1),
    "fast_decode": _flag,
    "deep_cache": _whole(1, validation.MAX_DEEP_CACHE),
    "clip_skip": _whole(1, validation.MAX_CLIP_SKIP),
    "vae": _text(4096),
    "hires": lambda value: _checked(hires_metadata.check_hires_record, value),
    "upscale": lambda value: _checked(hires_metadata.check_upscale_record, value),
}


@dataclass
class _Collector:
    """Checked values for a request, and a note for each value left out."""

    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    left_out: list[str] = dataclasses.field(default_factory=list)
    rejected: set[str] = dataclasses.field(default_factory=set)

    def take(self, name: str, value: Any, label: str) -> None:
        if value is None and name in ("seed", "resume", "guidance_cutoff", "expand", "forward"):
            return  # "no seed", "no cut-off": the default
        try:
            self.values[name] = _CHECKS[name](value)
        except _Rejected as exc:
            self.rejected.add(name)
            self.left_out.append(f"{label} {validation.short(value)} (it must be {exc})")

    def request(self) -> GenerationRequest:
        if self.rejected & {"width", "height"}:
            # Half a size would make a picture of another shape: both or neither.
            self.values.pop("width", None)
            self.values.pop("height", None)
        steps, scheduler = self.values.get("steps"), self.values.get("scheduler")
        if steps is not None and scheduler is not None:
            most = validation.max_steps_for(scheduler)
            if steps > most:
                del self.values["steps"]
                self.left_out.append(f"Steps {steps} (the most for {scheduler} is {most})")
        return GenerationRequest(**{"prompt": "", **self.values})

    def reading(self, model_info: ModelInfo | None = None) -> ParametersReading:
        request = self.request()
        return ParametersReading(request, tuple(self.left_out), model_info)


def from_record(text: str) -> GenerationRequest | None:
    """The request in our JSON record, or None when the text is not one."""
    return from_record_checked(text).request


def from_record_checked(text: str) -> ParametersReading:
    if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
        return ParametersReading(None, ())
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        return ParametersReading(None, ())
    if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
        return ParametersReading(None, ())
    known = {f.name for f in dataclasses.fields(GenerationRequest)}
    known -= {*_IMAGE_FIELDS, *_LOCAL_FIELDS, *_UNIT_FIELDS}
    found = _Collector()
    for name, value in record.items():
        if name in known:
            found.take(name, value, name.replace("_", " ").capitalize())
    info = record.get("model_info")
    model = (
        model_info_of(info.get("family"), info.get("variant", ""))
        if isinstance(info, dict)
        else None
    )
    return _with_units(found.reading(model), control_metadata.from_record, record)


def _with_units(reading: ParametersReading, read: Any, source: Any) -> ParametersReading:
    """The reading with the picture's regions in its request and its units beside it."""
    if reading.request is None:
        return reading
    size = (reading.request.width, reading.request.height)
    carried = read(source, size)
    return reading._replace(
        request=reading.request.with_changes(regions=carried.regions),
        left_out=reading.left_out + carried.left_out,
        units=carried.units,
    )


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


# ----------------------------------------------------------------------------- A1111 text


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _key_before(line: str, start: int, colon: int) -> str:
    """The key ending at colon, as A1111's regex finds it: the longest run of key
    characters before the colon that starts with a word character."""
    j = colon
    while j > start and (_is_word(line[j - 1]) or line[j - 1] in _KEY_CHARS):
        j -= 1
    while j < colon and not _is_word(line[j]):
        j += 1
    return line[j:colon]


def scan_pairs(line: str) -> list[tuple[str, str]]:
    """The "Key: value" pairs of A1111's parameters line, in one pass (linear time).

    Reads what A1111's regex `\\s*(\\w[\\w \\-/]+):\\s*("(?:\\\\.|[^\\\\"])+"|[^,]*)(?:,|$)`
    reads: a value is either a double-quoted string (JSON escapes) followed by a comma
    or the end, or everything up to the next comma.
    """
    pairs: list[tuple[str, str]] = []
    n, i = len(line), 0
    quotes = True  # cleared once a quote never closes: no later quote can close either
    while i < n:
        colon = line.find(":", i)
        if colon < 0:
            break
        comma = line.find(",", i, colon)
        if comma >= 0:  # a stretch without a key
            i = comma + 1
            continue
        key = _key_before(line, i, colon)
        v = colon + 1
        while v < n and line[v].isspace():
            v += 1
        end = -1
        if quotes and v < n and line[v] == '"':
            k = v + 1
            while k < n and line[k] != '"':
                k += 2 if line[k] == "\\" else 1
            if k >= n:
                quotes = False
            elif k + 1 == n or line[k + 1] == ",":
                end = k + 1
        if end < 0:
            end = line.find(",", v)
            end = n if end < 0 else end
        if key:
            pairs.append((key, line[v:end]))
        i = end + 1
    return pairs


def parse_a1111_fields(text: str) -> tuple[str, str, dict[str, str]]:
    """Split A1111 text into (prompt, negative prompt, {key: value}), as A1111 does:
    the last line holds the "Key: value" pairs, a line starting with "Negative prompt:"
    starts the negative prompt, and everything before it is the prompt."""
    *lines, last = text.strip().split("\n")
    pairs = scan_pairs(last)
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
            with contextlib.suppress(ValueError, RecursionError):
                decoded = json.loads(value)
                value = decoded if isinstance(decoded, str) else value
        fields[key.strip()] = value
    return "\n".join(prompt).strip(), "\n".join(negative).strip(), fields


def _size(text: str) -> tuple[str, str] | None:
    """("512", "768") from "512x768" (also "X" and "×"), without a regex."""
    for sep in ("x", "X", "×"):
        if sep in text:
            width, _, height = text.partition(sep)
            return width.strip(), height.strip()
    return None


# A1111 keys and the request fields they fill.
_A1111_NUMBERS = (
    ("Steps", "steps"),
    ("CFG scale", "guidance_scale"),
    ("Seed", "seed"),
    ("Batch size", "batch_size"),
    ("Mask blur", "mask_blur"),
    ("Masked area padding", "inpaint_padding"),
    ("Guidance cutoff", "guidance_cutoff"),
    ("Deep cache", "deep_cache"),
)


def parse_a1111(text: str) -> GenerationRequest:
    """A request from A1111-format text; keys we do not know are ignored, values we
    cannot use are left at their defaults."""
    return parse_a1111_checked(text).request or GenerationRequest(prompt="")


def parse_a1111_checked(text: str) -> ParametersReading:
    if not isinstance(text, str):
        return ParametersReading(None, ())
    if len(text) > MAX_TEXT_CHARS:
        return ParametersReading(
            None,
            (f"the parameters text ({len(text):,} characters; the most read is "
             f"{MAX_TEXT_CHARS:,})",),
        )  # fmt: skip
    prompt, negative, fields = parse_a1111_fields(text)
    found = _Collector()
    found.take("prompt", prompt, "Prompt")
    found.take("negative_prompt", negative, "Negative prompt")
    for key, name in _A1111_NUMBERS:
        if key in fields:
            found.take(name, fields[key], key)
    if DISTILLED_CFG in fields:  # Forge's FLUX guidance; "CFG scale" is then true CFG
        found.take("guidance_scale", fields[DISTILLED_CFG], DISTILLED_CFG)
        with contextlib.suppress(_Rejected):  # "CFG scale" 1 (or less, or none): off
            if "CFG scale" in fields and _float_of(fields["CFG scale"]) > 1:
                found.take("true_cfg_scale", fields["CFG scale"], "CFG scale")
    if "Size" in fields:
        size = _size(fields["Size"])
        if size is None:
            found.left_out.append(f"Size {validation.short(fields['Size'])} (it must be WxH)")
        else:
            found.take("width", size[0], "Width")
            found.take("height", size[1], "Height")
    sampler = fields.get("Sampler")
    if sampler:
        schedule = fields.get("Schedule type", "").strip().lower()
        if schedule == "karras" and "karras" not in sampler.lower():
            sampler = f"{sampler} Karras"
        found.take("scheduler", sampler, "Sampler")
    # With hires fix, "Denoising strength" belongs to the upscaling pass, not to us.
    if "Denoising strength" in fields and not any(k.startswith("Hires") for k in fields):
        found.take("strength", fields["Denoising strength"], "Denoising strength")
    if fields.get("Inpaint area", "").strip().lower() == "only masked":
        found.values["inpaint_only_masked"] = True
    if "Clip skip" in fields:
        found.take("clip_skip", fields["Clip skip"], "Clip skip")
    vae = addon_values(fields).get("vae")
    if vae is not None:
        found.take("vae", vae, "VAE")
    width, height = found.values.get("width", 512), found.values.get("height", 512)
    hires, notes = hires_metadata.hires_from_fields(fields, width, height)
    found.left_out += notes
    if hires is not None:
        found.take("hires", dataclasses.asdict(hires), "Hires fix")
    upscale, notes = hires_metadata.upscale_from_fields(fields)
    found.left_out += notes
    if upscale is not None:
        found.values["upscale"] = upscale
    canvas, notes = canvas_metadata.from_fields(fields)
    found.values.update(canvas)
    found.left_out += notes
    reading = found.reading(model_info_of(fields.get("Family"), fields.get("Variant", "")))
    return _with_units(reading, control_metadata.from_fields, fields)


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
