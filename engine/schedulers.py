"""The one table of samplers: the names users know, the diffusers scheduler class behind
each, its settings and its step limit.

No torch at import: validation (which the window runs) and the CLI's argument checks read
the names and limits; diffusers is imported only when a scheduler is built.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.api import EngineError, ErrorKind, SchedulerName

if TYPE_CHECKING:
    from engine.protocols import Scheduler

MAX_STEPS = 1000  # the models' own training schedule has 1000 timesteps


@dataclass(frozen=True)
class SchedulerSpec:
    class_name: str  # a scheduler class of the diffusers package
    overrides: Mapping[str, Any] = field(default_factory=dict)
    max_steps: int = MAX_STEPS


_DPM = "DPMSolverMultistepScheduler"
SCHEDULERS: dict[SchedulerName, SchedulerSpec] = {
    SchedulerName.EULER: SchedulerSpec("EulerDiscreteScheduler"),
    SchedulerName.EULER_A: SchedulerSpec("EulerAncestralDiscreteScheduler"),
    SchedulerName.DPMPP_2M: SchedulerSpec(
        _DPM, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}
    ),
    SchedulerName.DPMPP_2M_KARRAS: SchedulerSpec(
        _DPM, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}
    ),
    # A stochastic (Langevin-type) DPM-Solver++ that needs no torchsde, unlike
    # DPMSolverSDEScheduler; it draws its noise from the pipeline's generators.
    SchedulerName.DPMPP_SDE: SchedulerSpec(
        _DPM, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}
    ),
    SchedulerName.DDIM: SchedulerSpec("DDIMScheduler"),
    SchedulerName.DDPM: SchedulerSpec("DDPMScheduler"),
    SchedulerName.UNIPC: SchedulerSpec("UniPCMultistepScheduler"),
    # LCM distils 50 original steps: its own schedule caps the steps there.
    SchedulerName.LCM: SchedulerSpec("LCMScheduler", max_steps=50),
}

# Flow-matching families (engine/families/, profile.flow) take the same names from their
# flow-matching counterparts: Euler is FlowMatchEuler (ancestral: its stochastic
# sampling), DPM++ 2M and UniPC solve in flow sigmas on the model's velocity. A family's
# profile lists which of these fit its pipelines.
_FLOW = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}
FLOW_SCHEDULERS: dict[SchedulerName, SchedulerSpec] = {
    SchedulerName.EULER: SchedulerSpec("FlowMatchEulerDiscreteScheduler"),
    SchedulerName.EULER_A: SchedulerSpec(
        "FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}
    ),
    SchedulerName.DPMPP_2M: SchedulerSpec(
        _DPM, {**_FLOW, "algorithm_type": "dpmsolver++", "solver_order": 2}
    ),
    SchedulerName.UNIPC: SchedulerSpec("UniPCMultistepScheduler", _FLOW),
    # SANA-Sprint's TrigFlow consistency sampler, for the models distilled for it (1-4 steps).
    SchedulerName.SCM: SchedulerSpec("SCMScheduler", max_steps=4),
}

NAMES: tuple[str, ...] = tuple(name.value for name in {**SCHEDULERS, **FLOW_SCHEDULERS})
# Settings that belong to one sampler and must not leak from the model's own scheduler
# (a model shipped with "DPM++ 2M Karras" must still give plain Euler when asked).
_SAMPLER_KEYS = frozenset(
    {
        "use_karras_sigmas",
        "use_exponential_sigmas",
        "use_beta_sigmas",
        "algorithm_type",
        "solver_order",
        "solver_type",
        "final_sigmas_type",
        "lower_order_final",
        "euler_at_final",
        "predict_x0",
        "stochastic_sampling",
    }
)


def max_steps_for(name: object) -> int:
    """The most steps this scheduler can run; the form and the engine share it."""
    if isinstance(name, str) and name in NAMES:
        key = SchedulerName(name)
        return (SCHEDULERS.get(key) or FLOW_SCHEDULERS[key]).max_steps
    return MAX_STEPS


def make_scheduler(
    name: str,
    base_config: Mapping[str, Any],
    *,
    flow: bool = False,
    offered: tuple[SchedulerName, ...] | None = None,
    family_label: str = "this model",
) -> Scheduler:
    """A fresh scheduler called `name`, keeping the model's betas and prediction type
    (for a flow model its shift and dynamic shifting). offered: the family's samplers."""
    table = FLOW_SCHEDULERS if flow else SCHEDULERS
    choices = offered if offered is not None else tuple(table)
    key = SchedulerName(name) if name in NAMES else None
    spec = table.get(key) if key in choices and key is not None else None
    if spec is None:
        known = ", ".join(c.value for c in choices)
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"The sampler {name!r} does not fit {family_label} models; choose one of: {known}.",
        ) from None
    cls = getattr(importlib.import_module("diffusers"), spec.class_name)
    config = {k: v for k, v in dict(base_config).items() if k not in _SAMPLER_KEYS}
    if flow and spec.class_name == "FlowMatchEulerDiscreteScheduler":
        # A model shipped with a flow solver (SANA: DPM-Solver++) names its shift flow_shift.
        config.setdefault("shift", config.get("flow_shift", 1.0))
    elif flow and spec.class_name != "SCMScheduler":
        # Solvers that know flow sigmas take the flow model's shift as flow_shift.
        config.setdefault("flow_shift", config.get("shift", 1.0))
    scheduler: Scheduler = cls.from_config(config, **spec.overrides)
    if flow and not hasattr(scheduler, "scale_noise") and hasattr(scheduler, "add_noise"):
        _noise_as_flow(scheduler)
    return scheduler


def _noise_as_flow(scheduler: Any) -> None:
    """Give a solver in flow sigmas (DPM++, UniPC) the scale_noise that the flow families'
    image-to-image and inpaint pipelines call and only FlowMatchEuler has: for flow sigmas
    its add_noise is the same (1 - sigma) x0 + sigma noise."""

    def scale_noise(sample: Any, timestep: Any, noise: Any = None) -> Any:
        return scheduler.add_noise(sample, noise, timestep)

    scheduler.scale_noise = scale_noise
    set_timesteps = scheduler.set_timesteps

    # wraps: pipelines read its signature. Z-Image's pipelines hand over their sigmas as
    # a list, on which these solvers' flow shift cannot compute.
    @functools.wraps(set_timesteps)
    def set_timesteps_from_array(*args: Any, **kwargs: Any) -> Any:
        if isinstance(kwargs.get("sigmas"), list):
            kwargs["sigmas"] = np.asarray(kwargs["sigmas"], dtype=np.float64)
        return set_timesteps(*args, **kwargs)

    scheduler.set_timesteps = set_timesteps_from_array
