"""The training data's extras (crowded scenes, object weighting, mixed batches) leave
the evaluation's own sampler alone."""

from __future__ import annotations

import numpy as np
import torch

import starter.train as train
from starter.captions import grid_cell, relation, sample_crowded_scene, sample_scene
from starter.shapes import object_centre, render


def test_training_scene_without_crowding_is_the_evaluation_sampler() -> None:
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert [train.training_scene(a, 0.0) for _ in range(50)] == [sample_scene(b) for _ in range(50)]


def test_crowded_scenes_have_two_or_three_objects_and_many_share_a_column() -> None:
    rng = np.random.default_rng(0)
    scenes = [sample_crowded_scene(rng) for _ in range(1000)]
    assert {len(s.objects) for s in scenes} == {2, 3}
    pairs = [s for s in scenes if len(s.objects) == 2]
    vertical = sum(relation(*s.objects) in ("above", "below") for s in pairs) / len(pairs)
    assert 0.4 < vertical < 0.75  # sample_scene gives about 0.25
    for scene in scenes:
        cells = [grid_cell(o.position) for o in scene.objects]
        assert len(set(cells)) == len(cells)
        for obj, cell in zip(scene.objects, cells, strict=True):
            near = any(max(abs(cell[0] - c[0]), abs(cell[1] - c[1])) == 1 for c in cells)
            assert obj.size == "small" or not near


def test_object_mask_covers_the_objects_and_not_the_background() -> None:
    scene = sample_crowded_scene(np.random.default_rng(3))
    x = train.to_tensor([render(scene)])
    mask = train.object_mask(x, [scene])
    assert mask.shape == (1, 1, 128, 128)
    assert mask[0, 0, 0, 0] == 0 and mask[0, 0, -1, -1] == 0
    share = float(mask.mean())
    assert 0.01 < share < 0.5
    for obj in scene.objects:
        fx, fy = object_centre(obj)
        if obj.shape != "ring":  # a ring's centre is background
            assert mask[0, 0, int(fy), int(fx)] == 1


def test_weighted_reconstruction_loss_with_equal_weights_is_the_plain_loss() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    plain = train.reconstruction_loss(a, b)
    assert torch.allclose(plain, train.reconstruction_loss(a, b, torch.full((2, 1, 8, 8), 4.0)))
    weight = torch.ones(2, 1, 8, 8)
    weight[:, :, :2] = 5
    assert not torch.allclose(plain, train.reconstruction_loss(a, b, weight))


def test_a_batch_takes_its_share_from_each_encoded_set() -> None:
    def source(value: float, n: int) -> dict:
        return {
            "mean": torch.full((n, 4, 16, 16), value).half(),
            "std": torch.zeros(n, 4, 16, 16).half(),
            "captions": [[f"set {value} item {i}"] * 4 for i in range(n)],
        }

    rng = np.random.default_rng(0)
    latents, texts = train.draw_batch([(source(1.0, 10), 6), (source(2.0, 5), 2)], rng, 0.5)
    assert latents.shape == (8, 4, 16, 16)
    assert torch.all(latents[:6] == 0.5) and torch.all(latents[6:] == 1.0)
    assert len(texts) == 8
    assert all(t == "" or t.startswith("set 1.0") for t in texts[:6])
    assert all(t == "" or t.startswith("set 2.0") for t in texts[6:])
