"""How a training step noises its latents: offset noise, the timestep range and input perturbation.

Each draws from torch's global RNG only when switched on, so a run with them off draws exactly the
numbers it drew before they existed (and a resumed run the same numbers as an uninterrupted one).
"""

from __future__ import annotations

import torch

from dbooth.util.errors import DboothError


def training_noise(latents: torch.Tensor, offset: float) -> torch.Tensor:
    """Gaussian noise shaped like ``latents`` plus ``offset`` x one Gaussian per image and channel.

    The per-channel constant shifts whole images' brightness and colour, which plain noise at the
    last timestep almost never does; without it a model cannot learn very dark or very bright images
    (Guttenberg 2023, "Diffusion with offset noise").
    """
    # torch.randn, not randn_like: randn_like follows the latents' memory layout, and a strided fill draws
    # the random stream in another order, so the same seed would give other noise after a layout change
    noise = torch.randn(latents.shape, device=latents.device, dtype=latents.dtype)
    if offset:
        noise = noise + offset * torch.randn(latents.shape[:2] + (1,) * (latents.dim() - 2),
                                             device=latents.device, dtype=latents.dtype)
    return noise


def perturbed(noise: torch.Tensor, strength: float) -> torch.Tensor:
    """The noise actually mixed into the latents under input perturbation (Ning et al. 2023).

    The target stays the unperturbed noise: the model learns to correct the small mismatch between
    training inputs and its own imperfect inputs at sampling time (exposure bias).
    """
    if not strength:
        return noise
    return noise + strength * torch.randn(noise.shape, device=noise.device, dtype=noise.dtype)


def timestep_bounds(num_train_timesteps: int, min_timestep: int, max_timestep: int | None) -> tuple[int, int]:
    """The half-open range [low, high) timesteps are drawn from; ``None`` means the schedule's end."""
    high = num_train_timesteps if max_timestep is None else max_timestep
    if high > num_train_timesteps:
        raise DboothError(f"train.max_timestep: {high} is past the model's {num_train_timesteps} training timesteps")
    if min_timestep >= high:
        raise DboothError(f"train.min_timestep ({min_timestep}) must be below train.max_timestep ({high})")
    return min_timestep, high


def sample_timesteps(n: int, low: int, high: int, device: torch.device) -> torch.Tensor:
    """``n`` timesteps uniformly from [low, high)."""
    return torch.randint(low, high, (n,), device=device).long()
