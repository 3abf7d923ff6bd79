"""Validation images during training, into ``validation/step-N/``: the manifest's prompts at fixed seeds,
or for an upscaler the first photos shrunk by its factor and enlarged again."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from dbooth.families.base import device_of
from dbooth.workspace.prompts import format_prompt, instance_prompt
from dbooth.training.tracking import log_images


@contextmanager
def trained_view(accelerator, pipe, models, manifest):
    """The base pipeline with the weights being trained swapped in, ready to sample; training mode after."""
    from dbooth.generate.schedulers import set_scheduler

    trained = {name: accelerator.unwrap_model(m) for name, m in models.trained_encoders.items()}
    view = models.family.with_denoiser(pipe, accelerator.unwrap_model(models.denoiser), **trained)
    set_scheduler(view, manifest.sample.scheduler)
    models.family.denoiser(view).eval()
    # the VAE and frozen text encoders wait in CPU memory during training (cached latents and embeddings)
    with on_device(accelerator.device, [view.vae, *models.family.text_encoders(view).values()]):
        try:
            yield view
        finally:
            for model in models.trained:
                model.train()


@contextmanager
def on_device(device, modules):
    """Move each module that is elsewhere to ``device`` for the block, and back to where it was after."""
    moved = [(m, device_of(m)) for m in modules if m is not None and device_of(m) != device]
    for m, _ in moved:
        m.to(device)
    try:
        yield
    finally:
        for m, home in moved:
            m.to(home)


def validate(accelerator, pipe, models, manifest, run, step: int, photos=()) -> None:
    """Only the main process draws (and writes) validation images, on a side random stream: the training
    stream, which all processes share, stays as it was."""
    if not accelerator.is_main_process:
        return
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        _validate(accelerator, pipe, models, manifest, run, step, photos)


def _validate(accelerator, pipe, models, manifest, run, step: int, photos=()) -> None:
    from dbooth.util.pngmeta import write_png

    folder = run.validation_dir / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    s = manifest.sample
    common = dict(num_inference_steps=s.steps, guidance_scale=s.guidance_scale, negative_prompt=s.negative_prompt or None,
                  **models.family.call_kwargs(manifest.train))
    logged = {}
    with trained_view(accelerator, pipe, models, manifest) as view:
        for key, name, prompt, seed, inputs, record in _requests(models, manifest, photos):
            with torch.no_grad(), accelerator.autocast():
                image = view(prompt, **common, **inputs, generator=torch.Generator("cpu").manual_seed(seed)).images[0]
            write_png(folder / name, image, {"prompt": prompt, "seed": seed, "step": step, **record})
            logged.setdefault(key, []).append(image)
    log_images(accelerator, step, logged)


def _requests(models, manifest, photos):
    """(log key, file name, prompt, seed, pipeline inputs, PNG record) per validation image."""
    cfg = manifest.train
    low = models.condition if getattr(models.condition, "factor", None) else None  # the upscaler's low-res input
    if low is not None:
        from dbooth.util.images import load_rgb, resize_and_crop, shrink

        prompt = instance_prompt(manifest)
        for k, photo in enumerate(list(photos)[: cfg.validation_images]):
            view = resize_and_crop(load_rgb(photo), cfg.resolution)
            small = shrink(view, low.factor)
            yield (f"validation/photo{k}", f"photo{k}-s{manifest.sample.seed}.png", prompt, manifest.sample.seed,
                   {"image": small, "noise_level": low.noise_level},
                   {"photo": photo.name, "noise_level": low.noise_level})
        return
    for p_index, template in enumerate(cfg.validation_prompts):
        prompt = format_prompt(template, manifest.identifier, manifest.class_noun, where="train.validation_prompts")
        for k in range(cfg.validation_images):
            seed = manifest.sample.seed + k
            yield (f"validation/p{p_index}", f"p{p_index}-s{seed}.png", prompt, seed,
                   {"height": cfg.resolution, "width": cfg.resolution}, {})
