"""The facts the text encoder is pretrained to read back from a caption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from starter.architecture import build_text_encoder, build_tokenizer
from starter.captions import sample_scene
from starter.shapes import Scene, ShapeObject
from starter.text_pretrain import IGNORE, heads, pretrain_text_encoder, targets


def facts(scene: Scene, text: str) -> dict[str, int]:
    return dict(zip(heads().names, targets(scene, text), strict=True))


def test_single_object_caption_states_everything():
    scene = Scene("blue", (ShapeObject("red", "star", "small", "top left"),))
    got = facts(scene, "a tiny red star in the top left corner on a blue background")
    assert got["background"] == 5 and got["count"] == 0
    assert (got["colour0"], got["shape0"], got["size0"], got["position0"]) == (0, 3, 0, 0)
    assert got["relation"] == IGNORE and got["colour1"] == IGNORE


def test_what_a_caption_leaves_out_is_ignored():
    a = ShapeObject("green", "ring", "large", "left")
    b = ShapeObject("white", "cross", "small", "right")
    got = facts(Scene("black", (a, b)), "a green ring to the left of a white cross")
    assert got["background"] == IGNORE  # not said
    assert got["relation"] == 0  # "left"
    assert got["size0"] == IGNORE and got["size1"] == IGNORE
    assert got["position0"] == IGNORE  # relations replace positions
    assert got["shape1"] == 6 and got["colour1"] == 9


def test_a_few_steps_run_and_report_every_head(tmp_path: Path):
    torch.manual_seed(0)
    tokenizer = build_tokenizer(tmp_path / "tok")
    encoder = build_text_encoder(tokenizer)
    before = [p.clone() for p in encoder.parameters()]
    accuracy = pretrain_text_encoder(
        encoder, tokenizer, sample_scene, steps=3, batch=8, log=lambda _: None
    )
    assert set(accuracy) == set(heads().names)
    assert all(0.0 <= v <= 1.0 for v in accuracy.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, encoder.parameters(), strict=True))
    assert not encoder.training


def test_captions_from_the_generator_give_valid_targets():
    rng = np.random.default_rng(0)
    spec = heads()
    from starter.captions import caption

    for _ in range(200):
        scene = sample_scene(rng)
        for value, classes in zip(targets(scene, caption(scene, rng)), spec.classes, strict=True):
            assert value == IGNORE or 0 <= value < classes
