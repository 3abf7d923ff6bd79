"""Validation images during training: the manifest's prompts at fixed seeds, into ``validation/step-N/``."""

from __future__ import annotations

import torch

from dbooth.prompts import format_prompt
from dbooth.training.tracking import log_images


def validate(accelerator, pipe, models, manifest, run, step: int) -> None:
    """Only the main process draws (and writes) validation images, on a side random stream: the training
    stream, which all processes share, stays as it was."""
    if not accelerator.is_main_process:
        return
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        _validate(accelerator, pipe, models, manifest, run, step)


def _validate(accelerator, pipe, models, manifest, run, step: int) -> None:
    from dbooth.pngmeta import write_png
    from dbooth.schedulers import set_scheduler

    trained = {name: accelerator.unwrap_model(m) for name, m in models.trained_encoders.items()}
    view = models.family.assemble(pipe, unet=accelerator.unwrap_model(models.unet), **trained)
    set_scheduler(view, manifest.sample.scheduler)
    folder = run.validation_dir / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    view.unet.eval()
    vae_device = view.vae.device
    view.vae.to(accelerator.device)
    logged = {}
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
            logged.setdefault(f"validation/p{p_index}", []).append(image)
    log_images(accelerator, step, logged)
    view.vae.to(vae_device)
    for model in models.trained:
        model.train()
