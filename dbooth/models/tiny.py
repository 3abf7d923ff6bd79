"""Tiny Stable-Diffusion-shaped components built in code, for tests and offline smoke runs.

Same classes and code paths as Stable Diffusion 1.x (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, CLIPTokenizer), only a few hundred thousand parameters each.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel

from dbooth.models.loading import compose_pipeline
from dbooth.models.tokenizer import build_word_tokenizer

TINY_WORDS = (
    "a photo of the in on with and sks zwx dog cat star circle beach snow "
    "background city mountain water floor wooden pink fabric jungle floating top"
).split()


def tiny_pipeline(seed: int = 0, sample_size: int = 16) -> StableDiffusionPipeline:
    """A randomly initialised tiny StableDiffusionPipeline (VAE downsamples by 2)."""
    torch.manual_seed(seed)
    tokenizer = build_word_tokenizer(TINY_WORDS, model_max_length=16)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=sample_size * 2,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    train_sched = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
    )
    scheduler = DPMSolverMultistepScheduler.from_config(train_sched.config, steps_offset=1)
    return compose_pipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)


def save_tiny_pipeline(path: str | Path, seed: int = 0, sample_size: int = 16) -> Path:
    path = Path(path)
    tiny_pipeline(seed=seed, sample_size=sample_size).save_pretrained(path, safe_serialization=True)
    return path
