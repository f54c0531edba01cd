"""Pictures carrying other tools' settings, written the way each tool writes them.

Each builder takes a path whose suffix picks PNG, JPEG or WebP and stores the tool's
record where that tool puts it in that format. What each tool stores (as of late 2026):
- AUTOMATIC1111/Forge/SD.Next: PNG "parameters" text; JPEG/WebP EXIF UserComment,
  "UNICODE\\0" + UTF-16BE (piexif's "unicode" encoding).
- ComfyUI: PNG "prompt" (API graph) and "workflow" texts; WebP/JPEG savers put
  "prompt:{...}" in EXIF Model (0x0110) and "workflow:{...}" in Make (0x010F).
- InvokeAI: PNG "invokeai_metadata" (and "invokeai_graph"); it saves PNG only.
- Fooocus: PNG "parameters" JSON + "fooocus_scheme"; JPEG/WebP EXIF UserComment as
  plain text, Software "Fooocus v...".
- NovelAI: PNG texts Title, Description (prompt), Software, Source (model), Comment
  (JSON); it serves PNG only.
- SwarmUI: "parameters" JSON with "sui_image_params" (PNG text; JPEG/WebP UserComment).
- Draw Things: an XMP packet (PNG iTXt "XML:com.adobe.xmp", JPEG APP1, WebP XMP
  chunk) with JSON in exif:UserComment and A1111-like text in dc:description.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

EXIF_IFD, USER_COMMENT, SOFTWARE, MAKE, MODEL = 0x8769, 0x9286, 0x0131, 0x010F, 0x0110

A1111_TEXT = (
    "a castle on a hill, (golden hour:1.2)\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, "
    "Seed: 1234567890, Size: 512x768, Model hash: 6ce0161689, Model: dreamshaper_8, "
    'Lora hashes: "detail: 0a1b, ink: 2c3d", Version: {version}'
)


def _picture(size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, (40, 90, 160))


def save(
    path: Path,
    *,
    png_texts: dict[str, str] | None = None,
    user_comment: bytes | None = None,
    exif_tags: dict[int, str] | None = None,
    xmp: str | None = None,
) -> Path:
    """Write a small picture to path (format from its suffix) with the given metadata."""
    image = _picture()
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        info = PngInfo()
        for key, value in (png_texts or {}).items():
            info.add_text(key, value)
        if xmp is not None:
            info.add_itxt("XML:com.adobe.xmp", xmp)
        image.save(path, "PNG", pnginfo=info)
        return path
    options: dict[str, object] = {}
    if user_comment is not None or exif_tags:
        exif = Image.Exif()
        for tag, value in (exif_tags or {}).items():
            exif[tag] = value
        if user_comment is not None:
            exif.get_ifd(EXIF_IFD)[USER_COMMENT] = user_comment
        options["exif"] = exif.tobytes()
    if xmp is not None:
        options["xmp"] = xmp.encode()
    image.save(path, "JPEG" if suffix in (".jpg", ".jpeg") else "WEBP", **options)
    return path


def unicode_comment(text: str) -> bytes:
    return b"UNICODE\x00" + text.encode("utf-16-be")


def a1111(path: Path, version: str = "v1.10.1", extra: str = "") -> Path:
    text = A1111_TEXT.format(version=version) + extra
    if path.suffix.lower() == ".png":
        return save(path, png_texts={"parameters": text})
    return save(path, user_comment=unicode_comment(text))


COMFY_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 987654321012,
            "steps": 30,
            "cfg": 7.5,
            "sampler_name": "euler_ancestral",
            "scheduler": "karras",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "sdxl/juggernautXL.safetensors"},
    },
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 832, "height": 1216, "batch_size": 1},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "a red fox in snow", "clip": ["4", 1]},
    },
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}
COMFY_WORKFLOW = {
    "last_node_id": 9,
    "links": [
        [1, 4, 0, 3, 0, "MODEL"],
        [2, 6, 0, 3, 1, "CONDITIONING"],
        [3, 7, 0, 3, 2, "CONDITIONING"],
        [4, 5, 0, 3, 3, "LATENT"],
        [5, 4, 1, 6, 0, "CLIP"],
        [6, 4, 1, 7, 0, "CLIP"],
        [7, 3, 0, 8, 0, "LATENT"],
        [8, 4, 2, 8, 1, "VAE"],
        [9, 8, 0, 9, 0, "IMAGE"],
    ],
    "nodes": [],
}


def comfyui(path: Path, with_workflow: bool = True) -> Path:
    prompt = json.dumps(COMFY_PROMPT)
    workflow = json.dumps(COMFY_WORKFLOW)
    if path.suffix.lower() == ".png":
        texts = {"prompt": prompt}
        if with_workflow:
            texts["workflow"] = workflow
        return save(path, png_texts=texts)
    tags = {MODEL: f"prompt:{prompt}"}
    if with_workflow:
        tags[MAKE] = f"workflow:{workflow}"
    return save(path, exif_tags=tags)


INVOKE_METADATA = {
    "generation_mode": "txt2img",
    "positive_prompt": "a lighthouse at dusk",
    "negative_prompt": "people",
    "width": 768,
    "height": 512,
    "seed": 4242,
    "rand_device": "cpu",
    "cfg_scale": 5.5,
    "cfg_rescale_multiplier": 0,
    "steps": 25,
    "scheduler": "dpmpp_2m_k",
    "model": {
        "key": "abc",
        "hash": "blake3:00",
        "name": "Juggernaut XL v9",
        "base": "sdxl",
        "type": "main",
    },
    "app_version": "5.6.0",
}


def invokeai(path: Path) -> Path:
    return save(path, png_texts={"invokeai_metadata": json.dumps(INVOKE_METADATA)})


FOOOCUS_RECORD = {
    "adm_guidance": "(1.5, 0.8, 0.3)",
    "base_model": "juggernautXL_v8Rundiffusion.safetensors",
    "guidance_scale": 4.0,
    "negative_prompt": "ugly",
    "performance": "Speed",
    "prompt": "portrait of an astronaut",
    "refiner_model": "None",
    "resolution": "(896, 1152)",
    "sampler": "dpmpp_2m_sde_gpu",
    "scheduler": "karras",
    "seed": "777",
    "sharpness": 2.0,
    "steps": 30,
    "styles": "['Fooocus V2']",
    "version": "Fooocus v2.5.5",
}


def fooocus(path: Path) -> Path:
    text = json.dumps(FOOOCUS_RECORD)
    if path.suffix.lower() == ".png":
        return save(path, png_texts={"parameters": text, "fooocus_scheme": "fooocus"})
    return save(path, user_comment=text.encode(), exif_tags={SOFTWARE: "Fooocus v2.5.5"})


NOVELAI_COMMENT = {
    "prompt": "1girl, library, reading",
    "steps": 28,
    "height": 1216,
    "width": 832,
    "scale": 5.0,
    "uncond_scale": 1.0,
    "cfg_rescale": 0.0,
    "seed": 3141592653,
    "n_samples": 1,
    "noise_schedule": "native",
    "sampler": "k_euler_ancestral",
    "uc": "lowres, bad anatomy",
}


def novelai(path: Path) -> Path:
    return save(
        path,
        png_texts={
            "Title": "NovelAI generated image",
            "Description": "1girl, library, reading",
            "Software": "NovelAI",
            "Source": "Stable Diffusion XL C1E1DE52",
            "Comment": json.dumps(NOVELAI_COMMENT),
        },
    )


SWARM_RECORD = {
    "sui_image_params": {
        "prompt": "a bowl of ramen, studio photo",
        "negativeprompt": "text",
        "model": "OfficialStableDiffusion/sd_xl_base_1.0",
        "seed": 55,
        "steps": 24,
        "cfgscale": 6.0,
        "aspectratio": "Custom",
        "width": 1024,
        "height": 1024,
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
        "swarm_version": "0.9.6.2",
    },
    "sui_extra_data": {"date": "2026-11-02", "generation_time": "2.1 sec"},
}


def swarmui(path: Path) -> Path:
    text = json.dumps(SWARM_RECORD)
    if path.suffix.lower() == ".png":
        return save(path, png_texts={"parameters": text})
    return save(path, user_comment=unicode_comment(text))


DRAW_THINGS_RECORD = {
    "c": "a paper boat on a puddle",
    "uc": "blurry",
    "model": "sd_xl_base_1.0_f16.ckpt",
    "sampler": "DPM++ 2M Karras",
    "scale": 5.0,
    "seed": 2718281828,
    "seed_mode": "Scale Alike",
    "size": "1024x768",
    "steps": 32,
    "strength": 1.0,
}


def draw_things_xmp(record: dict | None = None, description: str | None = None) -> str:
    record = DRAW_THINGS_RECORD if record is None else record
    comment = json.dumps(record).replace("&", "&amp;").replace("<", "&lt;")
    description = description or (
        "a paper boat on a puddle\n-blurry\nSteps: 32, Sampler: DPM++ 2M Karras, "
        "Guidance Scale: 5.0, Seed: 2718281828, Size: 1024x768, Model: sd_xl_base_1.0_f16.ckpt"
    )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 6.0.0">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{description}</rdf:li>'
        "</rdf:Alt></dc:description>"
        f'<exif:UserComment><rdf:Alt><rdf:li xml:lang="x-default">{comment}</rdf:li>'
        "</rdf:Alt></exif:UserComment>"
        "<xmp:CreatorTool>Draw Things</xmp:CreatorTool>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    )


def draw_things(path: Path) -> Path:
    return save(path, xmp=draw_things_xmp())
