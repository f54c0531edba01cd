"""The starter model's world: colours, shapes, sizes and positions, and how to draw them.

Everything is deterministic given a numpy Generator, so the training data and the
evaluation prompts are reproducible from a seed with no download.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw

IMAGE_SIZE = 128

# Well separated in RGB so the analyser can name any pixel by its nearest colour.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 40),
    "green": (40, 170, 60),
    "cyan": (40, 210, 220),
    "blue": (30, 70, 210),
    "purple": (130, 50, 180),
    "pink": (245, 130, 190),
    "brown": (120, 70, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
}

SHAPES = ("circle", "square", "triangle", "star", "heart", "diamond", "cross", "ring")

# Side of the object's bounding box, in pixels at 128x128.
SIZES: dict[str, int] = {"small": 30, "large": 54}

# Centre of the object as a fraction of the image side, for each named position.
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.22, 0.22),
    "top": (0.5, 0.22),
    "top right": (0.78, 0.22),
    "left": (0.22, 0.5),
    "centre": (0.5, 0.5),
    "right": (0.78, 0.5),
    "bottom left": (0.22, 0.78),
    "bottom": (0.5, 0.78),
    "bottom right": (0.78, 0.78),
}


@dataclass(frozen=True)
class ShapeObject:
    colour: str
    shape: str
    size: str
    position: str
    # Small jitter so the model sees variety; captions do not mention it.
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[ShapeObject, ...]


def shape_polygon(shape: str, cx: float, cy: float, side: float) -> list[tuple[float, float]]:
    """Outline of a filled shape as a polygon (circle and ring handled by draw_shape)."""
    r = side / 2
    if shape == "square":
        s = r * 0.9
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)]
    if shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = r if k % 2 == 0 else r * 0.42
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a) + r * 0.08))
        return pts
    if shape == "cross":
        w = r * 0.36
        return [
            (cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w),
            (cx + r, cy + w), (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r),
            (cx - w, cy + w), (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w),
        ]  # fmt: skip
    if shape == "heart":
        pts = []
        for k in range(48):
            t = 2 * math.pi * k / 48
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((cx + x * r / 16.5, cy - y * r / 16.5 - r * 0.1))
        return pts
    raise ValueError(f"no polygon for shape {shape!r}")


def draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: float,
    cy: float,
    side: float,
    fill: tuple[int, int, int] | int,
    background: tuple[int, int, int] | int,
) -> None:
    r = side / 2
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        h = r * 0.55
        draw.ellipse([cx - h, cy - h, cx + h, cy + h], fill=background)
    else:
        draw.polygon(shape_polygon(shape, cx, cy, side), fill=fill)


def object_centre(obj: ShapeObject, size: int = IMAGE_SIZE) -> tuple[float, float]:
    fx, fy = POSITIONS[obj.position]
    return (fx + obj.dx) * size, (fy + obj.dy) * size


def render(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw a scene at 4x and downsample, for clean anti-aliased edges."""
    scale = 4
    big = size * scale
    bg = COLOURS[scene.background]
    image = Image.new("RGB", (big, big), bg)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        cx, cy = object_centre(obj, big)
        side = SIZES[obj.size] * obj.scale * scale * size / IMAGE_SIZE
        draw_shape(draw, obj.shape, cx, cy, side, COLOURS[obj.colour], bg)
    return image.resize((size, size), Image.Resampling.LANCZOS)
