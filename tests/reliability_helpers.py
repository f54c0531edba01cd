"""Helpers for tests/reliability: odd pictures as bytes, and the checks every hostile-input
case makes on the message (one sentence) and on the aftermath (the next job finishes, no
file left behind)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from engine_helpers import WAIT, request
from PIL import Image

from engine.api import Finished

# The CLI's own lines on stderr (progress bars are written with "\r", not as lines).
CLI = "diffusiondesk-cli:"


def next_job_finishes(engine) -> None:
    """The aftermath every engine case checks: the worker lives and takes the next job."""
    result = engine.generate(request(steps=1), WAIT)
    assert isinstance(result, Finished), result
    assert engine._thread.is_alive()


def one_sentence(message: str) -> None:
    """A message a person can act on: one line, no traceback, not empty, not huge."""
    assert message and "\n" not in message and "Traceback" not in message, message
    assert len(message) < 600, message


def cli_fails_with(run: Callable, *args: str, words: str, output: Path) -> str:
    """Run the CLI, expect exit 1 and exactly one error line with `words`; no output."""
    code, _, lines = run(*args, "--output", str(output))
    errors = [line for line in lines if ": error:" in line]
    assert code == 1, lines
    assert len(errors) == 1, lines
    assert words.lower() in errors[0].lower(), errors[0]
    assert not output.exists()
    assert not [p for p in output.parent.glob("*.part")], "a temporary file was left"
    return errors[0]


# ----------------------------------------------------------------------------- pictures


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_header(width: int, height: int, *, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose header claims width x height but whose data is a few bytes."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


def png_16bit_rgb(values: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), every pixel `values`."""
    width, height = size
    row = b"\0" + struct.pack(">HHH", *values) * width
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(row * height))
        + _chunk(b"IEND", b"")
    )


def png_with_text(texts: dict[str, str], size: tuple[int, int] = (16, 16)) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    return encode(Image.new("RGB", size, (10, 20, 30)), pnginfo=info)
