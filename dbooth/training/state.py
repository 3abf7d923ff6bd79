"""Checkpoint files: the trained tensors as safetensors, the rest in accelerate's save_state/load_state layout.

accelerate restores optimizer, LR scheduler and RNG states; these hooks replace its
"save the whole model" step with "save the trainable parameters" (a LoRA checkpoint is
megabytes, not the full UNet), written as safetensors. A single process writes its checkpoints
in the background (``dbooth.training.checkpointing``, through ``write_weights``); several processes
write them through ``save_checkpoint``.

With several processes every one of them calls ``save_state`` into the folder the main process
made (DeepSpeed needs all ranks there), only the main process writes the trained tensors, and the
folder is put in place once all are done. Every process draws from the same random stream (see
``dbooth.training.step.Share``), so on resume each takes the main process's RNG state: a checkpoint
resumes under any process count.
"""

from __future__ import annotations

import re
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dbooth.util.diskspace import require_free, writing
from dbooth.util.errors import DboothError
from dbooth.util.fsutil import atomic_path


EMA_FILE = "ema.safetensors"
MAIN_RNG_FILE = "random_states_0.pkl"  # accelerate's name for the main process's RNG states


def register_trainable_hooks(accelerator, models: list, ema=None) -> None:
    """Checkpoints hold the trained tensors of ``models`` (and ``ema``'s averages, when there is one)."""

    def save_hook(_models, weights, output_dir):
        weights.clear()
        if not accelerator.is_main_process:
            return
        # the process count tells a resume under another count how far the LR schedule had come
        metadata = {"processes": str(accelerator.num_processes)}
        for i, model in enumerate(models):
            model = accelerator.unwrap_model(model)
            tensors = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
            save_file(tensors, str(Path(output_dir) / f"trainable_{i}.safetensors"), metadata=metadata)
        if ema is not None:
            save_file(ema.state_dict(), str(Path(output_dir) / EMA_FILE))

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


def write_weights(folder: str | Path, trainable: list[dict], ema: dict | None, *, processes: int = 1) -> None:
    """A checkpoint's weights: model ``i``'s trained tensors in ``trainable_i.safetensors``, EMA averages beside."""
    metadata = {"processes": str(processes)}  # as the save hook records it
    for i, tensors in enumerate(trainable):
        save_file(tensors, str(Path(folder) / f"trainable_{i}.safetensors"), metadata=metadata)
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


def load_checkpoint(accelerator, path: Path, lr_scheduler=None) -> None:
    """Restore a checkpoint: tensors from safetensors, the rest with torch's weights-only loader.

    accelerate keeps the optimizer, LR scheduler and RNG states as torch.save files; weights_only
    rebuilds only tensors and plain containers from them, so a planted pickle cannot run code.
    ``lr_scheduler`` (accelerate's) is moved to where this process count's schedule stands.
    """
    try:
        from accelerate.utils.other import load as weights_only_load

        for rng in Path(path).glob("random_states_*.pkl"):
            weights_only_load(rng)  # accelerate skips an unreadable RNG file silently: the resume would drift
        accelerator.load_state(str(path), load_kwargs={"weights_only": True})
        if accelerator.process_index != 0:
            _apply_rng(weights_only_load(Path(path) / MAIN_RNG_FILE), accelerator.device)
        if lr_scheduler is not None:
            continue_schedule(lr_scheduler, saved_processes(path), accelerator.num_processes)
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise DboothError(f"checkpoint {path}: cannot be loaded safely ({type(exc).__name__}: {reason}); it is damaged "
                          "or was not written by dbooth; remove that folder to resume from the one before it") from None


def saved_processes(path: Path) -> int:
    """How many processes wrote checkpoint ``path`` (1 for checkpoints from before this was recorded)."""
    with safe_open(str(Path(path) / "trainable_0.safetensors"), framework="pt") as f:
        return int((f.metadata() or {}).get("processes", 1))


def continue_schedule(lr_scheduler, saved: int, processes: int) -> None:
    """accelerate steps the LR schedule once per process per optimizer step (its length is steps x
    processes), so a checkpoint written by ``saved`` processes is at the same point of a schedule
    ``processes / saved`` times as long."""
    if saved == processes:
        return
    inner = getattr(lr_scheduler, "scheduler", lr_scheduler)
    inner.last_epoch = inner.last_epoch // saved * processes


def _apply_rng(states: dict, device) -> None:
    """Take over the main process's random states (python, numpy, torch and this process's device)."""
    import random

    import numpy as np
    import torch

    random.setstate(states["random_state"])
    np.random.set_state(states["numpy_random_seed"])
    torch.set_rng_state(states["torch_manual_seed"])
    cuda = states.get("torch_cuda_manual_seed")
    if cuda and getattr(device, "type", None) == "cuda":
        torch.cuda.set_rng_state(cuda[0], device=device)  # the main process trains on the first visible device


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def checkpoint_step(path: Path) -> int:
    match = re.fullmatch(r"step-(\d+)", path.name)
    if not match:
        raise ValueError(f"not a checkpoint folder: {path}")
    return int(match.group(1))


def save_checkpoint(accelerator, checkpoints_dir: Path, step: int, *, needed: int = 0) -> Path:
    """Write step ``step``'s whole state through accelerate, every process taking part (several processes).

    The folder is put in place only when complete, so a full disk or a crash mid-write leaves the previous
    checkpoints as they were; thinning the older ones out is ``checkpointing.thin_out``'s, afterwards.
    ``needed``: the expected size, checked first.
    """
    target = checkpoints_dir / checkpoint_name(step)
    if not accelerator.is_main_process:
        accelerator.save_state(_folder_from_main(None), safe_serialization=True)
        accelerator.wait_for_everyone()
        return target
    previous = [p.name for p in checkpoints_dir.glob("step-*")] if checkpoints_dir.is_dir() else []
    kept = f"checkpoint {max(previous)} is intact" if previous else ""
    require_free(checkpoints_dir, needed, f"checkpoint {target.name}")
    with writing(f"checkpoint {target.name}", checkpoints_dir, kept=kept), atomic_path(target) as tmp:
        if accelerator.num_processes > 1:
            _folder_from_main(str(tmp))
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()  # every process's part is in the folder before it is put in place
    return target


def _folder_from_main(folder: str | None) -> str:
    """The main process's temporary checkpoint folder, sent to every process."""
    from accelerate.utils import broadcast_object_list

    sent = [folder]
    broadcast_object_list(sent, from_process=0)
    return sent[0]
