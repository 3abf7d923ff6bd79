"""The flow-matching objective against a direct computation from the scheduler's sigmas, for each sampling
scheme, shift and weighting; the DDPM objective draws what the step drew before objectives existed; options
of the other objective are refused with one line naming the family."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

from dbooth.families import FLUX, SD1, SD3
from dbooth.training.objectives import Diffusion, FlowMatching, check_settings, shifted
from dbooth.util.errors import DboothError
from dbooth.workspace.schema import TrainConfig

LATENTS = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(5))


def _settings(**flow) -> TrainConfig:
    cfg = TrainConfig()
    for k, v in flow.items():
        setattr(cfg.flow, k, v)
    return cfg


def _direct(scheduler, sampling, *, mean=0.0, std=1.0, scale=1.29, shift=None):
    """noise, sigmas as diffusers' SD 3 / FLUX training scripts compute them, from seed 0."""
    torch.manual_seed(0)
    noise = torch.randn(LATENTS.shape)
    if sampling == "logit_normal":
        u = torch.sigmoid(torch.normal(mean, std, size=(3,)))
    elif sampling == "mode":
        u = torch.rand(3)
        u = 1 - u - scale * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
    else:
        u = torch.rand(3)
    sigmas = scheduler.sigmas[(u * 1000).long()]
    if shift is not None:
        sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return noise, sigmas


@pytest.mark.parametrize("sampling", ["uniform", "logit_normal", "mode"])
def test_flow_matching_noises_and_targets_as_the_sd3_recipe(sampling):
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    objective = FlowMatching(scheduler, _settings(timestep_sampling=sampling, logit_mean=0.3, logit_std=0.8))
    torch.manual_seed(0)
    draw = objective.draw(LATENTS)
    noise, sigmas = _direct(scheduler, sampling, mean=0.3, std=0.8)
    torch.testing.assert_close(draw.sigmas, sigmas)
    torch.testing.assert_close(draw.timesteps, sigmas * 1000)  # what the transformer is told (FLUX divides by 1000)
    s = sigmas.view(-1, 1, 1, 1)
    torch.testing.assert_close(objective.noisy(LATENTS, draw), (1 - s) * LATENTS + s * noise)
    torch.testing.assert_close(objective.target(LATENTS, draw), noise - LATENTS)
    assert objective.weights(draw) is None


def test_the_scheduler_shift_and_an_extra_shift_are_both_applied():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)  # SD 3.5's config: sigmas already shifted by 3
    torch.manual_seed(0)
    draw = FlowMatching(scheduler, _settings(timestep_sampling="uniform", shift=2.0)).draw(LATENTS)
    _, sigmas = _direct(scheduler, "uniform", shift=2.0)
    torch.testing.assert_close(draw.sigmas, sigmas)
    plain = FlowMatchEulerDiscreteScheduler()
    assert torch.allclose(scheduler.sigmas, shifted(plain.sigmas, 3.0), atol=1e-6)


def test_flux_resolution_shift_grows_with_the_image():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    objective = FlowMatching(scheduler, _settings(resolution_shift=True))
    for side, tokens, mu in ((32, 256, 0.5), (128, 4096, 1.15)):  # base_shift at 256 tokens, max_shift at 4096
        latents = torch.zeros(1, 16, side, side)
        assert (side // 2) ** 2 == tokens
        torch.manual_seed(0)
        got = objective.draw(latents).sigmas
        torch.manual_seed(0)
        torch.randn(latents.shape)  # the noise comes first
        base = scheduler.sigmas[(torch.rand(1) * 1000).long()]
        torch.testing.assert_close(got, shifted(base, math.exp(mu)))


@pytest.mark.parametrize("weighting", ["sigma_sqrt", "cosmap"])
def test_loss_weightings_follow_the_sd3_paper(weighting):
    objective = FlowMatching(FlowMatchEulerDiscreteScheduler(), _settings(weighting=weighting))
    torch.manual_seed(0)
    draw = objective.draw(LATENTS)
    s = draw.sigmas
    want = s ** -2 if weighting == "sigma_sqrt" else 2 / (math.pi * (1 - 2 * s + 2 * s ** 2))
    torch.testing.assert_close(objective.weights(draw), want)


def test_preconditioned_outputs_predict_the_clean_latents():
    objective = FlowMatching(FlowMatchEulerDiscreteScheduler(), _settings(precondition_outputs=True))
    torch.manual_seed(0)
    draw = objective.draw(LATENTS)
    noisy = objective.noisy(LATENTS, draw)
    velocity = draw.noise - LATENTS  # a perfect velocity prediction gives back x0 exactly
    torch.testing.assert_close(objective.output(velocity, noisy, draw), LATENTS, atol=1e-5, rtol=0)
    assert torch.equal(objective.target(LATENTS, draw), LATENTS)


def test_ddpm_draws_noise_then_timesteps_as_before():
    scheduler = DDPMScheduler()
    cfg = TrainConfig()
    torch.manual_seed(0)
    draw = Diffusion(scheduler, cfg).draw(LATENTS)
    torch.manual_seed(0)
    noise = torch.randn(LATENTS.shape)
    timesteps = torch.randint(0, 1000, (3,))
    assert torch.equal(draw.noise, noise) and torch.equal(draw.timesteps, timesteps)
    torch.testing.assert_close(Diffusion(scheduler, cfg).noisy(LATENTS, draw), scheduler.add_noise(LATENTS, noise, timesteps))


def test_options_of_the_other_objective_are_refused_naming_the_family():
    cfg = TrainConfig(snr_gamma=5.0)
    with pytest.raises(DboothError, match=r"train.snr_gamma: FLUX.1 trains by flow matching"):
        check_settings(cfg, FLUX)
    check_settings(cfg, SD1)
    with pytest.raises(DboothError, match=r"train.flow.weighting: Stable Diffusion 1.x is a noise-prediction"):
        check_settings(_settings(weighting="cosmap"), SD1)
    with pytest.raises(DboothError, match="precondition_outputs: FLUX.1 has no preconditioned form"):
        check_settings(_settings(precondition_outputs=True), FLUX)
    check_settings(_settings(precondition_outputs=True), SD3)
