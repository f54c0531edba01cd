"""The fields of a client's request that name files, chosen inside the server's folders.

A local request may name any file (a LoRA tag with a path, a ControlNet folder, an
upscaler file). A client of a server may not: each of these names is looked up by file
name in the server's own model folders (server/catalog.py), and a path is refused with
a sentence, so no request reaches a file outside them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.api import EngineError, ErrorKind, GenerationRequest
from engine.asset_folders import AssetKind
from engine.prompts import extract_extra_networks
from engine.upscale_options import UPSCALER_MODEL_SUFFIXES, is_model
from server.catalog import ModelCatalog


def is_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith((".", "~")) or "\x00" in name


def check_lora_names(request: GenerationRequest) -> None:
    """EngineError(BAD_INPUT) for a `<lora:…>` tag in any prompt that names a path."""
    texts = [request.prompt, request.negative_prompt, *(r.prompt for r in request.regions)]
    if request.hires is not None:
        texts += [request.hires.prompt, request.hires.negative_prompt]
    for text in texts:
        for tag in extract_extra_networks(text)[1]:
            if is_path(tag.name):
                raise EngineError(
                    ErrorKind.BAD_INPUT,
                    f"the LoRA {tag.name[:80]!r} is a path; on a server, name the file only "
                    "(it is looked up in the server's LoRA folders)",
                )


def server_fields(
    request: GenerationRequest, catalog: ModelCatalog
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the server's values, the client's values) of the ControlNet and upscaler fields
    that name files; both empty when the request names none."""
    check_lora_names(request)
    server: dict[str, Any] = {}
    client: dict[str, Any] = {}
    if request.controls:
        server["controls"] = tuple(
            dataclasses.replace(u, model=catalog.resolve_asset(AssetKind.CONTROLNET, u.model))
            for u in request.controls
        )
        client["controls"] = request.controls
    for name in ("hires", "upscale"):
        part = getattr(request, name)
        if part is not None and is_model(part.upscaler):
            found = catalog.resolve_asset(
                AssetKind.UPSCALER, part.upscaler, suffixes=UPSCALER_MODEL_SUFFIXES
            )
            server[name] = dataclasses.replace(part, upscaler=found)
            client[name] = part
    return server, client
