"""Stop a run at the first non-finite loss or gradient, before it reaches the weights.

One NaN step poisons every weight through the optimizer, and every later checkpoint with it, so
the loop checks before ``optimizer.step()`` and the run ends with the last good checkpoint intact.
"""

from __future__ import annotations

import math

from dbooth.util.errors import DboothError


class NonFiniteError(DboothError):
    """A loss or gradient became NaN or infinite; the run stops with its last good checkpoint."""


def likely_cause(mixed_precision: str, learning_rate: float) -> str:
    if mixed_precision == "fp16":
        return ("likely a float16 overflow: train with --mixed-precision bf16 (or no), "
                f"or lower the learning rate (now {learning_rate:g}) with --lr")
    return f"likely a learning rate too high for this model (now {learning_rate:g}): lower it with --lr"


def check_finite(value, what: str, step: int, *, mixed_precision: str, learning_rate: float,
                 last_checkpoint: int | None) -> None:
    """Raise ``NonFiniteError`` when ``value`` (a float or 0-d tensor) is NaN or infinite."""
    number = float(value)
    if math.isfinite(number):
        return
    if last_checkpoint:
        keep = f"checkpoint step {last_checkpoint} is kept and `dbooth train --resume` continues from it"
    else:
        keep = "no checkpoint was written yet; start again with `dbooth train`"
    raise NonFiniteError(f"step {step}: the {what} is {number} ({likely_cause(mixed_precision, learning_rate)}); "
                         f"no weights were written from this step; {keep}")


def check_weights_finite(models, where: str) -> None:
    """Refuse to write final weights holding NaN or infinity."""
    import torch

    for model in models:
        for name, p in model.named_parameters():
            if p.requires_grad and not torch.isfinite(p.detach()).all():
                raise NonFiniteError(f"{where}: trained weight {name} is not finite; refusing to write NaN weights")
