"""Write diffusers components as an original-layout (LDM / A1111) single-file state dict.

The inverse of what diffusers' from_single_file converts, written from the original
Stable Diffusion module layout, so tests can make checkpoints of tiny random models.
"""

from __future__ import annotations

import torch

UNET = "model.diffusion_model."
VAE = "first_stage_model."

_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _move(
    state: dict[str, torch.Tensor],
    out: dict[str, torch.Tensor],
    src: str,
    dst: str,
    renames: dict[str, str] | None = None,
) -> bool:
    """Copy every key under src. to dst., renaming its first sub-module via renames."""
    found = False
    for key, value in state.items():
        if not key.startswith(src + "."):
            continue
        rest = key[len(src) + 1 :]
        for old, new in (renames or {}).items():
            if rest.startswith(old + "."):
                rest = new + rest[len(old) :]
                break
        out[f"{dst}.{rest}"] = value
        found = True
    return found


def unet_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    layers = int(config["layers_per_block"])
    n_blocks = len(config["block_out_channels"])

    def put(src: str, dst: str, renames: dict[str, str] | None = None) -> bool:
        return _move(state, out, src, UNET + dst, renames)

    put("time_embedding.linear_1", "time_embed.0")
    put("time_embedding.linear_2", "time_embed.2")
    put("add_embedding.linear_1", "label_emb.0.0")
    put("add_embedding.linear_2", "label_emb.0.2")
    put("conv_in", "input_blocks.0.0")
    for i in range(n_blocks):
        for j in range(layers):
            n = 1 + i * (layers + 1) + j
            put(f"down_blocks.{i}.resnets.{j}", f"input_blocks.{n}.0", _UNET_RESNET)
            put(f"down_blocks.{i}.attentions.{j}", f"input_blocks.{n}.1")
        put(
            f"down_blocks.{i}.downsamplers.0.conv",
            f"input_blocks.{1 + i * (layers + 1) + layers}.0.op",
        )
    put("mid_block.resnets.0", "middle_block.0", _UNET_RESNET)
    put("mid_block.attentions.0", "middle_block.1")
    put("mid_block.resnets.1", "middle_block.2", _UNET_RESNET)
    for i in range(n_blocks):
        has_attention = False
        for j in range(layers + 1):
            n = i * (layers + 1) + j
            put(f"up_blocks.{i}.resnets.{j}", f"output_blocks.{n}.0", _UNET_RESNET)
            has_attention |= put(f"up_blocks.{i}.attentions.{j}", f"output_blocks.{n}.1")
        last = i * (layers + 1) + layers
        put(
            f"up_blocks.{i}.upsamplers.0.conv",
            f"output_blocks.{last}.{2 if has_attention else 1}.conv",
        )
    put("conv_norm_out", "out.0")
    put("conv_out", "out.2")
    assert len(out) == len(state), "some UNet weights were not mapped"
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    n_blocks = len(config["block_out_channels"])

    def put(src: str, dst: str, renames: dict[str, str] | None = None) -> None:
        _move(state, out, src, VAE + dst, renames)

    for part in ("encoder", "decoder"):
        put(f"{part}.conv_in", f"{part}.conv_in")
        put(f"{part}.conv_out", f"{part}.conv_out")
        put(f"{part}.conv_norm_out", f"{part}.norm_out")
        put(f"{part}.mid_block.resnets.0", f"{part}.mid.block_1", _VAE_RESNET)
        put(f"{part}.mid_block.resnets.1", f"{part}.mid.block_2", _VAE_RESNET)
        put(f"{part}.mid_block.attentions.0", f"{part}.mid.attn_1", _VAE_ATTENTION)
    for i in range(n_blocks):
        for j in range(int(config["layers_per_block"]) + 1):
            put(f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}", _VAE_RESNET)
            up = n_blocks - 1 - i
            put(f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{up}.block.{j}", _VAE_RESNET)
        put(f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv")
        put(
            f"decoder.up_blocks.{i}.upsamplers.0.conv",
            f"decoder.up.{n_blocks - 1 - i}.upsample.conv",
        )
    put("quant_conv", "quant_conv")
    put("post_quant_conv", "post_quant_conv")
    # The original attention projections are 1x1 convolutions.
    for key, value in out.items():
        if ".mid.attn_1." in key and key.endswith(".weight") and value.ndim == 2:
            out[key] = value[:, :, None, None]
    assert len(out) == len(state), "some VAE weights were not mapped"
    return out


def _text_model_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as CLIPTextModel had them before transformers flattened it ("text_model.")."""
    return {
        (k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
        for k, v in state.items()
    }


def clip_to_ldm(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """OpenAI CLIP text encoder (SD 1.x, SDXL's first): the HF names under a prefix."""
    out = {prefix + k: v for k, v in _text_model_keys(state).items()}
    positions = out[prefix + "text_model.embeddings.position_embedding.weight"].shape[0]
    # Real SD 1.x checkpoints carry this buffer too; loaders must tolerate it.
    out[prefix + "text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    return out


def open_clip_to_ldm(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """OpenCLIP text encoder (SD 2.x, SDXL's second) in open_clip's own names."""
    state = _text_model_keys(state)
    out: dict[str, torch.Tensor] = {}
    tm = "text_model."
    out[prefix + "token_embedding.weight"] = state[tm + "embeddings.token_embedding.weight"]
    out[prefix + "positional_embedding"] = state[tm + "embeddings.position_embedding.weight"]
    out[prefix + "ln_final.weight"] = state[tm + "final_layer_norm.weight"]
    out[prefix + "ln_final.bias"] = state[tm + "final_layer_norm.bias"]
    hidden = out[prefix + "ln_final.weight"].shape[0]
    projection = state.get("text_projection.weight")
    out[prefix + "text_projection"] = (
        projection.T.contiguous() if projection is not None else torch.eye(hidden)
    )
    n_layers = 1 + max(int(k.split(".")[3]) for k in state if k.startswith(tm + "encoder.layers."))
    for n in range(n_layers):
        src = f"{tm}encoder.layers.{n}."
        dst = f"{prefix}transformer.resblocks.{n}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [state[src + f"self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")]
            )
            out[dst + f"attn.out_proj.{kind}"] = state[src + f"self_attn.out_proj.{kind}"]
            out[dst + f"ln_1.{kind}"] = state[src + f"layer_norm1.{kind}"]
            out[dst + f"ln_2.{kind}"] = state[src + f"layer_norm2.{kind}"]
            out[dst + f"mlp.c_fc.{kind}"] = state[src + f"mlp.fc1.{kind}"]
            out[dst + f"mlp.c_proj.{kind}"] = state[src + f"mlp.fc2.{kind}"]
    return out


def pipeline_to_ldm(pipe, family: str) -> dict[str, torch.Tensor]:
    """One original-layout state dict for an SD 1.x / 2.x / SDXL diffusers pipeline."""
    out = unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config))
    out.update(vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config)))
    text = pipe.text_encoder.state_dict()
    if family == "sd1":
        out.update(clip_to_ldm(text, "cond_stage_model.transformer."))
    elif family == "sd2":
        out.update(open_clip_to_ldm(text, "cond_stage_model.model."))
    elif family == "sdxl":
        out.update(clip_to_ldm(text, "conditioner.embedders.0.transformer."))
        out.update(
            open_clip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model.")
        )
    else:
        raise ValueError(family)
    return {k: v.contiguous() for k, v in out.items()}
