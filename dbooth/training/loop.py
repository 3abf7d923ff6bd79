"""The DreamBooth training loop.

Knows components (a UNet, a VAE, text encoders, a noise schedule) and the loss, never a model
family: what differs between SD 1.x, 2.x and SDXL is asked of ``dbooth.families``. Each step draws
a batch of subject images and, with prior preservation, as many class images, and minimises
MSE(instance) + prior_weight * MSE(class) against the family's target (noise or velocity).

``train_from_inputs`` keeps the run's books (run.json, config.yaml, failure and interruption),
``_train`` sets up models, data and optimiser, ``_loop`` runs the steps. Under ``accelerate launch``
each process trains its share of every batch (``Share``) and only the main one writes files.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler

from dbooth.training.buckets import bucket_counts, bucket_sizes
from dbooth.workspace.config import render_manifest
from dbooth.util.diskspace import parameter_bytes, require_free, writing
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
from dbooth.training.checkpointing import CheckpointWriter, disk_plan
from dbooth.training.compile_check import check_compiled_gradients
from dbooth.training.conditioning import PromptBank
from dbooth.training.data import LatentBank
from dbooth.training.early_stop import EarlyStop
from dbooth.training.ema import EmaWeights, ema_applied
from dbooth.training.fused_backward import FusedBackward, inner_optimizer
from dbooth.training.history import LossHistory
from dbooth.training.inputs import TrainingInputs
from dbooth.training.loss_report import write_loss_report
from dbooth.training.numerics import NonFiniteError, check_weights_finite
from dbooth.training.optimizers import make_optimizer
from dbooth.training.output import save_final
from dbooth.training.readings import READ_EVERY_SECONDS, Readings
from dbooth.training.setup import Models, prepare_models
from dbooth.training.state import (
    checkpoint_name,
    checkpoint_step,
    load_checkpoint,
    register_trainable_hooks,
    saved_processes,
)
from dbooth.training.step import ClassPick, Share, draw_batch, dreambooth_step_loss
from dbooth.training.timings import Timings, describe
from dbooth.training.tracking import start_tracking, tracker_settings
from dbooth.training.validation import validate
from dbooth.workspace.folder import Run, Workspace, new_run


@dataclass
class TrainResult:
    run: Run
    steps: int
    seconds: float
    final_loss: float


@dataclass
class Session:
    """Everything the step loop touches, set up once by ``_train``."""

    manifest: object
    run: Run
    pipe: object  # the base pipeline: validation swaps the trained parts into a view of it
    accelerator: Accelerator
    models: Models
    instance: LatentBank
    classes: LatentBank | None
    prompts: PromptBank
    class_caption: int | ClassPick  # the class prompt's index in prompts; with several classes, which goes where
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    ema: EmaWeights | None = None
    checkpoints: CheckpointWriter | None = None  # writes step-N/ in the background
    timings: Timings | None = None  # where the run's time goes (run.json "timings")
    history: LossHistory | None = None  # RUN/loss.csv, a row per step for report.html's curve; main process only
    stop: EarlyStop | None = None  # train.stop_when: scores checkpoints and says when to stop
    fused: FusedBackward | None = None  # train.fused_backward: the optimizer inside backward


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
        pipe = load_pipeline(manifest.base_model, allow_pickle=manifest.allow_pickle)
    family = family_of(pipe)
    check_stage(family, inputs.stage, manifest.base_model)

    run = decided_by_main(lambda: resumed or new_run(ws, cfg.method if inputs.stage == "base"
                                                     else f"{inputs.stage}-{cfg.method}"))
    run = run if is_main() else FollowerRun(run.dir)  # the main process keeps the books
    checkpoints = run.checkpoints() if resumed else []
    info = {
        "run_id": run.id,
        "created": resumed.info().get("created", time.time()) if resumed else time.time(),
        "method": cfg.method,
        "base_model": manifest.base_model,
        "family": family.name,
        "prediction_type": pipe.scheduler.config.get("prediction_type", "epsilon"),
        "identifier": manifest.identifier,
        "class_noun": manifest.class_noun,
        "instance_prompt": instance_prompt(manifest),
        "class_prompt": class_prompt(manifest) if manifest.prior.enabled else None,
        "steps": cfg.max_steps,
        "planned_steps": cfg.max_steps,
        "train_text_encoder": cfg.train_text_encoder,
        "lora": {"rank": cfg.lora.rank, "alpha": cfg.lora.alpha} if cfg.method == "lora" else None,
        "options": run_options(cfg, masked=inputs.masks is not None),
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
    if stop is not None:
        stop.attach(run, info, resumed)
    if is_main():
        atomic_write_text(run.config_path, render_manifest(manifest))
    run.write_info(info)
    try:
        return _train(manifest, inputs, run, info, pipe, checkpoints, reporter, timings, stop)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        info.update(status="failed", error=_one_line(exc))
        run.write_info(info)
        raise


def _photo_key(ws: Workspace, photo) -> str:
    """A photo's name, or ``NAME/photo.png`` for a further subject's (two subjects' photos may share a name)."""
    try:
        return photo.relative_to(ws.instance_dir).as_posix()
    except ValueError:
        return photo.name


def _one_line(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0][:300]
    return first if isinstance(exc, DboothError) else f"{type(exc).__name__}: {first}".rstrip(": ")


def _train(manifest, inputs: TrainingInputs, run: Run, info: dict, pipe, checkpoints, reporter,
           timings: Timings, stop: EarlyStop | None = None) -> TrainResult:
    cfg = manifest.train
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
        project_config=ProjectConfiguration(project_dir=str(run.dir), logging_dir=str(run.dir)),
        **tracker_settings(cfg.tensorboard, reporter),
        cpu=not torch.cuda.is_available() and not torch.backends.mps.is_available(),
    )
    set_seed(cfg.seed)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    device = accelerator.device
    with timings.phase("load"):
        models = prepare_models(pipe, cfg, device, weight_dtype)
    models.low_res = models.family.low_res_condition(pipe, manifest)

    reporter.info(
        f"encoding {len(inputs.instance_paths)} instance and {len(inputs.class_paths)} class images"
        + (" once (cached latents)" if cfg.cache_latents else "")
    )
    bank_args = dict(resolution=cfg.resolution, crop=cfg.crop, flip=cfg.random_flip, cache=cfg.cache_latents,
                     device=device, dtype=models.vae_dtype, low_res_factor=models.low_res and models.low_res.factor)
    buckets = bucket_sizes(cfg.resolution) if cfg.buckets else None  # class images too: each step pairs by bucket
    with timings.phase("caching"):
        instance = LatentBank(inputs.instance_paths, models.vae, seed=cfg.seed, masks=inputs.masks, buckets=buckets,
                              **bank_args)
    if cfg.buckets:
        reporter.info("aspect buckets: " + ", ".join(f"{w}x{h} ({n})" for (w, h), n in bucket_counts(instance.targets)))
    if models.low_res is not None and inputs.class_paths:  # class images smaller than the upscaler's side
        bank_args["resolution"] = models.low_res.pair_side(inputs.class_paths, cfg.resolution, reporter)
    with timings.phase("caching"):
        classes = (LatentBank(inputs.class_paths, models.vae, seed=cfg.seed + 1, buckets=buckets, **bank_args)
                   if inputs.class_paths else None)
    if cfg.cache_latents and device.type != "cpu":
        models.vae.to("cpu")  # only validation needs it again; frees its memory for training

    optimizer, lr_scheduler = _optimisation(models, cfg, accelerator)
    prepared = accelerator.prepare(*models.trained, optimizer, lr_scheduler)
    models.unet = prepared[0]
    models.trained_encoders = dict(zip(models.trained_encoders, prepared[1:-2]))
    models.text_encoders.update(models.trained_encoders)
    optimizer, lr_scheduler = prepared[-2], prepared[-1]
    ema = EmaWeights(models.trained, cfg.ema) if cfg.ema.enabled else None
    register_trainable_hooks(accelerator, models.trained, ema)
    fused = None
    if cfg.fused_backward:  # each parameter's AdamW step inside backward; optimizer.step() then has nothing to do
        fused = FusedBackward(inner_optimizer(optimizer), cfg.max_grad_norm)

    # one caption per instance photo (all the same unless instance_captions: files), then the class prompt(s)
    class_prompts = (inputs.class_prompts or [class_prompt(manifest)]) if classes else []
    captions = list(inputs.captions) + class_prompts
    with timings.phase("caching"):
        prompts = PromptBank(models.family, models.tokenizers, models.text_encoders, captions, device=device,
                             dtype=weight_dtype, cache=not models.trained_encoders and cfg.cache_text_embeddings)
    if prompts.cached is not None and device.type != "cpu":
        for encoder in models.text_encoders.values():  # frozen and encoded once: only validation needs them again
            encoder.to("cpu")

    step = 0
    if checkpoints:
        resume_from = run.resume_checkpoint()  # the newest with optimizer state; older ones hold weights only
        load_checkpoint(accelerator, resume_from, lr_scheduler)
        step = checkpoint_step(resume_from)
        reporter.info(f"resumed {run.id} from step {step}")
        saved = saved_processes(resume_from)
        if saved != accelerator.num_processes:
            reporter.warn(f"{resume_from.name} was written by {saved} process(es) and this resume runs "
                          f"{accelerator.num_processes}: each keeps batch {cfg.batch_size}, so the global batch "
                          f"changes from {saved * cfg.batch_size} to {accelerator.num_processes * cfg.batch_size}; "
                          f"resume with --processes {saved} to keep it")
    class_caption: int | ClassPick = len(inputs.captions)
    if len(class_prompts) > 1:
        class_caption = ClassPick.of(inputs.image_class, inputs.photo_class, len(inputs.captions))
    writer = CheckpointWriter(accelerator, models.trained, ema, optimizer, lr_scheduler, run.checkpoints_dir,
                              cfg.keep_checkpoints, needed=_check_space(cfg, run, pipe, models, reporter))
    session = Session(manifest, run, pipe, accelerator, models, instance, classes, prompts, class_caption,
                      optimizer, lr_scheduler, ema, writer, timings,
                      # a resumed run drops the rows past its checkpoint
                      history=LossHistory(run.dir, start=step) if accelerator.is_main_process else None, stop=stop,
                      fused=fused)
    start_tracking(accelerator)
    started = time.time()
    info.update(status="running")
    run.write_info(info)
    try:
        with timings.phase("steps"):
            step, loss_value = _loop(session, step, reporter)
        with timings.phase("checkpoints"):
            writer.wait()  # a failed background write raises here, before the final save
    except KeyboardInterrupt as interrupt:
        info.update(status="interrupted", interrupted_at=interrupt.args[0] if interrupt.args else None)
        run.write_info(info)
        raise
    finally:
        writer.wait(quiet=True)  # a crash or Ctrl-C lets the checkpoint in flight land (a second Ctrl-C abandons it)
        accelerator.end_training()
        if session.history is not None:
            session.history.close()
            with contextlib.suppress(OSError):  # the page is a convenience: never hide why a run stopped
                write_loss_report(run.dir, run.id)  # the curve so far, also for a stopped or failed run

    reporter.info("saving")
    with timings.phase("save"):
        if ema is not None and cfg.ema.use_for_output:
            ema.copy_to_models()
        check_weights_finite(models.trained, f"run {run.id}")
        kept = "the run's checkpoints are kept and `dbooth train --resume` continues from the last one"
        if accelerator.is_main_process:
            with writing("the final weights", run.dir, kept=kept if run.checkpoints() else ""):
                save_final(accelerator, manifest, run, models)
    seconds = time.time() - started
    timings.background = writer.write_seconds
    info.update(status="complete", steps=step, train_seconds=round(seconds, 2), final_loss=loss_value,
                timings=timings.as_dict())
    reporter.info("time: " + describe(info["timings"]))
    run.write_info(info)
    return TrainResult(run=run, steps=step, seconds=seconds, final_loss=loss_value)


def _loop(s: Session, step: int, reporter: Reporter) -> tuple[int, float]:
    """Optimizer steps until ``max_steps``, with checkpoints, validation and progress along the way."""
    cfg, accelerator, models = s.manifest.train, s.accelerator, s.models
    params = [p for g in s.optimizer.param_groups for p in g["params"]]
    for model in models.trained:
        model.train()  # once, not per step: only validation switches to eval, and it switches back
    loss_value = float("nan")
    done = [p for p in s.run.checkpoints() if p.name <= checkpoint_name(step)]
    last_checkpoint = checkpoint_step(done[-1]) if done else None
    guard = dict(mixed_precision=accelerator.mixed_precision, learning_rate=cfg.resolved_learning_rate())
    share = Share(accelerator.process_index, accelerator.num_processes)
    if s.stop is not None and s.stop.begin(s, step):
        return step, loss_value  # resumed at a checkpoint whose score (taken only now) says stop
    if cfg.compile and step < cfg.max_steps:
        _check_compile(s, share, reporter)
    # losses and guard values stay on the device and are read about once a second (every step with several
    # processes, which must stop at the same step), and before anything that writes or samples
    readings = Readings(guard, every_seconds=READ_EVERY_SECONDS if accelerator.num_processes == 1 else 0.0)
    shown: dict = {}  # the newest figures read, shown beside the progress bar

    def on_step(n: int, figures: dict) -> None:
        nonlocal loss_value
        instance = figures.pop("instance_loss", None)
        loss_value = figures["loss"]
        accelerator.log(figures, step=n)
        if s.history is not None:
            s.history.record(n, instance_loss=instance, **figures)
        shown.clear()
        shown.update(figures)

    reporter.start("training", total=cfg.max_steps, completed=step)
    try:
        while step < cfg.max_steps:
            with accelerator.accumulate(*models.trained):
                batch = draw_batch(s.instance, s.classes, cfg.batch_size * share.count, s.class_caption,
                                   accelerator.device)
                loss = dreambooth_step_loss(models, s.prompts, batch, s.manifest.prior.loss_weight, cfg, share)
                readings.check(step + 1, "loss", loss.total.detach())
                accelerator.backward(loss.total)
                if s.fused is not None:  # the updates happened inside backward, each checked as it came
                    readings.check(step + 1, "gradient", s.fused.gradients_finite())
                if accelerator.sync_gradients:
                    norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                    # an fp16 GradScaler skips overflowing steps itself; without one a NaN gradient reaches the weights
                    if accelerator.scaler is None and norm is not None:
                        readings.check(step + 1, "gradient norm", norm)
                s.optimizer.step()
                s.lr_scheduler.step()
                s.optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            step += 1
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
                readings.flush(last_checkpoint, on_step)  # the guard sees every value before anything is written
            if saved:
                with s.timings.phase("checkpoints"):
                    s.checkpoints.save(step, protect=s.stop.protected() if s.stop else ())
                last_checkpoint = step
            if validating:
                with s.timings.phase("validation"), ema_applied(s.ema, cfg.ema.use_for_output):
                    validate(accelerator, s.pipe, models, s.manifest, s.run, step, photos=s.instance.paths)
            reporter.advance(step, **shown)
            if scoring:
                with s.timings.phase("validation"):  # scoring the checkpoint's samples
                    stopping = s.stop.after_checkpoint(s, step, final=not saved)
                if stopping:
                    break
        readings.flush(last_checkpoint, on_step)
    except KeyboardInterrupt:
        with contextlib.suppress(NonFiniteError):  # the steps run so far still reach the loss history
            readings.flush(last_checkpoint, on_step)
        raise KeyboardInterrupt(step) from None
    finally:
        reporter.stop()
    return step, loss_value


def _check_compile(s: Session, share: Share, reporter: Reporter) -> None:
    """The compiled UNet's gradients of the first batch against the eager UNet's (dbooth.training.compile_check)."""
    cfg, models, accelerator = s.manifest.train, s.models, s.accelerator
    wrapped = models.unet
    models.unet = accelerator.unwrap_model(wrapped, keep_fp32_wrapper=True)  # no DDP hooks for autograd.grad
    params = [p for g in s.optimizer.param_groups for p in g["params"] if p.requires_grad]

    def first_loss() -> torch.Tensor:
        batch = draw_batch(s.instance, s.classes, cfg.batch_size * share.count, s.class_caption, accelerator.device)
        return dreambooth_step_loss(models, s.prompts, batch, s.manifest.prior.loss_weight, cfg, share).total

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    reporter.info("train.compile: compiling the UNet and checking its gradients against the uncompiled UNet's")
    try:
        error = check_compiled_gradients(models.unet, first_loss, params, dtype, accelerator.device)
    finally:
        models.unet = wrapped
    reporter.info(f"train.compile: first-batch gradients agree (relative difference {error:.1g})")


def _check_space(cfg, run: Run, pipe, models: Models, reporter) -> int:
    """Fail before the first step when the checkpoints and final weights will not fit; returns one checkpoint's size."""
    trainable = parameter_bytes(models.trained, trainable_only=True)
    plan = disk_plan(cfg, trainable)
    if cfg.method == "lora":
        final = trainable
    else:
        final = parameter_bytes([m for m in pipe.components.values() if isinstance(m, torch.nn.Module)],
                                trainable_only=False)
    reporter.info(plan.describe(cfg.checkpoint_every))
    require_free(run.dir, final + plan.steady, f"run {run.id} (its checkpoints and the final weights)")
    return plan.one_checkpoint


def _optimisation(models: Models, cfg, accelerator):
    groups = [{"params": [p for p in models.unet.parameters() if p.requires_grad], "lr": cfg.resolved_learning_rate()}]
    for encoder in models.trained_encoders.values():
        groups.append({"params": [p for p in encoder.parameters() if p.requires_grad],
                       "lr": cfg.resolved_text_encoder_learning_rate()})
    optimizer = make_optimizer(cfg, groups, accelerator.device)
    lr_scheduler = get_scheduler(
        cfg.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=cfg.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=cfg.max_steps * accelerator.num_processes,
    )
    return optimizer, lr_scheduler
