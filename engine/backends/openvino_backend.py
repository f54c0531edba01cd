"""OpenVINO backend: the loaded UNet and VAE decoder converted with openvino's own
converter, cached on disk, compiled per size with static shapes, and run inside the same
diffusers pipeline.

Nothing here replaces the pipeline: while a job runs, the UNet's forward and the VAE's
decode are instance attributes that call OpenVINO, so the step callback (previews,
cancel, stored latents, guidance cut-off), scrub and continue all work unchanged. Calls
the converted graph cannot serve (ControlNet residuals, attention kwargs, LCM's
timestep_cond) go to the torch modules, which stay loaded.

Deep cache (engine/deep_cache.py) runs here too: the UNet graph also returns the deep
blocks' output (what the last up block takes in), and a second, small graph holds only
the shallow level (conv_in, the first down block, the last up block, conv_out) with that
output as an input; a cached step runs the small graph on the kept deep features.

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

EXPORT_VERSION = 2  # bump when the exported graphs change (2: deep-cache graphs)
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
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(_strided_sample(tensor.detach()).to(torch.float32).numpy().tobytes())
    return digest.hexdigest()


def _strided_sample(tensor: torch.Tensor) -> torch.Tensor:
    """Every step-th value in row-major order. A channels_last weight is not contiguous,
    and reshape(-1) would copy all of it (1.7 s of a 1-step job's setup for an SD 1.5
    UNet and VAE in bfloat16): its samples are gathered by index instead."""
    count = tensor.numel()
    step = max(1, count // _SAMPLES_PER_TENSOR)
    if tensor.is_contiguous():
        return tensor.reshape(-1)[::step]
    return tensor[torch.unravel_index(torch.arange(0, count, step), tensor.shape)]


def is_sdxl_unet(unet: Any) -> bool:
    return getattr(unet.config, "addition_embed_type", None) == "text_time"


def unsupported_reason(unet: Any) -> str | None:
    """Why this UNet cannot run in OpenVINO here, or None."""
    if getattr(unet.config, "time_cond_proj_dim", None) is not None:
        return "its UNet takes a guidance embedding (an LCM-distilled model)"
    if getattr(unet.config, "addition_embed_type", None) not in (None, "text_time"):
        return f"its UNet's {unet.config.addition_embed_type!r} conditioning is not exported"
    return None


def size_reason(unet: Any, width: int, height: int) -> str | None:
    """Why the converted graph cannot run this size, or None: its upsampling sizes were
    fixed when it was traced, so the latent must halve evenly at every level."""
    levels = int(getattr(unet, "num_upsamplers", len(getattr(unet, "up_blocks", ())) - 1))
    multiple = 8 * 2 ** max(levels, 0)
    if width % multiple or height % multiple:
        return f"it runs sizes that are multiples of {multiple} px; {width}x{height} is not"
    return None


# ----------------------------------------------------------------------------- export


def deep_cache_exportable(unet: Any) -> bool:
    """A UNet whose shallow level the shallow graph can run on its own (SD 1.x, 2.x, SDXL):
    down, mid and up blocks, no class embedding."""
    return (
        len(getattr(unet, "down_blocks", ())) > 1
        and len(getattr(unet, "up_blocks", ())) > 1
        and getattr(unet, "class_embedding", None) is None
        and getattr(unet.config, "addition_embed_type", None) in (None, "text_time")
    )


def deep_feature_channels(unet: Any) -> int:
    """Channels of the deep blocks' output (the second-to-last up block's)."""
    return int(unet.up_blocks[-2].resnets[-1].out_channels)


class _UNetGraph(torch.nn.Module):
    """The UNet as a function of plain tensors, for the converter; with deep=True it also
    returns the deep blocks' output (the last up block's input), for deep cache."""

    def __init__(self, unet: torch.nn.Module, sdxl: bool, deep: bool = False) -> None:
        super().__init__()
        self.unet: Any = unet
        self.sdxl = sdxl
        self.deep = deep

    def forward(self, *inputs: torch.Tensor) -> Any:
        sample, timestep, hidden = inputs[:3]
        added = {"text_embeds": inputs[3], "time_ids": inputs[4]} if self.sdxl else None
        if not self.deep:
            return self.unet(sample, timestep, hidden, added_cond_kwargs=added, return_dict=False)[
                0
            ]
        kept: list[torch.Tensor] = []
        handle = self.unet.up_blocks[-2].register_forward_hook(
            lambda _module, _args, output: kept.append(output)
        )
        try:
            out = self.unet(sample, timestep, hidden, added_cond_kwargs=added, return_dict=False)
        finally:
            handle.remove()
        return out[0], kept[0]


class _ShallowGraph(torch.nn.Module):
    """A cached step: the UNet's shallow level on this step's sample and timestep, with the
    deep blocks' output from the last full step. The same computation as diffusers'
    UNet2DConditionModel.forward with the deep blocks answering from the cache."""

    def __init__(self, unet: torch.nn.Module, sdxl: bool) -> None:
        super().__init__()
        self.unet: Any = unet
        self.sdxl = sdxl

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        sample, timestep, hidden, deep = inputs[:4]
        added = {"text_embeds": inputs[4], "time_ids": inputs[5]} if self.sdxl else None
        unet = self.unet
        if unet.config.center_input_sample:
            sample = 2 * sample - 1.0
        emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)
        aug = unet.get_aug_embed(emb=emb, encoder_hidden_states=hidden, added_cond_kwargs=added)
        emb = emb + aug if aug is not None else emb
        if unet.time_embed_act is not None:
            emb = unet.time_embed_act(emb)
        hidden = unet.process_encoder_hidden_states(
            encoder_hidden_states=hidden, added_cond_kwargs=added
        )
        sample = unet.conv_in(sample)
        first = unet.down_blocks[0]
        if getattr(first, "has_cross_attention", False):
            _, residuals = first(hidden_states=sample, temb=emb, encoder_hidden_states=hidden)
        else:
            _, residuals = first(hidden_states=sample, temb=emb)
        last = unet.up_blocks[-1]
        # The deeper up blocks took the later residuals; the last one takes the first ones.
        skips = ((sample, *residuals))[: len(last.resnets)]
        if getattr(last, "has_cross_attention", False):
            out = last(
                hidden_states=deep,
                temb=emb,
                res_hidden_states_tuple=skips,
                encoder_hidden_states=hidden,
            )
        else:
            out = last(hidden_states=deep, temb=emb, res_hidden_states_tuple=skips)
        if unet.conv_norm_out:
            out = unet.conv_act(unet.conv_norm_out(out))
        return unet.conv_out(out)


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
    for index in range(len(model.outputs)):
        ppp.output(index).tensor().set_element_type(ov.Type.f32)
    return ppp.build()


# ----------------------------------------------------------------------------- running


class CompiledPart:
    """One converted model part (UNet or decoder), compiled per input shape on demand.

    With streams > 1, a batch that divides into that many equal parts (a guided step's
    two halves) runs as that many requests at once, one per CPU stream with its share of
    the threads, instead of one request whose every layer splits across all threads: on
    a busy 2-core CPU the two halves of a 512 px guided step ran 1.17x faster this way
    (bench/cpu_speed.py: "openvino" against "openvino_one_request"), and the result is
    the same to bfloat16 rounding (no sample's arithmetic depends on the rest of its
    batch)."""

    def __init__(self, core: Any, xml: Path, config: dict[str, Any], streams: int = 1) -> None:
        self._core, self._config = core, config
        self._model = core.read_model(str(xml))
        self.input_names = [port.get_any_name() for port in self._model.inputs]
        self.outputs = len(self._model.outputs)
        self.streams = max(1, streams)
        self._compiled: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._requests: dict[int, list[Any]] = {}  # id(compiled) -> one request per stream

    def split(self, shapes: dict[str, tuple[int, ...]]) -> int:
        """Into how many parts a call of these shapes runs (1: one request)."""
        batches = {shape[0] for shape in shapes.values() if shape}
        if self.streams < 2 or len(batches) != 1:
            return 1
        batch = batches.pop()
        parts = min(self.streams, batch, int(self._config.get("INFERENCE_NUM_THREADS", 1)))
        return parts if parts > 1 and batch % parts == 0 else 1

    def is_compiled_for(self, shapes: dict[str, tuple[int, ...]]) -> bool:
        return self._key(shapes) in self._compiled

    def compile_for(self, shapes: dict[str, tuple[int, ...]]) -> Any:
        key = self._key(shapes)
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        parts = self.split(shapes)
        config = dict(self._config)
        if parts > 1:
            shapes = {k: (v[0] // parts, *v[1:]) for k, v in shapes.items()}
            config.update(PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS=parts)
        model = self._model.clone()
        model.reshape({name: list(shape) for name, shape in shapes.items()})
        compiled = self._core.compile_model(model, "CPU", config)
        self._compiled[key] = compiled
        while len(self._compiled) > MAX_COMPILED_SHAPES:
            _, dropped = self._compiled.popitem(last=False)
            self._requests.pop(id(dropped), None)
        return compiled

    def release(self) -> None:
        """Drop the compiled graphs (their buffers); the next call compiles again."""
        self._compiled.clear()
        self._requests.clear()

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.run(inputs)[0]

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output of the graph."""
        shapes = {k: tuple(v.shape) for k, v in inputs.items()}
        compiled = self.compile_for(shapes)
        parts = self.split(shapes)
        if parts == 1:
            results = compiled(inputs)
            return [np.asarray(results[index]) for index in range(len(compiled.outputs))]
        requests = self._requests.get(id(compiled))
        if requests is None:
            requests = [compiled.create_infer_request() for _ in range(parts)]
            self._requests[id(compiled)] = requests
        chunks = {k: np.split(v, parts) for k, v in inputs.items()}
        for index, request in enumerate(requests):
            request.start_async({k: v[index] for k, v in chunks.items()})
        for request in requests:
            request.wait()
        return [
            np.concatenate([request.get_output_tensor(i).data for request in requests])
            for i in range(len(compiled.outputs))
        ]

    def _key(self, shapes: dict[str, tuple[int, ...]]) -> tuple[Any, ...]:
        return (self.split(shapes), *sorted((k, tuple(v)) for k, v in shapes.items()))


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy()


class OpenVINOModel:
    """A loaded model's UNet and VAE decoder in OpenVINO."""

    def __init__(
        self,
        unet: Any,
        vae: Any,
        folder: Path,
        dtype: torch.dtype,
        settings: dict[str, Any] | None = None,
        streams: int | None = None,
    ) -> None:
        """settings: more OpenVINO CPU properties (bench/cpu_speed.py tries some);
        streams: CPU streams a guided UNet call's halves run on (default: two where
        there are two threads or more, see CompiledPart)."""
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
            **(settings or {}),
        }
        self.folder = folder
        self._core, self._config = core, config
        threads = int(config["INFERENCE_NUM_THREADS"])
        self.streams = streams if streams is not None else (2 if threads >= 2 else 1)
        self.unet_part = CompiledPart(core, folder / "unet.xml", config, self.streams)
        self.int8_parts: dict[Path, CompiledPart] = {}  # by file (engine/backends/int8.py)
        self.serving: CompiledPart | None = None  # another UNet graph for the job (int8)
        self.recorder: Any = None  # keeps the job's UNet inputs (int8 calibration)
        decoder = folder / "vae_decoder.xml"
        self.decoder_part = CompiledPart(core, decoder, config) if decoder.is_file() else None
        # The job's decoder graph when not decoder_part (int8: engine/backends/decoder_int8.py)
        # and what keeps its latents for calibration: set before a job, reset after it.
        self.decoder_serving: CompiledPart | None = None
        self.decoder_recorder: Any = None
        self._int8_decoder: tuple[Path, CompiledPart] | None = None
        shallow = folder / "unet_shallow.xml"
        self.shallow_part = (
            CompiledPart(core, shallow, config, self.streams) if shallow.is_file() else None
        )
        self.deep: _DeepCacheState | None = None  # set for a deep-cache job

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

    def int8_part(self, xml: Path) -> CompiledPart:
        """The int8 UNet graph in xml, read once (one size at a time is kept)."""
        if xml not in self.int8_parts:
            self.int8_parts = {xml: CompiledPart(self._core, xml, self._config, self.streams)}
        return self.int8_parts[xml]

    def int8_decoder_part(self, xml: Path) -> CompiledPart:
        """The int8 decoder graph in xml, read once (it serves every size)."""
        if self._int8_decoder is None or self._int8_decoder[0] != xml:
            self._int8_decoder = (xml, CompiledPart(self._core, xml, self._config))
        return self._int8_decoder[1]

    def shallow_shapes(self, batch: int, height: int, width: int) -> dict:
        shapes = self.unet_shapes(batch, height, width)
        channels = deep_feature_channels(self.unet)
        return {**shapes, "deep_features": (batch, channels, height // 8, width // 8)}

    @property
    def runs_deep_cache(self) -> bool:
        """True when the converted model has the graphs deep cache needs."""
        return self.shallow_part is not None and self.unet_part.outputs > 1

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
        if self.recorder is not None:
            self.recorder.add(inputs)
        part = self.serving or self.unet_part
        noise = part(inputs) if self.deep is None else self.deep.step(self, part, inputs)
        out = torch.from_numpy(noise).to(sample.dtype)
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)

    def vae_decode(self, z: torch.Tensor, return_dict: bool = True, generator: Any = None) -> Any:
        part = self.decoder_serving or self.decoder_part
        assert part is not None
        latents = _numpy(z)
        if self.decoder_recorder is not None:
            self.decoder_recorder.add(latents)
        image = torch.from_numpy(part({"z": latents})).to(z.dtype)
        return DecoderOutput(sample=image) if return_dict else (image,)

    @contextlib.contextmanager
    def active(
        self,
        *,
        decode: bool,
        deep_cache: int | None = None,
        unet_part: CompiledPart | None = None,
        recorder: Any = None,
    ) -> Iterator[None]:
        """Serve the UNet (and the VAE decode) from OpenVINO for the duration; with
        deep_cache > 1 (and the graphs for it), run the deep blocks every that many steps.
        unet_part: another graph of the UNet (int8) to serve it; recorder: something
        with add(inputs) that sees every UNet call's inputs."""
        self.serving, self.recorder = unet_part, recorder
        self.unet.forward = self.unet_forward
        if decode and self.decoder_part is not None:
            self.vae.decode = self.vae_decode
        if deep_cache is not None and deep_cache > 1 and self.runs_deep_cache:
            self.deep = _DeepCacheState(deep_cache)
        try:
            yield
            if decode and self.decoder_recorder is not None:
                self.decoder_recorder.save()  # only after a run that finished
        finally:
            self.deep = self.serving = self.recorder = None
            self.decoder_serving = self.decoder_recorder = None
            vars(self.unet).pop("forward", None)
            if vars(self.vae).get("decode") == self.vae_decode:
                del self.vae.decode


class _DeepCacheState:
    """One job's deep cache, with engine/deep_cache.py's schedule: every interval-th UNet
    call full, and any call whose input shapes differ from the last full call's (the
    batch halves after a guidance cut-off) full as well."""

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.calls = 0
        self.full_steps = 0
        self.cached_steps = 0
        self.key: tuple[Any, ...] | None = None
        self.features: np.ndarray | None = None

    def step(
        self, model: OpenVINOModel, part: CompiledPart, inputs: dict[str, np.ndarray]
    ) -> np.ndarray:
        key = tuple(sorted((name, value.shape) for name, value in inputs.items()))
        features, shallow = self.features, model.shallow_part
        cached = self.calls % self.interval != 0 and key == self.key
        self.calls += 1
        if cached and features is not None and shallow is not None:
            self.cached_steps += 1
            return shallow({**inputs, "deep_features": features})
        self.full_steps += 1
        noise, self.features = part.run(inputs)[:2]
        self.key = key
        return noise


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
        sdxl, deep = is_sdxl_unet(unet), deep_cache_exportable(unet)
        model = _convert(_UNetGraph(unet, sdxl, deep), names, example)
        if should_cancel():
            raise JobCancelled()
        progress("saving the converted UNet", 0.45)
        ov.save_model(model, str(work / "unet.xml"), compress_to_fp16=as_float32)
        del model
        if should_cancel():
            raise JobCancelled()
        if deep:
            progress("converting the UNet's shallow level (for deep cache)", 0.5)
            batch, _, height, width = example[0].shape
            features = torch.randn(batch, deep_feature_channels(unet), height, width, dtype=dtype)
            shallow_names = [*names[:3], "deep_features", *names[3:]]
            shallow_example = (*example[:3], features, *example[3:])
            shallow = _convert(_ShallowGraph(unet, sdxl), shallow_names, shallow_example)
            ov.save_model(shallow, str(work / "unet_shallow.xml"), compress_to_fp16=as_float32)
            del shallow
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
