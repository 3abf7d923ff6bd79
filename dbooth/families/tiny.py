"""Tiny Stable-Diffusion-shaped components built in code, for tests and offline smoke runs.

Same classes and code paths as Stable Diffusion 1.x, 2.x, XL and the x4 upscaler (UNet2DConditionModel,
AutoencoderKL, CLIPTextModel[WithProjection], CLIPTokenizer), only a few hundred thousand parameters each.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionUpscalePipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from dbooth.families.loading import compose_pipeline
from dbooth.families.tokenizer import build_word_tokenizer

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
    vae = _tiny_vae(sample_size)
    text_encoder = CLIPTextModel(_clip_config(tokenizer, hidden_size=32))
    scheduler = DPMSolverMultistepScheduler.from_config(_train_schedule().config, steps_offset=1)
    return compose_pipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)


def tiny_sd2_pipeline(
    seed: int = 0, sample_size: int = 16, prediction_type: str = "v_prediction"
) -> StableDiffusionPipeline:
    """SD 2.x-shaped: OpenCLIP-style text encoder (GELU, no projection), linear transformer projections,
    per-level head counts and a v-prediction schedule (as SD 2.x 768-v)."""
    torch.manual_seed(seed)
    tokenizer = build_word_tokenizer(TINY_WORDS, model_max_length=16)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        norm_num_groups=8,
    )
    vae = _tiny_vae(sample_size)
    text_encoder = CLIPTextModel(_clip_config(tokenizer, hidden_size=32, hidden_act="gelu"))
    scheduler = EulerDiscreteScheduler.from_config(
        _train_schedule().config, prediction_type=prediction_type, steps_offset=1, timestep_spacing="leading"
    )
    return compose_pipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)


def tiny_sdxl_pipeline(
    seed: int = 0, sample_size: int = 16, prediction_type: str = "epsilon"
) -> StableDiffusionXLPipeline:
    """SDXL-shaped: two text encoders (CLIP-L-like, and an OpenCLIP-like one with a projection), no attention
    in the first level, two transformer layers in the second, and the ``text_time`` added conditioning.

    The encoders' widths differ (32 and 48) as in SDXL (768 and 1280): single-file loaders tell them apart
    by width. Cross-attention width is their sum; the added embedding takes 6 time ids x 8 + the 32-wide
    pooled projection = 80.
    """
    torch.manual_seed(seed)
    tokenizer = build_word_tokenizer(TINY_WORDS, model_max_length=16)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=80,
        norm_num_groups=8,
    )
    vae = _tiny_vae(sample_size)
    text_encoder = CLIPTextModel(_clip_config(tokenizer, hidden_size=32))
    text_encoder_2 = CLIPTextModelWithProjection(
        _clip_config(tokenizer, hidden_size=48, hidden_act="gelu", projection_dim=32)
    )
    scheduler = EulerDiscreteScheduler.from_config(
        _train_schedule().config, prediction_type=prediction_type, steps_offset=1, timestep_spacing="leading"
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )


def tiny_upscaler_pipeline(seed: int = 0, sample_size: int = 16) -> StableDiffusionUpscalePipeline:
    """x4-upscaler-shaped: UNet input = 4 latent + 3 low-resolution image channels, the noise level as
    ``class_labels`` (``num_class_embeds`` 1000, as the released model), cross-attention only in the first
    attention level, a VAE that scales by 4 with scaling factor 0.08333, an OpenCLIP-style text encoder,
    a v-prediction DDIM schedule and the DDPM ``low_res_scheduler``. ``sample_size`` is the latent (= low-res
    image) side: 16 gives 64 px outputs."""
    torch.manual_seed(seed)
    tokenizer = build_word_tokenizer(TINY_WORDS, model_max_length=16)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=7,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        only_cross_attention=(True, False),
        num_class_embeds=1000,
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=sample_size * 4,
        scaling_factor=0.08333,
    )
    text_encoder = CLIPTextModel(_clip_config(tokenizer, hidden_size=32, hidden_act="gelu"))
    betas = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02)
    pipe = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        low_res_scheduler=DDPMScheduler(**betas),
        scheduler=DDIMScheduler(**betas, prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False),
        max_noise_level=350,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_upscaler(path: str | Path, seed: int = 0, sample_size: int = 16) -> Path:
    path = Path(path)
    tiny_upscaler_pipeline(seed=seed, sample_size=sample_size).save_pretrained(path, safe_serialization=True)
    return path


def _tiny_vae(sample_size: int) -> AutoencoderKL:
    return AutoencoderKL(
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


def _clip_config(tokenizer, *, hidden_size: int, **extra) -> CLIPTextConfig:
    """OpenAI CLIP uses quick_gelu (the default here); OpenCLIP encoders (SD 2.x, SDXL's second) use gelu."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def _train_schedule() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def save_tiny_pipeline(path: str | Path, seed: int = 0, sample_size: int = 16) -> Path:
    path = Path(path)
    tiny_pipeline(seed=seed, sample_size=sample_size).save_pretrained(path, safe_serialization=True)
    return path
