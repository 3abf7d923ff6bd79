"""The built-in upscaler's architecture: a ``StableDiffusionUpscalePipeline`` sized for 2 CPU cores.

``builtin:shapes-x4`` takes ``builtin:shapes``' 64x64 images to 256x256, conditioned exactly as
``stabilityai/stable-diffusion-x4-upscaler`` is: the UNet sees the noisy latents (64x64x4: the VAE
downsamples by 4, so latents have the low-resolution image's size) concatenated with the
low-resolution image in -1..1 (3 channels), after that image was noised by ``low_res_scheduler`` at
``noise_level``; ``noise_level`` goes in as ``class_labels`` (embedded like a timestep here, so
every level in 0..350 is meaningful without a 1000-row table). v-prediction, the x4 upscaler's
noise schedule, and its fixed VAE ``scaling_factor`` 0.08333 (the VAE's latent scale is folded into
its weights so that this factor gives unit-variance latents).

The VAE, text encoder and tokenizer are ``builtin:shapes``' own (the text encoder frozen), so the same
captions condition both stages.
"""

from __future__ import annotations

import math

import torch

FACTOR = 4  # low-resolution side x FACTOR = high-resolution side
LOW_RES = 64  # builtin:shapes' image side
HIGH_RES = LOW_RES * FACTOR
MAX_NOISE_LEVEL = 350  # the x4 upscaler's: noise levels above this are refused by the pipeline
UPSCALE_SCALING_FACTOR = 0.08333  # StableDiffusionUpscalePipeline forces this value on its VAE


def build_unet(cross_attention_dim: int = 128):
    """1.5M parameters; cross-attention only at the lowest resolution (16x16 for a 256 px output)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=LOW_RES,
        in_channels=4 + 3,  # noisy latents + the noise-augmented low-resolution image
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=16,
        class_embed_type="timestep",  # noise_level arrives as class_labels, embedded like a timestep
    )


def build_train_scheduler():
    """The x4 upscaler's schedule: scaled_linear betas 0.0001-0.02 over 1000 steps, v-prediction."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.0001,
                         beta_end=0.02, steps_offset=1, clip_sample=False, prediction_type="v_prediction")


def build_low_res_scheduler():
    """Noise augmentation of the low-resolution image, as in the x4 upscaler (linear betas)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02)


@torch.no_grad()
def fold_latent_scale(vae, k: float) -> None:
    """Multiply the VAE's latents by ``k`` without changing what it encodes or decodes.

    The encoder's mean is scaled by ``k`` (its log-variance shifted by ``2 log k``, so the sampled
    latents scale too) and the decoder's first layer divides its input by ``k``: the round trip is
    unchanged, only the latent scale moves. Used so that the pipeline's fixed ``scaling_factor``
    gives latents of unit variance."""
    c = vae.config.latent_channels
    qc, pqc = vae.quant_conv, vae.post_quant_conv
    qc.weight[:c] *= k
    qc.bias[:c] *= k
    qc.bias[c:] += 2 * math.log(k)
    pqc.weight /= k


def assemble_pipeline(unet, vae, text_encoder, tokenizer):
    """The ``StableDiffusionUpscalePipeline`` from its parts, with a DPM++ sampler for few steps."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionUpscalePipeline

    vae.register_to_config(scaling_factor=UPSCALE_SCALING_FACTOR)
    scheduler = DPMSolverMultistepScheduler.from_config(build_train_scheduler().config)
    return StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        low_res_scheduler=build_low_res_scheduler(), scheduler=scheduler,
        safety_checker=None, feature_extractor=None, watermarker=None, max_noise_level=MAX_NOISE_LEVEL,
    )


__all__ = [
    "FACTOR", "HIGH_RES", "LOW_RES", "MAX_NOISE_LEVEL", "UPSCALE_SCALING_FACTOR", "assemble_pipeline",
    "build_low_res_scheduler", "build_train_scheduler", "build_unet", "fold_latent_scale",
]
