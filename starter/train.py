"""Train the starter model from scratch on this machine's CPU, resumably.

    python -m starter.train [--run runs/starter] [--unet-steps 8500] [--max-minutes 175]

Stages, each skipped when its output exists and each resuming from its checkpoint:
(1) the autoencoder on random crops of generated pictures, (2) a fixed data set of
generated pictures encoded to latents, and a second one of crowded two- and
three-object pictures, (2b) the text encoder, pretrained to read back each caption's
facts, then frozen, (3) the UNet (caption dropout for classifier-free guidance, offset
noise for flat colours, min-SNR weighting, EMA), checkpointed every few hundred steps,
while a second process sharpens the decoder on full pictures, weighting object pixels
(the encoder stays frozen, so the latents stay valid). Then `python -m starter.export`
writes the diffusers folder.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.training_utils import EMAModel, compute_snr

from starter.architecture import (
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_vae,
    token_ids,
)
from starter.captions import caption, sample_crowded_scene, sample_scene
from starter.shapes import COLOURS, Scene, render
from starter.text_pretrain import pretrain_text_encoder

DATA_SEED = 1234
CAPTION_DROPOUT = 0.1
NOISE_OFFSET = 0.1


def log(run: Path, record: dict) -> None:
    record["time"] = round(time.time(), 1)
    with open(run / "log.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


def to_tensor(images: list) -> torch.Tensor:
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def training_scene(rng: np.random.Generator, crowded: float) -> Scene:
    """A scene from the evaluation's own sampler, or with probability `crowded` one with
    two or three objects packed close (what two-object prompts need most)."""
    if crowded > 0 and rng.random() < crowded:
        return sample_crowded_scene(rng)
    return sample_scene(rng)


def save_checkpoint(path: Path, step: int, extra: dict | None = None, **parts) -> None:
    """Every part's state_dict, the step and torch's random state, written atomically."""
    state = {name: part.state_dict() for name, part in parts.items()}
    save_atomic({**state, **(extra or {}), "step": step, "torch_rng": torch.get_rng_state()}, path)


def resume_checkpoint(path: Path, **parts) -> int:
    """Load a save_checkpoint file into the parts, if there is one; the step to go on from."""
    if not path.exists():
        return 0
    ckpt = torch.load(path, weights_only=False)
    for name, part in parts.items():
        part.load_state_dict(ckpt[name])
    if "torch_rng" in ckpt:
        torch.set_rng_state(ckpt["torch_rng"])
    return ckpt["step"]


def save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


# ----------------------------------------------------------------------------- stage 1


def make_deterministic(vae: torch.nn.Module) -> None:
    """Fix the posterior's log-variance at -12 (std 0.0025), so that pipelines that
    sample the posterior (image-to-image, inpainting) get the mean."""
    channels = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.weight[channels:] = 0
        vae.quant_conv.bias[channels:] = -12.0


def train_vae(
    run: Path,
    steps: int,
    batch: int = 16,
    crop: int = 64,
    channels: tuple[int, ...] | None = None,
    checkpoint_every: int = 250,
) -> None:
    """Encoder and decoder together on random crops, checkpointed so a rerun resumes."""
    out = run / "vae.pt"
    if out.exists():
        return
    ckpt_path = run / "vae_ckpt.pt"
    torch.manual_seed(0)
    vae = (build_vae(channels) if channels else build_vae()).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-4, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-4, total_steps=steps, pct_start=0.05)
    step = resume_checkpoint(ckpt_path, vae=vae, opt=opt, sched=sched)
    rng = np.random.default_rng(DATA_SEED + 1 + step)
    t0 = time.time()
    while step < steps:
        step += 1
        images = [render(sample_scene(rng)) for _ in range(batch)]
        x = to_tensor(images)
        # Random crops: the autoencoder is convolutional, and crops are 4x cheaper.
        i, j = rng.integers(0, 128 - crop + 1, size=2)
        x = x[:, :, i : i + crop, j : j + crop]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mean = vae.encode(x).latent_dist.mean
            # A deterministic autoencoder: sampling the posterior while its variance is
            # still large blurs the decoder (it learns to average). A little noise keeps
            # the decoder robust to imperfect latents from the UNet.
            recon = vae.decode(mean + 0.05 * torch.randn_like(mean)).sample
        rec = reconstruction_loss(recon.float(), x)
        kl = mean.float().pow(2).mean()  # keeps the latent scale bounded
        loss = rec + edge_loss(recon.float(), x) + 1e-3 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            log(
                run,
                {
                    "stage": "vae",
                    "step": step,
                    "loss": round(rec.item(), 5),
                    "kl": round(kl.item(), 3),
                    "elapsed": round(time.time() - t0),
                },
            )
        if step % checkpoint_every == 0:
            save_checkpoint(ckpt_path, step, vae=vae, opt=opt, sched=sched)
    make_deterministic(vae)
    save_atomic(vae.state_dict(), out)


def reconstruction_loss(
    recon: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """MSE plus half L1, optionally weighted per pixel (weights normalised to mean 1)."""
    if weight is None:
        return F.mse_loss(recon, target) + 0.5 * F.l1_loss(recon, target)
    weight = weight / weight.mean()
    diff = recon - target
    return (weight * diff.pow(2)).mean() + 0.5 * (weight * diff.abs()).mean()


def object_mask(images: torch.Tensor, scenes: list[Scene]) -> torch.Tensor:
    """1 where a pixel differs from its scene's flat background, else 0, shape (B,1,H,W).
    Objects cover a small share of each picture; weighting them lets the loss see the
    points of small stars, which plain averages over the background wash out."""
    bg = torch.tensor([COLOURS[s.background] for s in scenes], dtype=torch.float32)
    bg = (bg / 127.5 - 1.0)[:, :, None, None]
    return ((images - bg).abs().amax(dim=1, keepdim=True) > 0.02).float()


def edge_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical pixel differences: flat areas dominate plain
    MSE, so without this small shapes' corners blur and stars decode as circles."""
    dx = (recon[..., :, 1:] - recon[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    dy = (recon[..., 1:, :] - recon[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


def sharpen_decoder(
    run: Path,
    steps: int,
    batch: int = 8,
    lr: float = 3e-4,
    channels: tuple[int, ...] | None = None,
    checkpoint_every: int = 500,
    crowded: float = 0.0,
    object_weight: float = 0.0,
) -> None:
    """Fine-tune only the decoder on full pictures. The encoder, and so every latent
    the UNet learned from, stays exactly as it was; edges get sharper."""
    out = run / "vae_sharp.pt"
    if out.exists():
        return
    ckpt_path = run / "decoder_ckpt.pt"
    vae = build_vae(channels) if channels else build_vae()
    vae.load_state_dict(torch.load(run / "vae.pt"))
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = min(100, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * s / steps)),
    )
    step = resume_checkpoint(ckpt_path, vae=vae, opt=opt, sched=sched)
    rng = np.random.default_rng(DATA_SEED + 2 + step)
    t0 = time.time()
    while step < steps:
        step += 1
        scenes = [training_scene(rng, crowded) for _ in range(batch)]
        x = to_tensor([render(s) for s in scenes])
        with torch.no_grad():
            mean = vae.encode(x).latent_dist.mean
        with torch.autocast("cpu", dtype=torch.bfloat16):
            recon = vae.decode(mean + 0.05 * torch.randn_like(mean)).sample
        weight = 1.0 + object_weight * object_mask(x, scenes) if object_weight else None
        rec = reconstruction_loss(recon.float(), x, weight)
        loss = rec + edge_loss(recon.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            log(
                run,
                {
                    "stage": "decoder",
                    "step": step,
                    "loss": round(rec.item(), 5),
                    "elapsed": round(time.time() - t0),
                },
            )
        if step % checkpoint_every == 0:
            save_atomic(vae.state_dict(), run / "vae_sharp_partial.pt")
            save_checkpoint(ckpt_path, step, vae=vae, opt=opt, sched=sched)
    save_atomic(vae.state_dict(), out)


# ----------------------------------------------------------------------------- stage 2


@torch.no_grad()
def encode_dataset(
    run: Path,
    count: int,
    chunk: int = 256,
    name: str = "latents.pt",
    sampler: Callable[[np.random.Generator], Scene] = sample_scene,
    seed: int = DATA_SEED,
) -> None:
    out = run / name
    if out.exists():
        return
    vae = build_vae()
    vae.load_state_dict(torch.load(run / "vae.pt"))
    vae.eval()
    rng = np.random.default_rng(seed)
    means, stds, captions = [], [], []
    t0 = time.time()
    stage = "encode" if name == "latents.pt" else f"encode {name}"
    for start in range(0, count, chunk):
        batch_scenes = [sampler(rng) for _ in range(min(chunk, count - start))]
        # Several phrasings per picture; one is drawn per use during training.
        captions += [[caption(s, rng) for _ in range(4)] for s in batch_scenes]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            moments = vae.quant_conv(vae.encoder(to_tensor([render(s) for s in batch_scenes])))
        mean, logvar = moments.float().chunk(2, dim=1)
        means.append(mean.half())
        stds.append(torch.exp(0.5 * logvar.clamp(-30, 20)).half())
        if (start // chunk) % 20 == 0:
            log(run, {"stage": stage, "done": start + chunk, "elapsed": round(time.time() - t0)})
    all_means = torch.cat(means)
    scaling = float(1.0 / all_means.float().std())
    save_atomic(
        {"mean": all_means, "std": torch.cat(stds), "captions": captions, "scaling": scaling}, out
    )
    log(run, {"stage": stage, "scaling_factor": scaling})


# ----------------------------------------------------------------------------- stage 2b


def pretrain_text(run: Path, steps: int) -> None:
    out = run / "text_encoder.pt"
    if out.exists():
        return
    torch.manual_seed(1)
    tokenizer = build_tokenizer(run / "tokenizer")
    text_encoder = build_text_encoder(tokenizer)
    accuracy = pretrain_text_encoder(
        text_encoder, tokenizer, sample_scene, steps=steps, log=lambda r: log(run, r)
    )
    log(run, {"stage": "text", "accuracy": accuracy})
    save_atomic(text_encoder.state_dict(), out)


# ----------------------------------------------------------------------------- stage 3


def draw_batch(
    sources: list[tuple[dict, int]], rng: np.random.Generator, scaling: float
) -> tuple[torch.Tensor, list[str]]:
    """`count` latents (sampled from their stored posterior) and captions from each
    encoded set; a caption is dropped to "" with probability CAPTION_DROPOUT."""
    latents, texts = [], []
    for source, count in sources:
        idx = rng.integers(0, len(source["captions"]), size=count)
        mean, std = source["mean"][idx].float(), source["std"][idx].float()
        latents.append((mean + std * torch.randn_like(mean)) * scaling)
        texts += [
            "" if rng.random() < CAPTION_DROPOUT else source["captions"][i][rng.integers(4)]
            for i in idx.tolist()
        ]
    return torch.cat(latents), texts


def train_unet(
    run: Path,
    steps: int,
    batch: int,
    lr: float,
    max_minutes: float,
    init_from: Path | None = None,
    every_25_steps: Callable[[], None] = lambda: None,
    crowded_share: float = 0.0,
) -> bool:
    """Train until `steps` (True) or the time limit (False, checkpointed).

    With `crowded_share`, that share of every batch comes from crowded_latents.pt."""
    data = torch.load(run / "latents.pt")
    scaling = data["scaling"]
    tokenizer = build_tokenizer(run / "tokenizer")
    sources = [(data, batch)]
    if crowded_share > 0:
        crowded = torch.load(run / "crowded_latents.pt")
        k = round(batch * crowded_share)
        sources = [(data, batch - k), (crowded, k)]

    torch.manual_seed(0)
    unet, text_encoder = build_unet(), build_text_encoder(tokenizer)
    # The pretrained text encoder stays frozen, as CLIP does in Stable Diffusion.
    text_encoder.load_state_dict(torch.load(run / "text_encoder.pt"))
    text_encoder.requires_grad_(False).eval()
    if init_from is not None and not (run / "unet_ckpt.pt").exists():
        # Continue from a shipped model (training checkpoints are not kept in git).
        from safetensors.torch import load_file

        unet.load_state_dict(load_file(init_from / "unet" / "diffusion_pytorch_model.safetensors"))
    params = list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    ema_unet = EMAModel(unet.parameters(), decay=0.999, use_ema_warmup=True, power=0.75)
    ema_text = EMAModel(text_encoder.parameters(), decay=0.999, use_ema_warmup=True, power=0.75)
    noise_scheduler = build_scheduler()
    ckpt_path = run / "unet_ckpt.pt"
    parts = {
        "unet": unet,
        "text_encoder": text_encoder,
        "opt": opt,
        "ema_unet": ema_unet,
        "ema_text": ema_text,
    }
    step = resume_checkpoint(ckpt_path, **parts)
    rng = np.random.default_rng(DATA_SEED + 100 + step)

    def lr_at(s: int) -> float:
        warm = 200
        if s < warm:
            return lr * (s + 1) / warm
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, step, {"scaling": scaling}, **parts)

    unet.train()
    t0 = time.time()
    losses: list[float] = []
    while step < steps:
        latents, texts = draw_batch(sources, rng, scaling)
        tokens = token_ids(tokenizer, texts)
        noise = torch.randn_like(latents) + NOISE_OFFSET * torch.randn(batch, 4, 1, 1)
        timesteps = torch.randint(0, 1000, (batch,))
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with torch.no_grad():
                cond = text_encoder(tokens)[0]
            pred = unet(noisy, timesteps, cond).sample
        snr = compute_snr(noise_scheduler, timesteps)
        weights = torch.clamp(snr, max=5.0) / snr
        loss = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3)) * weights
        loss = loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_unet.step(unet.parameters())
        step += 1
        losses.append(loss.item())
        if step % 25 == 0:
            log(
                run,
                {
                    "stage": "unet",
                    "step": step,
                    "loss": round(float(np.mean(losses)), 5),
                    "lr": round(lr_at(step), 6),
                    "elapsed": round(time.time() - t0),
                },
            )
            losses.clear()
            every_25_steps()
        if step % 200 == 0 or step == steps:
            checkpoint()
        if (time.time() - t0) / 60 > max_minutes:
            checkpoint()
            log(run, {"stage": "unet", "stopped": "time limit", "step": step})
            return False
    return True


def start_decoder_process(args: argparse.Namespace) -> subprocess.Popen | None:
    """Sharpen the decoder in a second process while the UNet trains: it needs only the
    frozen encoder, and one thread each on the two cores beats two threads taking turns."""
    if (args.run / "vae_sharp.pt").exists():
        return None
    command = [sys.executable, "-m", "starter.train", "--run", str(args.run), "--only-decoder"]
    command += ["--threads", "1", "--decoder-steps", str(args.decoder_steps)]
    command += ["--decoder-lr", str(args.decoder_lr)]
    command += ["--decoder-crowded", str(args.decoder_crowded)]
    command += ["--object-weight", str(args.object_weight)]
    log_file = open(args.run / "decoder.log", "a")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/starter"))
    parser.add_argument("--vae-steps", type=int, default=3000)
    parser.add_argument("--images", type=int, default=36000)
    parser.add_argument("--text-steps", type=int, default=800)
    parser.add_argument("--unet-steps", type=int, default=8500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=175.0,
        help="stop the UNet stage (checkpointed) after this long; rerun resumes",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decoder-steps", type=int, default=12000)
    parser.add_argument("--decoder-lr", type=float, default=3e-4)
    parser.add_argument(
        "--crowded",
        type=float,
        default=0.3,
        help="share of each UNet batch from the crowded set (two and three objects)",
    )
    parser.add_argument(
        "--decoder-crowded",
        type=float,
        default=0.5,
        help="share of crowded scenes among the decoder's pictures",
    )
    parser.add_argument("--crowded-images", type=int, default=12000)
    parser.add_argument(
        "--object-weight",
        type=float,
        default=3.0,
        help="extra weight of object pixels over background in the decoder's loss",
    )
    parser.add_argument(
        "--only-decoder",
        action="store_true",
        help="run just the decoder-sharpening stage (needs vae.pt)",
    )
    parser.add_argument(
        "--skip-decoder",
        action="store_true",
        help="do not sharpen the decoder alongside the UNet",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        help="continue from an exported model folder (its autoencoder, UNet "
        "and text encoder), e.g. resources/starter-model",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.run.mkdir(parents=True, exist_ok=True)
    if args.init_from and not (args.run / "vae.pt").exists():
        from safetensors.torch import load_file

        save_atomic(
            load_file(args.init_from / "vae" / "diffusion_pytorch_model.safetensors"),
            args.run / "vae.pt",
        )
    if args.init_from and not (args.run / "text_encoder.pt").exists():
        from safetensors.torch import load_file

        save_atomic(
            load_file(args.init_from / "text_encoder" / "model.safetensors"),
            args.run / "text_encoder.pt",
        )
    if args.only_decoder:
        sharpen_decoder(
            args.run,
            args.decoder_steps,
            lr=args.decoder_lr,
            crowded=args.decoder_crowded,
            object_weight=args.object_weight,
        )
        return
    train_vae(args.run, args.vae_steps)
    encode_dataset(args.run, args.images)
    if args.crowded > 0:
        encode_dataset(
            args.run,
            args.crowded_images,
            name="crowded_latents.pt",
            sampler=sample_crowded_scene,
            seed=DATA_SEED + 3,
        )
    pretrain_text(args.run, args.text_steps)
    decoder = None if args.skip_decoder else start_decoder_process(args)
    if decoder is not None:
        torch.set_num_threads(max(1, args.threads - 1))

    def take_back_threads() -> None:
        # The decoder finished first: the UNet gets its thread back.
        if decoder is not None and decoder.poll() is not None:
            torch.set_num_threads(args.threads)

    try:
        train_unet(
            args.run,
            args.unet_steps,
            args.batch,
            args.lr,
            args.max_minutes,
            args.init_from,
            take_back_threads,
            args.crowded,
        )
    finally:
        if decoder is not None:
            decoder.wait()


if __name__ == "__main__":
    main()
