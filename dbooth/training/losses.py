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


def snr(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) of each timestep's noisy latents."""
    abar = alphas_cumprod.to(timesteps.device)[timesteps].float()
    return abar / (1 - abar)


def min_snr_weights(snr_values: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023), one per row.

    The weight min(SNR, gamma) / SNR on the noise error equals min(SNR, gamma) on the error of the
    clean latents: low-noise timesteps, which teach little but dominate the gradient, are capped at
    gamma. A velocity error is (SNR + 1) x the clean-latent error, hence min(SNR, gamma) / (SNR + 1).
    """
    if prediction_type == "epsilon":
        # min(SNR, g) / SNR, written so a zero-SNR timestep weighs 1 instead of 0/0
        return (gamma / snr_values).clamp(max=1.0)
    if prediction_type == "v_prediction":
        return snr_values.clamp(max=gamma) / (snr_values + 1)
    raise ValueError(f"unsupported prediction_type {prediction_type!r}; expected epsilon or v_prediction")


@dataclass
class LossParts:
    total: torch.Tensor
    instance: torch.Tensor
    prior: torch.Tensor | None


def row_errors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Each row's mean squared error; with a [B, 1, h, w] ``mask`` the mean over the masked area only.

    The masked mean is sum(mask * err) / sum(mask) over every channel, so a photo whose subject fills a
    tenth of the frame weighs as much as one it fills, and an all-ones mask gives the plain mean."""
    err = (pred.float() - target.float()).pow(2)
    if mask is None:
        return err.flatten(1).mean(dim=1)
    weight = mask.float().expand_as(err)
    return (err * weight).flatten(1).sum(dim=1) / weight.flatten(1).sum(dim=1).clamp_min(1e-8)


def dreambooth_loss(pred: torch.Tensor, target: torch.Tensor, num_instance: int, prior_weight: float,
                    weights: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> LossParts:
    """MSE on the first ``num_instance`` rows plus ``prior_weight`` x MSE on the rest (class images).

    With no class rows the prior term is absent (prior preservation off). ``weights`` (one per row,
    e.g. ``min_snr_weights``) scale each row's MSE before the rows are averaged; ``mask`` (one
    [1, h, w] map per row, ones on class rows) makes each row's MSE a masked mean (``row_errors``).
    """
    pred, target = pred.float(), target.float()
    if weights is None and mask is None:
        def mse(rows: slice) -> torch.Tensor:
            return F.mse_loss(pred[rows], target[rows])
    else:
        per_row = row_errors(pred, target, mask)
        if weights is not None:
            per_row = per_row * weights.float()

        def mse(rows: slice) -> torch.Tensor:
            return per_row[rows].mean()
    instance = mse(slice(0, num_instance))
    if pred.shape[0] == num_instance:
        return LossParts(instance, instance, None)
    prior = mse(slice(num_instance, None))
    return LossParts(instance + prior_weight * prior, instance, prior)


def loss_from_rows(instance_rows: torch.Tensor, prior_rows: torch.Tensor, prior_weight: float) -> LossParts:
    """``dreambooth_loss`` from per-row errors already computed (``row_errors``, times any weights), for a
    batch whose instance and class rows have different shapes and so went through the UNet apart."""
    instance, prior = instance_rows.mean(), prior_rows.mean()
    return LossParts(instance + prior_weight * prior, instance, prior)
