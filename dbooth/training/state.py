"""Checkpoints through accelerate's save_state/load_state, holding only what is trained.

accelerate restores optimizer, LR scheduler and RNG states; these hooks replace its
"save the whole model" step with "save the trainable parameters" (a LoRA checkpoint is
megabytes, not the full UNet), written as safetensors.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Collection

from safetensors.torch import load_file, save_file

from dbooth.diskspace import require_free, writing
from dbooth.errors import DboothError
from dbooth.fsutil import atomic_path


EMA_FILE = "ema.safetensors"


def register_trainable_hooks(accelerator, models: list, ema=None) -> None:
    """Checkpoints hold the trained tensors of ``models`` (and ``ema``'s averages, when there is one)."""

    def save_hook(_models, weights, output_dir):
        for i, model in enumerate(models):
            model = accelerator.unwrap_model(model)
            tensors = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
            save_file(tensors, str(Path(output_dir) / f"trainable_{i}.safetensors"))
        if ema is not None:
            save_file(ema.state_dict(), str(Path(output_dir) / EMA_FILE))
        weights.clear()

    def load_hook(loaded_models, input_dir):
        apply_trainable([accelerator.unwrap_model(m) for m in models], input_dir)
        if ema is not None:
            path = Path(input_dir) / EMA_FILE
            if not path.is_file():
                raise RuntimeError(f"checkpoint {input_dir} has no {EMA_FILE} for this run's EMA")
            ema.load_state_dict(load_file(str(path)))
        loaded_models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


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


def save_checkpoint(accelerator, checkpoints_dir: Path, step: int, keep: int, *, needed: int = 0,
                    protect: Collection[str] = ()) -> Path:
    """Write step ``step``'s state beside the others, then drop all but the last ``keep``.

    Older checkpoints are removed only after the new one is complete, so a full disk or a crash
    mid-write leaves the previous one as it was. ``needed``: the expected size, checked first.
    ``protect``: names never removed (the best checkpoint so far, when ``train.stop_when`` scores them).
    """
    target = checkpoints_dir / checkpoint_name(step)
    previous = [p.name for p in checkpoints_dir.glob("step-*")] if checkpoints_dir.is_dir() else []
    kept = f"checkpoint {max(previous)} is intact" if previous else ""
    require_free(checkpoints_dir, needed, f"checkpoint {target.name}")
    with writing(f"checkpoint {target.name}", checkpoints_dir, kept=kept), atomic_path(target) as tmp:
        accelerator.save_state(str(tmp), safe_serialization=True)
    existing = sorted(
        (p for p in checkpoints_dir.iterdir() if p.is_dir() and re.fullmatch(r"step-\d+", p.name)),
        key=checkpoint_step,
    )
    for old in existing[:-keep]:
        if old.name not in protect:
            shutil.rmtree(old, ignore_errors=True)
    return target
