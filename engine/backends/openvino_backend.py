"""OpenVINO backend: the loaded UNet and VAE decoder converted with openvino's own
converter, cached on disk, compiled per size with static shapes, and run inside the same
diffusers pipeline.

Nothing here replaces the pipeline: while a job runs, the UNet's forward and the VAE's
decode are instance attributes that call OpenVINO, so the step callback (previews,
cancel, stored latents, guidance cut-off), scrub and continue all work unchanged. Calls
the converted graph cannot serve (ControlNet residuals, attention kwargs, LCM's
timestep_cond) go to the torch modules, which stay loaded.

The IR is cached under <cache>/openvino/<fingerprint>/, where the fingerprint covers
the weights (a strided sample of every tensor, so a fused LoRA changes it), their
dtype, the export code and the OpenVINO version. openvino is an optional extra
(`pip install 'diffusiondesk[openvino]'`); this module imports it only when used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

from engine.api import JobCancelled

EXPORT_VERSION = 1  # bump when the exported graphs change
MAX_COMPILED_SHAPES = 4  # compiled sizes kept per model part (each holds its own buffers)
_SAMPLES_PER_TENSOR = 4096

Progress = Callable[[str, float], None]
ShouldCancel = Callable[[], bool]


def available() -> bool:
    """True when the openvino package can be imported."""
    return importlib.util.find_spec("openvino") is not None


def version() -> str:
    import openvino as ov  # type: ignore[import-untyped]

    return str(ov.get_version())


def weights_fingerprint(*modules: torch.nn.Module) -> str:
    """A short hash of the modules' weights: names, shapes, dtypes and a strided sample
    of each tensor's values (about 3 million numbers for an SD 1.5 UNet, a few
    hundredths of a second, where hashing every byte would take seconds per job)."""
    digest = hashlib.blake2b(digest_size=12)
    for module in modules:
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // _SAMPLES_PER_TENSOR)
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(flat[::step].to(torch.float32).numpy().tobytes())
    return digest.hexdigest()


def is_sdxl_unet(unet: Any) -> bool:
    return getattr(unet.config, "addition_embed_type", None) == "text_time"


def unsupported_reason(unet: Any) -> str | None:
    """Why this UNet cannot run in OpenVINO here, or None."""
    if getattr(unet.config, "time_cond_proj_dim", None) is not None:
        return "its UNet takes a guidance embedding (an LCM-distilled model)"
    if getattr(unet.config, "addition_embed_type", None) not in (None, "text_time"):
        return f"its UNet's {unet.config.addition_embed_type!r} conditioning is not exported"
    return None


# ----------------------------------------------------------------------------- export


class _UNetGraph(torch.nn.Module):
    """The UNet as a function of plain tensors, for the converter."""

    def __init__(self, unet: torch.nn.Module, sdxl: bool) -> None:
        super().__init__()
        self.unet: Any = unet
        self.sdxl = sdxl

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        sample, timestep, hidden = inputs[:3]
        added = {"text_embeds": inputs[3], "time_ids": inputs[4]} if self.sdxl else None
        return self.unet(sample, timestep, hidden, added_cond_kwargs=added, return_dict=False)[0]


class _DecoderGraph(torch.nn.Module):
    """latents (already divided by the scaling factor) -> image in [-1, 1]."""

    def __init__(self, vae: Any) -> None:  # a diffusers AutoencoderKL
        super().__init__()
        self.vae: Any = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        post = getattr(self.vae, "post_quant_conv", None)
        if post is not None:
            z = post(z)
        return self.vae.decoder(z)


def _unet_example(unet: Any, dtype: torch.dtype) -> tuple[list[str], tuple[torch.Tensor, ...]]:
    config = unet.config
    width = config.cross_attention_dim
    width = width[0] if isinstance(width, list | tuple) else width
    names = ["sample", "timestep", "encoder_hidden_states"]
    example: list[torch.Tensor] = [
        torch.randn(2, config.in_channels, 8, 8, dtype=dtype),
        torch.tensor([500.0, 500.0]),
        torch.randn(2, 77, width, dtype=dtype),
    ]
    if is_sdxl_unet(unet):
        pooled = unet.add_embedding.linear_1.in_features - 6 * config.addition_time_embed_dim
        names += ["text_embeds", "time_ids"]
        example += [torch.randn(2, pooled, dtype=dtype), torch.ones(2, 6, dtype=dtype) * 512]
    return names, tuple(example)


def _convert(graph: torch.nn.Module, names: list[str], example: tuple[torch.Tensor, ...]) -> Any:
    """Trace and convert; float32 at the model's edges whatever the weights' dtype."""
    import openvino as ov  # type: ignore[import-untyped]
    from openvino.preprocess import PrePostProcessor  # type: ignore[import-untyped]

    with torch.no_grad():
        model = ov.convert_model(graph, example_input=example)
    for port, name in zip(model.inputs, names, strict=True):
        port.get_tensor().set_names({name})
    ppp = PrePostProcessor(model)
    for name in names:
        ppp.input(name).tensor().set_element_type(ov.Type.f32)
    ppp.output(0).tensor().set_element_type(ov.Type.f32)
    return ppp.build()


# ----------------------------------------------------------------------------- running


class CompiledPart:
    """One converted model part (UNet or decoder), compiled per input shape on demand."""

    def __init__(self, core: Any, xml: Path, config: dict[str, Any]) -> None:
        self._core, self._config = core, config
        self._model = core.read_model(str(xml))
        self.input_names = [port.get_any_name() for port in self._model.inputs]
        self._compiled: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def is_compiled_for(self, shapes: dict[str, tuple[int, ...]]) -> bool:
        return self._key(shapes) in self._compiled

    def compile_for(self, shapes: dict[str, tuple[int, ...]]) -> Any:
        key = self._key(shapes)
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        model = self._model.clone()
        model.reshape({name: list(shape) for name, shape in shapes.items()})
        compiled = self._core.compile_model(model, "CPU", self._config)
        self._compiled[key] = compiled
        while len(self._compiled) > MAX_COMPILED_SHAPES:
            self._compiled.popitem(last=False)
        return compiled

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        compiled = self.compile_for({k: tuple(v.shape) for k, v in inputs.items()})
        return np.asarray(compiled(inputs)[0])

    @staticmethod
    def _key(shapes: dict[str, tuple[int, ...]]) -> tuple[Any, ...]:
        return tuple(sorted((k, tuple(v)) for k, v in shapes.items()))


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy()


class OpenVINOModel:
    """A loaded model's UNet and VAE decoder in OpenVINO."""

    def __init__(self, unet: Any, vae: Any, folder: Path, dtype: torch.dtype) -> None:
        import openvino as ov  # type: ignore[import-untyped]

        self.unet, self.vae = unet, vae
        self.key = folder.name  # the fingerprint: weights, OpenVINO version, export code
        self.sdxl = is_sdxl_unet(unet)
        core = ov.Core()
        # The compiled-blob cache makes a second compile of the same shape quick.
        core.set_property({"CACHE_DIR": str(folder / "compiled")})
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if dtype == torch.bfloat16 else "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        }
        self.unet_part = CompiledPart(core, folder / "unet.xml", config)
        decoder = folder / "vae_decoder.xml"
        self.decoder_part = CompiledPart(core, decoder, config) if decoder.is_file() else None

    def unet_shapes(self, batch: int, height: int, width: int, tokens: int = 77) -> dict:
        config = self.unet.config
        hidden = config.cross_attention_dim
        hidden = hidden[0] if isinstance(hidden, list | tuple) else hidden
        shapes = {
            "sample": (batch, config.in_channels, height // 8, width // 8),
            "timestep": (batch,),
            "encoder_hidden_states": (batch, tokens, hidden),
        }
        if self.sdxl:
            pooled = self.unet.add_embedding.linear_1.in_features
            pooled -= 6 * config.addition_time_embed_dim
            shapes.update(text_embeds=(batch, pooled), time_ids=(batch, 6))
        return shapes

    def decoder_shapes(self, batch: int, height: int, width: int) -> dict:
        channels = self.vae.config.latent_channels
        return {"z": (batch, channels, height // 8, width // 8)}

    # The stand-ins below have the torch modules' call signatures.

    def unet_forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        *args: Any,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> Any:
        if args or any(v is not None for v in kwargs.values()):
            # Something the graph was not exported with: the torch UNet serves the call.
            torch_forward = type(self.unet).forward
            return torch_forward(
                self.unet,
                sample,
                timestep,
                encoder_hidden_states,
                *args,
                added_cond_kwargs=added_cond_kwargs,
                return_dict=return_dict,
                **kwargs,
            )
        batch = sample.shape[0]
        steps = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(batch)
        inputs = {
            "sample": _numpy(sample),
            "timestep": _numpy(steps),
            "encoder_hidden_states": _numpy(encoder_hidden_states),
        }
        if self.sdxl:
            assert added_cond_kwargs is not None
            inputs["text_embeds"] = _numpy(added_cond_kwargs["text_embeds"])
            inputs["time_ids"] = _numpy(added_cond_kwargs["time_ids"])
        out = torch.from_numpy(self.unet_part(inputs)).to(sample.dtype)
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)

    def vae_decode(self, z: torch.Tensor, return_dict: bool = True, generator: Any = None) -> Any:
        assert self.decoder_part is not None
        image = torch.from_numpy(self.decoder_part({"z": _numpy(z)})).to(z.dtype)
        return DecoderOutput(sample=image) if return_dict else (image,)

    @contextlib.contextmanager
    def active(self, *, decode: bool) -> Iterator[None]:
        """Serve the UNet (and the VAE decode) from OpenVINO for the duration."""
        self.unet.forward = self.unet_forward
        if decode and self.decoder_part is not None:
            self.vae.decode = self.vae_decode
        try:
            yield
        finally:
            vars(self.unet).pop("forward", None)
            if vars(self.vae).get("decode") == self.vae_decode:
                del self.vae.decode


# ----------------------------------------------------------------------------- cache


def cache_folder(root: Path, unet: Any, vae: Any) -> Path:
    key = f"{weights_fingerprint(unet, vae)}-ov{version()}-e{EXPORT_VERSION}"
    return root / "openvino" / key.replace("/", "_").replace(" ", "_")


def convert_to_cache(
    unet: Any,
    vae: Any,
    folder: Path,
    dtype: torch.dtype,
    progress: Progress,
    should_cancel: ShouldCancel,
) -> None:
    """Convert both parts into folder (atomically: a half-written cache is never read).
    Cancel is honoured between the stages."""
    import openvino as ov  # type: ignore[import-untyped]

    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=folder.name + ".part-", dir=folder.parent))
    # openvino's converter turns bfloat16 modules into graphs that compute NaN (2026.4),
    # so the modules convert in float32 and go back after (bfloat16 -> float32 -> bfloat16
    # is exact); the IR stores float16 weights and compiles for bfloat16 compute.
    original, as_float32 = dtype, dtype != torch.float32
    try:
        if as_float32:  # torch's own to(): diffusers' would warn about keeping fp32 parts
            torch.nn.Module.to(unet, torch.float32)
            torch.nn.Module.to(vae, torch.float32)
            dtype = torch.float32
        progress("converting the UNet to OpenVINO (once per model)", 0.1)
        names, example = _unet_example(unet, dtype)
        model = _convert(_UNetGraph(unet, is_sdxl_unet(unet)), names, example)
        if should_cancel():
            raise JobCancelled()
        progress("saving the converted UNet", 0.5)
        ov.save_model(model, str(work / "unet.xml"), compress_to_fp16=as_float32)
        del model
        if should_cancel():
            raise JobCancelled()
        progress("converting the VAE decoder to OpenVINO", 0.6)
        z = torch.randn(1, vae.config.latent_channels, 8, 8, dtype=dtype)
        decoder = _convert(_DecoderGraph(vae), ["z"], (z,))
        if should_cancel():
            raise JobCancelled()
        progress("saving the converted VAE decoder", 0.9)
        ov.save_model(decoder, str(work / "vae_decoder.xml"), compress_to_fp16=as_float32)
        with contextlib.suppress(FileExistsError, OSError):
            os.replace(work, folder)  # another engine may have finished it first
    finally:
        if as_float32:
            torch.nn.Module.to(unet, original)
            torch.nn.Module.to(vae, original)
        shutil.rmtree(work, ignore_errors=True)


def is_cached(folder: Path) -> bool:
    return (folder / "unet.xml").is_file() and (folder / "unet.bin").is_file()
