"""The DreamBooth objective: what the UNet should predict, and how instance and prior rows are weighted."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from dbooth.training.losses import diffusion_target, dreambooth_loss, min_snr_weights, snr


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(4, 4, 8, 8, generator=g)
    noise = torch.randn(4, 4, 8, 8, generator=g)
    timesteps = torch.tensor([0, 10, 500, 999])
    return latents, noise, timesteps


def test_epsilon_target_is_the_noise(batch):
    latents, noise, timesteps = batch
    target = diffusion_target("epsilon", noise, latents, DDPMScheduler(), timesteps)
    assert torch.equal(target, noise)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_v_prediction_target_matches_the_formula(batch, schedule):
    latents, noise, timesteps = batch
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule=schedule)
    target = diffusion_target("v_prediction", noise, latents, scheduler, timesteps)

    abar = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    alpha_t, sigma_t = abar.sqrt(), (1 - abar).sqrt()
    expected = alpha_t * noise - sigma_t * latents
    torch.testing.assert_close(target, expected, rtol=1e-5, atol=1e-5)
    # at t=0 v is almost the noise, at t=999 almost minus the latents: the rows really differ per timestep
    assert not torch.allclose(target, noise, atol=1e-2)


@pytest.mark.parametrize("kind", ["sample", "flow", "", "Epsilon"])
def test_unknown_prediction_type_raises(batch, kind):
    latents, noise, timesteps = batch
    with pytest.raises(ValueError, match="prediction_type"):
        diffusion_target(kind, noise, latents, DDPMScheduler(), timesteps)


def _halves(num_instance: int, num_class: int, inst_err: float, prior_err: float):
    """pred/target whose instance rows are off by inst_err everywhere and class rows by prior_err."""
    target = torch.randn(num_instance + num_class, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    offset = torch.cat([torch.full((num_instance, 1, 1, 1), inst_err), torch.full((num_class, 1, 1, 1), prior_err)])
    return target + offset, target


@pytest.mark.parametrize("weight", [0.0, 1.0, 2.5])
@pytest.mark.parametrize("num_instance,num_class", [(2, 2), (1, 3), (3, 1)])
def test_loss_splits_instance_and_prior_rows(weight, num_instance, num_class):
    pred, target = _halves(num_instance, num_class, inst_err=1.0, prior_err=3.0)
    parts = dreambooth_loss(pred, target, num_instance, weight)
    # MSE of a constant offset e is e**2: 1 for the instance rows, 9 for the class rows
    assert parts.instance.item() == pytest.approx(1.0, rel=1e-6)
    assert parts.prior is not None
    assert parts.prior.item() == pytest.approx(9.0, rel=1e-6)
    assert parts.total.item() == pytest.approx(1.0 + weight * 9.0, rel=1e-6)


def test_loss_without_class_rows_has_no_prior_term():
    pred, target = _halves(3, 0, inst_err=2.0, prior_err=0.0)
    parts = dreambooth_loss(pred, target, 3, prior_weight=1.0)
    assert parts.prior is None
    assert parts.instance.item() == pytest.approx(4.0, rel=1e-6)
    assert parts.total.item() == pytest.approx(4.0, rel=1e-6)


def test_loss_is_computed_in_float32_and_differentiable():
    pred, target = _halves(1, 1, inst_err=0.5, prior_err=0.25)
    pred = pred.half().requires_grad_(True)
    parts = dreambooth_loss(pred, target.half(), 1, prior_weight=1.0)
    assert parts.total.dtype == torch.float32
    parts.total.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


# --- Min-SNR weighting ------------------------------------------------------------------------------

def _direct_snr(scheduler, t: int) -> float:
    abar = float(scheduler.alphas_cumprod[t])
    return abar / (1 - abar)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_min_snr_weights_match_the_formula_per_timestep(kind):
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear")
    timesteps = torch.tensor([0, 50, 300, 999])
    gamma = 5.0
    weights = min_snr_weights(snr(scheduler.alphas_cumprod, timesteps), gamma, kind)
    for w, t in zip(weights.tolist(), timesteps.tolist()):
        s = _direct_snr(scheduler, t)
        expected = min(s, gamma) / s if kind == "epsilon" else min(s, gamma) / (s + 1)
        assert w == pytest.approx(expected, rel=1e-5)
    # low-noise timesteps are capped, high-noise ones keep (almost) their whole weight under epsilon
    assert weights[0] < 0.01
    if kind == "epsilon":
        assert weights[-1] == pytest.approx(1.0)


def test_min_snr_epsilon_weight_is_one_at_zero_snr():
    weights = min_snr_weights(torch.tensor([0.0, 2.0, 10.0]), 5.0, "epsilon")
    torch.testing.assert_close(weights, torch.tensor([1.0, 1.0, 0.5]))
    torch.testing.assert_close(min_snr_weights(torch.tensor([0.0, 4.0]), 5.0, "v_prediction"), torch.tensor([0.0, 0.8]))


def test_min_snr_rejects_unknown_prediction_type():
    with pytest.raises(ValueError, match="prediction_type"):
        min_snr_weights(torch.ones(2), 5.0, "sample")


def test_weighted_loss_scales_each_rows_mse_and_keeps_the_prior_split():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 2, 3, 3, generator=g)
    weights = torch.tensor([0.5, 2.0, 1.0, 0.25])
    parts = dreambooth_loss(pred, target, 2, prior_weight=0.7, weights=weights)
    row = [float(((pred[i] - target[i]) ** 2).mean()) for i in range(4)]
    inst = (0.5 * row[0] + 2.0 * row[1]) / 2
    prior = (1.0 * row[2] + 0.25 * row[3]) / 2
    assert float(parts.instance) == pytest.approx(inst, rel=1e-6)
    assert float(parts.prior) == pytest.approx(prior, rel=1e-6)
    assert float(parts.total) == pytest.approx(inst + 0.7 * prior, rel=1e-6)
    # unit weights are the plain loss
    plain = dreambooth_loss(pred, target, 2, 0.7)
    ones = dreambooth_loss(pred, target, 2, 0.7, weights=torch.ones(4))
    torch.testing.assert_close(ones.total, plain.total)
