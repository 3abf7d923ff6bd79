"""Offset noise, input perturbation and the timestep range against direct computations on seeded draws."""

from __future__ import annotations

import pytest
import torch

from dbooth.util.errors import DboothError
from dbooth.training.noise import perturbed, sample_timesteps, timestep_bounds, training_noise


def test_offset_noise_adds_one_constant_per_image_and_channel():
    latents = torch.zeros(3, 4, 8, 8)
    torch.manual_seed(0)
    noise = training_noise(latents, 0.1)
    torch.manual_seed(0)
    base = torch.randn(3, 4, 8, 8)
    offsets = torch.randn(3, 4, 1, 1)
    torch.testing.assert_close(noise, base + 0.1 * offsets)
    # the difference from plain noise is constant over each channel's pixels
    diff = noise - base
    assert torch.allclose(diff, diff[:, :, :1, :1].expand_as(diff)) and diff.abs().max() > 0


def test_offset_zero_draws_nothing_extra():
    latents = torch.zeros(2, 4, 4, 4)
    torch.manual_seed(1)
    noise = training_noise(latents, 0.0)
    after = torch.rand(())
    torch.manual_seed(1)
    torch.testing.assert_close(noise, torch.randn(2, 4, 4, 4))
    assert torch.equal(after, torch.rand(()))  # the RNG stream is where plain noise leaves it


def test_input_perturbation_adds_scaled_gaussian():
    noise = torch.ones(2, 4, 4, 4)
    torch.manual_seed(2)
    out = perturbed(noise, 0.1)
    torch.manual_seed(2)
    torch.testing.assert_close(out, noise + 0.1 * torch.randn(2, 4, 4, 4))
    assert perturbed(noise, 0.0) is noise


def test_timesteps_stay_in_range():
    low, high = timestep_bounds(1000, 200, 300)
    t = sample_timesteps(5000, low, high, torch.device("cpu"))
    assert t.min() == 200 and t.max() == 299
    assert timestep_bounds(1000, 0, None) == (0, 1000)


@pytest.mark.parametrize("low,high,match", [(500, 500, "min_timestep"), (0, 1001, "max_timestep")])
def test_bad_timestep_ranges_are_one_line_errors(low, high, match):
    with pytest.raises(DboothError, match=match):
        timestep_bounds(1000, low, high)
