import torch

from dbooth.builtin import components as C
from dbooth.builtin.pretrain import EMA, min_snr_weights, to_tensor
from dbooth.builtin.world import random_scene, render_batch


def test_min_snr_weights_cap_low_noise_steps_only():
    sched = C.build_train_scheduler()
    w = min_snr_weights(sched, torch.tensor([0, 500, 999]), gamma=5.0)
    assert w[0] < 0.05  # tiny noise: SNR is huge, weight gamma/SNR is small
    assert torch.isclose(w[2], torch.tensor(1.0))  # heavy noise: SNR < gamma, weight 1


def test_ema_moves_towards_the_model():
    m = torch.nn.Linear(2, 2)
    ema = EMA(m, decay=0.5)
    with torch.no_grad():
        m.weight.add_(1.0)
    before = (ema.shadow.weight - m.weight).abs().sum()
    ema.update(m)
    assert (ema.shadow.weight - m.weight).abs().sum() < before


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

    from dbooth.builtin.pretrain import image_gradient_l1

    x = to_tensor(render_batch([random_scene(2)]))
    blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert image_gradient_l1(x, x) == 0
    assert image_gradient_l1(x + 0.2, x) < 1e-6  # an even offset has the same edges
    assert image_gradient_l1(blurred, x) > 0.01  # softened edges and patterns cost


def test_latent_scaling_gives_unit_variance_latents():
    from dbooth.builtin.pretrain import latent_scaling

    torch.manual_seed(0)
    vae = C.build_vae().eval()
    scale = latent_scaling(vae, seed=0, count=250)
    x = to_tensor(render_batch([random_scene(i) for i in range(100, 150)]))
    with torch.no_grad():
        z = vae.encode(x).latent_dist.sample() * scale
    assert 0.8 < float(z.std()) < 1.25
