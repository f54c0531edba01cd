"""Prompt embeddings: equal to diffusers' for short prompts, chunked past 75 tokens the
A1111 way, weighted with the mean restored, and clip skip as diffusers' clip_skip."""

from __future__ import annotations

import pytest
import torch
from addon_helpers import clip_tokenizer, sd_pipeline, sdxl_pipeline

from engine.addons.prompt_encoding import Chunk, _comma, chunk_tokens, encode_prompts
from engine.api import EngineError
from engine.prompts import parse_attention


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return sd_pipeline(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="module")
def sd2(tmp_path_factory):
    return sd_pipeline(tmp_path_factory.mktemp("sd2"), pad="!")


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return sdxl_pipeline(tmp_path_factory.mktemp("sdxl"))


def chunks_of(text: str, **kwargs) -> list[Chunk]:
    tok = clip_tokenizer()
    fragments = parse_attention(text)
    ids = tok([f.text for f in fragments], add_special_tokens=False).input_ids
    return chunk_tokens(fragments, ids, tok.get_vocab()[",</w>"], **kwargs)


# ----------------------------------------------------------------------------- chunking


def test_a_short_prompt_is_one_chunk():
    chunks = chunks_of("a red circle")
    assert len(chunks) == 1 and len(chunks[0].tokens) == 3
    assert chunks[0].multipliers == [1.0, 1.0, 1.0]


def test_a_long_prompt_is_cut_into_chunks_of_75_tokens():
    chunks = chunks_of(" ".join(["cat"] * 160))
    assert [len(c.tokens) for c in chunks] == [75, 75, 10]


def test_break_starts_a_new_chunk():
    chunks = chunks_of("a red circle BREAK a blue square")
    assert [len(c.tokens) for c in chunks] == [3, 3]


def test_a_full_chunk_moves_the_words_after_a_near_comma_to_the_next_chunk():
    # 70 words, a comma, then 10 words: the chunk fills at 75 within 20 tokens of the
    # comma, so the words after the comma move on together (A1111's comma backtrack).
    chunks = chunks_of(" ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10))
    assert [len(c.tokens) for c in chunks] == [71, 10]
    assert chunks[0].tokens[-1] == clip_tokenizer().get_vocab()[",</w>"]


def test_without_a_near_comma_the_chunk_is_cut_at_75():
    chunks = chunks_of(", " + " ".join(["cat"] * 100))
    assert [len(c.tokens) for c in chunks] == [75, 26]


def test_weights_follow_their_tokens_into_the_chunks():
    chunks = chunks_of("a (red:1.5) circle")
    assert chunks[0].multipliers == [1.0, 1.5, 1.0]


# ----------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("negative", ["", "blurry, dark"])
def test_a_short_prompt_without_weights_gives_exactly_diffusers_embeddings(sd, negative):
    ours = encode_prompts(sd, "sd1", "a red circle, on a blue square", negative).kwargs
    theirs = sd.encode_prompt("a red circle, on a blue square", "cpu", 1, True, negative)
    assert torch.equal(ours["prompt_embeds"], theirs[0])
    assert torch.equal(ours["negative_prompt_embeds"], theirs[1])


def test_sd2_padding_gives_exactly_diffusers_embeddings(sd2):
    ours = encode_prompts(sd2, "sd2", "a red circle", "dark").kwargs
    theirs = sd2.encode_prompt("a red circle", "cpu", 1, True, "dark")
    assert torch.equal(ours["prompt_embeds"], theirs[0])
    assert torch.equal(ours["negative_prompt_embeds"], theirs[1])


@pytest.mark.parametrize("negative", ["", "blurry"])
def test_sdxl_short_prompt_gives_exactly_diffusers_embeddings_and_pooled(sdxl, negative):
    ours = encode_prompts(sdxl, "sdxl", "a red circle", negative).kwargs
    theirs = sdxl.encode_prompt("a red circle", device="cpu", negative_prompt=negative or None)
    names = (
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
    )
    for name, expected in zip(names, theirs, strict=True):
        assert torch.equal(ours[name], expected), name


@pytest.mark.parametrize("skip", [2, 3])
def test_clip_skip_matches_diffusers_clip_skip(sd, skip):
    if not hasattr(sd.text_encoder, "text_model"):
        # diffusers' clip_skip still reads text_encoder.text_model.final_layer_norm, a
        # level transformers 5 removed; an alias (not a registered submodule) restores it.
        object.__setattr__(sd.text_encoder, "text_model", sd.text_encoder)
    ours = encode_prompts(sd, "sd1", "a red circle", "dark", clip_skip=skip).kwargs
    theirs = sd.encode_prompt("a red circle", "cpu", 1, True, "dark", clip_skip=skip - 1)
    assert torch.equal(ours["prompt_embeds"], theirs[0])
    default = encode_prompts(sd, "sd1", "a red circle", "dark").kwargs["prompt_embeds"]
    assert not torch.equal(ours["prompt_embeds"], default)


def test_sdxl_clip_skip_matches_diffusers_clip_skip(sdxl):
    ours = encode_prompts(sdxl, "sdxl", "a red circle", "", clip_skip=2).kwargs
    theirs = sdxl.encode_prompt("a red circle", device="cpu", clip_skip=1)
    assert torch.equal(ours["prompt_embeds"], theirs[0])
    assert torch.equal(ours["pooled_prompt_embeds"], theirs[2])


def test_a_clip_skip_beyond_the_encoders_layers_is_refused_with_the_range(sd):
    with pytest.raises(EngineError, match="choose 1 to 3"):
        encode_prompts(sd, "sd1", "a red circle", "", clip_skip=5)


def test_a_long_prompt_is_encoded_whole_in_chunks_of_77(sd):
    words = " ".join(["cat"] * 100)
    encoded = encode_prompts(sd, "sd1", words, "")
    assert encoded.kwargs["prompt_embeds"].shape == (1, 154, 16)
    assert encoded.kwargs["negative_prompt_embeds"].shape == (1, 154, 16)
    assert encoded.warnings == []
    # The second chunk is the encoding of the last 25 words on their own.
    rest = encode_prompts(sd, "sd1", " ".join(["cat"] * 25), "").kwargs["prompt_embeds"]
    assert torch.allclose(encoded.kwargs["prompt_embeds"][:, 77:], rest, atol=1e-6)
    # The empty negative prompt is padded with empty chunks (A1111's pad_cond_uncond).
    empty = encode_prompts(sd, "sd1", "", "").kwargs["prompt_embeds"]
    negative = encoded.kwargs["negative_prompt_embeds"]
    assert torch.allclose(negative[:, 77:], empty, atol=1e-6)


def test_sdxl_long_prompt_chunks_both_encoders_and_pools_the_first_chunk(sdxl):
    words = " ".join(["cat"] * 80)
    encoded = encode_prompts(sdxl, "sdxl", words, "").kwargs
    assert encoded["prompt_embeds"].shape == (1, 154, 40)
    first = encode_prompts(sdxl, "sdxl", " ".join(["cat"] * 75), "").kwargs
    assert torch.allclose(encoded["pooled_prompt_embeds"], first["pooled_prompt_embeds"])


def test_weights_scale_their_tokens_and_keep_the_chunk_mean(sd):
    plain = encode_prompts(sd, "sd1", "a red circle", "").kwargs["prompt_embeds"]
    weighted = encode_prompts(sd, "sd1", "a (red:1.5) circle", "").kwargs["prompt_embeds"]
    assert torch.allclose(weighted.mean(), plain.mean(), atol=1e-6)
    ratio = weighted[0] / plain[0]
    scale = ratio[0, 0]  # the start token: only the mean correction
    assert torch.allclose(ratio[2], 1.5 * scale, rtol=1e-4)  # "red" is token 2
    assert torch.allclose(ratio[1], scale.expand_as(ratio[1]), rtol=1e-4)


def test_lora_tags_are_not_encoded(sd):
    with_tag = encode_prompts(sd, "sd1", "a red circle<lora:x:0.5>", "").kwargs
    without = encode_prompts(sd, "sd1", "a red circle", "").kwargs
    assert torch.equal(with_tag["prompt_embeds"], without["prompt_embeds"])


def test_the_comma_token_is_found_without_copying_the_vocabulary():
    tokenizer = clip_tokenizer()
    assert _comma(tokenizer) == tokenizer.get_vocab()[",</w>"]

    class NoComma:
        unk_token, unk_token_id = "<unk>", 0

        def convert_tokens_to_ids(self, token: str) -> int:
            return {"<unk>": 0, "a": 1}.get(token, 0)

    assert _comma(NoComma()) is None
