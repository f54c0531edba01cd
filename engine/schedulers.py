"""The one table of samplers: the names users know, the diffusers scheduler class behind
each, its settings and its step limit.

No torch at import: validation (which the window runs) and the CLI's argument checks read
the names and limits; diffusers is imported only when a scheduler is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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

NAMES: tuple[str, ...] = tuple(name.value for name in SCHEDULERS)
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
    }
)


def max_steps_for(name: object) -> int:
    """The most steps this scheduler can run; the form and the engine share it."""
    if isinstance(name, str) and name in NAMES:
        return SCHEDULERS[SchedulerName(name)].max_steps
    return MAX_STEPS


def make_scheduler(name: str, base_config: Mapping[str, Any]) -> Scheduler:
    """A fresh scheduler called `name`, keeping the model's betas and prediction type."""
    try:
        spec = SCHEDULERS[SchedulerName(name)]
    except ValueError:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"Unknown scheduler {name!r}; choose one of: {', '.join(NAMES)}.",
        ) from None
    cls = getattr(importlib.import_module("diffusers"), spec.class_name)
    config = {k: v for k, v in dict(base_config).items() if k not in _SAMPLER_KEYS}
    scheduler: Scheduler = cls.from_config(config, **spec.overrides)
    return scheduler
