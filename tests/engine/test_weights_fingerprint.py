"""The OpenVINO cache's weights fingerprint: the same for the same values whatever the
memory layout (channels_last weights are sampled without being copied), different when
any weight changes."""

from __future__ import annotations

import torch

from engine.backends import openvino_backend


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(4, 64, 3), torch.nn.Conv2d(64, 64, 3), torch.nn.Linear(7, 9000)
    ).to(torch.bfloat16)


def test_channels_last_weights_give_the_fingerprint_of_the_same_values():
    model = _model()
    before = openvino_backend.weights_fingerprint(model)
    model.to(memory_format=torch.channels_last)
    assert not model[1].weight.is_contiguous()
    assert openvino_backend.weights_fingerprint(model) == before


def test_the_samples_are_every_step_th_value_in_row_major_order():
    weight = torch.randn(300, 64, 3, 3).to(memory_format=torch.channels_last)
    step = weight.numel() // openvino_backend._SAMPLES_PER_TENSOR
    sample = openvino_backend._strided_sample(weight)
    assert torch.equal(sample, weight.contiguous().reshape(-1)[::step])


def test_a_changed_weight_changes_the_fingerprint_in_either_layout():
    model = _model().to(memory_format=torch.channels_last)
    before = openvino_backend.weights_fingerprint(model)
    with torch.no_grad():
        model[1].weight.add_(0.5)  # what fusing a LoRA does to every value
    assert openvino_backend.weights_fingerprint(model) != before
