"""Another pipeline class over a loaded model's components, without changing their dtypes.

diffusers' `from_pipe` ends with `new_pipeline.to(dtype=dtype)`, and with no dtype given
that dtype is float32 (diffusers 0.42, pipeline_utils.from_pipe). The components are
shared, so the first image-to-image, inpaint or ControlNet job on a bfloat16 model would
turn the model's own UNet and VAE into float32 for good: slower, and a later job that
hands the pipeline bfloat16 latents fails. Here from_pipe gets the model's dtype when every
tensor has it (no cast at all), else float32 (exact for bfloat16 and float16 values), and
every tensor that changed goes back to its own dtype afterwards.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

from engine.protocols import Pipeline, PipelineClass


def _tensors(module: torch.nn.Module) -> Any:
    return itertools.chain(module.named_parameters(), module.named_buffers())


def _components(pipe: Pipeline) -> dict[str, Any]:
    components: dict[str, Any] = getattr(pipe, "components")  # noqa: B009  # not in the Protocol
    return components


def _modules(components: dict[str, Any]) -> dict[str, torch.nn.Module]:
    return {k: v for k, v in components.items() if isinstance(v, torch.nn.Module)}


def from_pipe(cls: PipelineClass, pipe: Pipeline, dtype: torch.dtype, **extra: Any) -> Pipeline:
    """cls over pipe's components (and extra ones, e.g. a job's ControlNets), every
    tensor of every component in the dtype it had."""
    modules = _modules({**_components(pipe), **extra})
    before = {
        name: {key: t.dtype for key, t in _tensors(module)} for name, module in modules.items()
    }
    floating = {d for dtypes in before.values() for d in dtypes.values() if d.is_floating_point}
    cast = dtype if floating <= {dtype} else torch.float32
    new = cls.from_pipe(pipe, dtype=cast, **extra)
    for name, module in _modules(_components(new)).items():
        dtypes = before.get(name, {})
        for key, tensor in _tensors(module):
            wanted = dtypes.get(key)
            if wanted is not None and tensor.dtype != wanted:
                tensor.data = tensor.data.to(wanted)
    return new
