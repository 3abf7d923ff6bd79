"""Validation images during training: the manifest's prompts at fixed seeds, into ``validation/step-N/``."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from dbooth.prompts import format_prompt
from dbooth.training.tracking import log_images


@contextmanager
def trained_view(accelerator, pipe, models, manifest):
    """The base pipeline with the weights being trained swapped in, ready to sample; training mode after."""
    from dbooth.schedulers import set_scheduler

    trained = {name: accelerator.unwrap_model(m) for name, m in models.trained_encoders.items()}
    view = models.family.assemble(pipe, unet=accelerator.unwrap_model(models.unet), **trained)
    set_scheduler(view, manifest.sample.scheduler)
    view.unet.eval()
    vae_device = view.vae.device
    view.vae.to(accelerator.device)
    try:
        yield view
    finally:
        view.vae.to(vae_device)
        for model in models.trained:
            model.train()


def validate(accelerator, pipe, models, manifest, run, step: int) -> None:
    from dbooth.pngmeta import write_png

    folder = run.validation_dir / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    logged = {}
    with trained_view(accelerator, pipe, models, manifest) as view:
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
