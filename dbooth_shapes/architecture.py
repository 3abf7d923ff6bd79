"""The built-in model's architecture: SD-1.x component classes, sized for 2 CPU cores.

64x64 RGB images, a VAE that downsamples by 4 to 16x16x4 latents, a ~6.7M-parameter UNet
and a 3-layer CLIP text encoder. Sizes were picked by timing: a UNet forward+backward at
batch 2 takes ~0.1 s on 2 cores, so a DreamBooth run of a few hundred steps fits a demo.
"""

from __future__ import annotations

from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from dbooth_shapes.world import IMAGE_SIZE, world_words
from dbooth.families.loading import compose_pipeline
from dbooth.families.tokenizer import build_word_tokenizer

# Rare identifiers for DreamBooth subjects; they are in the vocabulary but never in pretraining captions.
IDENTIFIER_TOKENS = ("sks", "zwx", "qlt", "vyr", "pxo", "mkv")
MAX_TOKENS = 20
LATENT_SIZE = IMAGE_SIZE // 4
TEXT_DIM = 128


def build_tokenizer() -> CLIPTokenizer:
    """One token per world word and identifier (``build_word_tokenizer`` orders the merges so
    that no word splits)."""
    return build_word_tokenizer(world_words() + list(IDENTIFIER_TOKENS), model_max_length=MAX_TOKENS)


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_DIM,
            intermediate_size=TEXT_DIM * 2,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def build_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=16,
        sample_size=IMAGE_SIZE,
    )


def build_unet() -> UNet2DConditionModel:
    # Cross-attention at 8x8 and 4x4 only: attention at 16x16 cost more than it helped on CPU.
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(48, 96, 128),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,
        norm_num_groups=16,
    )


def build_train_scheduler() -> DDPMScheduler:
    """Stable Diffusion's noise schedule, so DreamBooth recipes carry over unchanged."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        clip_sample=False,
        prediction_type="epsilon",
    )


def assemble_pipeline(unet, vae, text_encoder, tokenizer) -> StableDiffusionPipeline:
    scheduler = DPMSolverMultistepScheduler.from_config(build_train_scheduler().config)
    return compose_pipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)


def random_pipeline(seed: int = 0):
    """The ``builtin:shapes`` architecture with random weights (for when its weights are not built)."""
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    return assemble_pipeline(build_unet(), build_vae(), build_text_encoder(tokenizer), tokenizer)
