"""The prompt parser against AUTOMATIC1111's documented parse_prompt_attention examples,
and `<lora:…>` tags."""

from __future__ import annotations

import pytest

from engine.prompts import (
    Fragment,
    LoraTag,
    extract_extra_networks,
    format_lora_tag,
    lora_names,
    parse_attention,
    parse_prompt,
)

# The examples in the docstring of A1111's modules/prompt_parser.py parse_prompt_attention,
# with the outputs A1111 documents for them.
A1111_EXAMPLES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ],
    ),
]


def as_pairs(fragments: list[Fragment]) -> list[tuple[str, float]]:
    return [(f.text, f.weight) for f in fragments]


@pytest.mark.parametrize(("text", "expected"), A1111_EXAMPLES)
def test_the_parser_gives_a1111s_documented_result(text, expected):
    got = as_pairs(parse_attention(text))
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], abs=1e-12)


def test_brackets_multiply_as_a1111_does():
    assert as_pairs(parse_attention("((word))")) == [("word", pytest.approx(1.21))]
    assert as_pairs(parse_attention("[word]")) == [("word", pytest.approx(1 / 1.1))]
    assert as_pairs(parse_attention("[[word]]")) == [("word", pytest.approx(1 / 1.21))]
    assert as_pairs(parse_attention("(red:1.3)")) == [("red", 1.3)]
    assert as_pairs(parse_attention("(red : 0.5 )")) == [("red ", 0.5)]
    assert as_pairs(parse_attention("((red:1.5))")) == [("red", pytest.approx(1.65))]


def test_escaped_brackets_and_backslashes_are_literal_text():
    assert as_pairs(parse_attention("\\(a\\) \\[b\\] \\\\")) == [("(a) [b] \\", 1.0)]


def test_break_is_a_chunk_marker_only_as_an_upper_case_word():
    fragments = parse_attention("a cat BREAK a dog")
    assert as_pairs(fragments) == [("a cat", 1.0), ("BREAK", -1.0), ("a dog", 1.0)]
    assert fragments[1].is_break
    assert as_pairs(parse_attention("a BREAKFAST break")) == [("a BREAKFAST break", 1.0)]


def test_break_inside_brackets_is_not_a_break_as_in_a1111():
    # A1111 multiplies the BREAK marker's -1 too, and then no longer sees a BREAK.
    fragments = parse_attention("(a BREAK b)")
    assert as_pairs(fragments) == [("a", 1.1), ("BREAK", pytest.approx(-1.1)), ("b", 1.1)]
    assert not fragments[1].is_break


def test_an_empty_prompt_is_one_empty_fragment():
    assert as_pairs(parse_attention("")) == [("", 1.0)]


def test_a_colon_outside_a_weight_is_text():
    assert as_pairs(parse_attention("time: noon")) == [("time: noon", 1.0)]


def test_lora_tags_are_taken_out_of_the_prompt_with_a1111s_weights():
    text, tags, problems = extract_extra_networks("a cat <lora:detail:0.8>, <lora:style>")
    assert text == "a cat , "
    assert tags == [LoraTag("detail", 0.8, 0.8), LoraTag("style", 1.0, 1.0)]
    assert problems == []


def test_a_lora_tag_with_two_weights_reads_text_encoder_then_unet_as_a1111():
    _, tags, _ = extract_extra_networks("<lora:x:0.3:0.9> <lyco:y:te=0.2:unet=0.7>")
    assert tags == [LoraTag("x", te_weight=0.3, unet_weight=0.9), LoraTag("y", 0.2, 0.7)]


def test_a_lora_tag_with_a_bad_weight_is_reported_and_left_out():
    text, tags, problems = extract_extra_networks("a <lora:x:lots> b")
    assert text == "a  b" and tags == []
    assert problems == ["<lora:x:lots> has a weight that is not a number"]


def test_other_extra_network_tags_are_removed_and_reported():
    parsed = parse_prompt("a <hypernet:h:1> cat")
    assert parsed.text == "a  cat"
    assert "not supported" in parsed.problems[0]


def test_parse_prompt_keeps_the_source_and_parses_the_rest():
    parsed = parse_prompt("(cat:1.2) <lora:a:0.5>")
    assert parsed.source == "(cat:1.2) <lora:a:0.5>"
    assert as_pairs(list(parsed.fragments)) == [("cat", 1.2), (" ", 1.0)]
    assert parsed.loras == (LoraTag("a", 0.5, 0.5),)


def test_lora_tags_are_written_as_a1111_writes_them():
    assert format_lora_tag("x") == "<lora:x:1>"
    assert format_lora_tag("x", 0.75) == "<lora:x:0.75>"
    assert format_lora_tag("x", 0.8, te_weight=0.5) == "<lora:x:0.5:0.8>"
    assert LoraTag("x", te_weight=0.5, unet_weight=0.8).tag == "<lora:x:0.5:0.8>"
    assert lora_names("<lora:a:1> <lora:b> <lora:a:0.2>") == ["a", "b"]
