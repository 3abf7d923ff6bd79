"""Stable-Diffusion-1.5-shaped components with random weights, built from config alone.

Speed and memory depend on shapes, not on weight values, so a random SD 1.5 measures what
the real one would, with no download. The configs below are SD 1.5's published component
configs (UNet 859.5M, VAE 83.7M, CLIP ViT-L/14 text encoder 123.1M parameters); only the
tokenizer differs: it is built offline from a word list, so prompts use few, short tokens.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from dbooth.families.loading import compose_pipeline
from dbooth.families.tokenizer import build_word_tokenizer

# Words the bench workspaces use in prompts; everything else tokenizes letter by letter.
BENCH_WORDS = "a photo of sks zwx dog cat person toy shape on the beach in snow".split()

SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
    downsample_padding=1,
)

SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    act_fn="silu",
    sample_size=512,
    scaling_factor=0.18215,
)

SD15_TEXT = dict(
    vocab_size=49408,  # CLIP's BPE vocabulary; the embedding table is 38M of the 123M parameters
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
    layer_norm_eps=1e-5,
)

SD15_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    beta_end=0.012,
    steps_offset=1,
    skip_prk_steps=True,
    set_alpha_to_one=False,
)

# Parameter counts of the released SD 1.5 weights, for checking that the configs above are exact.
SD15_PARAMETERS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}


def sd15_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(**SD15_UNET)


def sd15_vae() -> AutoencoderKL:
    return AutoencoderKL(**SD15_VAE)


def sd15_text_encoder(tokenizer=None) -> CLIPTextModel:
    tokenizer = tokenizer or sd15_tokenizer()
    return CLIPTextModel(
        CLIPTextConfig(
            **SD15_TEXT,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def sd15_tokenizer():
    return build_word_tokenizer(BENCH_WORDS, model_max_length=SD15_TEXT["max_position_embeddings"])


def sd15_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """A randomly initialised SD-1.5-shaped pipeline in float32 on the CPU (about 4.3 GB)."""
    torch.manual_seed(seed)
    tokenizer = sd15_tokenizer()
    return compose_pipeline(
        vae=sd15_vae(),
        text_encoder=sd15_text_encoder(tokenizer),
        tokenizer=tokenizer,
        unet=sd15_unet(),
        scheduler=PNDMScheduler(**SD15_SCHEDULER),
    )


def save_pipeline(pipe: StableDiffusionPipeline, path: str | Path) -> Path:
    """Save as a diffusers folder that ``base_model: <folder>`` loads; written once, reused after."""
    path = Path(path)
    if (path / "model_index.json").is_file():
        return path
    from dbooth.util.fsutil import atomic_path

    with atomic_path(path) as tmp:
        pipe.save_pretrained(str(tmp), safe_serialization=True)
    return path


@contextlib.contextmanager
def _meta_device():
    with torch.device("meta"):
        yield


def meta_parameter_counts() -> dict[str, int]:
    """Parameter counts of the SD 1.5 configs, built on the meta device (no memory, no init time)."""
    with _meta_device():
        tokenizer = sd15_tokenizer()
        parts = {"unet": sd15_unet(), "vae": sd15_vae(), "text_encoder": sd15_text_encoder(tokenizer)}
    return {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}
