"""The command line's hires fix and upscale options (diffusiondesk-cli generate):
--hires-scale … turns on a hires fix; --upscale enlarges --init instead of generating."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from engine.api import HiresFix, Upscale
from engine.upscale_options import LANCZOS, LATENT_UPSCALERS

_HIRES, _UPSCALE = HiresFix(), Upscale()


def add_arguments(g: argparse.ArgumentParser) -> None:
    latent = ", ".join(f'"{name}"' for name in LATENT_UPSCALERS)
    g.add_argument(
        "--hires-scale",
        default=None,
        metavar="F",
        help="hires fix: make the picture, enlarge it F times, and repaint it at that size",
    )
    g.add_argument(
        "--hires-upscaler",
        default=_HIRES.upscaler,
        help=f"{latent}, {LANCZOS}, or an upscaler model's file name or path",
    )
    g.add_argument("--hires-steps", default="0", help="steps of the hires pass (0: as --steps)")
    g.add_argument(
        "--hires-denoise", default=str(_HIRES.denoising_strength), help="hires denoising strength"
    )
    g.add_argument(
        "--hires-prompt", default="", help="prompt of the hires pass (default: --prompt)"
    )
    g.add_argument("--hires-negative-prompt", default="")
    g.add_argument(
        "--upscale",
        default=None,
        metavar="F",
        help="enlarge --init F times instead of generating (with --sd-tiles: then repaint it)",
    )
    g.add_argument(
        "--upscaler", default=_UPSCALE.upscaler, help="Lanczos, Nearest, or an upscaler model"
    )
    g.add_argument(
        "--sd-tiles",
        action="store_true",
        help="with --upscale: repaint the enlarged picture tile by tile at --strength",
    )
    g.add_argument("--tile", default=str(_UPSCALE.tile), help="pixels a side of each SD tile")
    g.add_argument("--tile-overlap", default=str(_UPSCALE.overlap), help="pixels tiles overlap")


def options(
    args: argparse.Namespace,
    whole: Callable[[str, str], int],
    number: Callable[[str, str], float],
    fail: Callable[[str], Exception],
) -> tuple[HiresFix | None, Upscale | None]:
    """The HiresFix and Upscale records the arguments ask for (each None when not)."""
    hires = upscale = None
    if args.hires_scale is not None:
        hires = HiresFix(
            scale=number("--hires-scale", args.hires_scale),
            upscaler=args.hires_upscaler,
            steps=whole("--hires-steps", args.hires_steps),
            denoising_strength=number("--hires-denoise", args.hires_denoise),
            prompt=args.hires_prompt,
            negative_prompt=args.hires_negative_prompt,
        )
    if args.upscale is not None:
        if args.init is None or args.mask or args.expand is not None:
            raise fail("--upscale needs --init (the picture to enlarge), and no --mask or --expand")
        upscale = Upscale(
            scale=number("--upscale", args.upscale),
            upscaler=args.upscaler,
            sd_tiles=args.sd_tiles,
            tile=whole("--tile", args.tile),
            overlap=whole("--tile-overlap", args.tile_overlap),
        )
    elif args.sd_tiles:
        raise fail("--sd-tiles goes with --upscale F (how many times to enlarge --init)")
    return hires, upscale
