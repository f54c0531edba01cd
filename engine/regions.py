"""Regional prompts by attention masking: each region's prompt steers only its own area.

The base prompt and every region's prompt are encoded as usual and their embeddings put
one after the other ([base | region 1 | region 2 ...]); the negative prompt is repeated
alongside, so the unguided half is unchanged. Every cross-attention layer of the UNet
gets a RegionalAttention processor (through diffusers' set_attn_processor), which lets
the picture's positions attend to a region's tokens only inside that region's mask, at
that layer's own resolution; the base prompt's tokens are seen everywhere. The pipeline,
its scheduler, previews and cancel stay exactly as for any job, and the processors are
put back when the job ends.

Where masks meet, each layer sees a region from a coverage of REGION_COVERAGE of its
cells on; a region too small to cover one cell at a coarse layer keeps its best cell.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from PIL import Image

from engine.api import EngineError, ErrorKind, ModelFamily, RegionPrompt

REGION_COVERAGE = 0.5
# Added to a region's attention logits inside its mask (0: plain masking). A little
# favour keeps the base prompt's tokens from drowning a region's few words: on the
# starter model's left/right check (20 seeds, float32) 0 placed 70%, 1 placed 95%, 2 90%.
REGION_BIAS = 1.0


def latent_masks(
    regions: tuple[RegionPrompt, ...],
    latent_size: tuple[int, int],
    crop: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """The regions' masks as coverage (0..1) on the latent grid: (regions, h, w).

    crop: the box an "only masked area" inpaint works in (masks are in whole-picture
    coordinates; the model sees only the box)."""
    h, w = latent_size
    out = []
    for region in regions:
        mask = region.mask.convert("L")
        if crop is not None:
            mask = mask.crop(crop)
        small = mask.resize((w, h), Image.Resampling.BOX)
        out.append(np.asarray(small, dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(out))


def _grid(latent: tuple[int, int], length: int) -> tuple[int, int]:
    """The (h, w) of a layer whose picture has `length` positions: the latent halved
    (rounding up, as the UNet's strided convolutions do) until it fits."""
    h, w = latent
    while h * w > length and h > 1:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    if h * w != length:
        raise EngineError(
            ErrorKind.INTERNAL,
            f"Regional prompts found an attention layer of {length} positions, which is no "
            f"halving of the {latent[0]}x{latent[1]} latent.",
        )
    return h, w


class RegionalAttention(AttnProcessor2_0):
    """diffusers' scaled-dot-product cross-attention with a per-position token mask."""

    def __init__(self, masks: torch.Tensor, spans: list[tuple[int, int]], tokens: int) -> None:
        super().__init__()
        self.masks = masks  # (regions, h, w) coverage on the latent grid
        self.spans = spans  # each region's token range in the concatenated prompt
        self.tokens = tokens
        self._cache: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}

    def bias(self, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """(positions, tokens): 0 where a position may read a token, -inf where not, and
        REGION_BIAS on a region's tokens inside it."""
        key = (length, dtype, device)
        if key not in self._cache:
            latent = (self.masks.shape[1], self.masks.shape[2])
            h, w = _grid(latent, length)
            cover = F.interpolate(self.masks[None], size=(h, w), mode="area")[0]
            inside = cover >= REGION_COVERAGE
            for i in range(len(inside)):  # a region smaller than a cell keeps its best cell
                if not inside[i].any():
                    inside[i] = cover[i] >= cover[i].max()
            table = torch.zeros(length, self.tokens)
            for i, (start, end) in enumerate(self.spans):
                where = inside[i].reshape(length)
                table[:, start:end] = torch.where(where, REGION_BIAS, -math.inf)[:, None]
            self._cache[key] = table.to(device=device, dtype=dtype)
        return self._cache[key]

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        if encoder_hidden_states is None or encoder_hidden_states.shape[1] != self.tokens:
            return super().__call__(
                attn, hidden_states, encoder_hidden_states, attention_mask, temb
            )
        batch = hidden_states.shape[0]
        length = (
            hidden_states.shape[1]
            if hidden_states.ndim == 3
            else math.prod(hidden_states.shape[2:])
        )
        bias = self.bias(length, hidden_states.dtype, hidden_states.device)
        # (batch, positions, tokens); diffusers repeats it for each head.
        mask = bias[None].expand(batch, -1, -1)
        if attention_mask is not None:
            mask = mask + attention_mask
        return super().__call__(attn, hidden_states, encoder_hidden_states, mask, temb)


def encode_regions(
    pipe: Any,
    family: ModelFamily,
    regions: tuple[RegionPrompt, ...],
    negative: str,
    base: dict[str, Any],
    clip_skip: int,
) -> tuple[dict[str, Any], list[tuple[int, int]], int]:
    """The pipeline's prompt arguments with the regions' embeddings appended, each
    region's token span, and the total token count."""
    from engine.addons.prompt_encoding import encode_prompts

    if "prompt_embeds" not in base or "negative_prompt_embeds" not in base:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"Regional prompts work with SD 1.x, SD 2.x and SDXL models, not {family.value}.",
        )
    positive, negatives = [base["prompt_embeds"]], [base["negative_prompt_embeds"]]
    spans, at = [], positive[0].shape[1]
    for region in regions:
        encoded = encode_prompts(pipe, family, region.prompt, negative, clip_skip=clip_skip)
        embeds = encoded.kwargs["prompt_embeds"]
        positive.append(embeds)
        negatives.append(encoded.kwargs["negative_prompt_embeds"])
        spans.append((at, at + embeds.shape[1]))
        at += embeds.shape[1]
    kwargs = dict(base)
    kwargs["prompt_embeds"] = torch.cat(positive, dim=1)
    kwargs["negative_prompt_embeds"] = torch.cat(negatives, dim=1)
    return kwargs, spans, at


@contextmanager
def regional_attention(unet: Any, processor: RegionalAttention) -> Iterator[None]:
    """Set processor on every cross-attention layer of unet; put the old ones back after."""
    if "forward" in vars(unet):  # a backend (OpenVINO, torch.compile) replaced the UNet
        raise EngineError(
            ErrorKind.BAD_INPUT,
            "Regional prompts need the plain torch backend; choose it in the speed settings.",
        )
    before = dict(unet.attn_processors)
    chosen = {
        name: processor if name.endswith("attn2.processor") else old for name, old in before.items()
    }
    unet.set_attn_processor(chosen)
    try:
        yield
    finally:
        unet.set_attn_processor(before)


def prepare(
    pipe: Any, family: ModelFamily, request: Any, plan: Any, prompt_kwargs: dict[str, Any]
) -> tuple[dict[str, Any], contextlib.AbstractContextManager[None]]:
    """For a job with regions: its prompt arguments and the context that masks the
    UNet's cross-attention while the pipeline runs. Without regions: unchanged, no-op."""
    if not request.regions:
        return prompt_kwargs, contextlib.nullcontext()
    if getattr(pipe, "unet", None) is None:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"Regional prompts work with SD 1.x, SD 2.x and SDXL models, not {family.value}.",
        )
    kwargs, spans, tokens = encode_regions(
        pipe, family, request.regions, request.negative_prompt, prompt_kwargs, request.clip_skip
    )
    factor = pipe.vae_scale_factor
    crop = plan.inpaint.crop if plan.inpaint is not None else None
    masks = latent_masks(request.regions, (plan.height // factor, plan.width // factor), crop)
    processor = RegionalAttention(masks.to(pipe.unet.device), spans, tokens)
    return kwargs, regional_attention(pipe.unet, processor)
