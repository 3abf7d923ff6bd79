"""A NaN or infinite loss or gradient stops the run at once, keeps the last good checkpoint, and resumes."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from dbooth import api
from dbooth.training.losses import LossParts
from dbooth.training import loop
from dbooth.training.numerics import NonFiniteError, check_finite, check_weights_finite
from dbooth.workspace.folder import find_run

SETTINGS = {"train.method": "lora", "train.max_steps": 4, "train.checkpoint_every": 2, "prior.enabled": False}


class NanGrad(torch.autograd.Function):
    """Identity forward; NaN backward: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def poison_at(monkeypatch, call: int, kind: str):
    real = loop.dreambooth_step_loss
    calls = []

    def step_loss(*args, **kwargs):
        parts = real(*args, **kwargs)
        calls.append(1)
        if len(calls) != call:
            return parts
        total = parts.total * float("nan") if kind == "loss" else NanGrad.apply(parts.total)
        return LossParts(total, parts.instance, parts.prior)

    monkeypatch.setattr(loop, "dreambooth_step_loss", step_loss)


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_non_finite_stops_keeps_the_checkpoint_and_resumes(make_workspace, monkeypatch, kind):
    straight = api.train(make_workspace("straight", **SETTINGS)).run

    ws = make_workspace("poisoned", **SETTINGS)
    with monkeypatch.context() as m:
        poison_at(m, 3, kind)
        with pytest.raises(NonFiniteError) as err:
            api.train(ws)
    message = str(err.value)
    assert "step 3" in message and ("loss" if kind == "loss" else "gradient norm") in message
    assert "learning rate" in message and "step 2 is kept" in message and "--resume" in message
    assert "\n" not in message
    run = find_run(ws, complete=False)
    info = run.info()
    assert info["status"] == "failed" and "step 3" in info["error"]
    assert [p.name for p in run.checkpoints()] == ["step-000002"]
    assert not run.final_dir.exists()  # no final weights, NaN or otherwise
    ckpt = load_file(run.checkpoints()[0] / "trainable_0.safetensors")
    assert all(torch.isfinite(t).all() for t in ckpt.values())

    result = api.train(ws, resume=True)
    assert result.run.dir == run.dir and result.steps == 4
    a, b = load_file(straight.lora_file), load_file(result.run.lora_file)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.slow
def test_fused_backward_stops_on_a_non_finite_gradient_that_never_reaches_the_weights(make_workspace, monkeypatch):
    settings = {**SETTINGS, "train.fused_backward": True}
    straight = api.train(make_workspace("straight", **settings)).run
    ws = make_workspace("poisoned", **settings)
    with monkeypatch.context() as m:
        poison_at(m, 3, "gradient")
        with pytest.raises(NonFiniteError) as err:
            api.train(ws)
    message = str(err.value)
    assert "step 3: the gradient is nan" in message and "step 2 is kept" in message and "\n" not in message
    run = find_run(ws, complete=False)
    assert [p.name for p in run.checkpoints()] == ["step-000002"] and not run.final_dir.exists()
    result = api.train(ws, resume=True)  # and the resumed run ends where the uninterrupted one ends
    a, b = load_file(straight.lora_file), load_file(result.run.lora_file)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_fused_backward_zeroes_a_non_finite_gradient_before_its_step():
    from dbooth.training.fused_backward import FusedBackward

    layer = torch.nn.Linear(2, 2)
    before = layer.weight.detach().clone()
    fused = FusedBackward(torch.optim.AdamW(layer.parameters(), lr=0.1), max_grad_norm=1.0)
    (layer(torch.ones(1, 2)).sum() * float("nan")).backward()
    assert torch.isfinite(layer.weight).all() and torch.isfinite(layer.bias).all()
    assert torch.allclose(layer.weight, before * (1 - 0.1 * 0.01))  # zero gradient: only the weight decay moved it
    assert math.isnan(fused.gradients_finite()) and fused.gradients_finite() == 1.0  # read once, then reset
    layer(torch.ones(1, 2)).sum().backward()
    assert fused.gradients_finite() == 1.0


def test_fp16_blames_overflow_and_no_checkpoint_says_start_again():
    with pytest.raises(NonFiniteError) as err:
        check_finite(torch.tensor(float("inf")), "loss", 7, mixed_precision="fp16", learning_rate=1e-4,
                     last_checkpoint=None)
    message = str(err.value)
    assert "step 7" in message and "float16 overflow" in message and "bf16" in message
    assert "no checkpoint" in message
    check_finite(torch.tensor(1.5), "loss", 1, mixed_precision="no", learning_rate=1e-4, last_checkpoint=None)


def test_nan_weights_are_never_written():
    model = torch.nn.Linear(2, 2)
    check_weights_finite([model], "run x")
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="weight"):
        check_weights_finite([model], "run x")
