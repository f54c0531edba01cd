"""Prompt embeddings the AUTOMATIC1111 way: weights, prompts past 77 tokens, clip skip.

The pipeline's own `encode_prompt` truncates at the tokenizer's 77 tokens and knows no
weights. Here the prompt is parsed (engine/prompts.py), tokenized fragment by fragment,
and cut into chunks of 75 tokens as A1111 does (a BREAK starts a new chunk; a chunk
that fills up within 20 tokens of a comma moves the words after that comma to the next
chunk). Each chunk gets its start and end tokens and is encoded on its own; the chunks'
hidden states are concatenated (77·n vectors), which the UNet's cross-attention takes
at any length. Weights multiply each token's vector, and the chunk's mean is then put
back to what it was (A1111's "original" emphasis).

A prompt that fits one chunk and has no weights is encoded exactly as diffusers'
`encode_prompt` would (same ids, same padding, same layer), and clip skip follows
diffusers' `clip_skip` (ours counts the A1111 way: 1 = last layer, 2 = the one before;
diffusers' clip_skip = ours - 1). For SDXL both encoders run on the same chunks, their
states are concatenated, and the pooled vector comes from the second encoder's first
chunk, as in A1111 and diffusers; clip skip applies to both encoders, and to the
negative prompt too (diffusers' SDXL pipeline leaves it off the negative; A1111 does not).
An empty SDXL negative prompt gives zeros where the model's config asks for it
(`force_zeros_for_empty_prompt`), as diffusers does.

Not done: A1111's prompt editing (`[a:b:0.5]`), alternation (`[a|b]`) and `AND`; they
are read as plain text with brackets, and a multi-vector embedding is not kept whole
at a chunk boundary.

Families are described by `TextEncoderSlot`s (which tokenizer, which encoder, which
layer); a family without an entry in `_SLOTS` (the newer ones, whose encoders are not
CLIP) gets the plain text passed to its pipeline, with the old truncation warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.api import EngineError, ErrorKind, ModelFamily
from engine.prompts import Fragment, parse_prompt

CHUNK_LENGTH = 75  # tokens per chunk, without the start and end tokens
COMMA_BACKTRACK = 20  # A1111's default "comma padding backtrack"
# Past this many chunks (2,400 tokens) the prompt is cut: each chunk costs cross-attention
# time at every step, and no real prompt is that long.
MAX_CHUNKS = 32


@dataclass(frozen=True)
class TextEncoderSlot:
    """One text encoder of a family and how its output is read."""

    tokenizer: Any
    encoder: Any
    sdxl_layers: bool  # SDXL: penultimate layer, no final norm; SD1/2: last layer
    pooled: bool  # this encoder also gives the pooled vector (SDXL's second encoder)


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)


@dataclass
class PromptEmbeddings:
    """What the pipeline is called with instead of the prompt texts."""

    kwargs: dict[str, Any]
    warnings: list[str]
    chunks: int  # chunks of the longer of prompt and negative prompt


def _sd_slots(pipe: Any) -> list[TextEncoderSlot]:
    return [TextEncoderSlot(pipe.tokenizer, pipe.text_encoder, False, False)]


def _sdxl_slots(pipe: Any) -> list[TextEncoderSlot]:
    slots = []
    if getattr(pipe, "text_encoder", None) is not None:
        slots.append(TextEncoderSlot(pipe.tokenizer, pipe.text_encoder, True, False))
    slots.append(TextEncoderSlot(pipe.tokenizer_2, pipe.text_encoder_2, True, True))
    return slots


_SLOTS: dict[ModelFamily, Callable[[Any], list[TextEncoderSlot]]] = {
    ModelFamily.SD1: _sd_slots,
    ModelFamily.SD2: _sd_slots,
    ModelFamily.SDXL: _sdxl_slots,
}


# ----------------------------------------------------------------------------- chunks


def chunk_tokens(
    fragments: Sequence[Fragment],
    token_lists: Sequence[list[int]],
    comma_token: int | None,
    *,
    chunk_length: int = CHUNK_LENGTH,
    backtrack: int = COMMA_BACKTRACK,
) -> list[Chunk]:
    """Cut tokenized fragments into chunks of at most chunk_length tokens, A1111's way
    (before start/end tokens and padding are added). Always at least one chunk."""
    chunks: list[Chunk] = []
    chunk = Chunk()
    last_comma = -1

    def next_chunk() -> None:
        nonlocal chunk, last_comma
        chunks.append(chunk)
        chunk = Chunk()
        last_comma = -1

    for fragment, tokens in zip(fragments, token_lists, strict=True):
        if fragment.is_break:
            next_chunk()
            continue
        for token in tokens:
            if token == comma_token:
                last_comma = len(chunk.tokens)
            elif (
                backtrack
                and len(chunk.tokens) == chunk_length
                and last_comma != -1
                and len(chunk.tokens) - last_comma <= backtrack
            ):
                cut = last_comma + 1
                moved = Chunk(chunk.tokens[cut:], chunk.multipliers[cut:])
                del chunk.tokens[cut:], chunk.multipliers[cut:]
                next_chunk()
                chunk = moved
            if len(chunk.tokens) == chunk_length:
                next_chunk()
            chunk.tokens.append(token)
            chunk.multipliers.append(fragment.weight)
    if chunk.tokens or not chunks:
        chunks.append(chunk)
    return chunks


def _tokenize(pipe: Any, tokenizer: Any, fragments: Sequence[Fragment]) -> list[list[int]]:
    texts = [f.text for f in fragments]
    convert = getattr(pipe, "maybe_convert_prompt", None)
    if convert is not None:  # a multi-vector embedding's name becomes its n tokens
        texts = [convert(t, tokenizer) if t else t for t in texts]
    if not texts:
        return []
    ids = tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]
    return [list(i) for i in ids]


def _comma(tokenizer: Any) -> int | None:
    """The comma's token id (CLIP's ",</w>", else ","), or None. Looked up one token at a
    time: get_vocab() copies all 49408 entries of CLIP's vocabulary, twice a job."""
    for token in (",</w>", ","):
        index = tokenizer.convert_tokens_to_ids(token)
        if index is not None and (index != tokenizer.unk_token_id or token == tokenizer.unk_token):
            return int(index)
    return None


# ----------------------------------------------------------------------------- encoding


def _layer_count(encoder: Any) -> int:
    return int(encoder.config.num_hidden_layers)


def _encode_chunks(
    slot: TextEncoderSlot, chunks: list[Chunk], clip_skip: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(hidden states [1, 77·n, width], pooled [1, width] or None) for one prompt."""
    tok, encoder = slot.tokenizer, slot.encoder
    length = tok.model_max_length
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows, masks = [], []
    for chunk in chunks:
        body = [tok.bos_token_id, *chunk.tokens, tok.eos_token_id]
        rows.append(body + [pad] * (length - len(body)))
        masks.append([1] * len(body) + [0] * (length - len(body)))
    device = encoder.device
    ids = torch.tensor(rows, dtype=torch.long, device=device)
    kwargs: dict[str, Any] = {}
    if getattr(encoder.config, "use_attention_mask", False):
        kwargs["attention_mask"] = torch.tensor(masks, device=device)
    pooled = None
    # One chunk at a time: a batch of one gives bit for bit what diffusers computes.
    states = []
    for i in range(len(rows)):
        row_kwargs = {k: v[i : i + 1] for k, v in kwargs.items()}
        if slot.sdxl_layers:
            out = encoder(ids[i : i + 1], output_hidden_states=True, **row_kwargs)
            if slot.pooled and i == 0:
                pooled = out[0]
            states.append(out.hidden_states[-(clip_skip + 1)])
        elif clip_skip == 1:
            states.append(encoder(ids[i : i + 1], **row_kwargs)[0])
        else:
            out = encoder(ids[i : i + 1], output_hidden_states=True, **row_kwargs)
            # transformers 5 dropped the `text_model` level that diffusers still names
            norm = getattr(encoder, "text_model", encoder).final_layer_norm
            states.append(norm(out.hidden_states[-clip_skip]))
    z = torch.cat(states, dim=1)
    multipliers = [
        m
        for chunk in chunks
        for m in [1.0, *chunk.multipliers] + [1.0] * (length - 1 - len(chunk.multipliers))
    ]
    if any(m != 1.0 for m in multipliers):
        z = _emphasis(z, multipliers, length)
    return z, pooled


def _emphasis(z: torch.Tensor, multipliers: list[float], length: int) -> torch.Tensor:
    """A1111's "original" emphasis, per chunk: scale each vector, then restore the mean."""
    weights = torch.tensor(multipliers, dtype=torch.float32, device=z.device)
    out = []
    for i in range(z.shape[1] // length):
        part = z[:, i * length : (i + 1) * length].float()
        original_mean = part.mean()
        part = part * weights[i * length : (i + 1) * length, None]
        part = part * (original_mean / part.mean())
        out.append(part.to(z.dtype))
    return torch.cat(out, dim=1)


def _encode_text(
    pipe: Any, slots: list[TextEncoderSlot], text_fragments: list[Fragment], clip_skip: int
) -> tuple[torch.Tensor, torch.Tensor | None, int, bool]:
    """(states, pooled, chunk count, truncated) for one prompt over all encoders."""
    states, pooled, count, truncated = [], None, 0, False
    for slot in slots:
        tokens = _tokenize(pipe, slot.tokenizer, text_fragments)
        chunks = chunk_tokens(text_fragments, tokens, _comma(slot.tokenizer))
        if len(chunks) > MAX_CHUNKS:
            chunks, truncated = chunks[:MAX_CHUNKS], True
        z, p = _encode_chunks(slot, chunks, clip_skip)
        states.append(z)
        pooled = p if p is not None else pooled
        count = max(count, len(chunks))
    return torch.cat(states, dim=-1), pooled, count, truncated


def _check_clip_skip(slots: list[TextEncoderSlot], clip_skip: int) -> None:
    layers = min(_layer_count(s.encoder) for s in slots)
    if not 1 <= clip_skip <= layers:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"Clip skip {clip_skip} is more than this model's text encoder allows "
            f"(it has {layers} layers; choose 1 to {layers}).",
        )


def _pad_to(z: torch.Tensor, empty: torch.Tensor, chunks: int, length: int) -> torch.Tensor:
    """Make z as long as `chunks` chunks by repeating the empty prompt's chunk (A1111's
    pad_cond_uncond): diffusers needs prompt and negative embeddings of one shape."""
    missing = chunks - z.shape[1] // length
    if missing <= 0:
        return z
    return torch.cat([z, empty.repeat(1, missing, 1)], dim=1)


def encode_prompts(
    pipe: Any,
    family: ModelFamily,
    prompt: str,
    negative_prompt: str,
    *,
    clip_skip: int = 1,
) -> PromptEmbeddings:
    """Embeddings for the pipeline call (`prompt_embeds`, `negative_prompt_embeds` and
    for SDXL the pooled ones); `<lora:…>` tags are left out of the encoded text."""
    parsed, negative = parse_prompt(prompt), parse_prompt(negative_prompt)
    warnings = [*parsed.problems, *negative.problems]
    if family not in _SLOTS:
        return PromptEmbeddings(
            {"prompt": parsed.text, "negative_prompt": negative.text or None},
            warnings + truncation_warnings(pipe, parsed.text, negative.text),
            1,
        )
    slots = _SLOTS[family](pipe)
    _check_clip_skip(slots, clip_skip)
    length = slots[0].tokenizer.model_max_length
    sdxl = any(s.pooled for s in slots)
    with torch.inference_mode():
        z, pooled, n, cut = _encode_text(pipe, slots, list(parsed.fragments), clip_skip)
        zero_negative = (
            sdxl
            and not negative.text
            and bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
        )
        if zero_negative:  # diffusers' SDXL rule for an empty negative prompt
            nz = torch.zeros_like(z)
            npooled = torch.zeros_like(pooled) if pooled is not None else None
            nn, ncut = n, False
        else:
            nz, npooled, nn, ncut = _encode_text(pipe, slots, list(negative.fragments), clip_skip)
        chunks = max(n, nn)
        if n != nn:
            empty, _, _, _ = _encode_text(pipe, slots, [Fragment("", 1.0)], clip_skip)
            z, nz = _pad_to(z, empty, chunks, length), _pad_to(nz, empty, chunks, length)
    for label, was_cut in (("prompt", cut), ("negative prompt", ncut)):
        if was_cut:
            warnings.append(
                f"The {label} is longer than {MAX_CHUNKS * CHUNK_LENGTH} tokens; "
                "the text after that was ignored."
            )
    kwargs: dict[str, Any] = {"prompt_embeds": z, "negative_prompt_embeds": nz}
    if sdxl:
        kwargs["pooled_prompt_embeds"] = pooled
        kwargs["negative_pooled_prompt_embeds"] = npooled
    return PromptEmbeddings(kwargs, warnings, chunks)


# The truncation warning quotes at most this much of the ignored text.
EXCERPT_TOKENS = 12
EXCERPT_CHARS = 60


def truncation_warnings(pipe: Any, prompt: str, negative_prompt: str) -> list[str]:
    """For pipelines that encode the text themselves: what their tokenizer cuts off."""
    tokenizer = getattr(pipe, "tokenizer", None) or getattr(pipe, "tokenizer_2", None)
    if tokenizer is None:
        return []
    found = []
    limit = tokenizer.model_max_length
    for label, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
        if not text:
            continue
        ids = tokenizer(text, truncation=False).input_ids
        if len(ids) > limit:
            # Quote only the start of what was cut: the rest could be pages long.
            end = min(limit - 1 + EXCERPT_TOKENS, len(ids) - 1)
            ignored = tokenizer.decode(ids[limit - 1 : end], skip_special_tokens=True).strip()
            more = "…" if end < len(ids) - 1 else ""
            found.append(
                f"The {label} is {len(ids) - 2} tokens long but the text encoder takes "
                f'{limit - 2}; the end was ignored, from "{ignored[:EXCERPT_CHARS]}{more}".'
            )
    return found
