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


# flow-matching models (SD 3.5, FLUX.1) sample with their own flow-matching Euler scheduler only
FLOW_SCHEDULERS = ("euler",)


def set_scheduler(pipe, name: str) -> None:
    """Give ``pipe`` the scheduler ``name``; a flow-matching pipeline keeps its own (``euler``), and is told
    in one line that another name does not apply to it."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler):
        if name not in FLOW_SCHEDULERS:
            from dbooth.util.errors import DboothError

            raise DboothError(f"sample.scheduler {name!r}: a flow-matching model ({type(pipe).__name__}) samples "
                              "with its own flow-matching Euler scheduler; set sample.scheduler to euler in dbooth.yaml "
                              "(or pass --scheduler euler)")
        return
    pipe.scheduler = SCHEDULERS[name].from_config(pipe.scheduler.config)


def default_scheduler(pipe) -> str:
    """The scheduler class images are drawn with: dpm++ (25 steps suffice), or a flow model's own euler."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return "euler" if isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler) else "dpm++"
