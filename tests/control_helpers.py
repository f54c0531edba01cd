"""Tiny random-weight ControlNets built from the tiny UNet or a tiny flow model's
transformer (no download).

A fresh ControlNet's output convolutions (and its hint encoder's last) are zero: it
starts as "no effect". Here they get random weights, so that a unit visibly steers the
picture.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    ControlNetModel,
    FluxControlNetModel,
    FluxTransformer2DModel,
    SD3ControlNetModel,
    SD3Transformer2DModel,
)
from engine_helpers import WAIT, request
from PIL import Image, ImageDraw
from tiny_models import tiny_components

from engine.api import Finished, GenerationRequest, Step
from engine.worker import Engine


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


def flow_controlnet(folder: Path, family: str, single_layers: int = 1) -> torch.nn.Module:
    """A ControlNet made from the transformer of the tiny "flux1" or "sd3" model saved in
    `folder`: one double block (and `single_layers` single blocks) for FLUX.1, one joint
    block for SD 3; its residual outputs start at zero, as diffusers makes them."""
    if family == "flux1":
        tr = FluxTransformer2DModel.from_pretrained(folder / "transformer")
        return FluxControlNetModel.from_transformer(
            tr,
            num_layers=1,
            num_single_layers=single_layers,
            attention_head_dim=tr.config.attention_head_dim,
            num_attention_heads=tr.config.num_attention_heads,
        )
    sd3 = SD3Transformer2DModel.from_pretrained(folder / "transformer")
    return SD3ControlNetModel.from_transformer(
        sd3, num_layers=1, num_extra_conditioning_channels=0, load_weights_from_transformer=False
    )


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


def outline(shape: str) -> Image.Image:
    """A 32 x 32 control picture: the white outline of an "ellipse" or a "rectangle" on
    black, as an edge detector would draw it."""
    image = Image.new("RGB", (32, 32), "black")
    draw = ImageDraw.Draw(image)
    if shape == "ellipse":
        draw.ellipse((6, 6, 25, 25), outline="white", width=3)
    else:
        draw.rectangle((8, 8, 23, 23), outline="white", width=2)
    return image


def pixels(result: object) -> np.ndarray:
    """A finished job's first picture as signed integers (differences do not wrap)."""
    assert isinstance(result, Finished), result
    return np.asarray(result.images[0], dtype=np.int16)


def cpu_engine() -> Iterator[Engine]:
    """A real engine on the CPU in float32 for a module's jobs (its `engine` fixture yields
    from this), shut down at the end."""
    engine = Engine(device="cpu", dtype="float32")
    yield engine
    engine.shutdown(10)


def euler_request(
    model: Path, seed: int, steps: int = 2, size: int = 32, guidance: float = 5.0, **changes: object
) -> GenerationRequest:
    """A small Euler job on a model folder, for the flow ControlNet tests."""
    settings = {"width": size, "height": size, "guidance_scale": guidance, "scheduler": "Euler"}
    return request(model=str(model), seed=seed, steps=steps, **settings).with_changes(**changes)


def cancel_at_first_step(engine: Engine, job_request: GenerationRequest) -> object:
    """Submit the job, cancel it as its first step's preview arrives; how it ended."""
    job = engine.submit(job_request)

    def cancel_on_first_step(event: object) -> None:
        if isinstance(event, Step) and event.job_id == job and event.step == 1:
            engine.cancel(job)

    engine.add_listener(cancel_on_first_step)
    return engine.wait(job, WAIT)
