"""The toy world's shared optimiser step: the order of its parts, the EMA's ramp, and the losses it logs."""

import pytest
import torch

from dbooth.training.ema import ema_decay
from tools.shapes.steps import EMA, Steps


def test_ema_moves_towards_the_model():
    m = torch.nn.Linear(2, 2)
    ema = EMA(m, decay=0.5)
    with torch.no_grad():
        m.weight.add_(1.0)
    before = (ema.shadow.weight - m.weight).abs().sum()
    ema.update(m)
    assert (ema.shadow.weight - m.weight).abs().sum() < before


def test_ema_update_n_decays_by_the_products_ramp_at_n():
    m = torch.nn.Linear(3, 1)
    ema = EMA(m, decay=0.999)
    for n in (1, 2, 3):
        old = ema.shadow.weight.detach().clone()
        with torch.no_grad():
            m.weight.add_(1.0)
        ema.update(m)
        d = ema_decay(n, 0.999)  # (1 + n) / (10 + n): these models' recipe, one update behind dbooth's own
        torch.testing.assert_close(ema.shadow.weight, d * old + (1 - d) * m.weight.detach())


def _model_and_loss():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x = torch.randn(8, 4)
    return model, lambda: (model(x) ** 2).mean() * 100


def test_a_step_sets_the_rate_clips_steps_the_scheduler_and_updates_the_emas():
    model, loss = _model_and_loss()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    ema = EMA(model, decay=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    steps = Steps(opt, clip=(model.parameters(), 0.01), scheduler=sched, emas=((ema, model),))
    assert steps.take(loss(), lr=0.1) == 1
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    assert float(grads.norm()) == pytest.approx(0.01)  # clipped after backward
    torch.testing.assert_close(moved, -0.1 * grads)  # the step used lr 0.1 on the clipped gradient
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)  # then the scheduler halved it
    assert ema.updates == 1 and not torch.equal(ema.shadow.weight, before[0])


def test_smoothed_and_window_losses():
    model, loss = _model_and_loss()
    smooth = Steps(torch.optim.SGD(model.parameters(), lr=0.0), smoothing=0.05)
    values = []
    for _ in range(3):
        value = loss()
        values.append(value.item())
        smooth.take(value)
    expected = values[0]
    for v in values[1:]:
        expected = 0.95 * expected + 0.05 * v
    assert smooth.smoothed == expected and smooth.count == 3 and smooth.due(3) and not smooth.due(2)

    window = Steps(torch.optim.SGD(model.parameters(), lr=0.0))
    for _ in range(4):
        window.take(loss())
    assert window.smoothed is None
    assert window.window_mean() == pytest.approx(values[0])  # lr 0: the same loss each step
    window.take(loss())
    assert window.window_mean() == pytest.approx(values[0])  # the window starts again after each read
