"""Which backend runs a loaded model's UNet (and VAE decode) for a job, and getting it
ready: OpenVINO conversion and compilation, torch.compile, or plain torch.

"auto" uses OpenVINO where it is installed and measured faster for this model at this
size on this machine: the first job of a model at a size and batch converts the model
(once), times one UNet call of each backend at that shape, and remembers the answer in
<cache>/backend_choices.json, so later jobs at that shape (and later runs of the
application) do not measure again. The shape is part of the choice because the winner
changes with it: at 128 px torch won here, at 512 px OpenVINO by 1.6x. Where nncf is
installed too, "auto" then quantizes the UNet to int8 on the second job at a size and
keeps it where its outputs stay close to the bfloat16 graph's (engine/backends/int8.py).
"torch" and "openvino" force a backend; "openvino-int8" is OpenVINO with the int8 UNet
whatever its check said. torch.compile is a separate opt-in for the torch backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from engine import deep_cache, guidance_cutoff, memory
from engine.api import EngineError, ErrorKind, GenerationRequest, JobCancelled
from engine.backends import (
    BACKEND_NAMES,
    OPENVINO_BACKENDS,
    decoder_int8,
    int8,
    openvino_backend,
)

if TYPE_CHECKING:
    from engine.models import LoadedModel

Progress = Callable[[str, float], None]
ShouldCancel = Callable[[], bool]
CHOICES_FILE = "backend_choices.json"
DEEP_CACHE_ON_TORCH = (
    "Deep cache works on the torch UNet's blocks, so this job ran on plain torch "
    "(without torch.compile)."
)
DEEP_CACHE_NOT_IN_OPENVINO = (
    "This model's OpenVINO conversion has no shallow-level graph for deep cache, so this "
    "job ran on plain torch."
)
COMPILE_COST = (
    "torch.compile of the UNet: the first picture at each new size first compiles for "
    "about a minute or two (longer on a busy machine); later pictures at that size are "
    "faster. Pictures at many sizes are better off without --compile."
)


def _pipe(model: LoadedModel) -> Any:
    """The loaded pipeline, as the Stable Diffusion families have it (unet, vae)."""
    return model.pipe


def cache_root() -> Path:
    """DiffusionDesk's cache folder (XDG; DIFFUSIONDESK_CACHE overrides)."""
    override = os.environ.get("DIFFUSIONDESK_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "diffusiondesk"


def check_backend_name(name: str) -> str:
    key = (name or "auto").strip().lower()
    if key not in BACKEND_NAMES:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"Unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}.",
        )
    if key in OPENVINO_BACKENDS and not openvino_backend.available():
        raise EngineError(
            ErrorKind.BAD_INPUT,
            "The OpenVINO backend needs the openvino package: "
            "pip install 'diffusiondesk[openvino]', or choose the torch backend.",
        )
    if key == "openvino-int8" and not int8.available():
        raise EngineError(
            ErrorKind.BAD_INPUT,
            "The openvino-int8 backend needs the nncf package: "
            "pip install 'diffusiondesk[openvino]', or choose the openvino backend.",
        )
    return key


def unet_batch(request: GenerationRequest, model: LoadedModel, images: int) -> tuple[int, ...]:
    """The UNet batch sizes a job uses: doubled while it guides, single after a cut-off."""
    guided = request.guidance_scale > 1 and _pipe(model).unet.config.time_cond_proj_dim is None
    if not guided:
        return (images,)
    if guidance_cutoff.is_on(request.guidance_cutoff):
        return (2 * images, images)
    return (2 * images,)


@dataclass
class Session:
    """What one job runs with; a context manager around the pipeline call."""

    label: str  # added to the device description, e.g. "OpenVINO"
    warnings: list[str] = field(default_factory=list)
    _enter: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext

    def __enter__(self) -> Session:
        self._context = self._enter()
        self._context.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._context.__exit__(*exc)


class Accelerator:
    """Per engine, worker thread only: prepares each job's backend."""

    def __init__(
        self, backend: str = "auto", compile_unet: bool = False, cache_dir: Path | None = None
    ) -> None:
        self.backend = check_backend_name(backend)
        self.compile_unet = compile_unet
        self.cache_dir = cache_dir or cache_root()
        self._ov: dict[int, openvino_backend.OpenVINOModel] = {}  # by id(unet)
        self._compiled: dict[int, Any] = {}  # id(unet) -> compiled forward
        self._converted = False  # this job's OpenVINO conversion is done (or was cached)

    def release(self) -> None:
        self._ov.clear()
        self._compiled.clear()

    # ------------------------------------------------------------------ per job

    def prepare(
        self,
        model: LoadedModel,
        request: GenerationRequest,
        images: int,
        progress: Progress,
        should_cancel: ShouldCancel,
    ) -> Session:
        width, height = request.width, request.height
        unet = getattr(_pipe(model), "unet", None)
        if unet is None:  # transformer families (engine/families/): torch runs them as loaded
            note = "OpenVINO runs UNet models only; torch ran this one."
            return Session("", [note] if self.backend in OPENVINO_BACKENDS else [])
        batches = unet_batch(request, model, images)
        deep = request.deep_cache if deep_cache.is_on(request.deep_cache) else None
        deep = deep if deep_cache.supports(unet) else None
        if self.backend != "torch" and model.device.type == "cpu":
            reason = openvino_backend.unsupported_reason(unet)
            reason = reason or openvino_backend.size_reason(unet, width, height)
            if reason is None and openvino_backend.available():
                shape = choice_shape(batches[0], height, width)
                if self.backend == "auto" and self._remembered(model, shape) == "torch":
                    return self._torch(model, batches[0], height, width, progress, deep)
                self._converted = False
                try:
                    session = self._openvino_session(
                        model, batches, height, width, progress, should_cancel, deep
                    )
                except (JobCancelled, EngineError, MemoryError):
                    raise
                except Exception as exc:  # a converter or compiler failure: torch runs it
                    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                    # A failed conversion fails at every size; a failed compile at this one.
                    failed_at = shape if self._converted else None
                    failure = f"{type(exc).__name__}: {first}"
                    self._remember(model, "torch", shape=failed_at, failed=failure)
                    torch_session = self._torch(model, batches[0], height, width, progress, deep)
                    torch_session.warnings.append(
                        f"OpenVINO could not run this model ({type(exc).__name__}: {first}); "
                        "torch ran it."
                    )
                    return torch_session
                if session is not None:
                    return session
            elif self.backend in OPENVINO_BACKENDS:
                why = reason or "openvino is not installed"
                return Session("", [f"OpenVINO cannot run this job ({why}); torch ran it."])
        return self._torch(model, batches[0], height, width, progress, deep)

    def _openvino_session(
        self,
        model: LoadedModel,
        batches: tuple[int, ...],
        height: int,
        width: int,
        progress: Progress,
        should_cancel: ShouldCancel,
        deep: int | None = None,
    ) -> Session | None:
        """The OpenVINO session, or None where "auto" measured torch faster."""
        ov_model = self._openvino(model, progress, should_cancel)
        self._converted = True
        if not self._wants_openvino(model, ov_model, batches[0], height, width, progress):
            return None
        if deep is not None and not ov_model.runs_deep_cache:
            return Session("", [DEEP_CACHE_NOT_IN_OPENVINO])
        decode = width * height <= 1024 * 1024  # larger ones decode in tiles
        # The int8 decoder (engine/backends/decoder_int8.py), or the bfloat16 one.
        decoder_warnings: list[str] = []
        if decode and decoder_int8.wanted(self.backend):
            decoder_warnings = decoder_int8.prepare(
                ov_model, height, width, progress, should_cancel
            )
        if self.backend == "openvino-int8" or (self.backend == "auto" and int8.available()):
            session = self._int8_session(
                ov_model, batches, height, width, progress, should_cancel, decode, deep
            )
        else:
            for batch in batches:
                self._compile_ov(ov_model, batch, height, width, progress, should_cancel, deep)
            active = lambda: ov_model.active(decode=decode, deep_cache=deep)  # noqa: E731
            session = Session("OpenVINO", [], active)
        session.warnings.extend(decoder_warnings)
        return session

    def _int8_session(
        self,
        ov_model: openvino_backend.OpenVINOModel,
        batches: tuple[int, ...],
        height: int,
        width: int,
        progress: Progress,
        should_cancel: ShouldCancel,
        decode: bool,
        deep: int | None,
    ) -> Session:
        """The int8 UNet at this size; the first job at a size collects its calibration
        inputs (running bfloat16), the next one quantizes and checks it. "auto" runs it
        only where the check held (int8.QUALITY_BAR); "openvino-int8" regardless."""
        size = int8.size_name(width, height)
        xml, folder = int8.unet_xml(ov_model.folder, size), ov_model.folder
        strict = self.backend == "auto"

        def bfloat16(warning: str | None) -> Session:
            for batch in batches:
                self._compile_ov(ov_model, batch, height, width, progress, should_cancel, deep)
            active = lambda: ov_model.active(decode=decode, deep_cache=deep)  # noqa: E731
            return Session("OpenVINO", [warning] if warning else [], active)

        failed = int8.failure_note(folder, size)
        if failed.is_file():
            return bfloat16(int8.FAILED.format(why=failed.read_text(errors="replace")[:200]))
        checked = int8.read_quality(folder, size)
        if strict and checked is not None and checked <= int8.QUALITY_BAR:
            return bfloat16(None)  # checked and left out (said once, when it was checked)
        if not int8.is_ready(xml) and int8.calibration_file(folder, size).is_file():
            progress(
                f"quantizing the UNet to int8 for {size} (once per model and size; minutes)",
                0.96,
            )
            # The bfloat16 graph's compiled buffers go while another process quantizes
            # (the check below compiles it again, from OpenVINO's cache).
            ov_model.unet_part.release()
            memory.free_memory()
            try:
                int8.quantize_unet_apart(folder, size, should_cancel)
            except int8.NotEnoughMemory as exc:  # nothing written: a later job tries again
                return bfloat16(str(exc))
            except (MemoryError, JobCancelled):
                raise
            except Exception as exc:  # an nncf failure: note it, run bfloat16
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                why = (
                    first
                    if isinstance(exc, int8.QuantizeFailed)
                    else f"{type(exc).__name__}: {first}"
                )
                with contextlib.suppress(OSError):
                    failed.write_text(why)
                return bfloat16(int8.FAILED.format(why=why))
            if should_cancel():
                raise JobCancelled()
        if int8.is_ready(xml):
            part = ov_model.int8_part(xml)
            quality, note = int8.read_quality(folder, size), None
            if quality is None:
                progress(f"checking the int8 UNet against bfloat16 at {size}", 0.965)
                quality = int8.check(part, ov_model.unet_part, folder, size)
                ov_model.unet_part.release()  # the bfloat16 graph's buffers, compiled for it
                if quality is not None and quality <= int8.QUALITY_BAR:
                    text = int8.KEPT_OUT if strict else int8.BELOW_BAR
                    note = text.format(size=size, correlation=quality, bar=int8.QUALITY_BAR)
            # Unchecked (calibrated before checks existed): only a chosen int8 runs it.
            if strict and (quality is None or quality <= int8.QUALITY_BAR):
                part.release()
                if quality is not None:  # auto will not run it: its gigabyte goes
                    ov_model.int8_parts.pop(xml, None)
                    int8.remove_unet(xml)
                return bfloat16(note)
            for batch in batches:  # the decoder and the deep-cache graph; not the bf16 UNet
                self._compile_ov(
                    ov_model, batch, height, width, progress, should_cancel, deep, unet=False
                )
                shapes = ov_model.unet_shapes(batch, height, width)
                if not part.is_compiled_for(shapes):
                    progress(f"compiling the int8 UNet for {size}, batch {batch}", 0.97)
                    part.compile_for(shapes)
            return Session(
                "OpenVINO int8",
                [note] if note else [],
                lambda: ov_model.active(decode=decode, deep_cache=deep, unet_part=part),
            )
        for batch in batches:
            self._compile_ov(ov_model, batch, height, width, progress, should_cancel, deep)
        recorder = int8.Recorder(int8.calibration_file(folder, size))

        @contextlib.contextmanager
        def collecting() -> Iterator[None]:
            with ov_model.active(decode=decode, deep_cache=deep, recorder=recorder):
                yield
            recorder.save()  # only after a run that finished: a cancelled one keeps none

        return Session("OpenVINO", [int8.CALIBRATING.format(size=size)], collecting)

    def _torch(
        self,
        model: LoadedModel,
        batch: int,
        height: int,
        width: int,
        progress: Progress,
        deep: int | None = None,
    ) -> Session:
        if deep is not None:
            # The cache skips the torch UNet's own blocks, which a compiled graph does not
            # have: the job runs plain torch.
            return Session("", [DEEP_CACHE_ON_TORCH] if self.compile_unet else [])
        if self.compile_unet:
            return self._torch_compile(model, batch, height, width, progress)
        return Session("")

    # ------------------------------------------------------------------ the choice

    def _choice_key(self, model: LoadedModel, shape: str | None = None) -> str:
        """Per model (by source and architecture), dtype, OpenVINO version and, for a
        measured choice, the UNet's batch and size; a LoRA fused into the weights does not
        change which backend is faster. Without a shape: the model's own entry, where a
        conversion failure is kept (it fails at every size)."""
        config = json.dumps(dict(_pipe(model).unet.config), sort_keys=True, default=str)
        arch = hashlib.blake2b(config.encode(), digest_size=6).hexdigest()
        dtype = str(model.dtype).removeprefix("torch.")
        key = f"{model.source}|{arch}|{dtype}|openvino {openvino_backend.version()}"
        return key if shape is None else f"{key}|{shape}"

    def _remembered(self, model: LoadedModel, shape: str) -> str | None:
        """The backend measured faster at this shape; torch wherever conversion failed."""
        choices = _read_json(self.cache_dir / CHOICES_FILE)
        failed = choices.get(self._choice_key(model))
        if isinstance(failed, dict) and failed.get("failed"):
            return "torch"
        entry = choices.get(self._choice_key(model, shape))
        return entry.get("backend") if isinstance(entry, dict) else None

    # ------------------------------------------------------------------ OpenVINO

    def _openvino(
        self, model: LoadedModel, progress: Progress, should_cancel: ShouldCancel
    ) -> openvino_backend.OpenVINOModel:
        unet, vae = _pipe(model).unet, _pipe(model).vae
        # The fingerprint each job (hundredths of a second): add-ons may change weights.
        folder = openvino_backend.cache_folder(self.cache_dir, unet, vae)
        known = self._ov.get(id(unet))
        if known is not None and known.key == folder.name:
            return known
        progress("checking for a converted OpenVINO model", 0.0)
        if not openvino_backend.is_cached(folder):
            openvino_backend.convert_to_cache(
                unet, vae, folder, model.dtype, progress, should_cancel
            )
        if should_cancel():
            raise JobCancelled()
        ov_model = openvino_backend.OpenVINOModel(unet, vae, folder, model.dtype)
        self._ov = {id(unet): ov_model}  # one model at a time, like the model manager
        return ov_model

    def _compile_ov(
        self,
        ov_model: openvino_backend.OpenVINOModel,
        batch: int,
        height: int,
        width: int,
        progress: Progress,
        should_cancel: ShouldCancel,
        deep: int | None = None,
        unet: bool = True,
    ) -> None:
        shapes = ov_model.unet_shapes(batch, height, width)
        if unet and not ov_model.unet_part.is_compiled_for(shapes):
            progress(f"compiling OpenVINO for {width}x{height}, batch {batch}", 0.95)
            ov_model.unet_part.compile_for(shapes)
        if deep is not None and ov_model.shallow_part is not None:
            shallow = ov_model.shallow_shapes(batch, height, width)
            if not ov_model.shallow_part.is_compiled_for(shallow):
                progress(f"compiling the deep-cache graph for {width}x{height}", 0.96)
                ov_model.shallow_part.compile_for(shallow)
        if ov_model.decoder_part is not None and batch <= 4:
            ov_model.decoder_part.compile_for(ov_model.decoder_shapes(1, height, width))
        if should_cancel():
            raise JobCancelled()

    def _wants_openvino(
        self,
        model: LoadedModel,
        ov_model: openvino_backend.OpenVINOModel,
        batch: int,
        height: int,
        width: int,
        progress: Progress,
    ) -> bool:
        if self.backend == "openvino":
            return True
        shape = choice_shape(batch, height, width)
        remembered = self._remembered(model, shape)
        if remembered is not None:
            return remembered == "openvino"
        progress(
            f"measuring torch against OpenVINO at {width}x{height}, batch {batch} "
            "(once per model and size)",
            0.97,
        )
        torch_s, ov_s = measure_unet(model, ov_model, batch, height, width)
        self._remember(
            model,
            "openvino" if ov_s < torch_s else "torch",
            shape=shape,
            torch_s=round(torch_s, 4),
            openvino_s=round(ov_s, 4),
        )
        return ov_s < torch_s

    def _remember(
        self, model: LoadedModel, backend: str, shape: str | None = None, **details: Any
    ) -> None:
        """Only "auto" remembers: a forced backend measures nothing."""
        if self.backend != "auto":
            return
        choices_path = self.cache_dir / CHOICES_FILE
        choices = _read_json(choices_path)
        entry = {"backend": backend, **details}
        if shape is not None:
            entry["shape"] = shape
        choices[self._choice_key(model, shape)] = entry
        with contextlib.suppress(OSError):  # a read-only cache: measure again next time
            _write_json(choices_path, choices)

    # ------------------------------------------------------------------ torch.compile

    def _torch_compile(
        self, model: LoadedModel, batch: int, height: int, width: int, progress: Progress
    ) -> Session:
        unet = _pipe(model).unet
        if id(unet) not in self._compiled:
            progress(COMPILE_COST, 0.9)
            # Inductor's freezing folds the weights into the graph: faster on the CPU.
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
            self._compiled = {id(unet): torch.compile(type(unet).forward.__get__(unet))}
        compiled = self._compiled[id(unet)]
        eager = type(unet).forward.__get__(unet)
        session = Session("torch.compile", [COMPILE_COST])

        def forward(*args: Any, **kwargs: Any) -> Any:
            if self._compiled.get(id(unet)) is None:
                return eager(*args, **kwargs)
            try:
                return compiled(*args, **kwargs)
            except JobCancelled:
                raise
            except Exception as exc:  # no C++ compiler, an unsupported op ...: run eager
                self._compiled[id(unet)] = None
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                session.warnings.append(
                    f"torch.compile failed ({type(exc).__name__}: {first[:200]}); the UNet "
                    "ran without it."
                )
                return eager(*args, **kwargs)

        @contextlib.contextmanager
        def active() -> Iterator[None]:
            unet.forward = forward
            try:
                yield
            finally:
                vars(unet).pop("forward", None)

        session._enter = active
        return session


def choice_shape(batch: int, height: int, width: int) -> str:
    """How a measured choice names its UNet shape: width x height x batch."""
    return f"{width}x{height}x{batch}"


def example_unet_inputs(
    unet: Any, batch: int, height: int, width: int, dtype: torch.dtype
) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
    """Inputs of a UNet call at a job's shape (random values: speed does not depend on
    them)."""
    config = unet.config
    hidden = config.cross_attention_dim
    hidden = hidden[0] if isinstance(hidden, list | tuple) else hidden
    args = (
        torch.randn(batch, config.in_channels, height // 8, width // 8, dtype=dtype),
        torch.tensor(500.0),
        torch.randn(batch, 77, hidden, dtype=dtype),
    )
    kwargs: dict[str, Any] = {}
    if openvino_backend.is_sdxl_unet(unet):
        pooled = unet.add_embedding.linear_1.in_features - 6 * config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, pooled, dtype=dtype),
            "time_ids": torch.ones(batch, 6, dtype=dtype) * 512,
        }
    return args, kwargs


def measure_unet(
    model: LoadedModel,
    ov_model: openvino_backend.OpenVINOModel,
    batch: int,
    height: int,
    width: int,
) -> tuple[float, float]:
    """Seconds per UNet call in torch and in OpenVINO, after one warm-up call each."""
    unet = _pipe(model).unet
    args, kwargs = example_unet_inputs(unet, batch, height, width, model.dtype)
    timings = []
    for forward in (type(unet).forward.__get__(unet), ov_model.unet_forward):
        with torch.inference_mode():
            forward(*args, **kwargs)
            runs = []
            for _ in range(2):  # the faster of two: a shared machine adds noise
                start = time.perf_counter()
                forward(*args, **kwargs)
                runs.append(time.perf_counter() - start)
            timings.append(min(runs))
    return timings[0], timings[1]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
