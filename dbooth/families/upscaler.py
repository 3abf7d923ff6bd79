"""The Stable Diffusion x4 upscaler: the paper's stage (b), a text-conditioned super-resolution model.

Its UNet sees the noisy latents of the high-resolution image with the low-resolution image itself
(3 pixel channels, noise-augmented by ``low_res_scheduler`` at ``noise_level``) concatenated along the
channels, and the noise level as ``class_labels``; the latents are as large as the low-resolution image
(the VAE scales by 4). ``upscaler_input`` is that input, built exactly as
``StableDiffusionUpscalePipeline.__call__`` builds it, so training matches inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbooth.families.sd import StableDiffusion

if TYPE_CHECKING:
    import torch

PIPELINE = "StableDiffusionUpscalePipeline"


def upscaler_input(noisy: torch.Tensor, low_res: torch.Tensor, noise: torch.Tensor, low_res_scheduler,
                   noise_level: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The UNet's sample and ``class_labels`` for noisy latents [B, 4, h, w] and low-resolution images
    [B, 3, h, w] in [-1, 1], with ``noise`` ([B, 3, h, w]) as the augmentation noise.

    Mirrors the pipeline: ``low_res_scheduler.add_noise(image, noise, noise_level)``, then
    ``cat([latents, image], dim=1)`` and ``class_labels=noise_level`` per row (the schedulers dbooth
    trains with add no input scaling, so ``scale_model_input`` is the identity here)."""
    import torch

    levels = torch.full((low_res.shape[0],), int(noise_level), dtype=torch.long, device=low_res.device)
    augmented = low_res_scheduler.add_noise(low_res, noise.to(low_res.dtype), levels)
    return torch.cat([noisy, augmented.to(noisy.dtype)], dim=1), levels


@dataclass
class LowResCondition:
    """How a run conditions its upscaler: the pipeline's ``low_res_scheduler`` at a fixed ``noise_level``."""

    scheduler: object  # DDPMScheduler: the pipeline's low_res_scheduler
    noise_level: int  # the augmentation timestep, the same in training and sampling
    factor: int  # high-resolution side / low-resolution side (the VAE's downscaling)

    @property
    def side_step(self) -> int:
        """High-resolution sides must be multiples of this: the pipeline rounds its low-resolution input
        down to a multiple of the VAE's factor, so the input side must be one already."""
        return self.factor * self.factor

    def pair_side(self, paths, resolution: int, reporter=None) -> int:
        """The target side for pairs cut from ``paths`` (class images): ``resolution``, or less when the
        smallest image is smaller, so no target is an enlarged (blurred) image."""
        from PIL import Image

        smallest = resolution
        for path in paths:
            with Image.open(path) as img:
                smallest = min(smallest, *img.size)
        side = smallest // self.side_step * self.side_step
        if side < self.side_step:
            from dbooth.util.errors import DboothError

            raise DboothError(f"class images of {smallest} px are too small for upscaler pairs (at least "
                              f"{self.side_step} px); generate larger ones or set upscaler.prior: false")
        if side < resolution and reporter is not None:
            reporter.info(f"class images are {smallest} px, below the upscaler's {resolution}: their pairs are "
                          f"{side} px targets from {side // self.factor} px inputs")
        return side

    def apply(self, noisy: torch.Tensor, low_res: torch.Tensor) -> tuple[torch.Tensor, dict]:
        import torch

        if low_res is None:
            raise ValueError("an upscaler batch needs its low-resolution images")
        noise = torch.randn(low_res.shape, device=low_res.device, dtype=low_res.dtype)
        sample, levels = upscaler_input(noisy, low_res, noise, self.scheduler, self.noise_level)
        return sample, {"class_labels": levels}


@dataclass(frozen=True)
class StableDiffusionUpscaler(StableDiffusion):
    def pipeline_extras(self) -> dict:
        return {"safety_checker": None, "feature_extractor": None, "watermarker": None}

    def low_res_condition(self, pipe, manifest) -> LowResCondition:
        from diffusers import DDPMScheduler

        from dbooth.util.errors import DboothError

        noise_level, resolution = manifest.upscaler.noise_level, manifest.train.resolution
        limit = int(pipe.config.get("max_noise_level", 350))
        if not 0 <= noise_level <= limit:
            raise DboothError(f"upscaler.noise_level is {noise_level}; this upscaler takes 0 to {limit}")
        factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        condition = LowResCondition(DDPMScheduler.from_config(pipe.low_res_scheduler.config), noise_level, factor)
        if resolution % condition.side_step:
            raise DboothError(f"upscaler.resolution {resolution} must be a multiple of {condition.side_step} "
                              f"(its input, {factor}x smaller, must itself be a multiple of {factor})")
        return condition

    def unet_inputs(self, noisy, cond, batch, low_res: LowResCondition | None):
        sample, extra = low_res.apply(noisy, batch.low_res)
        return sample, {**extra, **self.unet_kwargs(cond, batch.geometry)}

    def run_record(self, manifest) -> dict:
        return {"stage": self.stage, "noise_level": manifest.upscaler.noise_level,
                "resolution": manifest.train.resolution}


SD_X4_UPSCALER = StableDiffusionUpscaler(
    name="sd-x4-upscaler",
    title="Stable Diffusion x4 upscaler",
    pipeline_class_name=PIPELINE,
    default_resolution=512,  # the released model's training crops: 128 px in, 512 px out
    single_file_layout="",  # dbooth writes no original-layout file for it (see export.clients)
    kohya_base_version="",
    config_repo="stabilityai/stable-diffusion-x4-upscaler",
    stage="upscaler",
)
