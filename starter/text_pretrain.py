"""Teach the text encoder what a caption says before the UNet learns to draw it.

A CLIP text encoder learned from scratch together with the UNet binds words to objects
slowly: early on, the UNet gets the background right and guesses the object. Here the
encoder first learns, from its end-of-text state alone, to read back every fact a
caption states (background colour; each object's colour, shape, size and position; the
relation between two objects). The UNet then trains against this encoder, frozen, as
Stable Diffusion trains against a frozen CLIP. Takes a few minutes on one CPU core.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPTextModel, CLIPTokenizer

from starter.architecture import token_ids
from starter.captions import POSITION_PHRASES, RELATIONS, SIZE_WORDS, caption, relation
from starter.shapes import COLOURS, POSITIONS, SHAPES, Scene

IGNORE = -100
SLOTS = 3
_COLOURS, _POSITIONS, _SIZES = list(COLOURS), list(POSITIONS), list(SIZE_WORDS)
_RELATIONS = list(RELATIONS)


@dataclass(frozen=True)
class Heads:
    """How many classes each fact has; the order of the targets."""

    names: tuple[str, ...]
    classes: tuple[int, ...]


def heads() -> Heads:
    names, classes = ["background", "relation", "count"], [len(_COLOURS), len(_RELATIONS), SLOTS]
    for k in range(SLOTS):
        names += [f"colour{k}", f"shape{k}", f"size{k}", f"position{k}"]
        classes += [len(_COLOURS), len(SHAPES), len(_SIZES), len(_POSITIONS)]
    return Heads(tuple(names), tuple(classes))


def targets(scene: Scene, text: str) -> list[int]:
    """The facts `text` states about `scene`, IGNORE for what it leaves out."""
    objs = scene.objects
    states_background = "background" in text or text.endswith(f"on {scene.background}")
    pair = len(objs) == 2 and any(f" {r} " in text for r in RELATIONS.values())
    out = [
        _COLOURS.index(scene.background) if states_background else IGNORE,
        _RELATIONS.index(relation(*objs)) if pair else IGNORE,
        len(objs) - 1,
    ]
    words = text.replace(",", " ").split()
    for k in range(SLOTS):
        if k >= len(objs):
            out += [IGNORE] * 4
            continue
        obj = objs[k]
        # Objects are named in scene order; the words before the k-th shape word.
        shape_at = [i for i, w in enumerate(words) if w in SHAPES][k]
        size_word = words[shape_at - 2] if shape_at >= 2 else ""
        states_size = size_word in SIZE_WORDS[obj.size]
        states_position = not pair and any(p in text for p in POSITION_PHRASES[obj.position])
        out += [
            _COLOURS.index(obj.colour),
            SHAPES.index(obj.shape),
            _SIZES.index(obj.size) if states_size else IGNORE,
            _POSITIONS.index(obj.position) if states_position else IGNORE,
        ]
    return out


def pretrain_text_encoder(
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    sample_scene: Callable[[np.random.Generator], Scene],
    steps: int = 800,
    batch: int = 64,
    lr: float = 1e-3,
    seed: int = 7,
    log: Callable[[dict], None] = print,
) -> dict[str, float]:
    """Train in place; returns each head's accuracy on the last batches."""
    rng = np.random.default_rng(seed)
    spec = heads()
    width = text_encoder.config.hidden_size
    probe = torch.nn.Linear(width, sum(spec.classes))
    params = list(text_encoder.parameters()) + list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    text_encoder.train()
    correct = torch.zeros(len(spec.classes))
    counted = torch.zeros(len(spec.classes))
    t0 = time.time()
    for step in range(1, steps + 1):
        scenes = [sample_scene(rng) for _ in range(batch)]
        texts = [caption(s, rng) for s in scenes]
        y = torch.tensor([targets(s, t) for s, t in zip(scenes, texts, strict=True)])
        tokens = token_ids(tokenizer, texts)
        logits = probe(text_encoder(tokens).pooler_output).split(list(spec.classes), dim=1)
        losses = [
            F.cross_entropy(lg, y[:, i], ignore_index=IGNORE)
            for i, lg in enumerate(logits)
            if (y[:, i] != IGNORE).any()
        ]
        loss = torch.stack(losses).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step > steps - 50:
            for i, lg in enumerate(logits):
                known = y[:, i] != IGNORE
                correct[i] += (lg.argmax(1)[known] == y[known, i]).sum()
                counted[i] += known.sum()
        if step % 50 == 0 or step == steps:
            log(
                {
                    "stage": "text",
                    "step": step,
                    "loss": round(loss.item(), 4),
                    "elapsed": round(time.time() - t0),
                }
            )
    text_encoder.eval()
    return {
        name: round(float(c / max(1, n)), 4)
        for name, c, n in zip(spec.names, correct, counted, strict=True)
    }
