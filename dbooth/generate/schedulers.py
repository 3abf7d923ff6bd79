"""Sampling schedulers by short name, built from the base model's own scheduler config."""

from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)

SCHEDULERS = {
    "dpm++": DPMSolverMultistepScheduler,
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "pndm": PNDMScheduler,
    "ddpm": DDPMScheduler,
}


def set_scheduler(pipe, name: str) -> None:
    pipe.scheduler = SCHEDULERS[name].from_config(pipe.scheduler.config)
