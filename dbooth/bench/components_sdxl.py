"""Stable-Diffusion-XL-shaped components with random weights, built from config alone.

SDXL base 1.0's published component configs: a 2.57B-parameter UNet with three levels (no attention
in the first, 2 and 10 transformer layers in the others) and ``text_time`` added conditioning; SD's
VAE with SDXL's scaling factor; CLIP ViT-L (as SD 1.5's) and OpenCLIP ViT-bigG with a projection as
the two text encoders. As in ``components``, only the tokenizers are stand-ins built from a word list.

The whole pipeline is ~3.47B parameters: ~14 GB in float32. Build it only where that fits; tests
build these models on the meta device.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from dbooth.bench.components import BENCH_WORDS, SD15_TEXT, SD15_VAE
from dbooth.families.tokenizer import build_word_tokenizer

SDXL_UNET = dict(
    sample_size=128,  # 1024 px / 8
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),  # diffusers' name for the head count here: 64-wide heads throughout
    cross_attention_dim=2048,  # both encoders' hidden states side by side: 768 + 1280
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,  # 6 size/crop ids x 256 + the 1280-wide pooled embedding
    norm_num_groups=32,
    norm_eps=1e-5,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
    downsample_padding=1,
)

# SD's VAE architecture; SDXL retrained it with a different latent scale, and it overflows in fp16
SDXL_VAE = {**SD15_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}

SDXL_TEXT = dict(SD15_TEXT)  # CLIP ViT-L/14, exactly SD 1.5's encoder

SDXL_TEXT_2 = dict(  # OpenCLIP ViT-bigG/14 text tower, as CLIPTextModelWithProjection
    vocab_size=49408,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    max_position_embeddings=77,
    hidden_act="gelu",  # OpenCLIP uses plain GELU, OpenAI's CLIP quick_gelu
    projection_dim=1280,
    layer_norm_eps=1e-5,
)

# The published scheduler_config.json's keys that EulerDiscreteScheduler takes (it also lists
# clip_sample, set_alpha_to_one, skip_prk_steps and sample_max_value, which Euler ignores).
SDXL_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    beta_end=0.012,
    prediction_type="epsilon",
    interpolation_type="linear",
    use_karras_sigmas=False,
    timestep_spacing="leading",
    steps_offset=1,
)

# Parameter counts of the released SDXL base 1.0 weights, for checking that the configs above are exact.
SDXL_PARAMETERS = {
    "unet": 2_567_463_684,
    "vae": 83_653_863,
    "text_encoder": 123_060_480,
    "text_encoder_2": 694_659_840,
}


def sdxl_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(**SDXL_UNET)


def sdxl_vae() -> AutoencoderKL:
    return AutoencoderKL(**SDXL_VAE)


def sdxl_tokenizers():
    """CLIP's and OpenCLIP's tokenizers differ only in padding: OpenCLIP pads with '!' (SDXL's tokenizer_2)."""
    length = SDXL_TEXT["max_position_embeddings"]
    first = build_word_tokenizer(BENCH_WORDS, model_max_length=length)
    second = build_word_tokenizer(BENCH_WORDS, model_max_length=length)
    second.pad_token = "!"
    return first, second


def _text_config(config: dict, tokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(**config, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)


def sdxl_text_encoders(tokenizers=None) -> tuple[CLIPTextModel, CLIPTextModelWithProjection]:
    first, second = tokenizers or sdxl_tokenizers()
    return (CLIPTextModel(_text_config(SDXL_TEXT, first)),
            CLIPTextModelWithProjection(_text_config(SDXL_TEXT_2, second)))


def sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """A randomly initialised SDXL-shaped pipeline in float32 on the CPU (about 14 GB, minutes to build)."""
    torch.manual_seed(seed)
    tokenizers = sdxl_tokenizers()
    text_encoder, text_encoder_2 = sdxl_text_encoders(tokenizers)
    pipe = StableDiffusionXLPipeline(
        vae=sdxl_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizers[0],
        tokenizer_2=tokenizers[1],
        unet=sdxl_unet(),
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def meta_sdxl_models() -> dict[str, torch.nn.Module]:
    """The SDXL components on the meta device: shapes and parameter counts without memory or init time."""
    tokenizers = sdxl_tokenizers()
    with torch.device("meta"):
        text_encoder, text_encoder_2 = sdxl_text_encoders(tokenizers)
        return {"unet": sdxl_unet(), "vae": sdxl_vae(), "text_encoder": text_encoder,
                "text_encoder_2": text_encoder_2}


def meta_sdxl_parameter_counts() -> dict[str, int]:
    return {name: sum(p.numel() for p in m.parameters()) for name, m in meta_sdxl_models().items()}
