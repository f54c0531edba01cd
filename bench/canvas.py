"""The time of each canvas operation against a plain text-to-image generation of the same
output size, with the same model, steps and sampler: the two alternated in one run, and
the median of the per-pair ratios reported. Prints one JSON object.

    python bench/canvas.py [--pairs 3] [--steps 12] [--size 128] [--only "hires fix"]

Uses the starter model (resources/starter-model) when it is there, else a small
random-weight SD model built from configs, and says which in the JSON.

Adding an operation (one entry per canvas feature): write a function that takes the
Context and returns a Case (the operation's request and the plain request it is compared
with), and decorate it with @entry("its name"). Build its inputs from ctx.picture (a
finished picture of ctx.size) and ctx.plain(width, height) (the plain request of a size).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_models import FixedModels, starter_or_random  # noqa: E402

from engine.api import (  # noqa: E402
    ControlUnit,
    Expand,
    Finished,
    ForwardProcess,
    GenerationRequest,
    HiresFix,
    RegionPrompt,
    Upscale,
)
from engine.resources import starter_model_dir  # noqa: E402
from engine.upscale_options import scaled_size  # noqa: E402
from engine.worker import Engine  # noqa: E402


@dataclass(frozen=True)
class Context:
    model: str  # the model name requests use
    size: int  # the side of the base picture
    steps: int
    picture: Image.Image  # a finished picture of size x size (for operations on pictures)

    def plain(self, width: int, height: int) -> GenerationRequest:
        """Text-to-image of width x height: what each operation is compared with."""
        return GenerationRequest(
            prompt="a red circle on a blue background",
            steps=self.steps,
            guidance_scale=5.0,
            seed=1234,
            width=width,
            height=height,
            scheduler="DPM++ 2M",
            model=self.model,
        )


@dataclass(frozen=True)
class Case:
    operation: GenerationRequest
    plain: GenerationRequest


ENTRIES: dict[str, Callable[[Context], Case]] = {}


def entry(name: str) -> Callable[[Callable[[Context], Case]], Callable[[Context], Case]]:
    def register(build: Callable[[Context], Case]) -> Callable[[Context], Case]:
        ENTRIES[name] = build
        return build

    return register


# ----------------------------------------------------------------------------- entries


@entry("hires fix (Latent, 2x, denoise 0.55)")
def hires_latent(ctx: Context) -> Case:
    base = ctx.plain(ctx.size, ctx.size)
    hires = HiresFix(scale=2, upscaler="Latent", denoising_strength=0.55)
    return Case(base.with_changes(hires=hires), ctx.plain(*scaled_size(ctx.size, ctx.size, 2)))


@entry("hires fix (Lanczos, 2x, denoise 0.55)")
def hires_lanczos(ctx: Context) -> Case:
    base = ctx.plain(ctx.size, ctx.size)
    hires = HiresFix(scale=2, upscaler="Lanczos", denoising_strength=0.55)
    return Case(base.with_changes(hires=hires), ctx.plain(*scaled_size(ctx.size, ctx.size, 2)))


@entry("tiled SD upscale (2x, tiles of the base size, strength 0.35)")
def tiled_upscale(ctx: Context) -> Case:
    up = Upscale(scale=2, upscaler="Lanczos", sd_tiles=True, tile=ctx.size, overlap=ctx.size // 4)
    request = ctx.plain(ctx.size, ctx.size).with_changes(
        init_image=ctx.picture, strength=0.35, upscale=up
    )
    return Case(request, ctx.plain(*scaled_size(ctx.size, ctx.size, 2)))


_ESRGAN: list[str] = []


def _esrgan() -> str:
    """A 4x ESRGAN file of the published architecture's size (RRDBNet: 64 features, 23
    blocks; random weights cost the same time), written once as .safetensors."""
    if not _ESRGAN:
        from safetensors.torch import save_file

        from engine.upscalers.architectures import RRDBNet

        net = RRDBNet(3, 3, features=64, growth=32, blocks=23, upsamples=2)
        state = {
            re.sub(r"^ups\.(\d+)", lambda m: f"conv_up{int(m[1]) + 1}", k): v.contiguous()
            for k, v in net.state_dict().items()
        }
        path = Path(tempfile.mkdtemp()) / "4x-esrgan.safetensors"
        save_file(state, path)
        _ESRGAN.append(str(path))
    return _ESRGAN[0]


@entry("upscale (ESRGAN 4x model, 23 blocks, to 2x)")
def esrgan_upscale(ctx: Context) -> Case:
    request = ctx.plain(ctx.size, ctx.size).with_changes(
        init_image=ctx.picture, upscale=Upscale(scale=2, upscaler=_esrgan())
    )
    return Case(request, ctx.plain(*scaled_size(ctx.size, ctx.size, 2)))


@entry("upscale (Lanczos, 2x)")
def lanczos_upscale(ctx: Context) -> Case:
    request = ctx.plain(ctx.size, ctx.size).with_changes(
        init_image=ctx.picture, upscale=Upscale(scale=2)
    )
    return Case(request, ctx.plain(*scaled_size(ctx.size, ctx.size, 2)))


_CONTROLNETS: list[str] = []


def _controlnets(ctx: Context) -> list[str]:
    """Two ControlNets shaped like the model's UNet (diffusers' from_unet; untrained, which
    costs the same time as trained ones), built once."""
    if not _CONTROLNETS:
        from diffusers import ControlNetModel, UNet2DConditionModel

        if ctx.model == "starter":
            unet = UNet2DConditionModel.from_pretrained(str(starter_model_dir() / "unet"))
        else:
            sys.path.insert(0, str(ROOT / "tests"))
            from tiny_models import tiny_components

            unet = tiny_components(Path(tempfile.mkdtemp()), width=32)["unet"]
        for i in range(2):
            folder = Path(tempfile.mkdtemp()) / f"controlnet-{i}"
            ControlNetModel.from_unet(unet).save_pretrained(folder)
            _CONTROLNETS.append(str(folder))
    return _CONTROLNETS


@entry("ControlNet (1 unit, canny)")
def controlnet_one(ctx: Context) -> Case:
    unit = ControlUnit(_controlnets(ctx)[0], ctx.picture, preprocessor="canny")
    plain = ctx.plain(ctx.size, ctx.size)
    return Case(plain.with_changes(controls=(unit,)), plain)


@entry("ControlNet (2 units, canny + soft edge)")
def controlnet_two(ctx: Context) -> Case:
    nets = _controlnets(ctx)
    units = (
        ControlUnit(nets[0], ctx.picture, preprocessor="canny"),
        ControlUnit(nets[1], ctx.picture, weight=0.5, preprocessor="softedge"),
    )
    plain = ctx.plain(ctx.size, ctx.size)
    return Case(plain.with_changes(controls=units), plain)


_ADAPTERS: list[str] = []


def _adapter(ctx: Context) -> str:
    """A T2I adapter shaped for the model's UNet (random weights cost what trained ones
    do): SD 1.5's layout where the UNet starts with attention, else SDXL's, built once."""
    if not _ADAPTERS:
        from diffusers import T2IAdapter, UNet2DConditionModel

        if ctx.model == "starter":
            unet = UNet2DConditionModel.from_pretrained(str(starter_model_dir() / "unet"))
        else:
            sys.path.insert(0, str(ROOT / "tests"))
            from tiny_models import tiny_components

            unet = tiny_components(Path(tempfile.mkdtemp()), width=32)["unet"]
        sd15 = unet.config.down_block_types[0].startswith("CrossAttn")
        adapter = T2IAdapter(
            in_channels=1,
            channels=list(unet.config.block_out_channels),
            num_res_blocks=2,
            downscale_factor=8 if sd15 else 16,
            adapter_type="full_adapter" if sd15 else "full_adapter_xl",
        )
        folder = Path(tempfile.mkdtemp()) / "t2i-adapter"
        adapter.save_pretrained(folder)
        _ADAPTERS.append(str(folder))
    return _ADAPTERS[0]


@entry("T2I adapter (1 unit, canny)")
def adapter_one(ctx: Context) -> Case:
    unit = ControlUnit(_adapter(ctx), ctx.picture, preprocessor="canny")
    plain = ctx.plain(ctx.size, ctx.size)
    return Case(plain.with_changes(controls=(unit,)), plain)


@entry("T2I adapter + ControlNet (canny each)")
def adapter_and_controlnet(ctx: Context) -> Case:
    units = (
        ControlUnit(_adapter(ctx), ctx.picture, preprocessor="canny"),
        ControlUnit(_controlnets(ctx)[0], ctx.picture, preprocessor="canny"),
    )
    plain = ctx.plain(ctx.size, ctx.size)
    return Case(plain.with_changes(controls=units), plain)


@entry("regional prompts (2 regions, left and right)")
def regional_prompts(ctx: Context) -> Case:
    from engine.region_check import halves

    left, right = halves(ctx.size)
    regions = (RegionPrompt("a red circle", left), RegionPrompt("a blue square", right))
    plain = ctx.plain(ctx.size, ctx.size)
    return Case(plain.with_changes(regions=regions), plain)


@entry("outpaint (64 px left and right, one run)")
def outpaint_one_run(ctx: Context) -> Case:
    request = ctx.plain(ctx.size + 128, ctx.size).with_changes(
        init_image=ctx.picture, strength=1.0, expand=Expand(left=64, right=64)
    )
    return Case(request, ctx.plain(ctx.size + 128, ctx.size))


@entry("outpaint piece by piece (64 px all around, pieces of the base size)")
def outpaint_pieces(ctx: Context) -> Case:
    request = ctx.plain(ctx.size + 128, ctx.size + 128).with_changes(
        init_image=ctx.picture,
        strength=1.0,
        expand=Expand(64, 64, 64, 64, tile=ctx.size),
        inpaint_only_masked=True,
        inpaint_padding=16,
    )
    return Case(request, ctx.plain(ctx.size + 128, ctx.size + 128))


@entry("forward process view (a slider move: noised to half the steps, decoded)")
def forward_view(ctx: Context) -> Case:
    request = ctx.plain(ctx.size, ctx.size).with_changes(
        init_image=ctx.picture, forward=ForwardProcess(level=ctx.steps // 2)
    )
    return Case(request, ctx.plain(ctx.size, ctx.size))


@entry("denoise from here (from half the steps)")
def forward_denoise(ctx: Context) -> Case:
    request = ctx.plain(ctx.size, ctx.size).with_changes(
        init_image=ctx.picture, forward=ForwardProcess(level=ctx.steps // 2, denoise=True)
    )
    return Case(request, ctx.plain(ctx.size, ctx.size))


# ----------------------------------------------------------------------------- running


def _timed(engine: Engine, request: GenerationRequest) -> tuple[float, Finished]:
    start = time.perf_counter()
    result = engine.generate(request)
    seconds = time.perf_counter() - start
    if not isinstance(result, Finished):
        raise SystemExit(f"{request!r:.200} did not finish: {result}")
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--only", action="append", default=[], help="entries to run (by name)")
    args = parser.parse_args()

    model, name, description = starter_or_random(device="cpu")
    engine = Engine(FixedModels(model, description), backend="torch")
    try:
        ctx = Context(name, args.size, args.steps, Image.new("RGB", (1, 1)))
        _, first = _timed(engine, ctx.plain(args.size, args.size))  # also warms the model up
        ctx = Context(name, args.size, args.steps, first.images[0])
        chosen = {k: v for k, v in ENTRIES.items() if not args.only or k in args.only}
        entries = {}
        for label, build in chosen.items():
            case = build(ctx)
            ratios, seconds, plain_seconds = [], [], []
            for _ in range(args.pairs):
                took, result = _timed(engine, case.operation)
                plain_took, _ = _timed(engine, case.plain)
                seconds.append(took)
                plain_seconds.append(plain_took)
                ratios.append(took / plain_took)
            out = result.images[0].size
            entries[label] = {
                "output": f"{out[0]}x{out[1]}",
                "seconds": round(statistics.median(seconds), 3),
                "plain_seconds": round(statistics.median(plain_seconds), 3),
                "ratio": round(statistics.median(ratios), 3),
            }
    finally:
        engine.shutdown(10)
    print(json.dumps({
        "model": name,
        "device": description,
        "torch_threads": torch.get_num_threads(),
        "base_size": args.size,
        "steps": args.steps,
        "pairs": args.pairs,
        "compared_with": "text-to-image of the operation's output size, same steps and sampler",
        "entries": entries,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
