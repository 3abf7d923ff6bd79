"""Checkpoints that cost less than training: weights in each, resume state in the newest, written in the background.

A checkpoint ``step-N/`` holds the trained tensors (``trainable_i.safetensors``, ``ema.safetensors``),
which is what ``dbooth sample/eval --run RUN@N`` and checkpoint picking read. The newest one also holds
what resuming needs, in the files accelerate's ``load_state`` reads (``optimizer.bin``, ``scheduler.bin``,
``random_states_0.pkl``, ``scaler.pt``); once a newer checkpoint is complete the older ones lose them. For a
full fine-tune AdamW's two moments are twice the weights, so a run's checkpoints take at most
``keep x weights + 1 x optimizer state`` instead of ``keep x (weights + optimizer state)``.

accelerate's ``save_state`` writes while training waits. Here the state is copied to CPU memory at the
step (the RNG states of that moment too: that is why these files are written here and not by accelerate)
and the background writer (``dbooth.util.background``) writes it into a temporary folder that is renamed into
place, while the next steps run. One write is in flight at a time; the next checkpoint, the final save, a crash
or Ctrl-C wait for it.
With several processes every one of them takes part in accelerate's ``save_state`` (DeepSpeed needs all
ranks), so there the write is synchronous (``state.save_checkpoint``); the thinning-out is the same.
"""

from __future__ import annotations

import copy
import functools
import random
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dbooth.util.background import BackgroundWriter
from dbooth.util.diskspace import human, require_free, writing
from dbooth.util.fsutil import atomic_path
from dbooth.training.state import checkpoint_name, checkpoint_step, save_checkpoint, write_weights
from dbooth.workspace.folder import RESUME_STATE_FILES

# optimizer state per trained parameter byte, for the disk plan (the states are float32 like the weights)
OPTIMIZER_STATE_FACTOR = {
    "adamw": 2.0,  # first and second moments
    "adamw8bit": 0.5,  # the two moments in 8 bits
    "adafactor": 1.0,  # factored second moments: at most about the weights' size (convolutions factor least)
    "prodigy": 4.0,  # two moments, the initial weights and its step-size accumulator
}


@dataclass(frozen=True)
class DiskPlan:
    """What a run's checkpoints occupy: ``keep`` sets of weights and one optimizer state, at most."""

    count: int  # checkpoints the run writes
    keep: int
    weights: int  # bytes of one checkpoint's trained tensors (+ EMA)
    resume_state: int  # bytes of the optimizer state that only the newest keeps

    @property
    def steady(self) -> int:
        return min(self.count, self.keep) * self.weights + (self.resume_state if self.count else 0)

    @property
    def one_checkpoint(self) -> int:
        return self.weights + self.resume_state

    def describe(self, every: int) -> str:
        if not self.count:
            return "no checkpoints (train.checkpoint_every is 0 or not below max_steps)"
        kept = min(self.count, self.keep)
        return (f"checkpoints every {every} steps, the last {kept} kept: at most {human(self.steady)} on disk "
                f"({kept} x {human(self.weights)} weights + {human(self.resume_state)} resume state in the newest; "
                f"{human(self.one_checkpoint)} more while one is written)")


def disk_plan(cfg, trainable_bytes: int) -> DiskPlan:
    """The checkpoint disk budget of a run with train section ``cfg`` training ``trainable_bytes`` of float32."""
    every = cfg.checkpoint_every
    count = (cfg.max_steps - 1) // every if every else 0
    weights = trainable_bytes * (2 if cfg.ema.enabled else 1)
    state = int(trainable_bytes * OPTIMIZER_STATE_FACTOR.get(cfg.optimizer, 2.0))
    return DiskPlan(count=count, keep=cfg.keep_checkpoints, weights=weights, resume_state=state)


@dataclass
class Snapshot:
    """One step's state in CPU memory, detached from the live tensors that the next steps change."""

    step: int
    trainable: list[dict[str, torch.Tensor]]  # per model, the parameters that train
    ema: dict[str, torch.Tensor] | None
    resume: dict[str, object]  # file name -> object for torch.save, in accelerate's load_state layout


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def _rng_states(accelerator) -> dict:
    """The generators accelerate's ``load_state`` restores, as its ``save_state`` records them."""
    states = {"step": accelerator.step, "random_state": random.getstate(),
              "numpy_random_seed": np.random.get_state(), "torch_manual_seed": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["torch_cuda_manual_seed"] = torch.cuda.get_rng_state_all()
    return states


def take_snapshot(accelerator, models: list, ema, optimizer, lr_scheduler, step: int) -> Snapshot:
    trainable = [
        {n: p.detach().to("cpu", copy=True).contiguous()
         for n, p in accelerator.unwrap_model(m).named_parameters() if p.requires_grad}
        for m in models
    ]
    resume = {
        "optimizer.bin": _to_cpu(optimizer.state_dict()),
        "scheduler.bin": _to_cpu(lr_scheduler.state_dict()),
        f"random_states_{accelerator.process_index}.pkl": _rng_states(accelerator),
    }
    if accelerator.scaler is not None:
        resume["scaler.pt"] = _to_cpu(accelerator.scaler.state_dict())
    ema_state = _to_cpu(ema.state_dict()) if ema is not None else None
    return Snapshot(step=step, trainable=trainable, ema=ema_state, resume=resume)


def write_checkpoint(snapshot: Snapshot, checkpoints_dir: Path, keep: int, protect: Collection[str] = ()) -> Path:
    """Write ``snapshot`` as ``step-N/`` (atomically), then thin out the others.

    The older checkpoints lose their resume state, and all but the last ``keep`` are removed, only after
    the new one is complete: a full disk, a crash or a kill mid-write leaves the previous one as it was.
    ``protect``: names never removed (the best so far, when ``train.stop_when`` scores the checkpoints).
    """
    target = checkpoints_dir / checkpoint_name(snapshot.step)
    previous = sorted(p.name for p in checkpoints_dir.glob("step-*")) if checkpoints_dir.is_dir() else []
    kept = f"checkpoint {previous[-1]} is intact" if previous else ""
    with writing(f"checkpoint {target.name}", checkpoints_dir, kept=kept), atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        write_weights(tmp, snapshot.trainable, snapshot.ema)
        for name, obj in snapshot.resume.items():
            torch.save(obj, tmp / name)
    thin_out(checkpoints_dir, target, keep, protect)
    return target


def thin_out(checkpoints_dir: Path, target: Path, keep: int, protect: Collection[str] = ()) -> None:
    """Once ``target`` is complete: the other checkpoints lose their resume state, all but the last ``keep`` go."""
    existing = sorted((p for p in checkpoints_dir.iterdir() if p.is_dir() and p.name.startswith("step-")
                       and p.name[5:].isdigit()), key=checkpoint_step)
    for old in existing:
        if old != target:
            drop_resume_state(old)
    for old in existing[:-keep]:
        if old != target and old.name not in protect:
            shutil.rmtree(old, ignore_errors=True)


def drop_resume_state(folder: Path) -> None:
    """Make ``folder`` weights-only; ``optimizer.bin`` goes first, so a crash midway leaves no half state."""
    for name in RESUME_STATE_FILES:
        (folder / name).unlink(missing_ok=True)
    for rng in folder.glob("random_states_*.pkl"):
        rng.unlink(missing_ok=True)


class CheckpointWriter(BackgroundWriter):
    """Saves a run's checkpoints: a snapshot at the step, the files from the background writer, one at a time."""

    def __init__(self, accelerator, models: list, ema, optimizer, lr_scheduler, checkpoints_dir: Path, keep: int,
                 *, needed: int = 0):
        super().__init__(depth=1, name="dbooth-checkpoint-writer")
        self.accelerator, self.models, self.ema = accelerator, models, ema
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.checkpoints_dir, self.keep, self.needed = checkpoints_dir, keep, needed

    def save(self, step: int, protect: Collection[str] = ()) -> Path:
        """Checkpoint step ``step``; returns at once (after the previous write, if still in flight, is done)."""
        self.wait()
        if self.accelerator.num_processes > 1:
            target = save_checkpoint(self.accelerator, self.checkpoints_dir, step, needed=self.needed)
            if self.accelerator.is_main_process:
                thin_out(self.checkpoints_dir, target, self.keep, protect)
            return target
        target = self.checkpoints_dir / checkpoint_name(step)
        require_free(self.checkpoints_dir, self.needed, f"checkpoint {target.name}")
        snapshot = take_snapshot(self.accelerator, self.models, self.ema, self.optimizer, self.lr_scheduler, step)
        # a crash mid-write leaves a temporary folder, cleared on the next start
        self.submit(functools.partial(write_checkpoint, snapshot, self.checkpoints_dir, self.keep, set(protect)))
        return target
