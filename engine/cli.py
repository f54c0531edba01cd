"""diffusiondesk-cli: generate images from the command line with the same engine as the window.

Exit status: 0 done, 1 the job failed (one line on stderr says why), 2 bad arguments,
130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from PIL import Image

from engine import families, images, outpaint, upscale_cli, validation
from engine.api import (
    STARTER_MODEL,
    Cancelled,
    EngineError,
    Event,
    Expand,
    Failed,
    Finished,
    GenerationRequest,
    GuidanceKind,
    ModelInfo,
    ModelLoading,
    OutpaintFill,
    Queued,
    SchedulerName,
    Started,
    Step,
)
from engine.control import cli_args as control_args
from engine.images import OpenedImage
from engine.picture_files import format_of, save_picture
from engine.protocols import ModelProvider
from engine.schedulers import NAMES
from engine.validation import short

if TYPE_CHECKING:
    from engine.remote import RemoteEngine
    from engine.worker import Engine

PROG = "diffusiondesk-cli"
DEFAULT_STEPS, DEFAULT_GUIDANCE, DEFAULT_SCHEDULER = "20", "5.0", SchedulerName.DPMPP_2M.value


class _CliError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Make images with diffusion models.")
    commands = parser.add_subparsers(dest="command", required=True)
    g = commands.add_parser("generate", help="make one image (or a batch) and save it as PNG")
    # Numbers arrive as text and are checked by _whole/_number, so that a bad value gets
    # one sentence (exit 1) like every other bad input, never argparse's usage dump.
    g.add_argument("--prompt", required=True)
    g.add_argument("--negative-prompt", default="")
    g.add_argument("--steps", default=None, help=f"default: {DEFAULT_STEPS} (see --scheduler)")
    g.add_argument(
        "--guidance",
        default=None,
        help="guidance (CFG) scale, or FLUX.1 dev's distilled guidance (default: see --scheduler)",
    )
    g.add_argument(
        "--true-cfg",
        default="1",
        help="FLUX.1 dev: true CFG scale with the negative prompt, beside --guidance "
        "(default 1: off; above 1 each step runs the model twice)",
    )
    g.add_argument("--seed", default=None, help="default: a random seed, printed")
    g.add_argument("--width", default=None, help="default: the init image's, or 128")
    g.add_argument("--height", default=None)
    g.add_argument("--batch-size", default="1")
    g.add_argument(
        "--scheduler",
        default=None,
        help=f"one of: {', '.join(NAMES)}; default {DEFAULT_SCHEDULER} with {DEFAULT_STEPS} "
        "steps and guidance 5 where the model's family takes them, else the family's own "
        "defaults (FLUX.1 schnell: Euler, 4 steps)",
    )
    g.add_argument("--model", default=STARTER_MODEL, help="folder, .safetensors file or hub id")
    g.add_argument("--init", type=Path, default=None, help="init image for image-to-image")
    g.add_argument("--strength", default=None, help="default: 0.75, or 1.0 with --expand")
    g.add_argument(
        "--mask",
        type=Path,
        default=None,
        help="white = repaint, black = keep (default: the init image's transparent part)",
    )
    g.add_argument("--mask-blur", default="4")
    g.add_argument("--only-masked", action="store_true", help="inpaint a crop around the mask")
    g.add_argument("--padding", default="32", help="pixels around the mask crop")
    g.add_argument(
        "--expand",
        default=None,
        help="outpaint --init: pixels to add all around (128) or per side "
        "(left=128,right=64; top/up, bottom/down, all); multiples of 8",
    )
    g.add_argument(
        "--outpaint-fill",
        default=Expand.fill,
        help="what the new area holds for the model: " + ", ".join(f.value for f in OutpaintFill),
    )
    g.add_argument("--seam-band", default=str(Expand.band), help="pixels of blended seam")
    g.add_argument(
        "--piece",
        default=str(Expand.tile),
        help="with --only-masked --expand: the most pixels a side of each piece painted",
    )
    upscale_cli.add_arguments(g)
    g.add_argument(
        "--guidance-cutoff",
        default=None,
        metavar="F",
        help="stop guidance after this fraction of the steps (0..1): faster",
    )
    g.add_argument(
        "--fast-decode",
        action="store_true",
        help="decode the picture with the tiny autoencoder (TAESD) if present",
    )
    g.add_argument(
        "--deep-cache",
        default="1",
        metavar="N",
        help="run the UNet's deep blocks every N-th step only (2-3: faster; 1: off)",
    )
    g.add_argument("--clip-skip", default="1", help="A1111's clip skip: 1 = last layer (default)")
    g.add_argument(
        "--vae",
        default="",
        help="VAE file name (VAE folders), path or folder; for a transformer-only model "
        "file (SD3, FLUX.1) also the VAE it loads with",
    )
    g.add_argument(
        "--text-encoder",
        action="append",
        default=[],
        type=str,
        help="a text-encoder file (clip_l, clip_g, t5xxl ... as .safetensors, or a T5, Qwen3 or "
        "Gemma 2 .gguf) a transformer-only model file needs, when it is not in a text_encoders "
        "folder beside the model; repeat for several",
    )
    g.add_argument(
        "--models-dir",
        action="append",
        default=[],
        type=str,
        help="a models folder (DiffusionDesk, A1111 or ComfyUI) to find LoRAs, embeddings "
        "and VAEs in; repeat for several",
    )
    control_args.add_arguments(g)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    g.add_argument(
        "--dtype",
        default="auto",
        help="auto (CPU: bfloat16 where it has bfloat16 units), float32, float16, bfloat16",
    )
    g.add_argument(
        "--backend",
        default=None,
        choices=("auto", "torch", "openvino", "openvino-int8"),
        help="what runs the UNet on the CPU: auto (OpenVINO where installed and measured "
        "faster for the model at that size, its UNet int8 where nncf is installed and the "
        "int8 check holds), torch, openvino (bfloat16 only), or openvino-int8 (int8 "
        "whatever the check says; calibrated on the first picture at each size; its VAE "
        "decoder int8 too, calibrated on the first picture's latents)",
    )
    g.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the UNet: faster steps after a compile of a minute or more "
        "for each new size",
    )
    g.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read .ckpt/.pt/.bin weights too (weights only: never their code)",
    )
    g.add_argument(
        "--engine",
        default=None,
        metavar="URL",
        help="run on a diffusiondesk-server (http://host:port) instead of here",
    )
    g.add_argument(
        "--token", default=None, help="the server's access token (default: $DIFFUSIONDESK_TOKEN)"
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument(
        "--output", type=Path, required=True, help="FILE.png, .jpg or .webp (settings inside)"
    )
    return parser


def _whole(flag: str, text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.lstrip("-").isdigit() and len(value) <= 40):
        raise _CliError(f"{flag} must be a whole number, got {short(text)}")
    return int(value)


def _number(flag: str, text: str) -> float:
    try:
        value = float(text) if len(text) <= 40 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _CliError(f"{flag} must be a number, got {short(text)}")
    return value


def _check_output(path: Path) -> None:
    """Refuse an output the job could never be saved to, before minutes of work."""
    if format_of(path) is None:
        raise _CliError(f"--output must be a .png, .jpg or .webp file, got {path}")
    if path.is_dir():
        raise _CliError(f"--output {path} is a folder; give a file name such as out.png")
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise _CliError(f"--output {path}: {folder} is a file, not a folder")
    if folder is not None and not os.access(folder, os.W_OK | os.X_OK):
        raise _CliError(f"--output {path}: DiffusionDesk may not write into {folder}")


def _check_device(device: str, dtype: str) -> None:
    kind, _, index = device.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise _CliError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {short(device)}")
    if dtype not in ("auto", "float32", "float16", "bfloat16"):
        raise _CliError(f"--dtype must be auto, float32, float16 or bfloat16, got {short(dtype)}")


def _open(path: Path, flag: str, err: TextIO, *, mask: bool = False) -> OpenedImage:
    try:
        opened = images.open_mask(path) if mask else images.open_image(path)
    except images.ImageError as exc:
        raise _CliError(f"{flag} {exc.message}") from None
    for note in opened.notes:
        err.write(f"{PROG}: note: {flag} {path}: {note}\n")
    return opened


def _sampling_defaults(args: argparse.Namespace) -> tuple[str, str, str]:
    """Steps, guidance and sampler: as given, else the CLI's defaults where the model's
    family (read from its folder, engine/families/) takes that sampler and true CFG,
    else the family variant's own defaults."""
    steps, guidance, scheduler = args.steps, args.guidance, args.scheduler
    found = families.describe_source(args.model) if args.engine is None else None
    if found is not None:
        profile, name = found
        variant = profile.variant(name)
        fits = SchedulerName(DEFAULT_SCHEDULER) in profile.samplers
        if not fits or variant.guidance is not GuidanceKind.CFG:
            steps = steps if steps is not None else str(variant.steps)
            guidance = guidance if guidance is not None else str(variant.guidance_scale)
            scheduler = scheduler if scheduler is not None else variant.scheduler.value
    return (
        steps if steps is not None else DEFAULT_STEPS,
        guidance if guidance is not None else DEFAULT_GUIDANCE,
        scheduler if scheduler is not None else DEFAULT_SCHEDULER,
    )


def build_request(args: argparse.Namespace, err: TextIO = sys.stderr) -> GenerationRequest:
    """The request the arguments describe, every check done (before torch is imported):
    raises _CliError."""
    _check_output(args.output)
    _check_device(args.device, args.dtype)
    if args.mask and not args.init:
        raise _CliError("--mask needs --init: the image to paint into")
    init = mask = None
    if args.init:
        init, mask, _ = _open(args.init, "--init", err)
    if args.mask:
        mask = _open(args.mask, "--mask", err, mask=True).image
    width, height = init.size if init is not None else (128, 128)
    expand = None
    if args.expand is not None:
        if init is None or args.mask:
            raise _CliError("--expand needs --init (the picture to extend) and no --mask")
        try:
            sides = outpaint.parse_expand(args.expand)
        except ValueError as exc:
            raise _CliError(str(exc)) from None
        expand = Expand(
            **sides,
            fill=args.outpaint_fill,
            band=_whole("--seam-band", args.seam_band),
            tile=_whole("--piece", args.piece),
        )
        width, height = outpaint.expanded_size(init.size, expand)
        mask = None  # the init image's transparent part is the picture's, not a mask
    strength = args.strength if args.strength is not None else "1.0" if expand else "0.75"
    hires, upscale = upscale_cli.options(args, _whole, _number, _CliError)
    cutoff = args.guidance_cutoff
    steps, guidance, scheduler = _sampling_defaults(args)

    def picture(path: Path, flag: str) -> Image.Image:
        return _open(path, flag, err).image

    try:
        controls = control_args.controls(args, picture)
        regions = control_args.regions(args, picture)
    except control_args.ArgumentProblem as exc:
        raise _CliError(str(exc)) from None
    request = GenerationRequest(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        steps=_whole("--steps", steps),
        guidance_scale=_number("--guidance", guidance),
        true_cfg_scale=_number("--true-cfg", args.true_cfg),
        seed=_whole("--seed", args.seed) if args.seed is not None else None,
        batch_size=_whole("--batch-size", args.batch_size),
        width=_whole("--width", args.width) if args.width is not None else width,
        height=_whole("--height", args.height) if args.height is not None else height,
        scheduler=scheduler,
        model=args.model,
        init_image=init,
        strength=_number("--strength", strength),
        mask=mask,
        mask_blur=_whole("--mask-blur", args.mask_blur),
        inpaint_only_masked=args.only_masked,
        inpaint_padding=_whole("--padding", args.padding),
        guidance_cutoff=_number("--guidance-cutoff", cutoff) if cutoff is not None else None,
        fast_decode=args.fast_decode,
        deep_cache=_whole("--deep-cache", args.deep_cache),
        clip_skip=_whole("--clip-skip", args.clip_skip),
        vae=args.vae,
        model_folders=tuple(args.models_dir),
        model_files=tuple(args.text_encoder) + ((args.vae,) if Path(args.vae).is_file() else ()),
        controls=controls,
        regions=regions,
        expand=expand,
        hires=hires,
        upscale=upscale,
    )
    found = validation.problems(request)
    if found:
        raise _CliError("; ".join(found))
    return request


class _Progress:
    """One self-rewriting line on stderr."""

    def __init__(self, out: TextIO, quiet: bool) -> None:
        self.out, self.quiet = out, quiet

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        match event:
            case ModelLoading(stage=stage, progress=fraction):
                done = f" {fraction:4.0%}" if fraction >= 0 else ""
                self._line(f"model: {stage}{done}")
            case Started(device=device, seeds=seeds, model_label=label):
                self._line(f"running {label + ' ' if label else ''}on {device}, seed {seeds[0]}")
            case Step(step=step, total=total, elapsed=elapsed):
                filled = round(30 * step / total)
                bar = "#" * filled + "." * (30 - filled)
                self._line(f"[{bar}] {step}/{total} steps  {elapsed:.1f}s")
            case Finished() | Cancelled() | Failed():
                self.out.write("\n")
                self.out.flush()
            case Queued():
                pass

    def _line(self, text: str) -> None:
        self.out.write("\r" + text.ljust(60))
        self.out.flush()


def output_paths(output: Path, count: int) -> list[Path]:
    return [
        output if i == 0 else output.with_name(f"{output.stem}-{i}{output.suffix}")
        for i in range(count)
    ]


def save_image(
    image: Image.Image,
    path: Path,
    request: GenerationRequest,
    seed: int,
    model_info: ModelInfo | None = None,
) -> None:
    save_picture(image, path, request.with_changes(seed=seed, batch_size=1), seed, model_info)


def _engine(args: argparse.Namespace, models: ModelProvider | None) -> Engine | RemoteEngine:
    if args.engine:
        from engine.remote import TOKEN_ENV, RemoteEngine, stream_url

        try:
            stream_url(args.engine)
        except ValueError as exc:
            raise _CliError(f"--engine: {exc}") from None
        return RemoteEngine(args.engine, args.token or os.environ.get(TOKEN_ENV))
    from engine.worker import Engine  # torch loads here, after the arguments are checked

    try:
        return Engine(
            models,
            device=args.device,
            dtype=args.dtype,
            allow_pickle=args.allow_pickle,
            backend=args.backend,
            compile_unet=args.compile,
        )
    except EngineError as exc:  # e.g. --backend openvino without openvino installed
        raise _CliError(exc.message) from None


def generate(
    args: argparse.Namespace, out: TextIO, err: TextIO, models: ModelProvider | None = None
) -> int:
    request = build_request(args, err)
    engine = _engine(args, models)
    engine.add_listener(_Progress(err, args.quiet))
    job = None
    try:
        job = engine.submit(request)
        result = engine.wait(job)
    except KeyboardInterrupt:
        if job is not None:
            engine.cancel(job)
            engine.wait(job, 10)
        err.write(f"{PROG}: interrupted\n")
        return 130
    finally:
        engine.shutdown(10)
    if isinstance(result, Failed):
        err.write(f"{PROG}: error: {result.message}\n")
        return 1
    if not isinstance(result, Finished):
        err.write(f"{PROG}: error: the job was cancelled\n")
        return 1
    for warning in result.warnings:
        err.write(f"{PROG}: warning: {warning}\n")
    for image, seed, path in zip(
        result.images, result.seeds, output_paths(args.output, len(result.images)), strict=True
    ):
        try:
            save_image(image, path, result.request, seed, result.model_info)
        except OSError as exc:  # atomic_file.SaveError says what happened and what to do
            err.write(f"{PROG}: error: {getattr(exc, 'message', None) or exc}\n")
            return 1
        out.write(f"saved {path} (seed {seed})\n")
    return 0


def main(argv: list[str] | None = None, *, models: ModelProvider | None = None) -> int:
    """models: a ModelManager stand-in (tests); by default the real one."""
    args = _parser().parse_args(argv)
    try:
        return generate(args, sys.stdout, sys.stderr, models)
    except _CliError as exc:
        message = str(exc)
    except EngineError as exc:
        message = exc.message
    except OSError as exc:
        message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    except MemoryError:
        message = "out of memory; choose a smaller size or batch, or close other programs"
    except Exception as exc:  # a person gets one line, never a traceback
        message = f"internal error ({type(exc).__name__}: {str(exc)[:200]}); please report it"
    sys.stderr.write(f"{PROG}: error: {_sentence(message)}\n")
    return 1


def _sentence(message: str) -> str:
    """One line: no newlines from a message, whatever produced it."""
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
