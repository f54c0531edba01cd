"""Samplers by the names users know, built from the loaded model's scheduler config."""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from engine.api import EngineError, ErrorKind, SchedulerName

# name -> (class, config overrides)
_TABLE: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    SchedulerName.EULER: (EulerDiscreteScheduler, {}),
    SchedulerName.EULER_A: (EulerAncestralDiscreteScheduler, {}),
    SchedulerName.DPMPP_2M: (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    SchedulerName.DPMPP_2M_KARRAS: (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    # A stochastic (Langevin-type) DPM-Solver++ that needs no torchsde, unlike
    # DPMSolverSDEScheduler; it draws its noise from the pipeline's generators.
    SchedulerName.DPMPP_SDE: (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    SchedulerName.DDIM: (DDIMScheduler, {}),
    SchedulerName.DDPM: (DDPMScheduler, {}),
    SchedulerName.UNIPC: (UniPCMultistepScheduler, {}),
    SchedulerName.LCM: (LCMScheduler, {}),
}

NAMES: tuple[str, ...] = tuple(_TABLE)
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


def make_scheduler(name: str, base_config: Any) -> SchedulerMixin:
    """A fresh scheduler called `name`, keeping the model's betas and prediction type."""
    try:
        cls, overrides = _TABLE[SchedulerName(name)]
    except ValueError:
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"Unknown scheduler {name!r}; choose one of: {', '.join(NAMES)}.",
        ) from None
    config = {k: v for k, v in dict(base_config).items() if k not in _SAMPLER_KEYS}
    return cls.from_config(config, **overrides)
