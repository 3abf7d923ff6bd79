"""Checkpoint files: the trained tensors as safetensors, the rest read back through accelerate's load_state.

accelerate restores optimizer, LR scheduler and RNG states; the load hook replaces its "load the
whole model" step with "the trainable parameters" (a LoRA checkpoint is megabytes, not the full
UNet). ``dbooth.training.checkpointing`` writes the checkpoints.
"""

from __future__ import annotations

import re
from pathlib import Path

from safetensors.torch import load_file, save_file

from dbooth.errors import DboothError


EMA_FILE = "ema.safetensors"


def register_trainable_hooks(accelerator, models: list, ema=None) -> None:
    """``accelerator.load_state`` restores the trained tensors of ``models`` (and ``ema``'s averages) from a checkpoint."""

    def load_hook(loaded_models, input_dir):
        apply_trainable([accelerator.unwrap_model(m) for m in models], input_dir)
        if ema is not None:
            path = Path(input_dir) / EMA_FILE
            if not path.is_file():
                raise RuntimeError(f"checkpoint {input_dir} has no {EMA_FILE} for this run's EMA")
            ema.load_state_dict(load_file(str(path)))
        loaded_models.clear()

    accelerator.register_load_state_pre_hook(load_hook)


def write_weights(folder: str | Path, trainable: list[dict], ema: dict | None) -> None:
    """A checkpoint's weights: model ``i``'s trained tensors in ``trainable_i.safetensors``, EMA averages beside."""
    for i, tensors in enumerate(trainable):
        save_file(tensors, str(Path(folder) / f"trainable_{i}.safetensors"))
    if ema is not None:
        save_file(ema, str(Path(folder) / EMA_FILE))


def apply_trainable(models: list, folder: str | Path) -> None:
    """Copy a checkpoint's trained tensors into ``models`` (model ``i`` from ``trainable_i.safetensors``).

    Every parameter that ``requires_grad`` must be in the file: that is what the run trained.
    """
    for i, model in enumerate(models):
        tensors = load_file(str(Path(folder) / f"trainable_{i}.safetensors"))
        params = dict(model.named_parameters())
        missing = [n for n, p in params.items() if p.requires_grad and n not in tensors]
        if missing:
            raise RuntimeError(f"checkpoint {folder} lacks {len(missing)} trained tensors, e.g. {missing[0]}")
        unknown = [n for n in tensors if n not in params]
        if unknown:
            raise RuntimeError(f"checkpoint {folder} holds {len(unknown)} tensors this model lacks, e.g. {unknown[0]}")
        for name, value in tensors.items():
            params[name].data.copy_(value.to(params[name].device, params[name].dtype))


def apply_ema(models: list, folder: str | Path) -> bool:
    """Copy a checkpoint's EMA averages (keys ``"i.name"``) into ``models``; False when it has none."""
    path = Path(folder) / EMA_FILE
    if not path.is_file():
        return False
    params = {f"{i}.{n}": p for i, model in enumerate(models) for n, p in model.named_parameters()}
    for key, value in load_file(str(path)).items():
        if key not in params:
            raise RuntimeError(f"checkpoint {folder}: {EMA_FILE} holds {key}, which this model lacks")
        params[key].data.copy_(value.to(params[key].device, params[key].dtype))
    return True


def load_checkpoint(accelerator, path: Path) -> None:
    """Restore a checkpoint: tensors from safetensors, the rest with torch's weights-only loader.

    accelerate keeps the optimizer, LR scheduler and RNG states as torch.save files; weights_only
    rebuilds only tensors and plain containers from them, so a planted pickle cannot run code.
    """
    try:
        from accelerate.utils.other import load as weights_only_load

        for rng in Path(path).glob("random_states_*.pkl"):
            weights_only_load(rng)  # accelerate skips an unreadable RNG file silently: the resume would drift
        accelerator.load_state(str(path), load_kwargs={"weights_only": True})
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise DboothError(f"checkpoint {path}: cannot be loaded safely ({type(exc).__name__}: {reason}); it is damaged "
                          "or was not written by dbooth; remove that folder to resume from the one before it") from None


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def checkpoint_step(path: Path) -> int:
    match = re.fullmatch(r"step-(\d+)", path.name)
    if not match:
        raise ValueError(f"not a checkpoint folder: {path}")
    return int(match.group(1))
