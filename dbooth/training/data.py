"""Training images as latents.

The VAE is always frozen, so with ``cache_latents`` each image is encoded once (a few
augmented variants when random crop/flip are on) and every step only samples from the
cached latent distribution. Without caching, images are augmented and encoded each step.
Each latent comes with its geometry (original size, crop offset, target size), which SDXL
conditions on and the other families ignore.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from dbooth.images import load_rgb, resize_and_crop_with_geometry, to_tensor

CACHED_VARIANTS = 8  # augmented views per image when random crop or flip is on
ENCODE_PIXELS = 8 * 512 * 512  # pixels per VAE call when caching: 8 images at 512 px


def encode_batch_for(resolution: int) -> int:
    """Images per VAE call when caching latents. The encoder's activations grow with the pixel count
    (~0.33 GB per 512 px image in bf16, ~1.3 GB at 1024 px, measured on the CPU), and caching runs with
    the UNet already on the device: 8 at a time at 1024 px would add ~10 GB to SDXL's set-up peak."""
    return max(1, min(8, ENCODE_PIXELS // (resolution * resolution)))


class LatentBank:
    def __init__(self, paths: list[Path], vae, *, resolution: int, crop: str, flip: bool, cache: bool,
                 seed: int, device: torch.device, dtype: torch.dtype, encode_batch: int | None = None):
        if not paths:
            raise ValueError("LatentBank needs at least one image")
        self.paths = list(paths)
        self.vae = vae
        self.resolution, self.crop, self.flip = resolution, crop, flip
        self.device, self.dtype = device, dtype
        self.cache = cache
        self.images = [load_rgb(p) for p in self.paths]
        self.rng = random.Random(seed)
        self.scaling = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
        self.shift = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)
        self.mean = self.std = self.geometry = None
        if cache:
            augmented = crop == "random" or flip
            variants = CACHED_VARIANTS if augmented else 1
            views = [self._augment(img, v) for img in self.images for v in range(variants)]
            pixels = torch.stack([pixels for pixels, _ in views])  # [N*V, 3, H, W]
            means, stds = [], []
            with torch.no_grad():
                for chunk in pixels.split(encode_batch or encode_batch_for(resolution)):
                    dist = vae.encode(chunk.to(device, dtype)).latent_dist
                    means.append(dist.mean.float())
                    stds.append(dist.std.float())
            shape = (len(self.images), variants) + means[0].shape[1:]
            self.mean = torch.cat(means).reshape(shape)
            self.std = torch.cat(stds).reshape(shape)
            self.geometry = torch.tensor([g for _, g in views]).reshape(len(self.images), variants, 6)
            self.images = None  # pixels no longer needed

    def __len__(self) -> int:
        return len(self.paths)

    def _augment(self, img, variant: int) -> tuple[torch.Tensor, tuple]:
        flip = self.flip and (variant % 2 == 1)
        view, geometry = resize_and_crop_with_geometry(img, self.resolution, crop=self.crop, rng=self.rng, flip=flip)
        return to_tensor(view), geometry

    def sample(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents (scaled as the UNet expects) for the given image indices, and their [B, 6] geometry.

        Uses torch's RNG, so a resumed run draws the same latents as an uninterrupted one."""
        if self.mean is not None:
            variant = torch.randint(0, self.mean.shape[1], (len(indices),))
            mean = self.mean[indices, variant]
            std = self.std[indices, variant]
            latents = mean + std * torch.randn(mean.shape, device=mean.device, dtype=mean.dtype)
            geometry = self.geometry[indices, variant]
        else:
            views = [self._random_view(int(i)) for i in indices]
            pixels = torch.stack([pixels for pixels, _ in views]).to(self.device, self.dtype)
            with torch.no_grad():
                latents = self.vae.encode(pixels).latent_dist.sample().float()
            geometry = torch.tensor([g for _, g in views])
        return ((latents - self.shift) * self.scaling).to(self.device), geometry

    def _random_view(self, index: int) -> tuple[torch.Tensor, tuple]:
        flip = self.flip and torch.rand(()).item() < 0.5
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        view, geometry = resize_and_crop_with_geometry(self.images[index], self.resolution, crop=self.crop,
                                                       rng=random.Random(seed), flip=flip)
        return to_tensor(view), geometry

    def to(self, device: torch.device) -> "LatentBank":
        if self.mean is not None:
            self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self
