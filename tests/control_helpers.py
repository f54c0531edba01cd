"""Tiny random-weight ControlNets built from the tiny UNet (no download).

A fresh ControlNet's output convolutions (and its hint encoder's last) are zero: it
starts as "no effect". Here they get random weights, so that a unit visibly steers the
picture.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ControlNetModel
from tiny_models import tiny_components


def tiny_controlnet(tmp: Path, *, seed: int = 0, unet=None) -> ControlNetModel:
    """A ControlNet shaped like the tiny UNet (or `unet`), with live output convolutions."""
    unet = unet if unet is not None else tiny_components(tmp / "cn_build")["unet"]
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(4, 4, 4, 8), load_weights_from_unet=True
    )
    with torch.no_grad():
        outputs = [*net.controlnet_down_blocks, net.controlnet_mid_block]
        for conv in [*outputs, net.controlnet_cond_embedding.conv_out]:
            conv.weight.normal_(0.0, 0.5)
            conv.bias.normal_(0.0, 0.1)
    return net.eval()


def save_tiny_controlnet(folder: Path, *, seed: int = 0, unet=None) -> Path:
    """Write a tiny ControlNet as a diffusers folder (safetensors) and return it."""
    tiny_controlnet(folder.parent / f"{folder.name}_src", seed=seed, unet=unet).save_pretrained(
        folder, safe_serialization=True
    )
    return folder


def spy_on_controlnets(engine, count: int) -> list[list[float]]:
    """Record the conditioning scale each ControlNet sees at each step (forward hooks on
    the loaded models, which the runner keeps between jobs)."""
    calls: list[list[float]] = [[] for _ in range(count)]
    nets = list(engine._runner.controls._loaded.values())
    assert len(nets) == count
    for i, net in enumerate(nets):

        def hook(module, args, kwargs, i=i):
            calls[i].append(float(kwargs["conditioning_scale"]))

        net.register_forward_pre_hook(hook, with_kwargs=True)
    return calls
