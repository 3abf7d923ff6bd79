"""One training step's target follows the model: the velocity for v-prediction, the noise for epsilon."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dbooth.families.tiny import tiny_pipeline, tiny_sd2_pipeline, tiny_sdxl_pipeline
from dbooth.workspace.schema import TrainConfig
from dbooth.training.conditioning import PromptBank
from dbooth.training.setup import prepare_models
from dbooth.training.step import Batch, dreambooth_step_loss


@pytest.mark.parametrize("build,kind", [(tiny_pipeline, "epsilon"), (tiny_sd2_pipeline, "v_prediction"),
                                        (tiny_sdxl_pipeline, "epsilon")])
def test_step_loss_is_the_mse_to_the_schedulers_target(build, kind):
    pipe = build()
    models = prepare_models(pipe, TrainConfig(), torch.device("cpu"), torch.float32)
    assert models.noise_scheduler.config.prediction_type == kind
    prompts = PromptBank(models.family, models.tokenizers, models.text_encoders, ["a photo of sks dog"],
                         cache=True, device=torch.device("cpu"), dtype=torch.float32)
    latents = torch.randn(2, 4, 16, 16)
    geometry = torch.tensor([[40, 32, 0, 4, 32, 32]] * 2)
    batch = Batch(latents, geometry, [0, 0], num_instance=2)

    torch.manual_seed(7)
    loss = dreambooth_step_loss(models, prompts, batch, prior_weight=1.0)

    # the same draws by hand: noise, then timesteps; the target from the scheduler's own get_velocity
    torch.manual_seed(7)
    noise = torch.randn_like(latents)
    t = torch.randint(0, 1000, (2,)).long()
    noisy = models.noise_scheduler.add_noise(latents, noise, t)
    cond = prompts.get([0, 0], grad=False)
    with torch.no_grad():
        pred = models.denoiser(noisy, t, cond.embeds, **models.family.unet_kwargs(cond, geometry)).sample
    target = models.noise_scheduler.get_velocity(latents, noise, t) if kind == "v_prediction" else noise
    torch.testing.assert_close(loss.total.detach(), F.mse_loss(pred, target), rtol=0, atol=1e-6)
    assert loss.prior is None


def test_a_vae_that_asks_for_it_encodes_in_float32_under_fp16():
    from types import SimpleNamespace

    from dbooth.training.setup import vae_precision

    sdxl_like = SimpleNamespace(config=SimpleNamespace(force_upcast=True))
    sd_like = SimpleNamespace(config=SimpleNamespace(force_upcast=False))
    assert vae_precision(sdxl_like, torch.float16) == torch.float32
    assert vae_precision(sdxl_like, torch.bfloat16) == torch.bfloat16  # bf16 has the range
    assert vae_precision(sd_like, torch.float16) == torch.float16


@pytest.mark.parametrize("build,kind", [(tiny_pipeline, "epsilon"), (tiny_sd2_pipeline, "v_prediction")])
def test_noise_options_and_min_snr_in_the_step(build, kind):

    pipe = build()
    settings = TrainConfig(snr_gamma=5.0, noise_offset=0.1, min_timestep=100, max_timestep=900,
                           input_perturbation=0.1)
    models = prepare_models(pipe, settings, torch.device("cpu"), torch.float32)
    prompts = PromptBank(models.family, models.tokenizers, models.text_encoders, ["a sks dog", "a dog"],
                         cache=True, device=torch.device("cpu"), dtype=torch.float32)
    latents = torch.randn(4, 4, 16, 16)
    geometry = torch.tensor([[32, 32, 0, 0, 32, 32]] * 4)
    batch = Batch(latents, geometry, [0, 0, 1, 1], num_instance=2)

    torch.manual_seed(11)
    loss = dreambooth_step_loss(models, prompts, batch, prior_weight=0.5, settings=settings)

    torch.manual_seed(11)
    noise = torch.randn_like(latents) + 0.1 * torch.randn(4, 4, 1, 1)
    t = torch.randint(100, 900, (4,)).long()
    noisy = models.noise_scheduler.add_noise(latents, noise + 0.1 * torch.randn_like(noise), t)
    cond = prompts.get([0, 0, 1, 1], grad=False)
    with torch.no_grad():
        pred = models.denoiser(noisy, t, cond.embeds).sample
    target = models.noise_scheduler.get_velocity(latents, noise, t) if kind == "v_prediction" else noise
    abar = models.noise_scheduler.alphas_cumprod[t]
    s = abar / (1 - abar)
    w = torch.minimum(s, torch.full_like(s, 5.0)) / (s + 1 if kind == "v_prediction" else s)
    rows = ((pred - target) ** 2).mean(dim=(1, 2, 3)) * w
    expected = rows[:2].mean() + 0.5 * rows[2:].mean()
    torch.testing.assert_close(loss.total.detach(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss.prior.detach(), rows[2:].mean(), rtol=1e-5, atol=1e-6)


class _Bank:
    """A stand-in LatentBank: image i's latent is filled with i, at its target's (w, h) / 8."""

    def __init__(self, targets):
        self.targets = list(targets)

    def __len__(self):
        return len(self.targets)

    def groups(self):
        found = {}
        for i, t in enumerate(self.targets):
            found.setdefault(t, []).append(i)
        return list(found.values())

    def draw(self, indices):
        (w, h), = {self.targets[int(i)] for i in indices}  # one shape per call, as LatentBank requires
        latents = torch.stack([torch.full((4, h // 8, w // 8), float(i)) for i in indices])
        return latents, torch.tensor([[h, w, 0, 0, h, w]] * len(indices)), None, None


def _ids(latents):
    return [int(x) for x in latents[:, 0, 0, 0]]


SQ, WIDE, TALL = (32, 32), (40, 24), (24, 40)


def test_class_rows_come_from_the_photos_bucket():
    from dbooth.training.step import draw_batch

    photos = _Bank([WIDE, WIDE, SQ, TALL])
    classes = _Bank([SQ, WIDE, SQ, TALL, WIDE, SQ])
    torch.manual_seed(0)
    seen = set()
    for _ in range(60):
        batch = draw_batch(photos, classes, 2, 9, torch.device("cpu"))
        shape = photos.targets[batch.captions[0]]
        assert batch.latents.shape == (4, 4, shape[1] // 8, shape[0] // 8) and not batch.apart  # one UNet call
        assert batch.num_instance == 2 and batch.captions[2:] == [9, 9]
        class_rows = _ids(batch.latents[2:])
        assert all(classes.targets[i] == shape for i in class_rows)
        seen.update(class_rows)
    assert seen == set(range(6))  # every class image is drawn for its bucket


def test_square_class_images_are_the_unbucketed_draw_and_train_apart():
    from dbooth.training.step import draw_batch

    photos, classes = _Bank([WIDE, SQ]), _Bank([SQ] * 5)
    for seed in range(8):
        torch.manual_seed(seed)
        batch = draw_batch(photos, classes, 3, 7, torch.device("cpu"))
        torch.manual_seed(seed)
        ii = draw_indices_like(photos, 3)
        expected = torch.randint(0, 5, (3,)).tolist()  # the class draw before buckets
        rows = batch.latents[3:] if not batch.apart else batch.apart[0].latents
        assert batch.captions[:3] == ii and _ids(rows) == expected
        if photos.targets[ii[0]] == WIDE:
            assert batch.latents.shape[0] == 3 and len(batch.apart) == 1 and batch.apart[0].captions == [7] * 3
        else:
            assert batch.latents.shape[0] == 6 and not batch.apart


def draw_indices_like(bank, n):
    from dbooth.training.step import draw_indices

    return draw_indices(bank.groups(), n).tolist()


def test_several_classes_pair_by_bucket_and_fall_back_per_class():
    from dbooth.training.step import ClassPick, draw_batch

    photos = _Bank([WIDE, WIDE])  # photo 0 is a dog, photo 1 a cat
    classes = _Bank([SQ, WIDE, SQ, SQ])  # dogs: 0, 1; cats: 2, 3 (no wide cat)
    pick = ClassPick.of(image_class=[0, 0, 1, 1], photo_class=[0, 1], first_caption=2)
    torch.manual_seed(3)
    for _ in range(30):
        batch = draw_batch(photos, classes, 2, pick, torch.device("cpu"))
        for row, caption in zip(_ids(batch.latents[2:]), batch.captions[2:]):
            assert row == 1 and caption == 2  # a dog photo gets the wide dog image, in the same tensor
        for part in batch.apart:  # a cat photo gets a square cat image, apart
            assert set(_ids(part.latents)) <= {2, 3} and set(part.captions) == {3}
        dogs = [i for i in batch.captions[:2] if i == 0]
        assert batch.latents.shape[0] == 2 + len(dogs) and sum(p.latents.shape[0] for p in batch.apart) == 2 - len(dogs)


@pytest.mark.parametrize("build", [tiny_pipeline, tiny_sdxl_pipeline])
def test_a_paired_non_square_step_is_one_unet_call(build):
    """Photos and class images of a 40x24 bucket through the UNet together; the loss is MSE(instance) +
    weight x MSE(prior) computed by hand."""
    pipe = build()
    models = prepare_models(pipe, TrainConfig(), torch.device("cpu"), torch.float32)
    prompts = PromptBank(models.family, models.tokenizers, models.text_encoders, ["a photo of sks dog", "a dog"],
                         cache=True, device=torch.device("cpu"), dtype=torch.float32)
    latents = torch.randn(4, 4, 12, 20)  # 24x40 px through the tiny VAE's 2x downsampling
    geometry = torch.tensor([[24, 40, 0, 0, 24, 40]] * 4)
    batch = Batch(latents, geometry, [0, 0, 1, 1], num_instance=2)
    calls = []
    real = models.denoiser.forward
    models.denoiser.forward = lambda *a, **k: calls.append(a[0].shape) or real(*a, **k)

    torch.manual_seed(5)
    loss = dreambooth_step_loss(models, prompts, batch, prior_weight=0.5)
    assert calls == [torch.Size([4, 4, 12, 20])]

    torch.manual_seed(5)
    noise = torch.randn_like(latents)
    t = torch.randint(0, 1000, (4,)).long()
    noisy = models.noise_scheduler.add_noise(latents, noise, t)
    cond = prompts.get([0, 0, 1, 1], grad=False)
    with torch.no_grad():
        pred = real(noisy, t, cond.embeds, **models.family.unet_kwargs(cond, geometry)).sample
    expected = F.mse_loss(pred[:2], noise[:2]) + 0.5 * F.mse_loss(pred[2:], noise[2:])
    torch.testing.assert_close(loss.total.detach(), expected, rtol=1e-5, atol=1e-6)


def test_share_rows_split_instance_and_class_rows_alike():
    from dbooth.training.step import Share

    assert Share(0, 2).rows(4, 8) == [0, 1, 4, 5]
    assert Share(1, 2).rows(4, 8) == [2, 3, 6, 7]
    assert Share(1, 2).rows(2, 2) == [1]  # no class rows
    assert Share(0, 1).rows(3, 6) == list(range(6))
    with pytest.raises(ValueError, match="evenly"):
        Share(0, 2).rows(3, 6)


@pytest.mark.parametrize("options", [{}, {"snr_gamma": 5.0, "noise_offset": 0.1, "input_perturbation": 0.1}])
def test_the_shares_losses_average_to_the_whole_batchs(options):
    """Each process draws the global batch's noise and keeps its rows, so the processes' losses (and so
    their averaged gradients) are the one-process step's, options and loss masks included."""
    from dbooth.training.step import Share

    pipe = tiny_pipeline()
    models = prepare_models(pipe, TrainConfig(), torch.device("cpu"), torch.float32)
    prompts = PromptBank(models.family, models.tokenizers, models.text_encoders, ["a sks dog", "a dog"],
                         cache=True, device=torch.device("cpu"), dtype=torch.float32)
    torch.manual_seed(0)
    mask = torch.cat([torch.rand(2, 1, 16, 16).round(), torch.ones(2, 1, 16, 16)])
    batch = Batch(torch.randn(4, 4, 16, 16), torch.zeros(4, 6), [0, 0, 1, 1], num_instance=2, mask=mask)
    settings = TrainConfig(**options)

    def loss(share):
        torch.manual_seed(11)
        models.denoiser.zero_grad()
        value = dreambooth_step_loss(models, prompts, batch, 0.7, settings, share).total
        value.backward()
        return value.detach(), [p.grad.clone() for p in models.denoiser.parameters() if p.grad is not None]

    whole, whole_grads = loss(Share())
    (first, first_grads), (second, second_grads) = loss(Share(0, 2)), loss(Share(1, 2))
    torch.testing.assert_close((first + second) / 2, whole)
    for g, a, b in zip(whole_grads, first_grads, second_grads):
        torch.testing.assert_close((a + b) / 2, g, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(first, second)  # the two processes really scored other rows


def test_a_shares_rows_keep_their_upscaler_inputs():
    from dbooth.training.step import Share

    batch = Batch(torch.randn(4, 4, 8, 8), torch.zeros(4, 6), [0, 1, 2, 3], num_instance=2,
                  low_res=torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2))
    mine = batch.select(Share(1, 2).rows(2, 4))
    assert mine.num_instance == 1 and mine.captions == [1, 3]
    assert mine.low_res[:, 0, 0, 0].tolist() == [1.0, 3.0]
    torch.testing.assert_close(mine.latents, batch.latents[[1, 3]])
