"""Tiny FLUX.2 [klein]- and Z-Image-shaped pipelines built in code, for tests and offline smoke runs.

The same classes and code paths as the real models: a Qwen3 language model as the text encoder with a Qwen2
byte-level tokenizer and Qwen3's chat template (built offline), Flux2Transformer2DModel with
AutoencoderKLFlux2 (latents patchified 2x2 and normalised by the VAE's batch-norm statistics) for klein,
ZImageTransformer2DModel with a FLUX-style AutoencoderKL for Z-Image, and each model's flow-matching
scheduler settings. A few hundred thousand parameters each.

klein's encoder is 28 layers deep (16 wide) so that the pipeline's default text layers (9, 18, 27) exist and
are intermediate layers, as they are in Qwen3-4B/8B (36 layers).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Transformer2DModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

from dbooth.families.tiny import TINY_WORDS
from dbooth.families.tokenizer import build_qwen_tokenizer

LM_WIDTH = 16  # the tiny Qwen3's hidden size
KLEIN_LM_LAYERS = 28  # deep enough for klein's text layers (9, 18, 27)
KINDS = ("flux2-klein", "flux2-klein-base", "zimage", "zimage-base")


def tiny_klein_pipeline(seed: int = 0, *, distilled: bool = True) -> Flux2KleinPipeline:
    """FLUX.2 [klein]-shaped: one double and one single block on 2x2-patchified 4-channel latents (16 packed
    channels), three Qwen3 layers side by side as the context (48 wide), no guidance embedding (klein's), and
    FLUX.2's dynamically shifted scheduler; ``distilled``: the step-distilled release or the base one."""
    torch.manual_seed(seed)
    tokenizer = build_qwen_tokenizer(TINY_WORDS)
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=3 * LM_WIDTH, timestep_guidance_channels=32, axes_dims_rope=(2, 2, 2, 2),
        guidance_embeds=False,
    )
    encoder = Qwen3ForCausalLM(_qwen3_config(tokenizer, KLEIN_LM_LAYERS)).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    return Flux2KleinPipeline(scheduler=scheduler, vae=_klein_vae(), text_encoder=encoder, tokenizer=tokenizer,
                              transformer=transformer, is_distilled=distilled)


def tiny_zimage_pipeline(seed: int = 0, *, turbo: bool = True) -> ZImagePipeline:
    """Z-Image-shaped: a single-stream DiT (one main layer, one noise and one context refiner) on 2x2 patches of
    4-channel latents, the Qwen3 encoder's penultimate layer (16 wide) as the captions; ``turbo``: the
    distilled release (scheduler shift 3) or the base one (shift 6), which share every other config."""
    torch.manual_seed(seed)
    tokenizer = build_qwen_tokenizer(TINY_WORDS)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=32, n_layers=1, n_refiner_layers=1, n_heads=2,
        n_kv_heads=2, cap_feat_dim=LM_WIDTH, axes_dims=[4, 6, 6], axes_lens=[1024, 64, 64],
    )
    encoder = Qwen3Model(_qwen3_config(tokenizer, 2)).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0 if turbo else 6.0)
    return ZImagePipeline(scheduler=scheduler, vae=_zimage_vae(), text_encoder=encoder, tokenizer=tokenizer,
                          transformer=transformer)


def save_tiny_lm_pipeline(path: str | Path, kind: str = "flux2-klein", seed: int = 0) -> Path:
    """``kind``: "flux2-klein" (distilled), "flux2-klein-base", "zimage" (Turbo) or "zimage-base"."""
    if kind not in KINDS:
        raise ValueError(f"unknown tiny kind {kind!r}: use one of {', '.join(KINDS)}")
    path = Path(path)
    if kind.startswith("flux2"):
        pipe = tiny_klein_pipeline(seed, distilled=kind == "flux2-klein")
    else:
        pipe = tiny_zimage_pipeline(seed, turbo=kind == "zimage")
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def _qwen3_config(tokenizer, layers: int) -> Qwen3Config:
    return Qwen3Config(vocab_size=len(tokenizer), hidden_size=LM_WIDTH, intermediate_size=32, num_hidden_layers=layers,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=1024,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                       tie_word_embeddings=True)


def _klein_vae() -> AutoencoderKLFlux2:
    """Halves the side; its batch-norm statistics (what klein normalises the patchified latents by) are set away
    from the identity so that a test notices when they are skipped."""
    vae = AutoencoderKLFlux2(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), layers_per_block=1, latent_channels=4,
        norm_num_groups=8, sample_size=32, use_quant_conv=False, use_post_quant_conv=False,
    )
    with torch.no_grad():
        vae.bn.running_mean.copy_(torch.randn_like(vae.bn.running_mean) * 0.5)
        vae.bn.running_var.copy_(torch.rand_like(vae.bn.running_var) + 0.5)
    return vae.eval()


def _zimage_vae() -> AutoencoderKL:
    """Halves the side, with Z-Image's (FLUX's) latent normalisation ``(z - 0.1159) * 0.3611``."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, layers_per_block=1,
        sample_size=32, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611,
    )
