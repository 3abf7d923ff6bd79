"""A training run's session: what the step loop touches, set up once before the first step.

``build_session`` makes it in a fixed order, each part a named step: the accelerator and the seed, the
models, the image latents, the prepared optimiser, the prompt embeddings, a resumed checkpoint's state
(after the optimiser is prepared, so it restores into the prepared one), then the checkpoint writer and
the loss history. The order is the run's: the seed comes before every draw, the disk check before step 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler

from dbooth.training.buckets import bucket_counts, bucket_sizes
from dbooth.training.checkpointing import CheckpointWriter, disk_plan
from dbooth.training.conditioning import PromptBank
from dbooth.training.data import LatentBank
from dbooth.training.early_stop import EarlyStop
from dbooth.training.ema import EmaWeights
from dbooth.training.fused_backward import FusedBackward, inner_optimizer
from dbooth.training.history import LossHistory
from dbooth.training.inputs import TrainingInputs
from dbooth.training.optimizers import make_optimizer
from dbooth.training.setup import Models, prepare_models
from dbooth.training.state import checkpoint_step, load_checkpoint, register_trainable_hooks, saved_processes
from dbooth.training.step import ClassPick
from dbooth.training.timings import Timings
from dbooth.training.tracking import tracker_settings
from dbooth.util.diskspace import parameter_bytes, require_free
from dbooth.util.reporting import Reporter
from dbooth.workspace.folder import Run
from dbooth.workspace.prompts import class_prompt


@dataclass
class Session:
    """Everything the step loop touches, set up once by ``build_session``."""

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


def build_session(inputs: TrainingInputs, run: Run, pipe, checkpoints, reporter: Reporter, timings: Timings,
                  stop: EarlyStop | None = None) -> tuple[Session, int]:
    """Models, data and optimiser for ``run`` (resumed when it has ``checkpoints``); returns the step to start at."""
    manifest = inputs.manifest
    cfg = manifest.train
    accelerator = _accelerator(cfg, run, reporter)
    set_seed(cfg.seed)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    device = accelerator.device
    with timings.phase("load"):
        models = prepare_models(pipe, cfg, device, weight_dtype)
    models.condition = models.family.run_condition(pipe, manifest)
    instance, classes = _latent_banks(cfg, inputs, models, device, reporter, timings)
    optimizer, lr_scheduler, ema, fused = _prepared_optimisation(models, cfg, accelerator)

    # one caption per instance photo (all the same unless instance_captions: files), then the class prompt(s)
    class_prompts = (inputs.class_prompts or [class_prompt(manifest)]) if classes else []
    prompts = _prompt_bank(cfg, models, list(inputs.captions) + class_prompts, device, weight_dtype, timings)
    step = _resume(cfg, accelerator, run, lr_scheduler, reporter) if checkpoints else 0
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
    if _nothing_else_reads_the_text_encoders(cfg, prompts, models, stop):
        _release_text_encoders(pipe, models, prompts)
        reporter.info("text encoders released once the captions were encoded (no samples during this run)")
    return session, step


def _nothing_else_reads_the_text_encoders(cfg, prompts: PromptBank, models: Models, stop) -> bool:
    """Every caption is encoded, none of the encoders trains, and no validation or early stop samples."""
    return (prompts.cached is not None and not models.trained_encoders and not cfg.validation_every
            and stop is None)


def _release_text_encoders(pipe, models: Models, prompts: PromptBank) -> None:
    """Let the frozen text encoders go from host memory too (T5-XXL alone is 9.5 GB in bf16): the pipeline,
    the models and the prompt bank drop them, and nothing of the run holds them any more."""
    import gc

    for name in models.text_encoders:
        setattr(pipe, name, None)
    models.text_encoders = {}
    prompts.encoders = {}
    gc.collect()


def _accelerator(cfg, run: Run, reporter: Reporter) -> Accelerator:
    """Precision, accumulation and trackers as configured; the CPU when there is neither CUDA nor MPS."""
    return Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
        project_config=ProjectConfiguration(project_dir=str(run.dir), logging_dir=str(run.dir)),
        **tracker_settings(cfg.tensorboard, reporter),
        cpu=not torch.cuda.is_available() and not torch.backends.mps.is_available(),
    )


def _latent_banks(cfg, inputs: TrainingInputs, models: Models, device, reporter: Reporter,
                  timings: Timings) -> tuple[LatentBank, LatentBank | None]:
    """The instance and class images as the steps draw them; with cached latents the VAE then leaves the GPU."""
    reporter.info(
        f"encoding {len(inputs.instance_paths)} instance and {len(inputs.class_paths)} class images"
        + (" once (cached latents)" if cfg.cache_latents else "")
    )
    low_res = getattr(models.condition, "factor", None) and models.condition  # the upscaler's, else None
    bank_args = dict(resolution=cfg.resolution, crop=cfg.crop, flip=cfg.random_flip, cache=cfg.cache_latents,
                     device=device, dtype=models.vae_dtype, low_res_factor=low_res and low_res.factor,
                     normalize=models.family.latent_normalizer(models.vae))
    buckets = bucket_sizes(cfg.resolution) if cfg.buckets else None  # class images too: each step pairs by bucket
    with timings.phase("caching"):
        instance = LatentBank(inputs.instance_paths, models.vae, seed=cfg.seed, masks=inputs.masks, buckets=buckets,
                              **bank_args)
    if cfg.buckets:
        reporter.info("aspect buckets: " + ", ".join(f"{w}x{h} ({n})" for (w, h), n in bucket_counts(instance.targets)))
    if low_res and inputs.class_paths:  # class images smaller than the upscaler's side
        bank_args["resolution"] = low_res.pair_side(inputs.class_paths, cfg.resolution, reporter)
    with timings.phase("caching"):
        classes = (LatentBank(inputs.class_paths, models.vae, seed=cfg.seed + 1, buckets=buckets, **bank_args)
                   if inputs.class_paths else None)
    if cfg.cache_latents and device.type != "cpu":
        models.vae.to("cpu")  # only validation needs it again; frees its memory for training
    return instance, classes


def _prepared_optimisation(models: Models, cfg, accelerator: Accelerator):
    """The optimiser and schedule prepared by accelerate with the trained models, then EMA and fused backward."""
    optimizer, lr_scheduler = _optimisation(models, cfg, accelerator)
    prepared = accelerator.prepare(*models.trained, optimizer, lr_scheduler)
    models.denoiser = prepared[0]
    models.trained_encoders = dict(zip(models.trained_encoders, prepared[1:-2]))
    models.text_encoders.update(models.trained_encoders)
    optimizer, lr_scheduler = prepared[-2], prepared[-1]
    ema = EmaWeights(models.trained, cfg.ema) if cfg.ema.enabled else None
    register_trainable_hooks(accelerator, models.trained, ema)
    fused = None
    if cfg.fused_backward:  # each parameter's AdamW step inside backward; optimizer.step() then has nothing to do
        fused = FusedBackward(inner_optimizer(optimizer), cfg.max_grad_norm)
    return optimizer, lr_scheduler, ema, fused


def _prompt_bank(cfg, models: Models, captions: list[str], device, weight_dtype, timings: Timings) -> PromptBank:
    """The captions' text embeddings, encoded once while the encoders stay frozen, which then leave the GPU."""
    with timings.phase("caching"):
        prompts = PromptBank(models.family, models.tokenizers, models.text_encoders, captions, device=device,
                             dtype=weight_dtype, cache=not models.trained_encoders and cfg.cache_text_embeddings,
                             max_sequence_length=cfg.flow.max_sequence_length)
    if prompts.cached is not None and device.type != "cpu":
        for encoder in models.text_encoders.values():  # frozen and encoded once: only validation needs them again
            encoder.to("cpu")
    return prompts


def _resume(cfg, accelerator: Accelerator, run: Run, lr_scheduler, reporter: Reporter) -> int:
    """Continue from the run's newest resumable checkpoint, warning when the process count changes the global batch."""
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
    return step


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
    groups = [{"params": [p for p in models.denoiser.parameters() if p.requires_grad], "lr": cfg.resolved_learning_rate()}]
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
