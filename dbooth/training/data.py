"""Training images as latents.

The VAE is always frozen, so with ``cache_latents`` each image is encoded once (a few
augmented variants when random crop/flip are on) and every step only samples from the
cached latent distribution. Without caching, images are augmented and encoded each step.
Each latent comes with its geometry (original size, crop offset, target size), which SDXL
conditions on and the other families ignore, and for the upscaler (``low_res_factor``) with the same
view shrunk by that factor: the low-resolution image it learns to enlarge, cached beside the latents.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import NamedTuple

import torch

from dbooth.training.buckets import nearest_bucket
from dbooth.util.images import crop_like, load_mask, load_rgb, resize_and_crop_with_geometry, shrink, to_tensor

CACHED_VARIANTS = 8  # augmented views per image when random crop or flip is on
ENCODE_PIXELS = 8 * 512 * 512  # pixels per VAE call when caching: 8 images at 512 px


def encode_batch_for(resolution: int) -> int:
    """Images per VAE call when caching latents. The encoder's activations grow with the pixel count
    (~0.33 GB per 512 px image in bf16, ~1.3 GB at 1024 px, measured on the CPU), and caching runs with
    the UNet already on the device: 8 at a time at 1024 px would add ~10 GB to SDXL's set-up peak."""
    return max(1, min(8, ENCODE_PIXELS // (resolution * resolution)))


def latent_mask(pixel_mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A [B, 1, H, W] pixel mask in [0, 1] at latent size [B, 1, h, w]: each latent cell gets the share of
    subject in the pixels it encodes (area averaging), so a soft edge stays soft."""
    return torch.nn.functional.interpolate(pixel_mask.float(), size=size, mode="area")


def mask_tensor(img) -> torch.Tensor:
    """[1, H, W] float in [0, 1] from an "L" mask image (255 = subject)."""
    import numpy as np

    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]


class Drawn(NamedTuple):
    latents: torch.Tensor  # [B, C, h, w], scaled as the UNet expects
    geometry: torch.Tensor  # [B, 6]
    masks: torch.Tensor | None  # [B, 1, h, w], None when no image has a mask
    low_res: torch.Tensor | None  # [B, 3, H/f, W/f] in [-1, 1] with a low_res_factor, else None


class LatentBank:
    """Training images (subject photos or class images) as VAE latents, each with its geometry and,
    for photos with a NAME.mask.png, a loss mask at latent size.

    With ``buckets`` (width, height) each image is cut to the bucket nearest its aspect ratio; without
    them every image is cut to a ``resolution`` square. Images of one bucket share a latent shape, so a
    batch must come from one bucket (``draw_batch`` sees to it)."""

    def __init__(self, paths: list[Path], vae, *, resolution: int, crop: str, flip: bool, cache: bool,
                 seed: int, device: torch.device, dtype: torch.dtype, encode_batch: int | None = None,
                 masks: list[Path | None] | None = None, buckets: list[tuple[int, int]] | None = None,
                 low_res_factor: int | None = None, normalize=None):
        if not paths:
            raise ValueError("LatentBank needs at least one image")
        self.paths = list(paths)
        self.vae = vae
        self.resolution, self.crop, self.flip = resolution, crop, flip
        self.device, self.dtype = device, dtype
        self.cache = cache
        self.low_res_factor = low_res_factor
        self.low_res: list[torch.Tensor] | None = None
        self.images = [load_rgb(p) for p in self.paths]
        self.targets = [nearest_bucket(*img.size, buckets) if buckets else (resolution, resolution)
                        for img in self.images]
        self.masks = [load_mask(m) if m is not None else None for m in masks] if masks and any(masks) else None
        self.rng = random.Random(seed)
        self.scaling = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
        self.shift = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)
        self.normalize = normalize  # the family's own latent normalisation (Family.latent_normalizer), if any
        self.mean = self.std = self.geometry = self.latent_masks = None
        if cache:
            self._encode_all(encode_batch)

    def _encode_all(self, encode_batch: int | None) -> None:
        augmented = self.crop == "random" or self.flip
        variants = CACHED_VARIANTS if augmented else 1
        views = [self._augment(i, v) for i in range(len(self.images)) for v in range(variants)]
        by_shape: dict[tuple, list[int]] = {}
        for k, (pixels, *_) in enumerate(views):
            by_shape.setdefault(tuple(pixels.shape), []).append(k)
        means: list = [None] * len(views)
        stds: list = [None] * len(views)
        with torch.no_grad():
            for shape, members in by_shape.items():
                per_call = encode_batch or encode_batch_for(int((shape[1] * shape[2]) ** 0.5))
                for chunk in [members[i:i + per_call] for i in range(0, len(members), per_call)]:
                    pixels = torch.stack([views[k][0] for k in chunk])
                    dist = self.vae.encode(pixels.to(self.device, self.dtype)).latent_dist
                    for k, m, s in zip(chunk, dist.mean.float(), dist.std.float()):
                        means[k], stds[k] = m, s
        # per image: [V, C, h, w] (shapes differ between buckets), [V, 6] geometry, [V, 1, h, w] mask
        self.mean = [torch.stack(means[i * variants:(i + 1) * variants]) for i in range(len(self.images))]
        self.std = [torch.stack(stds[i * variants:(i + 1) * variants]) for i in range(len(self.images))]
        self.geometry = torch.tensor([v[1] for v in views]).reshape(len(self.images), variants, 6)
        if self.low_res_factor:
            self.low_res = [torch.stack([views[i * variants + v][3] for v in range(variants)])
                            for i in range(len(self.images))]
        if self.masks is not None:
            self.latent_masks = [latent_mask(torch.stack([views[i * variants + v][2] for v in range(variants)]),
                                             tuple(self.mean[i].shape[-2:])) for i in range(len(self.images))]
        self.images = self.masks = None  # pixels no longer needed

    def __len__(self) -> int:
        return len(self.paths)

    def groups(self) -> list[list[int]]:
        """Image indices by bucket, in order of first appearance; one group without buckets."""
        found: dict[tuple[int, int], list[int]] = {}
        for i, target in enumerate(self.targets):
            found.setdefault(target, []).append(i)
        return list(found.values())

    def _augment(self, index: int, variant: int) -> tuple:
        flip = self.flip and (variant % 2 == 1)
        return self._view(index, self.rng, flip)

    def _view(self, index: int, rng: random.Random, flip: bool) -> tuple:
        """Pixels, geometry, (with masks) the pixel mask cut exactly like the pixels, and (with a
        ``low_res_factor``) the shrunk view."""
        view, geometry = resize_and_crop_with_geometry(self.images[index], self.resolution, crop=self.crop,
                                                       rng=rng, flip=flip, target=self.targets[index])
        mask = None
        if self.masks is not None:
            source = self.masks[index]
            mask = (mask_tensor(crop_like(source, geometry, flip=flip)) if source is not None
                    else torch.ones(1, view.size[1], view.size[0]))
        low = to_tensor(shrink(view, self.low_res_factor)) if self.low_res_factor else None
        return to_tensor(view), geometry, mask, low

    def sample(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Latents (scaled as the UNet expects) for the given image indices, their [B, 6] geometry, and
        their [B, 1, h, w] loss masks (None when no image has a mask). All indices must share a target."""
        return self.draw(indices)[:3]

    def draw(self, indices: torch.Tensor) -> Drawn:
        """``sample`` plus, for an upscaler, the low-resolution views of the same crops.

        Uses torch's RNG, so a resumed run draws the same latents as an uninterrupted one."""
        low_res = None
        if self.mean is not None:
            variant = torch.randint(0, self.mean[0].shape[0], (len(indices),))
            rows = [(int(i), int(v)) for i, v in zip(indices, variant)]
            mean = torch.stack([self.mean[i][v] for i, v in rows])
            std = torch.stack([self.std[i][v] for i, v in rows])
            latents = mean + std * torch.randn(mean.shape, device=mean.device, dtype=mean.dtype)
            geometry = self.geometry[indices, variant]
            masks = None if self.latent_masks is None else torch.stack([self.latent_masks[i][v] for i, v in rows])
            if self.low_res is not None:
                low_res = torch.stack([self.low_res[i][v] for i, v in rows])
        else:
            views = [self._random_view(int(i)) for i in indices]
            pixels = torch.stack([v[0] for v in views]).to(self.device, self.dtype)
            with torch.no_grad():
                latents = self.vae.encode(pixels).latent_dist.sample().float()
            geometry = torch.tensor([v[1] for v in views])
            masks = None
            if self.masks is not None:
                masks = latent_mask(torch.stack([v[2] for v in views]), tuple(latents.shape[-2:]))
            if self.low_res_factor:
                low_res = torch.stack([v[3] for v in views])
        latents = (self.normalize(latents) if self.normalize else (latents - self.shift) * self.scaling).to(self.device)
        return Drawn(latents, geometry, None if masks is None else masks.to(self.device),
                     None if low_res is None else low_res.to(self.device))

    def _random_view(self, index: int) -> tuple:
        flip = self.flip and torch.rand(()).item() < 0.5
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        return self._view(index, random.Random(seed), flip)

    def to(self, device: torch.device) -> LatentBank:
        if self.mean is not None:
            self.mean = [m.to(device) for m in self.mean]
            self.std = [s.to(device) for s in self.std]
            if self.latent_masks is not None:
                self.latent_masks = [m.to(device) for m in self.latent_masks]
            if self.low_res is not None:
                self.low_res = [x.to(device) for x in self.low_res]
        return self
