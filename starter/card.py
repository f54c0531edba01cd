"""Write the starter model's card (README.md) and loss curve from a training run.

python -m starter.card [--run runs/starter [more runs ...]] [--out resources/starter-model]
                       [--evaluation eval.json] [--speed speed.json] [--notes notes.md]

Several --run folders are read as one history (e.g. the autoencoder from one run, the
UNet from a later one); --notes adds a paragraph on how the shipped weights were made.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from starter.export import DEFAULT_OUT

STAGES = ("vae", "encode", "encode crowded_latents.pt", "text", "unet")


def read_log(runs: list[Path]) -> list[dict]:
    """The runs' records as one history, runs given in the order they trained.

    Each stage comes from the last run that has it. A UNet run that resumed another
    run's checkpoint (its first step is past the start) keeps the earlier run's steps
    before its own. Decoder sharpening passes build on each other and are all kept."""
    per_run = [
        [
            {**json.loads(line), "run": i}
            for line in (run / "log.jsonl").read_text().splitlines()
            if line
        ]
        for i, run in enumerate(runs)
    ]
    records: list[dict] = []
    for stage in STAGES:
        having = [
            [r for r in recs if r.get("stage") == stage]
            for recs in per_run
            if any(r.get("stage") == stage for r in recs)
        ]
        if not having:
            continue
        last = having[-1]
        stepped = [r["step"] for r in last if "step" in r]
        for earlier in reversed(having[:-1]):
            if not stepped or min(stepped) <= 25:
                break
            last = [r for r in earlier if r.get("step", 0) < min(stepped)] + last
            stepped = [r["step"] for r in last if "step" in r]
        records += last
    return records + [r for recs in per_run for r in recs if r.get("stage") == "decoder"]


def latest_per_step(records: list[dict]) -> list[dict]:
    """One record per run and step, the last one logged: a stage interrupted between
    checkpoints repeats the steps since its last checkpoint when it resumes."""
    latest = {(r["run"], r["step"]): r for r in records}
    return [latest[key] for key in sorted(latest)]


Pause = tuple[float, float]

STAGE_LABELS = {
    "vae": "autoencoder",
    "encode": "encode the pictures",
    "encode crowded_latents.pt": "encode the crowded pictures",
    "text": "text encoder",
    "unet": "UNet",
    "decoder": "decoder sharpening, beside the UNet (inside its time)",
}


def read_pauses(runs: list[Path]) -> dict[int, list[Pause]]:
    """Each run's recorded pauses (e.g. SIGSTOP for other work), from an optional
    `pauses.json` in its folder: [[start, end], ...] in Unix seconds."""
    pauses: dict[int, list[Pause]] = {}
    for i, run in enumerate(runs):
        path = run / "pauses.json"
        if path.exists():
            pauses[i] = [(float(a), float(b)) for a, b in json.loads(path.read_text())]
    return pauses


def busy_seconds(
    times: list[float], longest_gap: float = 600.0, pauses: Sequence[Pause] = ()
) -> float:
    """Time between a stage's log records, leaving out recorded pauses and any longer
    gap, such as between sessions (a stage logs at least every few minutes while it
    runs)."""
    total = 0.0
    for a, b in itertools.pairwise(sorted(times)):
        paused = sum(max(0.0, min(b, end) - max(a, start)) for start, end in pauses)
        if b - a - paused <= longest_gap:
            total += b - a - paused
    return total


def stage_minutes(log: list[dict], pauses: dict[int, list[Pause]]) -> dict[str, float]:
    """Busy minutes of each stage, summed over the runs that trained it."""
    minutes = {}
    for stage in (*STAGES, "decoder"):
        times: dict[int, list[float]] = {}
        for r in log:
            if r.get("stage") == stage:
                times.setdefault(r["run"], []).append(r["time"])
        if times:
            busy = sum(busy_seconds(t, pauses=pauses.get(run, [])) for run, t in times.items())
            minutes[stage] = round(busy / 60, 1)
    return minutes


def time_table(minutes: dict[str, float]) -> list[str]:
    rows = [f"| {STAGE_LABELS[stage]} | {m:.1f} |" for stage, m in minutes.items()]
    total = sum(m for stage, m in minutes.items() if stage != "decoder")
    hours, rest = divmod(round(total), 60)
    return [
        "| stage | minutes |",
        "|---|---|",
        *rows,
        f"| **total** | **{total:.1f}** ({hours} h {rest:02d} min) |",
    ]


def draw_curve(points: list[tuple[int, float]], title: str, path: Path) -> None:
    """A plain line chart with PIL (no plotting library in the dependencies)."""
    w, h, m = 640, 320, 48
    image = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(image)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    # The first steps' loss is many times the rest: cap the axis so the rest shows.
    y_cap = sorted(ys)[int(0.97 * (len(ys) - 1))] * 1.1
    points = [(x, min(y, y_cap)) for x, y in points]
    x0, x1, y0, y1 = min(xs), max(xs), 0.0, y_cap
    d.rectangle([m, m // 2, w - m // 2, h - m], outline="black")

    def at(x: float, y: float) -> tuple[float, float]:
        fx = (x - x0) / max(1, x1 - x0)
        fy = (y - y0) / max(1e-9, y1 - y0)
        return m + fx * (w - 1.5 * m), h - m - fy * (h - 1.5 * m)

    d.line([at(x, y) for x, y in points], fill=(30, 70, 210), width=2)
    for k in range(5):
        y = y0 + (y1 - y0) * k / 4
        d.text((4, at(0, y)[1] - 6), f"{y:.3f}", fill="black")
        x = x0 + (x1 - x0) * k / 4
        d.text((at(x, 0)[0] - 10, h - m + 6), f"{int(x)}", fill="black")
    d.text((m, 4), title, fill="black")
    image.save(path)


def write_card(
    runs: list[Path], out: Path, evaluation: dict | None, speed: dict | None, notes: str = ""
) -> None:
    log = read_log(runs)
    vae, unet, decoder = (
        latest_per_step([r for r in log if r.get("stage") == stage and "loss" in r])
        for stage in ("vae", "unet", "decoder")
    )
    scaling = next((r["scaling_factor"] for r in log if "scaling_factor" in r), None)
    draw_curve(
        [(r["step"], r["loss"]) for r in unet],
        "UNet: min-SNR weighted noise-prediction loss by step",
        out / "loss_unet.png",
    )
    draw_curve(
        [(r["step"], r["loss"]) for r in vae],
        "Autoencoder: MSE + 0.5 L1 reconstruction loss by step",
        out / "loss_vae.png",
    )
    if decoder:
        # Steps counted across sharpening runs, in the order they ran.
        draw_curve(
            [(50 * k, r["loss"]) for k, r in enumerate(decoder, 1)],
            "Decoder sharpening: reconstruction loss by step (the edge loss is not in it)",
            out / "loss_decoder.png",
        )
    training = json.loads((out / "training.json").read_text())
    minutes = stage_minutes(log, read_pauses(runs))
    sizes = {
        p.relative_to(out).as_posix(): p.stat().st_size for p in sorted(out.rglob("*.safetensors"))
    }
    total_mb = sum(sizes.values()) / 1e6
    vae_channels, unet_channels = (
        tuple(json.loads((out / part / "config.json").read_text())["block_out_channels"])
        for part in ("vae", "unet")
    )
    lines = [
        "# DiffusionDesk starter model",
        "",
        "A small latent text-to-image diffusion model that DiffusionDesk trains itself and",
        "ships, so the application makes real pictures offline on a CPU from the first run.",
        "It is an ordinary diffusers `StableDiffusionPipeline` folder: AutoencoderKL, a",
        "CLIP text encoder and tokenizer, UNet2DConditionModel, DPM++ 2M scheduler.",
        "",
        "## What it draws",
        "Coloured shapes on a coloured background, 128x128: circle, square, triangle, star,",
        "heart, diamond, cross, ring; red, orange, yellow, green, cyan, blue, purple, pink,",
        "brown, white, black, gray; small or large; top left, top, top right, left, centre,",
        "right, bottom left, bottom, bottom right; one to three objects, with relations",
        "(to the left of, to the right of, above, below). Example prompts:",
        "`a large red circle in the top left on a blue background`,",
        "`a small yellow star to the left of a green heart on a black background`.",
        "",
        "## Parts and sizes",
        f"- autoencoder: AutoencoderKL, channels {vae_channels}, 4 latent channels, 8x",
        f"  downsampling (128x128 -> 16x16x4), scaling factor {scaling:.4f} measured on the data;",
        "  its posterior log-variance is fixed at -12 so it encodes deterministically;",
        "  after the UNet, its decoder alone is fine-tuned on full pictures for sharper",
        "  edges (the encoder, and so the UNet's latent space, is unchanged).",
        "- text encoder: CLIPTextModel, width 128, 3 layers, 4 heads, 40 positions,",
        "  trained from scratch: first alone, to read back every fact of a caption from its",
        "  end-of-text state (`starter/text_pretrain.py`), then frozen while the UNet trains.",
        "- tokenizer: a genuine CLIPTokenizer over a small byte-level BPE vocabulary (every",
        "  byte character, plus a merge chain that makes each caption word one token); a",
        "  full 49,408-entry CLIP table would be most of the 50 MB budget on its own.",
        f"- UNet: UNet2DConditionModel, channels {unet_channels}, ResNet blocks at 16x16,",
        "  cross-attention at 8x8, 4x4 and in the middle block, the prompt also pooled into",
        '  the timestep embedding (diffusers\' `addition_embed_type="text"`) so global facts',
        "  such as colours reach every block; epsilon prediction on Stable Diffusion's",
        "  scaled-linear schedule, so every SD sampler applies.",
        "- latent_rgb.json: linear latent-to-RGB preview factors fitted on the autoencoder.",
        f"- weights: {total_mb:.1f} MB of safetensors in all: "
        + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()),
        "",
        "## Data",
        "Generated by `starter/shapes.py` and `starter/captions.py` deterministically from a",
        "seed, no download: pictures drawn with Pillow at 4x and downsampled, captions in",
        "varied phrasings (synonyms for sizes, several phrasings of each position and of",
        "the background, optional prefixes, relations for two objects), with position,",
        "size and background sometimes left out so the model fills them in.",
        "",
        "## Training",
        "One command on a 2-core CPU, resuming from its last checkpoint if interrupted:",
        "",
        "```bash",
        "python -m starter.train --run runs/starter     # then: python -m starter.export",
        "```",
        "",
        f"This model: {training['unet_steps']} UNet steps of batch 64. Machine time by stage,",
        "from the training log; gaps of over 10 minutes (between sessions) and pauses",
        "recorded in a run's `pauses.json` are left out:",
        "",
        *time_table(minutes),
        "",
        "Autoencoder on random 64x64 crops (it is convolutional) with an edge loss beside",
        "the reconstruction loss, then a fixed set of generated pictures encoded once, then",
        "the text encoder pretrained on captions alone (a few minutes), then the UNet",
        "against that frozen encoder with 10% caption dropout (for",
        "classifier-free guidance), offset noise 0.1 (flat colours), min-SNR-5 loss",
        "weighting, EMA 0.999, AdamW with warm-up and cosine decay, bf16 autocast. 30% of",
        "each UNet batch comes from a second encoded set of crowded pictures (two or three",
        "objects, about 60% of the pairs in one column). While the UNet trains (one thread),",
        "a second process fine-tunes the decoder alone (one thread) on full pictures, half",
        "of them crowded, with an added edge loss and object pixels weighted 4 to 1.",
        "",
        *([notes.strip(), ""] if notes.strip() else []),
        "![UNet loss](loss_unet.png)",
        "![Autoencoder loss](loss_vae.png)",
        *(["![Decoder sharpening loss](loss_decoder.png)"] if decoder else []),
        "",
    ]
    if evaluation:
        lines += [
            "## Measured adherence",
            "`python -m starter.evaluate` (20 steps, guidance 5, DPM++ 2M, 128x128, fixed",
            "seeds; a deterministic analyser reads colours, shape and position):",
            "",
            "```json",
            json.dumps(evaluation, indent=1),
            "```",
            "",
        ]
    if speed:
        lines += [
            "## Speed",
            "`python bench/starter_speed.py`:",
            "",
            "```json",
            json.dumps(speed, indent=1),
            "```",
            "",
        ]
    lines += [
        "## Limits",
        "It knows only the world above: other words are ignored or confuse it, and it",
        "draws nothing photographic. Three-object prompts and relations are weaker than",
        "single objects. It saw only 128x128 pictures: smaller sizes such as 96x96 keep",
        "the composition, but at 160x160 or 192x128 an object is often drawn twice or",
        "stretched. It is a demonstration model for offline use and tests, not a general",
        "image model.",
        "",
        "## Licence",
        "Apache-2.0, like DiffusionDesk. The data is synthetic and made by this project.",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, nargs="+", default=[Path("runs/starter")])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--evaluation", type=Path)
    parser.add_argument("--speed", type=Path)
    parser.add_argument("--notes", type=Path, help="markdown on how these weights were made")
    args = parser.parse_args()
    load = lambda p: json.loads(p.read_text()) if p else None  # noqa: E731
    notes = args.notes.read_text() if args.notes else ""
    write_card(args.run, args.out, load(args.evaluation), load(args.speed), notes)


if __name__ == "__main__":
    main()
