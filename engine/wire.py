"""The wire format: GenerationRequest and every engine Event as JSON-safe dicts, and back.

One module that the server (server/) and the client (engine/remote.py) share, so the
same records cross the network in both directions. Pictures travel as base64 text:
results and uploads as lossless PNG, step previews as compressed WebP (a few kB each).

Decoding never trusts its input: every value is checked against the record's declared
field types, images are size-checked from their header before they are decoded, and
every problem is a WireError whose message says what to change. No torch, no Qt.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import sys
import types
import typing
from collections.abc import Callable
from enum import Enum
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from engine import api
from engine.api import (
    Cancelled,
    ErrorKind,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    ModelLoading,
    Queued,
    ResumeFrom,
    Started,
    Step,
)

PROTOCOL_VERSION = 1
# Larger than any picture the engine accepts (validation.MAX_SIDE squared), so a header
# beyond it is refused before a single pixel is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
PREVIEW_FORMAT = "WEBP"
PREVIEW_QUALITY = 80

JobRef = str | int
"""How a job is named on the wire: the server's unguessable id (or a local int)."""


class WireError(ValueError):
    """Data that does not form a valid record; the message says what is wrong."""


# ----------------------------------------------------------------------------- pictures


def encode_image(image: Image.Image, fmt: str = "PNG") -> str:
    """A PIL image as base64 text (PNG keeps every pixel; previews use WebP)."""
    buffer = io.BytesIO()
    if fmt == "PNG":
        image.save(buffer, format="PNG", compress_level=1)
    else:
        image.convert("RGB").save(buffer, format=fmt, quality=PREVIEW_QUALITY)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image(
    text: object, what: str = "image", *, max_pixels: int = MAX_IMAGE_PIXELS
) -> Image.Image:
    """A picture from base64 text (a "data:image/...;base64," prefix is allowed)."""
    if not isinstance(text, str):
        raise WireError(f"the {what} must be base64 text, got {type(text).__name__}")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"the {what} is not valid base64 text") from None
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise WireError(
                f"the {what} is {width}x{height} pixels; the most this server takes is "
                f"{max_pixels:,} pixels in all"
            )
        image.load()
    except WireError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise WireError(f"the {what} is not a picture this server can read") from None
    except (OSError, ValueError, SyntaxError, EOFError):
        raise WireError(f"the {what} is damaged (it could not be decoded)") from None
    return image


def encode_array(array: np.ndarray, fmt: str = PREVIEW_FORMAT) -> str:
    """A uint8 H x W x 3 preview as compressed base64 text."""
    return encode_image(Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)), fmt)


def decode_array(text: object, what: str = "preview") -> np.ndarray:
    return np.asarray(decode_image(text, what).convert("RGB"))


# ----------------------------------------------------------------------------- records


def _identity(ref: Any) -> Any:
    return ref


def request_to_dict(
    request: GenerationRequest,
    *,
    include_images: bool = True,
    job_ref: Callable[[int], JobRef] = _identity,
) -> dict[str, Any]:
    """Every field of the request; job_ref names a resumed job the way the peer knows it."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(request):
        value = getattr(request, f.name)
        if isinstance(value, Image.Image):
            if include_images:
                out[f.name] = encode_image(value)
        elif not include_images and _holds_images(value):
            continue  # control units and regions: their pictures are their substance
        elif isinstance(value, ResumeFrom):
            out[f.name] = {"job_id": job_ref(value.job_id), "step": value.step}
        else:
            out[f.name] = _to_json(value, f.name)
    return out


def request_from_dict(
    data: object,
    *,
    resolve_job: Callable[[JobRef], int] | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> GenerationRequest:
    """A request from its dict. Unknown fields are refused (a newer client, or a typo);
    values keep their JSON types so that engine.validation names any bad one."""
    if not isinstance(data, dict):
        raise WireError(f"a request must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(GenerationRequest, vars(api))
    names = {f.name for f in dataclasses.fields(GenerationRequest) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise WireError(
            f"unknown request field(s) {', '.join(map(repr, unknown[:5]))}; this server "
            f"knows: {', '.join(sorted(names))}"
        )
    values: dict[str, Any] = {}
    for name, raw in data.items():
        hint = hints[name]
        if name == "resume" and raw is not None:
            values[name] = _resume_from(raw, resolve_job)
        elif _is_image_hint(hint) and raw is not None:
            values[name] = decode_image(raw, name.replace("_", " "), max_pixels=max_pixels)
        else:
            values[name] = _from_json(raw, hint, name)
    if "prompt" not in values:
        raise WireError("a request needs a prompt (it may be empty text)")
    return GenerationRequest(**values)


def _resume_from(raw: object, resolve_job: Callable[[JobRef], int] | None) -> ResumeFrom:
    if not isinstance(raw, dict) or set(raw) != {"job_id", "step"}:
        raise WireError('resume must be {"job_id": ..., "step": ...}')
    job, step = raw["job_id"], raw["step"]
    if not isinstance(step, int) or isinstance(step, bool):
        raise WireError(f"resume step must be a whole number, got {step!r}")
    if resolve_job is not None:
        return ResumeFrom(resolve_job(job), step)
    if not isinstance(job, int) or isinstance(job, bool):
        raise WireError(f"resume job_id must be a job's id, got {job!r}")
    return ResumeFrom(job, step)


def _is_image_hint(hint: Any) -> bool:
    return Image.Image in typing.get_args(hint) or hint is Image.Image


def _holds_images(value: Any) -> bool:
    """True for a tuple of records with pictures in them (control units, regions)."""
    return isinstance(value, tuple) and any(
        dataclasses.is_dataclass(v)
        and any(isinstance(getattr(v, f.name), Image.Image) for f in dataclasses.fields(v))
        for v in value
    )


def _to_json(value: Any, where: str) -> Any:
    if isinstance(value, Image.Image):
        return encode_image(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_to_json(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v, where) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name), where) for f in dataclasses.fields(value)}
    raise WireError(f"{where}: {type(value).__name__} values cannot cross the network")


def _from_json(raw: Any, hint: Any, where: str) -> Any:
    """Rebuild tuples, enums and nested records that a field's type declares; leave
    scalars as they came so that validation reports wrong types in its own words."""
    if hint is Image.Image:
        return decode_image(raw, where.replace("_", " "))
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None:
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _from_json(raw, options[0], where) if len(options) == 1 else raw
    if origin is tuple and isinstance(raw, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(v, args[0], where) for v in raw)
        return tuple(_from_json(v, a, where) for v, a in zip(raw, args, strict=False))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(raw, dict):
            raise WireError(f"{where} must be a JSON object, got {type(raw).__name__}")
        sub = typing.get_type_hints(hint, vars(sys.modules[hint.__module__]))
        known = {f.name for f in dataclasses.fields(hint) if f.init}
        extra = sorted(set(raw) - known)
        if extra:
            raise WireError(f"{where}: unknown field(s) {', '.join(map(repr, extra[:5]))}")
        try:
            return hint(**{k: _from_json(v, sub[k], f"{where}.{k}") for k, v in raw.items()})
        except TypeError as exc:
            raise WireError(f"{where}: {exc}") from None
    if isinstance(hint, type) and issubclass(hint, Enum) and isinstance(raw, str):
        try:
            return hint(raw)
        except ValueError:
            return raw
    return raw


# ----------------------------------------------------------------------------- events


def event_to_dict(
    event: Event,
    job: JobRef,
    *,
    job_ref: Callable[[int], JobRef] = _identity,
    preview_format: str = PREVIEW_FORMAT,
    include_detail: bool = True,
) -> dict[str, Any]:
    """One event; `job` is the id the receiver knows the job by."""
    out: dict[str, Any] = {"kind": event.kind.value, "job": job}
    match event:
        case Queued(position=position):
            out["position"] = position
        case ModelLoading():
            out.update(model=event.model, stage=event.stage, progress=event.progress)
        case Started():
            out.update(
                total_steps=event.total_steps,
                model=event.model,
                device=event.device,
                seeds=list(event.seeds),
                family=event.family,
                variant=event.variant,
                model_label=event.model_label,
            )
        case Step():
            out.update(
                step=event.step,
                total=event.total,
                elapsed=event.elapsed,
                preview=encode_array(event.preview, preview_format),
                noisy_preview=encode_array(event.noisy_preview, preview_format),
            )
        case Finished():
            out.update(
                images=[encode_image(i) for i in event.images],
                seeds=list(event.seeds),
                request=request_to_dict(event.request, include_images=False, job_ref=job_ref),
                timings=dict(event.timings),
                step_previews=[encode_array(p, preview_format) for p in event.step_previews],
                noisy_step_previews=[
                    encode_array(p, preview_format) for p in event.noisy_step_previews
                ],
                warnings=list(event.warnings),
                facts=dict(event.facts),
            )
            if event.model_info is not None:
                out["model_info"] = dataclasses.asdict(event.model_info)
        case Cancelled(step=step):
            out["step"] = step
        case Failed():
            out.update(
                error=event.error.value,
                message=event.message,
                detail=event.detail if include_detail else "",
            )
    return out


def event_from_dict(
    data: object,
    job_id: int,
    *,
    resolve_job: Callable[[JobRef], int] | None = None,
    original: GenerationRequest | None = None,
) -> Event:
    """The event a dict describes, for the receiver's job `job_id`.

    original: the request as submitted; a Finished event's request comes without
    pictures (the submitter has them), and takes them back from it, and its resume
    source as the submitter names it (a Ray replica knows it by another id)."""
    if not isinstance(data, dict):
        raise WireError(f"an event must be a JSON object, got {type(data).__name__}")
    try:
        kind = api.EventKind(str(data.get("kind")))
    except ValueError:
        raise WireError(f"unknown event kind {data.get('kind')!r}") from None
    try:
        return _event(kind, data, job_id, resolve_job, original)
    except KeyError as exc:
        raise WireError(f"a {kind.value} event lacks its {exc.args[0]!r} field") from None
    except WireError:
        raise
    except (TypeError, AttributeError, ValueError, OverflowError) as exc:
        raise WireError(f"a {kind.value} event is malformed: {exc}") from None


def _model_info(value: Any) -> api.ModelInfo | None:
    if not isinstance(value, dict):
        return None
    return api.ModelInfo(
        str(value.get("family", "")), str(value.get("variant", "")), str(value.get("guidance", ""))
    )


def _event(
    kind: api.EventKind,
    d: dict[str, Any],
    job_id: int,
    resolve_job: Callable[[JobRef], int] | None,
    original: GenerationRequest | None,
) -> Event:
    match kind:
        case api.EventKind.QUEUED:
            return Queued(job_id, int(d["position"]))
        case api.EventKind.MODEL_LOADING:
            return ModelLoading(job_id, str(d["model"]), str(d["stage"]), float(d["progress"]))
        case api.EventKind.STARTED:
            return Started(
                job_id,
                int(d["total_steps"]),
                str(d["model"]),
                str(d["device"]),
                tuple(int(s) for s in d["seeds"]),
                family=str(d.get("family", "")),
                variant=str(d.get("variant", "")),
                model_label=str(d.get("model_label", "")),
            )
        case api.EventKind.STEP:
            return Step(
                job_id,
                int(d["step"]),
                int(d["total"]),
                float(d["elapsed"]),
                decode_array(d["preview"]),
                decode_array(d["noisy_preview"], "noisy preview"),
            )
        case api.EventKind.FINISHED:
            request = request_from_dict(d["request"], resolve_job=resolve_job)
            if original is not None:
                request = request.with_changes(
                    init_image=original.init_image, mask=original.mask, resume=original.resume
                )
            return Finished(
                job_id,
                tuple(decode_image(i, "result image") for i in d["images"]),
                tuple(int(s) for s in d["seeds"]),
                request,
                {str(k): float(v) for k, v in d["timings"].items()},
                tuple(decode_array(p) for p in d.get("step_previews", ())),
                tuple(decode_array(p) for p in d.get("noisy_step_previews", ())),
                tuple(str(w) for w in d.get("warnings", ())),
                {str(k): float(v) for k, v in d.get("facts", {}).items()},
                model_info=_model_info(d.get("model_info")),
            )
        case api.EventKind.CANCELLED:
            return Cancelled(job_id, int(d["step"]))
        case api.EventKind.FAILED:
            try:
                error = ErrorKind(d["error"])
            except ValueError:
                error = ErrorKind.INTERNAL  # a newer server's kind: still a failure
            return Failed(job_id, error, str(d["message"]), str(d.get("detail", "")))
    raise WireError(f"unknown event kind {kind!r}")
