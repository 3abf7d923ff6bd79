"""``train.compile``'s first-batch check: the compiled UNet's gradients against the eager UNet's.

torch.compile is meant to change how the UNet is computed, not what. It does not always keep that
promise: with torch 2.13's CPU backend (inductor) the backward pass of a whole diffusers UNet comes out
wrong (126 of the 208 parameter gradients of the tests' tiny UNet, some exactly zero; every block compiled
alone is right, and inductor without kernel fusion is right too). A run trained that way looks normal and
learns something else. So before the first step, a run with ``train.compile`` computes the gradients of its
first batch both ways, with the same noise and timesteps, and refuses to train when they disagree.

It costs one eager and one compiled forward and backward, and holds two extra sets of gradients before
the optimizer has allocated its state (which is larger), so the run's peak memory is not raised. The random
streams are restored afterwards: the run then draws exactly what it would have drawn without the check.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch

from dbooth.util.errors import DboothError

# Relative error of all gradients together, |compiled - eager| / |eager|. Correct compiles measure about 1e-6
# in float32; the broken CPU backend 0.5 and more. Half precision rounds differently in fused kernels.
TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 5e-2}


@contextlib.contextmanager
def eager(module: torch.nn.Module):
    """Calls ``module`` without the compiled forward that ``module.compile()`` installed, inside the block."""
    compiled = getattr(module, "_compiled_call_impl", None)
    module._compiled_call_impl = None
    try:
        yield module
    finally:
        module._compiled_call_impl = compiled


def _rng_devices(params: list[torch.Tensor]) -> list:
    return sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})


def gradient_error(module: torch.nn.Module, loss: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> float:
    """|g_compiled - g_eager| / |g_eager| over ``params`` for one call of ``loss`` (which must draw its random
    numbers from torch's generators: both calls see the same draws, and the streams are left untouched)."""
    devices = _rng_devices(params)
    with torch.random.fork_rng(devices=devices), eager(module):
        reference = torch.autograd.grad(loss(), params, allow_unused=True)
    with torch.random.fork_rng(devices=devices):
        compiled = torch.autograd.grad(loss(), params, allow_unused=True)
    diff = total = 0.0
    for r, c in zip(reference, compiled):
        if r is None and c is None:
            continue
        r = torch.zeros_like(c) if r is None else r
        c = torch.zeros_like(r) if c is None else c
        diff += float((c.double() - r.double()).pow(2).sum())
        total += float(r.double().pow(2).sum())
    return math.sqrt(diff / total) if total > 0 else (0.0 if diff == 0 else math.inf)


def check_compiled_gradients(module: torch.nn.Module, loss: Callable[[], torch.Tensor], params: list[torch.Tensor],
                             dtype: torch.dtype, device: torch.device) -> float:
    """The measured error; raises a one-line ``DboothError`` when it is above ``TOLERANCE``."""
    error = gradient_error(module, loss, params)
    limit = TOLERANCE.get(dtype, TOLERANCE[torch.float32])
    if not error <= limit:
        raise DboothError(
            f"train.compile: the compiled UNet's gradients differ from the uncompiled UNet's by {error:.2g} "
            f"(relative; at most {limit:g} expected) on the first batch, on {device.type} with torch "
            f"{torch.__version__}: this torch's compiler computes a different training here; set "
            "train.compile: false (or try another torch version)")
    return error
