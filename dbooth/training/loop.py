"""The DreamBooth training loop.

Knows components (a UNet, a VAE, text encoders, a noise schedule) and the loss, never a model
family: what differs between SD 1.x, 2.x and SDXL is asked of ``dbooth.families``. Each step draws
a batch of subject images and, with prior preservation, as many class images, and minimises
MSE(instance) + prior_weight * MSE(class) against the family's target (noise or velocity).

``train_from_inputs`` keeps the run's books (run.json, config.yaml, failure and interruption),
``_train`` sets up a ``Session`` (``dbooth.training.session``: models, data and optimiser), runs its
steps and saves, ``_loop`` runs the steps. Under ``accelerate launch`` each process trains its share
of every batch (``Share``) and only the main one writes files.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, field

import torch

from dbooth.workspace.config import render_manifest
from dbooth.util.diskspace import writing
from dbooth.training.distributed import FollowerRun, decided_by_main, is_main, num_processes
from dbooth.util.errors import DboothError
from dbooth.families import family_of
from dbooth.util.fsutil import atomic_write_text
from dbooth.families.loading import load_pipeline
from dbooth.workspace.prompts import class_prompt, instance_prompt
from dbooth.util.reporting import Reporter
from dbooth.workspace.run_options import run_options
from dbooth.workspace.stages import check_stage
from dbooth.workspace.subjects import subjects
from dbooth.training.compile_check import check_compiled_gradients
from dbooth.training.early_stop import EarlyStop
from dbooth.training.ema import ema_applied
from dbooth.training.inputs import TrainingInputs
from dbooth.training.numerics import NonFiniteError, check_weights_finite
from dbooth.training.output import save_final
from dbooth.training.readings import READ_EVERY_SECONDS, Readings
from dbooth.runpage.page import refresh_run_page
from dbooth.training.session import Session, build_session
from dbooth.training.setup import load_dtype
from dbooth.training.objectives import flow_record
from dbooth.training.state import checkpoint_name, checkpoint_step
from dbooth.training.step import Share, draw_batch, dreambooth_step_loss
from dbooth.training.timings import Timings, describe
from dbooth.training.tracking import start_tracking
from dbooth.training.validation import validate
from dbooth.workspace.folder import Run, Workspace, new_run


@dataclass
class TrainResult:
    run: Run
    steps: int
    seconds: float
    final_loss: float


@dataclass
class _Progress:
    """Where the steps stand, in one place: the after-step books move it and a Ctrl-C's last flush reads it."""

    step: int
    last_checkpoint: int | None
    readings: Readings
    loss_value: float = float("nan")
    shown: dict = field(default_factory=dict)  # the newest figures read, shown beside the progress bar


def train_from_inputs(ws: Workspace, inputs: TrainingInputs, *, reporter: Reporter | None = None) -> TrainResult:
    """Train a new run (or continue ``inputs.resumed``) from checked inputs and write its outputs."""
    reporter = reporter or Reporter()
    manifest, resumed = inputs.manifest, inputs.resumed
    cfg = manifest.train
    timings = Timings()
    with timings.phase("load"):
        stop = EarlyStop.prepare(ws, manifest, reporter)  # its judges load first: a missing one fails in seconds
    reporter.info(f"loading base model {manifest.base_model}")
    with timings.phase("load"):
        pipe = load_pipeline(manifest.base_model, allow_pickle=manifest.allow_pickle, dtype=load_dtype(cfg))
    family = family_of(pipe)
    check_stage(family, inputs.stage, manifest.base_model)

    run = decided_by_main(lambda: resumed or new_run(ws, cfg.method if inputs.stage == "base"
                                                     else f"{inputs.stage}-{cfg.method}"))
    run = run if is_main() else FollowerRun(run.dir)  # the main process keeps the books
    checkpoints = run.checkpoints() if resumed else []
    info = _run_info(ws, inputs, run, pipe, family)
    if stop is not None:
        stop.attach(run, info, resumed)
    if is_main():
        atomic_write_text(run.config_path, render_manifest(manifest))
    run.write_info(info)
    try:
        return _train(inputs, run, info, pipe, checkpoints, reporter, timings, stop)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        info.update(status="failed", error=_one_line(exc))
        run.write_info(info)
        raise
    finally:
        if is_main():  # the run page says how it ended: finished, interrupted or failed (never raises)
            refresh_run_page(run.dir)


def _run_info(ws: Workspace, inputs: TrainingInputs, run: Run, pipe, family) -> dict:
    """run.json as the run starts: what it trains, from what and how, and which process to ask whether it lives."""
    manifest, resumed = inputs.manifest, inputs.resumed
    cfg = manifest.train
    info = {
        "run_id": run.id,
        "created": resumed.info().get("created", time.time()) if resumed else time.time(),
        "method": cfg.method,
        "base_model": manifest.base_model,
        "family": family.name,
        "prediction_type": ("flow" if family.objective == "flow"
                            else pipe.scheduler.config.get("prediction_type", "epsilon")),
        "identifier": manifest.identifier,
        "class_noun": manifest.class_noun,
        "instance_prompt": instance_prompt(manifest),
        "class_prompt": class_prompt(manifest) if manifest.prior.enabled else None,
        "steps": cfg.max_steps,
        "planned_steps": cfg.max_steps,
        "train_text_encoder": cfg.train_text_encoder,
        "lora": {"rank": cfg.lora.rank, "alpha": cfg.lora.alpha} if cfg.method == "lora" else None,
        "options": {**run_options(cfg, masked=inputs.masks is not None), **flow_record(cfg, family, pipe)},
        "status": "running",
        "pid": os.getpid(),  # lets `dbooth status` tell a live run from one whose process was killed
        "host": socket.gethostname(),
        "processes": num_processes(),  # data-parallel processes; the global batch is batch_size x processes
        **family.run_record(manifest),
    }
    if manifest.subjects:
        info["subjects"] = [
            {"name": s.name, "identifier": s.identifier, "class_noun": s.class_noun,
             "instance_prompt": instance_prompt(s.manifest),
             "class_prompt": class_prompt(s.manifest) if manifest.prior.enabled else None}
            for s in subjects(ws, manifest)
        ]
    if manifest.instance_captions == "files":
        info["instance_captions"] = {_photo_key(ws, p): c for p, c in zip(inputs.instance_paths, inputs.captions)}
    return info


def _photo_key(ws: Workspace, photo) -> str:
    """A photo's name, or ``NAME/photo.png`` for a further subject's (two subjects' photos may share a name)."""
    try:
        return photo.relative_to(ws.instance_dir).as_posix()
    except ValueError:
        return photo.name


def _one_line(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0][:300]
    return first if isinstance(exc, DboothError) else f"{type(exc).__name__}: {first}".rstrip(": ")


def _train(inputs: TrainingInputs, run: Run, info: dict, pipe, checkpoints, reporter, timings: Timings,
           stop: EarlyStop | None = None) -> TrainResult:
    """Set up once, run the steps, save the weights: run.json says which of these the run got through."""
    session, step = build_session(inputs, run, pipe, checkpoints, reporter, timings, stop)
    start_tracking(session.accelerator)
    started = time.time()
    info.update(status="running")
    run.write_info(info)
    step, loss_value = _run_steps(session, step, info, reporter)
    return _finish(session, info, step, loss_value, started, reporter)


def _run_steps(s: Session, step: int, info: dict, reporter: Reporter) -> tuple[int, float]:
    """The steps and the last checkpoint's write; however they end, trackers and loss.csv are closed."""
    run = s.run
    try:
        with s.timings.phase("steps"):
            step, loss_value = _loop(s, step, reporter)
        with s.timings.phase("checkpoints"):
            s.checkpoints.wait()  # a failed background write raises here, before the final save
    except KeyboardInterrupt as interrupt:
        info.update(status="interrupted", interrupted_at=interrupt.args[0] if interrupt.args else None)
        run.write_info(info)
        raise
    finally:
        # a crash or Ctrl-C lets the checkpoint in flight land (a second Ctrl-C abandons it)
        s.checkpoints.wait(quiet=True)
        s.accelerator.end_training()
        if s.history is not None:
            s.history.close()
    return step, loss_value


def _finish(s: Session, info: dict, step: int, loss_value: float, started: float, reporter: Reporter) -> TrainResult:
    """The final weights (the EMA's when they are the output), then run.json's closing record."""
    cfg, run = s.manifest.train, s.run
    reporter.info("saving")
    with s.timings.phase("save"):
        if s.ema is not None and cfg.ema.use_for_output:
            s.ema.copy_to_models()
        check_weights_finite(s.models.trained, f"run {run.id}")
        kept = "the run's checkpoints are kept and `dbooth train --resume` continues from the last one"
        if s.accelerator.is_main_process:
            with writing("the final weights", run.dir, kept=kept if run.checkpoints() else ""):
                save_final(s.accelerator, s.manifest, run, s.models)
    seconds = time.time() - started
    s.timings.background = s.checkpoints.write_seconds
    info.update(status="complete", steps=step, train_seconds=round(seconds, 2), final_loss=loss_value,
                timings=s.timings.as_dict())
    reporter.info("time: " + describe(info["timings"]))
    run.write_info(info)
    return TrainResult(run=run, steps=step, seconds=seconds, final_loss=loss_value)


def _loop(s: Session, step: int, reporter: Reporter) -> tuple[int, float]:
    """Optimizer steps until ``max_steps``, with checkpoints, validation and progress along the way."""
    cfg, accelerator, models = s.manifest.train, s.accelerator, s.models
    params = [p for g in s.optimizer.param_groups for p in g["params"]]
    for model in models.trained:
        model.train()  # once, not per step: only validation switches to eval, and it switches back
    done = [p for p in s.run.checkpoints() if p.name <= checkpoint_name(step)]
    last_checkpoint = checkpoint_step(done[-1]) if done else None
    guard = dict(mixed_precision=accelerator.mixed_precision, learning_rate=cfg.resolved_learning_rate())
    share = Share(accelerator.process_index, accelerator.num_processes)
    if s.stop is not None and s.stop.begin(s, step):
        return step, float("nan")  # resumed at a checkpoint whose score (taken only now) says stop
    if cfg.compile and step < cfg.max_steps:
        _check_compile(s, share, reporter)
    # losses and guard values stay on the device and are read about once a second (every step with several
    # processes, which must stop at the same step), and before anything that writes or samples
    readings = Readings(guard, every_seconds=READ_EVERY_SECONDS if accelerator.num_processes == 1 else 0.0)
    p = _Progress(step, last_checkpoint, readings)

    def on_step(n: int, figures: dict) -> None:
        instance = figures.pop("instance_loss", None)
        p.loss_value = figures["loss"]
        accelerator.log(figures, step=n)
        if s.history is not None:
            s.history.record(n, instance_loss=instance, **figures)
        p.shown.clear()
        p.shown.update(figures)

    reporter.start("training", total=cfg.max_steps, completed=step)
    try:
        while p.step < cfg.max_steps:
            loss = _optimizer_step(s, share, params, readings, p.step + 1)
            if not accelerator.sync_gradients:
                continue
            p.step += 1
            if _after_step(s, p, loss, on_step, reporter):
                break
        readings.flush(p.last_checkpoint, on_step)
    except KeyboardInterrupt:
        with contextlib.suppress(NonFiniteError):  # the steps run so far still reach the loss history
            readings.flush(p.last_checkpoint, on_step)
        raise KeyboardInterrupt(p.step) from None
    finally:
        reporter.stop()
    return p.step, p.loss_value


def _optimizer_step(s: Session, share: Share, params: list, readings: Readings, step: int):
    """One batch's loss, backward and update (an update only every ``gradient_accumulation_steps``), guard values
    queued for ``step``; returns the batch's loss."""
    cfg, accelerator = s.manifest.train, s.accelerator
    with accelerator.accumulate(*s.models.trained):
        batch = draw_batch(s.instance, s.classes, cfg.batch_size * share.count, s.class_caption, accelerator.device)
        loss = dreambooth_step_loss(s.models, s.prompts, batch, s.manifest.prior.loss_weight, cfg, share)
        readings.check(step, "loss", loss.total.detach())
        accelerator.backward(loss.total)
        if s.fused is not None:  # the updates happened inside backward, each checked as it came
            readings.check(step, "gradient", s.fused.gradients_finite())
        if accelerator.sync_gradients:
            norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            # an fp16 GradScaler skips overflowing steps itself; without one a NaN gradient reaches the weights
            if accelerator.scaler is None and norm is not None:
                readings.check(step, "gradient norm", norm)
        s.optimizer.step()
        s.lr_scheduler.step()
        s.optimizer.zero_grad(set_to_none=True)
    return loss


def _after_step(s: Session, p: _Progress, loss, on_step, reporter: Reporter) -> bool:
    """A finished step's books: its figures, then the checkpoint, validation and score due at it; True: stop here."""
    cfg, accelerator, step, readings = s.manifest.train, s.accelerator, p.step, p.readings
    if s.ema is not None:
        s.ema.after_step(step)
    figures = {"loss": accelerator.reduce(loss.total.detach(), "mean"),  # over all processes' rows
               "lr": s.lr_scheduler.get_last_lr()[0]}
    if loss.prior is not None:
        figures["prior_loss"] = accelerator.reduce(loss.prior.detach(), "mean")
        figures["instance_loss"] = accelerator.reduce(loss.instance.detach(), "mean")
    readings.record(step, figures)
    saved = cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.max_steps
    validating = cfg.validation_every and step % cfg.validation_every == 0 and cfg.validation_prompts
    scoring = s.stop is not None and (saved or step == cfg.max_steps)
    if saved or validating or scoring or step == cfg.max_steps or readings.due():
        readings.flush(p.last_checkpoint, on_step)  # the guard sees every value before anything is written
    if saved:
        with s.timings.phase("checkpoints"):
            s.checkpoints.save(step, protect=s.stop.protected() if s.stop else ())
        p.last_checkpoint = step
    if validating:
        with s.timings.phase("validation"), ema_applied(s.ema, cfg.ema.use_for_output):
            validate(accelerator, s.pipe, s.models, s.manifest, s.run, step, photos=s.instance.paths)
        if accelerator.is_main_process:
            refresh_run_page(s.run.dir)  # the curve and images so far, for a page open while it trains
    reporter.advance(step, **p.shown)
    stopping = False
    if scoring:
        with s.timings.phase("validation"):  # scoring the checkpoint's samples
            stopping = s.stop.after_checkpoint(s, step, final=not saved)
    return stopping


def _check_compile(s: Session, share: Share, reporter: Reporter) -> None:
    """The compiled UNet's gradients of the first batch against the eager UNet's (dbooth.training.compile_check)."""
    cfg, models, accelerator = s.manifest.train, s.models, s.accelerator
    wrapped = models.denoiser
    models.denoiser = accelerator.unwrap_model(wrapped, keep_fp32_wrapper=True)  # no DDP hooks for autograd.grad
    params = [p for g in s.optimizer.param_groups for p in g["params"] if p.requires_grad]

    def first_loss() -> torch.Tensor:
        batch = draw_batch(s.instance, s.classes, cfg.batch_size * share.count, s.class_caption, accelerator.device)
        return dreambooth_step_loss(models, s.prompts, batch, s.manifest.prior.loss_weight, cfg, share).total

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    reporter.info("train.compile: compiling the UNet and checking its gradients against the uncompiled UNet's")
    try:
        error = check_compiled_gradients(models.denoiser, first_loss, params, dtype, accelerator.device)
    finally:
        models.denoiser = wrapped
    reporter.info(f"train.compile: first-batch gradients agree (relative difference {error:.1g})")
