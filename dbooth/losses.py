"""The DreamBooth objective as small pure functions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def diffusion_target(prediction_type: str, noise: torch.Tensor, latents: torch.Tensor, scheduler, timesteps) -> torch.Tensor:
    """What the UNet should predict: the noise (epsilon) or the velocity (v-prediction)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unsupported prediction_type {prediction_type!r}; expected epsilon or v_prediction")


@dataclass
class LossParts:
    total: torch.Tensor
    instance: torch.Tensor
    prior: torch.Tensor | None


def dreambooth_loss(pred: torch.Tensor, target: torch.Tensor, num_instance: int, prior_weight: float) -> LossParts:
    """MSE on the first ``num_instance`` rows plus ``prior_weight`` x MSE on the rest (class images).

    With no class rows the prior term is absent (prior preservation off).
    """
    pred, target = pred.float(), target.float()
    instance = F.mse_loss(pred[:num_instance], target[:num_instance])
    if pred.shape[0] == num_instance:
        return LossParts(instance, instance, None)
    prior = F.mse_loss(pred[num_instance:], target[num_instance:])
    return LossParts(instance + prior_weight * prior, instance, prior)
