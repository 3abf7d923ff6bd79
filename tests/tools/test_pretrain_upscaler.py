"""The upscaler's pretraining: its data, its loss weights, and a two-step run that diffusers loads."""

import numpy as np
import pytest
import torch
from PIL import Image

from dbooth.training.losses import min_snr_weights, snr
from dbooth_shapes import upscaler_architecture as U
from tools.shapes.pretrain import to_tensor
from tools.shapes.pretrain_upscaler import UpscalerPretrainConfig, noise_levels, pretrain, training_pair
from dbooth_shapes.world import random_scene, render


def test_training_pair_is_a_256px_target_and_its_64px_condition():
    scene = random_scene(4)
    high, low_box = training_pair(scene, box_downscale=True)
    _, low_render = training_pair(scene, box_downscale=False)
    assert high.shape == (256, 256, 3) and low_box.shape == low_render.shape == (64, 64, 3)
    assert (high == np.asarray(render(scene, 256))).all()
    assert (low_box == np.asarray(Image.fromarray(high).resize((64, 64), Image.BOX))).all()
    assert (low_render == np.asarray(render(scene, 64))).all()


def test_noise_levels_stay_in_range_and_favour_low_augmentation():
    levels = noise_levels(np.random.default_rng(0), 20_000)
    assert levels.dtype == torch.int64
    assert levels.min() == 0 and levels.max() <= U.MAX_NOISE_LEVEL
    assert abs(float(levels.float().median()) - 0.25 * (U.MAX_NOISE_LEVEL + 1)) < 8  # u^2: median at a quarter
    assert (levels < 20).float().mean() > 0.2  # the sampling default, 20, is well covered


def test_v_min_snr_weights_match_a_direct_computation():
    sched = U.build_train_scheduler()  # the upscaler weighs its v-prediction loss with the product's min-SNR-5
    t = torch.tensor([0, 300, 999])
    a = sched.alphas_cumprod[t]
    ratio = a / (1 - a)
    expected = torch.minimum(ratio, torch.tensor(5.0)) / (ratio + 1)
    weights = min_snr_weights(snr(sched.alphas_cumprod, t), 5.0, "v_prediction")
    assert torch.allclose(weights, expected)
    assert weights[2] == pytest.approx(float(ratio[2] / (ratio[2] + 1)))


@pytest.mark.slow
def test_two_step_run_writes_an_upscaler_that_diffusers_loads_and_continues(tmp_path):
    from diffusers import StableDiffusionPipeline, StableDiffusionUpscalePipeline

    from dbooth_shapes import builtin_model_path

    cfg = UpscalerPretrainConfig(out=tmp_path / "x4", steps=2, dataset_size=16, batch_size=2, scale_samples=8)
    pretrain(cfg)
    pipe = StableDiffusionUpscalePipeline.from_pretrained(cfg.out)
    base = StableDiffusionPipeline.from_pretrained(builtin_model_path("builtin:shapes"))
    assert pipe.vae.config.scaling_factor == U.UPSCALE_SCALING_FACTOR
    assert pipe.unet.config.in_channels == 7 and pipe.scheduler.config.prediction_type == "v_prediction"
    for (name, p), q in zip(pipe.text_encoder.named_parameters(), base.text_encoder.parameters()):
        assert torch.equal(p, q), name  # the text encoder is reused frozen
    assert "2 steps at batch 2" in (cfg.out / "README.md").read_text()
    with torch.no_grad():  # the folded VAE encodes to unit-variance latents and decodes like the base's
        x = to_tensor(np.stack([np.asarray(render(random_scene(i), 256)) for i in range(40, 44)]))
        post, base_post = pipe.vae.encode(x).latent_dist, base.vae.encode(x).latent_dist
        assert 0.6 < float(post.mean.std() * U.UPSCALE_SCALING_FACTOR) < 1.6
        assert torch.allclose(pipe.vae.decode(post.mean).sample, base.vae.decode(base_post.mean).sample, atol=2e-4)

    more = UpscalerPretrainConfig(out=tmp_path / "x4b", steps=1, dataset_size=16, batch_size=2, init_from=cfg.out,
                                  object_weight=4.0)
    pretrain(more)
    again = StableDiffusionUpscalePipeline.from_pretrained(more.out)
    assert torch.equal(again.vae.quant_conv.weight, pipe.vae.quant_conv.weight)  # a continued VAE is not refolded
    card = (more.out / "README.md").read_text()
    assert "1 steps at batch 2" in card and "Starting point" in card and "2 steps at batch 2" in card
    assert "--object-weight 4" in card and "loss weight 1 + 4 on the object" in card


def test_object_weights_single_out_the_object_and_the_weighted_mean_is_normalised():
    from tools.shapes.pretrain_upscaler import object_weights, weighted_mean
    from dbooth_shapes.world import object_coverage

    scene = random_scene(3)
    w = object_weights(scene, 4.0)
    coverage, _ = object_coverage(scene, U.LOW_RES)
    assert w.shape == (U.LOW_RES, U.LOW_RES) and w.min() == 1.0 and w.max() == pytest.approx(5.0)
    assert np.allclose(w, 1 + 4 * coverage) and 0.02 < (w > 1).mean() < 0.6  # the object, not the image
    errors = torch.rand(2, 4, U.LOW_RES, U.LOW_RES)
    assert torch.allclose(weighted_mean(errors, None), errors.mean(dim=(1, 2, 3)))
    flat = torch.ones(2, U.LOW_RES, U.LOW_RES)
    assert torch.allclose(weighted_mean(errors, flat), errors.mean(dim=(1, 2, 3)))  # equal weights: the plain mean
    weights = torch.from_numpy(np.stack([w, w]))
    inside = torch.from_numpy(coverage > 0.99)
    on_object = torch.where(inside, 1.0, 0.0).expand(2, 4, -1, -1)  # error only where the object is
    expected = (weights * inside).sum() * 4 / (weights.sum() * 4)
    assert torch.allclose(weighted_mean(on_object, weights), expected.expand(2))
    assert weighted_mean(on_object, weights)[0] > on_object[0].mean() * 2  # the object counts more
