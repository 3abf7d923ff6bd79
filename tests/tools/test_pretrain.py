import pytest
import torch

from dbooth.training.losses import min_snr_weights, snr
from dbooth_shapes import architecture as C
from tools.shapes.pretrain import to_tensor
from dbooth_shapes.world import random_scene, render_batch


def test_min_snr_weights_cap_low_noise_steps_only():
    sched = C.build_train_scheduler()  # pretraining weighs its epsilon loss with the product's min-SNR-5
    w = min_snr_weights(snr(sched.alphas_cumprod, torch.tensor([0, 500, 999])), 5.0, "epsilon")
    assert w[0] < 0.05  # tiny noise: SNR is huge, weight gamma/SNR is small
    assert torch.isclose(w[2], torch.tensor(1.0))  # heavy noise: SNR < gamma, weight 1


def test_to_tensor_range_and_layout():
    x = to_tensor(render_batch([random_scene(0), random_scene(1)]))
    assert x.shape == (2, 3, 64, 64)
    assert x.min() >= -1 and x.max() <= 1


def test_components_fit_together():
    tok = C.build_tokenizer()
    te, unet, vae = C.build_text_encoder(tok), C.build_unet(), C.build_vae()
    ids = tok(["a photo of sks star"], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        lat = vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean
        assert lat.shape == (1, 4, C.LATENT_SIZE, C.LATENT_SIZE)
        out = unet(lat, torch.tensor([10]), te(ids)[0]).sample
    assert out.shape == lat.shape


def test_image_gradient_l1_sees_blur_that_a_brightness_shift_hides():
    import torch.nn.functional as F

    from tools.shapes.pretrain import image_gradient_l1

    x = to_tensor(render_batch([random_scene(2)]))
    blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert image_gradient_l1(x, x) == 0
    assert image_gradient_l1(x + 0.2, x) < 1e-6  # an even offset has the same edges
    assert image_gradient_l1(blurred, x) > 0.01  # softened edges and patterns cost


@pytest.mark.slow
def test_latent_scaling_gives_unit_variance_latents():
    from tools.shapes.pretrain import latent_scaling

    torch.manual_seed(0)
    vae = C.build_vae().eval()
    scale = latent_scaling(vae, seed=0, count=250)
    x = to_tensor(render_batch([random_scene(i) for i in range(100, 150)]))
    with torch.no_grad():
        z = vae.encode(x).latent_dist.sample() * scale
    assert 0.8 < float(z.std()) < 1.25


def test_rendered_data_set_does_not_depend_on_the_worker_count():
    import numpy as np

    from tools.shapes.pretrain import render_chunks

    scenes = [random_scene(i) for i in range(10)]
    alone = np.concatenate(list(render_chunks(scenes, 4, workers=1)))
    pooled = np.concatenate(list(render_chunks(scenes, 4, workers=2)))
    assert alone.shape == (10, 64, 64, 3)
    assert np.array_equal(alone, pooled)


def test_new_unet_keeps_the_vae_and_text_encoder_and_starts_the_unet_afresh(tmp_path):
    from diffusers import StableDiffusionPipeline

    from dbooth_shapes import builtin_model_path
    from tools.shapes.pretrain import PretrainConfig, pretrain

    base = builtin_model_path("builtin:shapes")
    out = pretrain(PretrainConfig(out=tmp_path / "m", init_from=base, new_unet=True, steps=2, dataset_size=16,
                                  batch_size=2, device="cpu", lr=1e-6))
    old, new = StableDiffusionPipeline.from_pretrained(base), StableDiffusionPipeline.from_pretrained(out)
    for a, b in zip(old.vae.parameters(), new.vae.parameters()):
        assert torch.equal(a, b)
    assert new.vae.config.scaling_factor == old.vae.config.scaling_factor
    with torch.no_grad():
        te_drift = max(float((a - b).abs().max()) for a, b in zip(old.text_encoder.parameters(),
                                                                new.text_encoder.parameters()))
        unet_gap = float((old.unet.conv_in.weight - new.unet.conv_in.weight).abs().mean())
    assert te_drift < 1e-3  # two steps at lr 1e-6: the text encoder carried over
    assert unet_gap > 1e-2  # the UNet is a fresh one, not the trained one
    card = (out / "README.md").read_text()
    assert "--new-unet" in card and "new UNet" in card


def test_new_unet_without_a_model_to_keep_is_refused(capsys):
    import pytest

    from tools.shapes.pretrain import main

    with pytest.raises(SystemExit) as e:
        main(["--out", "x", "--new-unet"])
    assert e.value.code == 2
    assert "--new-unet needs --init-from" in capsys.readouterr().err


def test_bare_fraction_weights_the_bare_class_caption_and_zero_keeps_the_old_stream(tmp_path):
    import numpy as np

    from tools.shapes.pretrain import PretrainConfig, training_caption
    from dbooth_shapes.world import pretraining_caption

    scenes = [random_scene(i) for i in range(400)]
    plain = PretrainConfig(out=tmp_path)
    # bare_fraction 0 draws exactly what the earlier stages drew: same captions, same random stream
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    old = ["" if b.random() < plain.caption_dropout else pretraining_caption(s, b) for s in scenes]
    assert [training_caption(s, a, plain) for s in scenes] == old
    bare = PretrainConfig(out=tmp_path, bare_fraction=0.5)
    rng = np.random.default_rng(5)
    captions = [training_caption(s, rng, bare) for s in scenes]
    bare_share = np.mean([c == f"a photo of a {s.shape}" or c == f"a photo of an {s.shape}"
                          for c, s in zip(captions, scenes)])
    old_share = np.mean([c == f"a photo of a {s.shape}" or c == f"a photo of an {s.shape}" for c, s in zip(old, scenes)])
    # 0.9 x (0.5 + 0.5 x 0.1): about half the captions, against about a tenth without the stage
    assert 0.42 < bare_share < 0.58 and old_share < 0.15
    assert 0.05 < np.mean([c == "" for c in captions]) < 0.16  # dropout unchanged


def test_patterned_fraction_mixes_lookalikes_into_the_data_set_with_colourless_captions(tmp_path):
    import numpy as np

    from tools.shapes.pretrain import PretrainConfig, dataset_scenes, training_caption
    from dbooth_shapes.examples import is_example_look

    plain = dataset_scenes(PretrainConfig(out=tmp_path, dataset_size=2000))
    assert all(s.pattern == "solid" for s in plain)
    # 0 keeps the earlier stages' data set exactly
    assert plain == dataset_scenes(PretrainConfig(out=tmp_path, dataset_size=2000, patterned_fraction=0.0))
    cfg = PretrainConfig(out=tmp_path, dataset_size=2000, patterned_fraction=0.3)
    mixed = dataset_scenes(cfg)
    patterned = [s for s in mixed if s.pattern != "solid"]
    assert 0.26 < len(patterned) / len(mixed) < 0.34
    assert not any(is_example_look(s) for s in patterned)
    # the solid scenes are the plain data set's, in place
    assert all(m == p for m, p in zip(mixed, plain) if m.pattern == "solid")
    rng = np.random.default_rng(0)
    for s in patterned[:200]:
        text = training_caption(s, rng, cfg)
        assert text == "" or text.startswith(f"a photo of a{'n' if s.shape[0] in 'aeiou' else ''} {s.shape}")
        assert s.colour not in text.split() and s.colour2 not in text.split()
