"""The settings of pictures made by other tools, read back for "Reuse parameters".

Reads what AUTOMATIC1111/Forge/SD.Next, ComfyUI, InvokeAI, Fooocus, NovelAI, SwarmUI
and Draw Things write into PNG, JPEG and WebP files, as far as each says: prompt,
negative prompt, seed, steps, guidance, sampler, size and model name. The result holds
only the values the picture states (and that DiffusionDesk can use), so a picture
that says nothing leaves the form alone, and one that says little changes little.

sd-parsers does the parsing of ComfyUI graphs, InvokeAI (all three of its formats),
NovelAI and Fooocus records. What we had to add around it:
- Finding the text. sd-parsers reads PNG text chunks and an EXIF UserComment decoded
  as big-endian UTF-16 only. We also read little-endian and ASCII/unprefixed
  UserComments (Fooocus writes plain text), ComfyUI's WebP/JPEG EXIF tags
  ("prompt:{...}" in Model, "workflow:{...}" in Make) and XMP packets (Draw Things),
  and cap every text at 5 MB before any JSON is parsed.
- Formats it lacks: SwarmUI (`sui_image_params` JSON) and Draw Things (JSON in the
  XMP exif:UserComment, A1111-like text in dc:description).
- A1111 text goes to our own parser (engine/metadata.py), which is linear-time and
  handles quoted values; sd-parsers splits the line at every comma and colon.
- ComfyUI pictures with a `prompt` graph but no `workflow` (API saves): sd-parsers
  needs both, so an empty workflow stands in. Size comes from the EmptyLatentImage node
  and the seed from `noise_seed` too (KSamplerAdvanced), which sd-parsers leaves in
  metadata.
- InvokeAI 3+ names the model `name`, not `model_name`; Fooocus records without a
  model hash; the sizes of InvokeAI, NovelAI and Fooocus ("(896, 1152)").
- Every value is checked as the form's own checks would (engine/validation.py limits):
  a seed of -1, a size that is not a multiple of 8 or a sampler we do not have is left
  out with a sentence saying so, never passed on.
- Nothing here raises on hostile input: every parser runs inside one guard, and a
  picture whose settings cannot be read is treated as one without settings.

No Qt and no torch.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import math
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from sd_parsers.exceptions import ParserError
from sd_parsers.parsers import ComfyUIParser, FooocusParser, InvokeAIParser, NovelAIParser

from engine import canvas_metadata, hires_metadata, metadata
from engine.api import GenerationRequest
from engine.control import metadata as control_metadata
from engine.validation import MAX_GUIDANCE, MAX_SEED, MAX_SIDE, MAX_STEPS

MAX_TEXT = 5_000_000  # characters of one metadata text; ComfyUI workflows run to ~1 MB
MAX_PROMPT = 100_000

A1111 = "AUTOMATIC1111"
FORGE = "Forge"
SDNEXT = "SD.Next"
COMFYUI = "ComfyUI"
INVOKEAI = "InvokeAI"
FOOOCUS = "Fooocus"
NOVELAI = "NovelAI"
SWARMUI = "SwarmUI"
DRAW_THINGS = "Draw Things"
DIFFUSIONDESK = "DiffusionDesk"

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_IMAGE_DESCRIPTION = 0x010E
# ComfyUI's animated-WebP saver writes "prompt:{...}" at Model (0x0110) and the extra
# page info ("workflow:{...}") at Make (0x010F) and below.
_COMFY_EXIF_TAGS = (0x0110, 0x010F, 0x010E, 0x010D, 0x010C, 0x010B)
_XMP_KEYS = ("xmp", "XML:com.adobe.xmp")
_DESCRIPTION = "{http://purl.org/dc/elements/1.1/}description"
_EXIF_COMMENT = "{http://ns.adobe.com/exif/1.0/}UserComment"
_CREATOR_TOOL = "{http://ns.adobe.com/xap/1.0/}CreatorTool"
_RDF_LI = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li"
_SIZE = re.compile(r"^\s*\(?\s*(\d{1,6})\s*[xX×,]\s*(\d{1,6})\s*\)?\s*$")


@dataclass(frozen=True)
class PictureSettings:
    """What a picture says about how it was made."""

    tool: str
    values: Mapping[str, Any]  # GenerationRequest field -> value, only those stated
    model_name: str = ""  # as the tool wrote it (the form's model changes only if found)
    sampler_name: str = ""  # as the tool wrote it
    left_out: tuple[str, ...] = ()  # one sentence per value that could not be used
    request: GenerationRequest | None = field(default=None, compare=False)  # our own
    # ControlNet units without their pictures (A1111's "ControlNet N" fields, ours).
    units: tuple[control_metadata.UnitSetting, ...] = ()

    def apply_to(self, base: GenerationRequest) -> GenerationRequest:
        """base with the picture's values put in; our own pictures give their whole
        request, other tools' only what they state."""
        if self.request is not None:
            return self.request
        return base.with_changes(**self.values)

    def summary(self) -> str:
        """One line for the status bar: where it came from and what it carries."""
        names = {
            "prompt": "prompt",
            "negative_prompt": "negative prompt",
            "seed": "seed",
            "steps": "steps",
            "guidance_scale": "guidance",
            "scheduler": "sampler",
            "width": "size",
            "model": "model",
        }
        stated = [names[k] for k in names if k in self.values]
        text = f"made with {self.tool}; carries {', '.join(stated) or 'no usable settings'}"
        return text + (". " + " ".join(self.left_out) if self.left_out else "")


# ----------------------------------------------------------------------------- texts


def _cap(text: str) -> str:
    return text if len(text) <= MAX_TEXT else ""


def _decode_user_comment(raw: object) -> str | None:
    if isinstance(raw, str):
        return raw.strip("\x00").strip() or None
    if not isinstance(raw, bytes) or not raw:
        return None
    prefix, body = raw[:8], raw[8:]
    if prefix.startswith(b"UNICODE"):
        # EXIF says big-endian; some writers use little-endian: keep the likelier text.
        readings = [body.decode(enc, errors="replace") for enc in ("utf_16_be", "utf_16_le")]
        text = max(readings, key=lambda t: sum(c.isascii() and c.isprintable() for c in t))
    elif prefix.startswith((b"ASCII", b"\x00\x00\x00\x00\x00\x00\x00\x00", b"JIS")):
        text = body.decode("utf-8", errors="replace")
    else:  # no charset prefix at all (Fooocus writes the text as it is)
        text = raw.decode("utf-8", errors="replace")
    return text.strip("\x00").strip() or None


def _xmp_texts(xmp: object) -> dict[str, str]:
    if isinstance(xmp, bytes):
        xmp = xmp.decode("utf-8", errors="replace")
    if not isinstance(xmp, str) or not xmp or len(xmp) > MAX_TEXT or "<!ENTITY" in xmp:
        return {}
    start = xmp.find("<x:xmpmeta")
    end = xmp.rfind("</x:xmpmeta>")
    if start < 0 or end < 0:
        return {}
    try:
        root = ElementTree.fromstring(xmp[start : end + len("</x:xmpmeta>")])
    except ElementTree.ParseError:
        return {}
    found: dict[str, str] = {}
    for tag, key in (
        (_DESCRIPTION, "xmp:description"),
        (_EXIF_COMMENT, "xmp:UserComment"),
        (_CREATOR_TOOL, "xmp:CreatorTool"),
    ):
        element = root.find(f".//{tag}")
        if element is None:
            continue
        item = element.find(f".//{_RDF_LI}")
        text = (item if item is not None else element).text
        if text and text.strip():
            found[key] = text.strip()
    return found


def picture_texts(image: Image.Image) -> dict[str, str]:
    """Every metadata text of an opened picture that a tool may have written settings
    into: PNG text chunks, EXIF UserComment/ImageDescription, ComfyUI's EXIF tags, and
    XMP fields (as "xmp:<name>")."""
    texts: dict[str, str] = {}
    info: dict[Any, Any] = dict(image.info)
    with contextlib.suppress(Exception):  # a PNG's late text chunks may be damaged
        info.update(getattr(image, "text", {}) or {})
    for key, value in info.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, bytes) and key not in ("exif", "icc_profile", *_XMP_KEYS):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str) and key not in _XMP_KEYS:
            texts[key] = _cap(value)
    for key in _XMP_KEYS:
        texts.update(_xmp_texts(info.get(key)))
    try:
        exif = image.getexif()
        comment = _decode_user_comment(exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT))
        if comment:
            texts.setdefault("UserComment", _cap(comment))
        for tag in _COMFY_EXIF_TAGS:
            value = exif.get(tag)
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="replace")
            if not isinstance(value, str):
                continue
            name, _, rest = value.partition(":")
            if name in ("prompt", "workflow") and rest.lstrip().startswith("{"):
                texts.setdefault(name, _cap(rest))
            elif tag == _IMAGE_DESCRIPTION and value.strip():
                texts.setdefault("ImageDescription", _cap(value))
    except Exception:  # malformed EXIF: the other texts still count
        pass
    return {k: v.replace("\x00", "") for k, v in texts.items() if v}


def _json(text: object) -> Any:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


# ----------------------------------------------------------------------------- values


class _Collector:
    """Checks each value as the form would and keeps only those it can use."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.values: dict[str, Any] = {}
        self.left_out: list[str] = []
        self.model_name = ""
        self.sampler_name = ""
        self.units: tuple[control_metadata.UnitSetting, ...] = ()

    def text(self, name: str, value: object) -> None:
        if isinstance(value, str) and value.strip():
            self.values[name] = value.strip()[:MAX_PROMPT]

    def _int(self, value: object) -> int | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,30}(\.0*)?\s*", value):
            return int(value.strip().split(".")[0])
        return None

    def seed(self, value: object) -> None:
        if value is None or value == "":
            return
        seed = self._int(value)
        if seed is None or not 0 <= seed <= MAX_SEED:
            shown = str(value)[:30]
            self.left_out.append(f"Its seed {shown} is not one DiffusionDesk can use (random?).")
            return
        self.values["seed"] = seed

    def steps(self, value: object) -> None:
        if value is None or value == "":
            return
        steps = self._int(value)
        if steps is None or not 1 <= steps <= MAX_STEPS:
            self.left_out.append(f"Its steps ({str(value)[:30]}) are out of range.")
            return
        self.values["steps"] = steps

    def guidance(self, value: object) -> None:
        if value is None or value == "":
            return
        try:
            guidance = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            guidance = math.nan
        if not (math.isfinite(guidance) and 0.0 <= guidance <= MAX_GUIDANCE):
            self.left_out.append(f"Its guidance ({str(value)[:30]}) is out of range.")
            return
        self.values["guidance_scale"] = guidance

    def size(self, width: object, height: object) -> None:
        if width is None and height is None:
            return
        w, h = self._int(width), self._int(height)
        if w is None or h is None or not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
            self.left_out.append(f"Its size ({str(width)[:12]}x{str(height)[:12]}) is not usable.")
            return
        if w % 8 or h % 8:
            self.left_out.append(
                f"Its size {w}x{h} is not a multiple of 8; the form keeps its own size."
            )
            return
        self.values["width"], self.values["height"] = w, h

    def size_text(self, text: object) -> None:
        match = _SIZE.match(text) if isinstance(text, str) else None
        if match:
            self.size(match.group(1), match.group(2))

    def sampler(self, name: object, schedule: object = None) -> None:
        if not isinstance(name, str) or not name.strip():
            return
        self.sampler_name = name.strip()[:100]
        ours = our_sampler(name, schedule if isinstance(schedule, str) else "")
        if ours is None:
            self.left_out.append(
                f"Its sampler {self.sampler_name!r} has no match here; the form keeps its own."
            )
        else:
            self.values["scheduler"] = ours

    def model(self, name: object) -> None:
        if isinstance(name, str) and name.strip():
            self.model_name = name.strip()[:500]

    def hires(self, fields: dict[str, str]) -> None:
        """A1111's hires fix fields (engine/hires_metadata.py)."""
        width, height = self.values.get("width", 512), self.values.get("height", 512)
        hires, notes = hires_metadata.hires_from_fields(fields, width, height)
        self.left_out += notes
        if hires is None:
            return
        try:
            self.values["hires"] = hires_metadata.check_hires_record(dataclasses.asdict(hires))
        except hires_metadata.Rejected as exc:
            self.left_out.append(f"Its hires fix was left out (it must be {exc}).")

    def canvas(self, fields: dict[str, str]) -> None:
        """The upscale, outpaint and forward-process fields, ControlNet units and regions."""
        upscale, notes = hires_metadata.upscale_from_fields(fields)
        values, more = canvas_metadata.from_fields(fields)
        self.values.update(values, **({"upscale": upscale} if upscale is not None else {}))
        size = (self.values.get("width", 512), self.values.get("height", 512))
        carried = control_metadata.from_fields(fields, size)
        if carried.regions:
            self.values["regions"] = carried.regions
        self.units = carried.units
        self.left_out += [
            f"Its {note} was left out." for note in (*notes, *more, *carried.left_out)
        ]

    def result(self, resolve_model: Callable[[str], str | None] | None) -> PictureSettings | None:
        if self.model_name and resolve_model is not None:
            found = resolve_model(self.model_name)
            if found:
                self.values["model"] = found
            else:
                self.left_out.append(f"Its model {self.model_name!r} is not in your model library.")
        if not self.values:
            return None
        return PictureSettings(
            tool=self.tool,
            values=dict(self.values),
            model_name=self.model_name,
            sampler_name=self.sampler_name,
            left_out=tuple(self.left_out),
            units=self.units,
        )


def our_sampler(name: str, schedule: str = "") -> str | None:
    """Our scheduler for a sampler name as any of the tools writes it ("euler_ancestral",
    "dpmpp_2m" + schedule "karras", InvokeAI's "dpmpp_2m_k", NovelAI's
    "k_euler_ancestral", Fooocus' "dpmpp_2m_sde_gpu", Draw Things' "Euler A Trailing")."""
    key = name.strip().lower()
    for suffix in (" trailing", " ays", " simple"):
        key = key.removesuffix(suffix)
    key = key.removeprefix("k_").removesuffix("_gpu").removesuffix("_bh2")
    key = key.replace("uni_pc", "unipc")  # ComfyUI's spelling
    karras = schedule.strip().lower() == "karras"
    if key.endswith("_k"):
        key, karras = key[:-2], True
    if karras and "karras" not in key:
        # A sampler we only have without Karras sigmas is still the closest match.
        return metadata.sampler_from_name(f"{key} karras") or metadata.sampler_from_name(key)
    return metadata.sampler_from_name(key)


# ----------------------------------------------------------------------------- formats


def _a1111(texts: dict[str, str], text: str, tool_hint: str = "") -> _Collector | None:
    prompt, negative, fields = metadata.parse_a1111_fields(text)
    if not fields and not prompt:
        return None
    version = fields.get("Version", "")
    tool = tool_hint or A1111
    if version.startswith("DiffusionDesk"):
        tool = DIFFUSIONDESK
    elif fields.get("App", "").replace(" ", "").lower() == "sd.next":
        tool = SDNEXT
    elif re.match(r"^f\d", version):
        tool = FORGE
    elif version.startswith("Fooocus"):
        tool = FOOOCUS
    got = _Collector(tool)
    got.text("prompt", prompt)
    got.text("negative_prompt", negative)
    got.seed(fields.get("Seed"))
    got.steps(fields.get("Steps"))
    got.guidance(fields.get("CFG scale") or fields.get("Guidance Scale"))
    got.sampler(fields.get("Sampler"), fields.get("Schedule type"))
    got.size_text(fields.get("Size"))
    got.model(fields.get("Model"))
    got.hires(fields)
    got.canvas(fields)
    return got


def _swarmui(record: dict) -> _Collector:
    params = record.get("sui_image_params")
    params = params if isinstance(params, dict) else {}
    got = _Collector(SWARMUI)
    got.text("prompt", params.get("prompt"))
    got.text("negative_prompt", params.get("negativeprompt"))
    got.seed(params.get("seed"))
    got.steps(params.get("steps"))
    got.guidance(params.get("cfgscale"))
    got.sampler(params.get("sampler"), params.get("scheduler"))
    got.size(params.get("width"), params.get("height"))
    got.model(params.get("model"))
    return got


def _draw_things(record: dict) -> _Collector:
    got = _Collector(DRAW_THINGS)
    got.text("prompt", record.get("c"))
    got.text("negative_prompt", record.get("uc"))
    got.seed(record.get("seed"))
    got.steps(record.get("steps"))
    got.guidance(record.get("scale"))
    got.sampler(record.get("sampler"))
    got.size_text(record.get("size"))
    got.model(record.get("model"))
    return got


def _from_prompt_info(tool: str, info: Any) -> _Collector:
    """Our values from sd-parsers' PromptInfo (first sampler: a second one is usually a
    hires-fix or refiner pass)."""
    got = _Collector(tool)
    samplers = list(info.samplers)
    if not samplers:
        return got
    sampler = samplers[0]
    got.text("prompt", ", ".join(p.value for p in sampler.prompts if isinstance(p.value, str)))
    got.text(
        "negative_prompt",
        ", ".join(p.value for p in sampler.negative_prompts if isinstance(p.value, str)),
    )
    params = sampler.parameters if isinstance(sampler.parameters, dict) else {}
    got.seed(params.get("seed", params.get("noise_seed")))
    got.steps(params.get("steps"))
    got.guidance(params.get("cfg_scale"))
    got.sampler(sampler.name, params.get("scheduler"))
    if sampler.model is not None:
        got.model(sampler.model.name)
    return got


def _comfyui(texts: dict[str, str]) -> _Collector | None:
    prompt = _json(texts.get("prompt"))
    if not isinstance(prompt, dict):
        return None
    workflow = _json(texts.get("workflow"))
    if not isinstance(workflow, dict) or not isinstance(workflow.get("links"), list):
        workflow = {"links": []}  # an API-format save: the graph alone
    try:
        info = ComfyUIParser().parse({"prompt": prompt, "workflow": workflow})
    except ParserError:
        return None
    got = _from_prompt_info(COMFYUI, info)
    latents = info.metadata.get("EmptyLatentImage") or info.metadata.get("EmptySD3LatentImage")
    if isinstance(latents, list) and latents and isinstance(latents[0], dict):
        got.size(latents[0].get("width"), latents[0].get("height"))
    return got


def _invokeai(texts: dict[str, str]) -> _Collector | None:
    keys = ("invokeai_metadata", "sd-metadata", "Dream")
    if not any(k in texts for k in keys):
        return None
    try:
        info = InvokeAIParser().parse(
            {k: texts[k] for k in (*keys, "invokeai_graph") if k in texts}
        )
    except ParserError:
        return None
    got = _from_prompt_info(INVOKEAI, info)
    record = _json(texts.get("invokeai_metadata")) or _json(texts.get("sd-metadata"))
    record = record if isinstance(record, dict) else {}
    image = record["image"] if isinstance(record.get("image"), dict) else record
    got.size(image.get("width"), image.get("height"))
    if not got.model_name:
        model = record.get("model")
        got.model(model.get("name") if isinstance(model, dict) else model)
    return got


def _novelai(texts: dict[str, str]) -> _Collector | None:
    if not {"Comment", "Description"} <= texts.keys():
        return None
    params = {"Source": texts.get("Source", ""), **texts}
    try:
        info = NovelAIParser().parse(params)
    except ParserError:  # a "Comment" chunk of some other program
        return None
    got = _from_prompt_info(NOVELAI, info)
    got.steps(info.metadata.get("steps"))  # sd-parsers leaves NovelAI's steps in metadata
    got.size(info.metadata.get("width"), info.metadata.get("height"))
    got.model(texts.get("Source"))
    return got


def _fooocus(record: dict, text: str) -> _Collector:
    try:
        got = _from_prompt_info(FOOOCUS, FooocusParser().parse({"parameters": text}))
    except ParserError:  # no base_model_hash, which sd-parsers insists on
        got = _Collector(FOOOCUS)
        got.text("prompt", record.get("prompt"))
        got.text("negative_prompt", record.get("negative_prompt"))
        got.seed(record.get("seed"))
        got.steps(record.get("steps"))
        got.guidance(record.get("guidance_scale"))
        got.sampler(record.get("sampler"), record.get("scheduler"))
        got.model(record.get("base_model"))
    resolution = record.get("resolution")
    if isinstance(resolution, str):
        with contextlib.suppress(ValueError, SyntaxError, MemoryError, RecursionError):
            resolution = ast.literal_eval(resolution[:40])
    if isinstance(resolution, list | tuple) and len(resolution) == 2:
        got.size(*resolution)
    return got


def _own(texts: dict[str, str]) -> PictureSettings | None:
    if metadata.JSON_KEY not in texts:
        return None
    reading = metadata.from_record_checked(texts[metadata.JSON_KEY])
    request, left_out = reading.request, reading.left_out
    if request is None:
        return None
    return PictureSettings(
        tool=DIFFUSIONDESK,
        values={"prompt": request.prompt},
        model_name=request.model,
        sampler_name=str(request.scheduler),
        left_out=tuple(f"{note} was left out." for note in left_out),
        request=request,
        units=reading.units,
    )


def _collect(texts: dict[str, str]) -> _Collector | None:
    # The texts that may hold a JSON record or A1111 text, in the order tools use them.
    carriers = [texts[k] for k in ("parameters", "UserComment", "ImageDescription") if k in texts]
    for text in carriers:
        record = _json(text)
        if isinstance(record, dict) and "sui_image_params" in record:
            return _swarmui(record)
    if "prompt" in texts and _json(texts["prompt"]) is not None:
        return _comfyui(texts)
    invoke = _invokeai(texts)
    if invoke is not None:
        return invoke
    if texts.get("Software", "").startswith("NovelAI") or "Comment" in texts:
        novel = _novelai(texts)
        if novel is not None:
            return novel
    for text in carriers:
        record = _json(text)
        if isinstance(record, dict) and ("base_model" in record or "fooocus_scheme" in texts):
            return _fooocus(record, text)
    draw_things = _json(texts.get("xmp:UserComment"))
    if isinstance(draw_things, dict) and ("c" in draw_things or "sampler" in draw_things):
        return _draw_things(draw_things)
    for text in carriers:
        if _json(text) is None:
            return _a1111(texts, text)
    if "xmp:description" in texts:
        tool = DRAW_THINGS if "Draw Things" in texts.get("xmp:CreatorTool", "") else ""
        return _a1111(texts, texts["xmp:description"], tool)
    return None


def read_picture_settings(
    source: str | os.PathLike[str] | Image.Image,
    resolve_model: Callable[[str], str | None] | None = None,
) -> PictureSettings | None:
    """The settings a picture carries, or None when it carries none we can use.

    resolve_model(name) turns the tool's model name into something the form's model
    box takes (a path in the model library), or None when there is no such model.
    Raises only what opening the file raises (OSError, PIL.UnidentifiedImageError)."""
    if not isinstance(source, Image.Image):
        with Image.open(source) as image:
            return read_picture_settings(image, resolve_model)
    try:
        texts = picture_texts(source)
        own = _own(texts)
        if own is not None:
            return own
        collected = _collect(texts)
    except Exception:  # hostile or damaged metadata: as if none
        return None
    return collected.result(resolve_model) if collected is not None else None
