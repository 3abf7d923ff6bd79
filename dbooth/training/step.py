"""One DreamBooth step's maths: draw a batch, noise it, predict, and score against the family's target."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dbooth.losses import LossParts, diffusion_target, dreambooth_loss, min_snr_weights, snr
from dbooth.noise import perturbed, sample_timesteps, timestep_bounds, training_noise
from dbooth.schema import TrainConfig
from dbooth.training.conditioning import PromptBank
from dbooth.training.data import LatentBank
from dbooth.training.setup import Models


@dataclass
class Batch:
    latents: torch.Tensor  # [B, C, h, w], instance rows first, then class rows
    geometry: torch.Tensor  # [B, 6], see LatentBank.sample
    captions: list[int]  # PromptBank index per row
    num_instance: int
    mask: torch.Tensor | None = None  # [B, 1, h, w] loss mask (class rows all ones); None = no masks


def draw_batch(instance: LatentBank, classes: LatentBank | None, batch_size: int, class_caption: int,
               device: torch.device) -> Batch:
    """``batch_size`` subject images and, with prior preservation, as many class images."""
    ii = torch.randint(0, len(instance), (batch_size,))
    latents, geometry, mask = instance.sample(ii)
    parts, geometries, captions = [latents], [geometry], ii.tolist()
    masks = [mask]
    if classes is not None:
        ci = torch.randint(0, len(classes), (batch_size,))
        latents, geometry, _ = classes.sample(ci)
        parts.append(latents)
        geometries.append(geometry)
        captions += [class_caption] * batch_size
        if mask is not None:
            masks.append(torch.ones(latents.shape[0], 1, *latents.shape[-2:], device=mask.device))  # class rows count fully
    mask = None if mask is None else torch.cat(masks).to(device, torch.float32)
    return Batch(torch.cat(parts).to(device, torch.float32), torch.cat(geometries), captions, batch_size, mask)


def dreambooth_step_loss(models: Models, prompts: PromptBank, batch: Batch, prior_weight: float,
                         settings: TrainConfig | None = None) -> LossParts:
    """Noise the batch at random timesteps and return the (instance + weighted prior) loss.

    ``settings`` supplies the noise options (offset, timestep range, input perturbation) and Min-SNR's
    gamma; without it the step is plain DreamBooth.
    """
    settings = settings or TrainConfig()
    scheduler = models.noise_scheduler
    latents = batch.latents
    noise = training_noise(latents, settings.noise_offset)
    low, high = timestep_bounds(scheduler.config.num_train_timesteps, settings.min_timestep, settings.max_timestep)
    timesteps = sample_timesteps(latents.shape[0], low, high, latents.device)
    noisy = scheduler.add_noise(latents, perturbed(noise, settings.input_perturbation), timesteps)
    cond = prompts.get(batch.captions, grad=bool(models.trained_encoders))
    extra = models.family.unet_kwargs(cond, batch.geometry)
    pred = models.unet(noisy, timesteps, cond.embeds, return_dict=False, **extra)[0]
    kind = scheduler.config.prediction_type
    target = diffusion_target(kind, noise, latents, scheduler, timesteps)
    weights = None
    if settings.snr_gamma is not None:
        weights = min_snr_weights(snr(scheduler.alphas_cumprod, timesteps), settings.snr_gamma, kind)
    return dreambooth_loss(pred, target, batch.num_instance, prior_weight, weights, batch.mask)
