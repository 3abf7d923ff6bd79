"""The EMA's decay schedule and update against direct computations."""

from __future__ import annotations

import pytest
import torch

from dbooth.training.ema import ema_decay, ema_update_


def test_decay_ramps_up_then_caps():
    assert ema_decay(0, 0.999) == pytest.approx(0.1)
    assert ema_decay(10, 0.999) == pytest.approx(11 / 20)
    assert ema_decay(10_000, 0.995) == 0.995
    decays = [ema_decay(n, 0.99) for n in range(2000)]
    assert decays == sorted(decays)


def test_update_is_the_weighted_average():
    shadow = {"w": torch.tensor([1.0, 2.0, 3.0])}
    params = {"w": torch.tensor([3.0, 2.0, -1.0])}
    ema_update_(shadow, params, 0.75)
    torch.testing.assert_close(shadow["w"], 0.75 * torch.tensor([1.0, 2.0, 3.0]) + 0.25 * params["w"])


def test_ema_weights_follow_the_recursion_every_n_steps():
    from types import SimpleNamespace

    from dbooth.training.ema import EmaWeights

    model = torch.nn.Linear(2, 1, bias=False)
    frozen = torch.nn.Linear(2, 2)
    frozen.requires_grad_(False)
    cfg = SimpleNamespace(decay=0.8, every=2, on_cpu=True)
    ema = EmaWeights([model, frozen], cfg)
    assert list(ema.shadow) == ["0.weight"]  # frozen parameters are not averaged
    expected = model.weight.detach().clone()
    updates = 0
    for step in range(1, 9):
        with torch.no_grad():
            model.weight.add_(float(step))
        ema.after_step(step)
        if step % 2 == 0:
            d = min(0.8, (1 + updates) / (10 + updates))
            expected = d * expected + (1 - d) * model.weight.detach()
            updates += 1
    torch.testing.assert_close(ema.shadow["0.weight"], expected)

    live = model.weight.detach().clone()
    with ema.applied():
        torch.testing.assert_close(model.weight.detach(), expected)
    torch.testing.assert_close(model.weight.detach(), live)
    ema.copy_to_models()
    torch.testing.assert_close(model.weight.detach(), expected)
