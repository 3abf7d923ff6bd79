"""The DreamBooth training loop.

Knows components (unet, vae, text encoder, tokenizer, noise schedule) and the loss; not
model families. Each step draws a batch of subject images and, with prior preservation,
as many class images, and minimises MSE(instance) + prior_weight * MSE(class).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from diffusers.optimization import get_scheduler

from dbooth.config import render_manifest
from dbooth.errors import DboothError
from dbooth.fsutil import atomic_path, atomic_write_text
from dbooth.losses import diffusion_target, dreambooth_loss
from dbooth.models.loading import assemble_pipeline, load_pipeline, training_scheduler
from dbooth.prompts import class_prompt, format_prompt, instance_prompt
from dbooth.reporting import Reporter
from dbooth.training.adapters import add_lora, save_lora
from dbooth.training.data import LatentBank, encode_prompts, tokenize
from dbooth.training.state import checkpoint_step, register_trainable_hooks, save_checkpoint
from dbooth.training.inputs import TrainingInputs
from dbooth.workspace import Run, Workspace, new_run



@dataclass
class TrainResult:
    run: Run
    steps: int
    seconds: float
    final_loss: float


def train_from_inputs(ws: Workspace, inputs: TrainingInputs, *, reporter: Reporter | None = None) -> TrainResult:
    """Train a new run (or continue ``inputs.resumed``) from checked inputs and write its outputs."""
    reporter = reporter or Reporter()
    manifest, resumed = inputs.manifest, inputs.resumed
    instance_paths, captions, class_paths = inputs.instance_paths, inputs.captions, inputs.class_paths
    cfg = manifest.train
    reporter.info(f"loading base model {manifest.base_model}")
    pipe = load_pipeline(manifest.base_model)

    run = resumed or new_run(ws, cfg.method)
    checkpoints = run.checkpoints() if resumed else []
    info = {
        "run_id": run.id,
        "created": resumed.info().get("created", time.time()) if resumed else time.time(),
        "method": cfg.method,
        "base_model": manifest.base_model,
        "identifier": manifest.identifier,
        "class_noun": manifest.class_noun,
        "instance_prompt": instance_prompt(manifest),
        "class_prompt": class_prompt(manifest) if manifest.prior.enabled else None,
        "steps": cfg.max_steps,
        "planned_steps": cfg.max_steps,
        "train_text_encoder": cfg.train_text_encoder,
        "lora": {"rank": cfg.lora.rank, "alpha": cfg.lora.alpha} if cfg.method == "lora" else None,
        "status": "running",
        "pid": os.getpid(),  # lets `dbooth status` tell a live run from one whose process was killed
        "host": socket.gethostname(),
    }
    if manifest.instance_captions == "files":
        info["instance_captions"] = {p.name: c for p, c in zip(instance_paths, captions)}
    atomic_write_text(run.config_path, render_manifest(manifest))
    run.write_info(info)
    try:
        return _train_run(ws, manifest, run, info, pipe, instance_paths, captions, class_paths, checkpoints,
                          reporter)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        info.update(status="failed", error=_one_line(exc))
        run.write_info(info)
        raise


def _one_line(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0][:300]
    return first if isinstance(exc, DboothError) else f"{type(exc).__name__}: {first}".rstrip(": ")


def _train_run(ws, manifest, run, info, pipe, instance_paths, captions, class_paths, checkpoints,
               reporter) -> TrainResult:
    cfg = manifest.train
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
        project_config=ProjectConfiguration(project_dir=str(run.dir)),
        cpu=not torch.cuda.is_available() and not torch.backends.mps.is_available(),
    )
    set_seed(cfg.seed)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)

    # -- model ------------------------------------------------------------------------
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    noise_scheduler = training_scheduler(pipe)
    device = accelerator.device
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    train_te = cfg.train_text_encoder
    # attention processors are chosen before LoRA wraps the projections
    unet.set_attn_processor(AttnProcessor2_0() if cfg.attention == "sdpa" else AttnProcessor())
    if cfg.method == "lora":
        unet.requires_grad_(False)
        unet.to(device, weight_dtype)
        add_lora(unet, cfg.lora, cfg.lora.target_modules)
        if train_te:
            text_encoder.to(device, weight_dtype)
            add_lora(text_encoder, cfg.lora, cfg.lora.text_encoder_target_modules)
        for model in [unet] + ([text_encoder] if train_te else []):
            for p in model.parameters():
                if p.requires_grad:
                    p.data = p.data.float()
    else:
        unet.train()
        if train_te:
            text_encoder.requires_grad_(True)
    if not train_te:
        text_encoder.to(device, weight_dtype)
    vae.to(device, weight_dtype)
    _speed_settings(unet, cfg, device)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if train_te:
            text_encoder.gradient_checkpointing_enable()

    reporter.info(
        f"encoding {len(instance_paths)} instance and {len(class_paths)} class images"
        + (" once (cached latents)" if cfg.cache_latents else "")
    )
    bank_args = dict(resolution=cfg.resolution, crop=cfg.crop, flip=cfg.random_flip, cache=cfg.cache_latents,
                     device=device, dtype=weight_dtype)
    instance_bank = LatentBank(instance_paths, vae, seed=cfg.seed, **bank_args)
    class_bank = LatentBank(class_paths, vae, seed=cfg.seed + 1, **bank_args) if class_paths else None

    # one prompt per instance photo (all the same unless instance_captions: files), then the class prompt
    prompts = list(captions) + ([class_prompt(manifest)] if class_bank else [])
    prompt_ids = tokenize(tokenizer, prompts)
    if cfg.cache_latents and device.type != "cpu":
        vae.to("cpu")  # only validation needs it again; frees its memory for training
    cached_embeds = None
    if not train_te and cfg.cache_text_embeddings:
        with torch.no_grad():
            cached_embeds = encode_prompts(text_encoder, prompt_ids.to(device)).to(weight_dtype)

    # -- optimisation -------------------------------------------------------------------
    groups = [{"params": [p for p in unet.parameters() if p.requires_grad], "lr": cfg.resolved_learning_rate()}]
    if train_te:
        groups.append({"params": [p for p in text_encoder.parameters() if p.requires_grad],
                       "lr": cfg.resolved_text_encoder_learning_rate()})
    optimizer = _make_optimizer(cfg, groups, device)
    lr_scheduler = get_scheduler(
        cfg.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=cfg.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=cfg.max_steps * accelerator.num_processes,
    )
    trained = [unet] + ([text_encoder] if train_te else [])
    prepared = accelerator.prepare(*trained, optimizer, lr_scheduler)
    unet = prepared[0]
    if train_te:
        text_encoder = prepared[1]
    optimizer, lr_scheduler = prepared[-2], prepared[-1]
    register_trainable_hooks(accelerator, trained)

    step = 0
    if checkpoints:
        accelerator.load_state(str(checkpoints[-1]))
        step = checkpoint_step(checkpoints[-1])
        reporter.info(f"resumed {run.id} from step {step}")

    # -- loop ---------------------------------------------------------------------------
    batch = cfg.batch_size
    prior_weight = manifest.prior.loss_weight
    prediction_type = noise_scheduler.config.prediction_type
    num_timesteps = noise_scheduler.config.num_train_timesteps
    started, loss_value = time.time(), float("nan")
    info.update(status="running")
    run.write_info(info)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for model in trained:
        model.train()  # once, not per step: only validation switches to eval, and it switches back
    reporter.start("training", total=cfg.max_steps, completed=step)
    try:
        while step < cfg.max_steps:
            with accelerator.accumulate(*trained):
                ii = torch.randint(0, len(instance_bank), (batch,))
                latents = [instance_bank.sample(ii)]
                which = ii.tolist()
                if class_bank is not None:
                    ci = torch.randint(0, len(class_bank), (batch,))
                    latents.append(class_bank.sample(ci))
                    which += [len(captions)] * batch
                latents = torch.cat(latents).to(device, torch.float32)
                noise = torch.randn_like(latents)
                timesteps = torch.randint(0, num_timesteps, (latents.shape[0],), device=device).long()
                noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                if cached_embeds is not None:
                    embeds = cached_embeds[which]
                elif train_te:
                    embeds = encode_prompts(text_encoder, prompt_ids[which].to(device))
                else:
                    with torch.no_grad():
                        embeds = encode_prompts(text_encoder, prompt_ids[which].to(device))
                pred = unet(noisy, timesteps, embeds, return_dict=False)[0]
                target = diffusion_target(prediction_type, noise, latents, noise_scheduler, timesteps)
                loss = dreambooth_loss(pred, target, batch, prior_weight)
                accelerator.backward(loss.total)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            step += 1
            loss_value = loss.total.detach().item()
            fields = {"loss": loss_value, "lr": lr_scheduler.get_last_lr()[0]}
            if loss.prior is not None:
                fields["prior_loss"] = loss.prior.detach().item()
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.max_steps:
                save_checkpoint(accelerator, run.checkpoints_dir, step, cfg.keep_checkpoints)
            if cfg.validation_every and step % cfg.validation_every == 0 and cfg.validation_prompts:
                _validate(accelerator, pipe, unet, text_encoder if train_te else None, manifest, run, step)
                for model in trained:
                    model.train()
            reporter.advance(step, **fields)
    except KeyboardInterrupt:
        info.update(status="interrupted", interrupted_at=step)
        run.write_info(info)
        raise
    finally:
        reporter.stop()

    reporter.info("saving")
    _save_final(accelerator, manifest, run, unet, text_encoder if train_te else None)
    seconds = time.time() - started
    info.update(status="complete", steps=step, train_seconds=round(seconds, 2), final_loss=loss_value)
    run.write_info(info)
    return TrainResult(run=run, steps=step, seconds=seconds, final_loss=loss_value)


def _speed_settings(unet, cfg, device) -> None:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.allow_tf32
        torch.backends.cudnn.allow_tf32 = cfg.allow_tf32
    if cfg.channels_last:
        unet.to(memory_format=torch.channels_last)
    if cfg.compile:
        unet.compile()  # in place: parameter names (and so checkpoints) stay the same


def _make_optimizer(cfg, groups, device):
    if cfg.optimizer == "adamw8bit":
        if device.type != "cuda":
            raise DboothError("train.optimizer: adamw8bit needs a CUDA GPU (bitsandbytes); use adamw here")
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise DboothError(
                "train.optimizer: adamw8bit needs bitsandbytes; `pip install bitsandbytes` or set train.optimizer: adamw"
            ) from None
        return bnb.optim.AdamW8bit(groups, weight_decay=cfg.adam_weight_decay)
    # torch's fused kernel runs on CUDA and the CPU; on the CPU it is ~3x faster than the per-tensor default
    return torch.optim.AdamW(groups, weight_decay=cfg.adam_weight_decay, fused=device.type in ("cuda", "cpu"))


def _validate(accelerator, pipe, unet, text_encoder, manifest, run, step) -> None:
    """Sample the validation prompts with fixed seeds into ``validation/step-N/``."""
    from dbooth.pngmeta import write_png
    from dbooth.schedulers import set_scheduler

    view = assemble_pipeline(
        pipe,
        unet=accelerator.unwrap_model(unet),
        text_encoder=accelerator.unwrap_model(text_encoder) if text_encoder is not None else None,
    )
    set_scheduler(view, manifest.sample.scheduler)
    folder = run.validation_dir / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    view.unet.eval()
    vae_device = view.vae.device
    view.vae.to(accelerator.device)
    for p_index, template in enumerate(manifest.train.validation_prompts):
        prompt = format_prompt(template, manifest.identifier, manifest.class_noun, where="train.validation_prompts")
        for k in range(manifest.train.validation_images):
            seed = manifest.sample.seed + k
            with torch.no_grad(), accelerator.autocast():
                image = view(
                    prompt,
                    num_inference_steps=manifest.sample.steps,
                    guidance_scale=manifest.sample.guidance_scale,
                    negative_prompt=manifest.sample.negative_prompt or None,
                    height=manifest.train.resolution,
                    width=manifest.train.resolution,
                    generator=torch.Generator("cpu").manual_seed(seed),
                ).images[0]
            write_png(folder / f"p{p_index}-s{seed}.png", image, {"prompt": prompt, "seed": seed, "step": step})
    view.vae.to(vae_device)


def _save_final(accelerator, manifest, run, unet, text_encoder) -> None:
    unet = accelerator.unwrap_model(unet)
    text_encoder = accelerator.unwrap_model(text_encoder) if text_encoder is not None else None
    with atomic_path(run.final_dir) as tmp:
        tmp.mkdir(parents=True)
        if manifest.train.method == "lora":
            save_lora(tmp, unet, text_encoder)
        else:
            # reload frozen parts in full precision so mixed precision never degrades them
            base = load_pipeline(manifest.base_model)
            out = assemble_pipeline(
                base,
                unet=unet.to("cpu", torch.float32),
                text_encoder=text_encoder.to("cpu", torch.float32) if text_encoder is not None else None,
            )
            out.save_pretrained(str(tmp), safe_serialization=True)
