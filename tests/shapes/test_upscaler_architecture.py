"""The built-in upscaler's parts: latent-scale folding, the pipeline they assemble, its conditioning."""

import pytest
import torch

from dbooth_shapes import upscaler_architecture as U


def tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=8,
                         layers_per_block=1).eval()


def test_fold_latent_scale_scales_latents_and_keeps_the_round_trip():
    vae = tiny_vae()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        before = vae.encode(x).latent_dist
        decoded = vae.decode(before.mean).sample
        U.fold_latent_scale(vae, 3.0)
        after = vae.encode(x).latent_dist
        assert torch.allclose(after.mean, 3 * before.mean, atol=1e-5)
        assert torch.allclose(after.std, 3 * before.std, rtol=1e-4)
        assert torch.allclose(vae.decode(after.mean).sample, decoded, atol=1e-5)


def test_schedulers_match_the_x4_upscaler():
    s, low = U.build_train_scheduler(), U.build_low_res_scheduler()
    assert s.config.prediction_type == "v_prediction" and s.config.beta_schedule == "scaled_linear"
    assert (s.config.beta_start, s.config.beta_end) == (0.0001, 0.02)
    assert low.config.beta_schedule == "linear" and low.config.num_train_timesteps == 1000


def test_assembled_pipeline_conditions_on_the_noised_low_res_image(tmp_path):
    """One denoising step, run by the pipeline and by hand from the same noise, must agree: the UNet
    sees [latents, low-res image noised at noise_level] and noise_level as class_labels."""
    from diffusers import StableDiffusionUpscalePipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from dbooth_shapes.architecture import build_tokenizer

    tok = build_tokenizer()
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=tok.model_max_length)).eval()
    unet = U.build_unet(cross_attention_dim=32).eval()
    pipe = U.assemble_pipeline(unet, tiny_vae(), te, tok)
    assert pipe.vae.config.scaling_factor == U.UPSCALE_SCALING_FACTOR
    assert unet.config.in_channels == pipe.vae.config.latent_channels + 3
    pipe.save_pretrained(tmp_path)
    pipe = StableDiffusionUpscalePipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    low = torch.rand(1, 3, 16, 16)  # 0..1, as an image tensor is passed; the UNet sees it in -1..1
    latents = torch.randn(1, 4, 16, 16)
    out = pipe("a photo of a star", image=low, num_inference_steps=1, guidance_scale=1.0, noise_level=30,
               latents=latents, generator=torch.Generator().manual_seed(3), output_type="latent").images
    assert out.shape == (1, 4, 16, 16)

    gen = torch.Generator().manual_seed(3)
    noised = pipe.low_res_scheduler.add_noise(low * 2 - 1, torch.randn(low.shape, generator=gen), torch.tensor([30]))
    sched = pipe.scheduler
    sched.set_timesteps(1)
    t = sched.timesteps[0]
    ids = tok("a photo of a star", padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        v = pipe.unet(torch.cat([latents, noised], 1), t, pipe.text_encoder(ids)[0], class_labels=torch.tensor([30])).sample
    expected = sched.step(v, t, latents).prev_sample
    assert torch.allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError):
        pipe("x", image=low, num_inference_steps=1, noise_level=U.MAX_NOISE_LEVEL + 1)
