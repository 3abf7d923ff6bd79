"""Each optimizer choice is built with the settings DreamBooth needs, checked on known tensors."""

from __future__ import annotations

import sys

import pytest
import torch

from dbooth.util.errors import DboothError
from dbooth.workspace.schema import TrainConfig
from dbooth.training.optimizers import make_optimizer

CPU = torch.device("cpu")


def _one_step(cfg, p0: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
    p = torch.nn.Parameter(p0.clone())
    opt = make_optimizer(cfg, [{"params": [p], "lr": lr}], CPU)
    p.grad = grad.clone()
    opt.step()
    return p.detach()


def test_adafactor_uses_the_runs_learning_rate_not_relative_steps():
    cfg = TrainConfig(optimizer="adafactor")
    p0, grad = torch.tensor([0.0, 0.0, 0.0, 0.0]), torch.tensor([0.5, -2.0, 1e-3, 4.0])
    p1 = _one_step(cfg, p0, grad, lr=1e-2)
    # first step of an unfactored Adafactor: v = g^2 + eps1, u = g / sqrt(v), clipped to RMS 1, times lr;
    # with parameter scaling (Adafactor's own default) a zero parameter would not move at all
    u = grad / (grad**2 + 1e-30).sqrt()
    u = u / max(1.0, float(u.pow(2).mean().sqrt()))
    torch.testing.assert_close(p1, p0 - 1e-2 * u)
    opt = make_optimizer(cfg, [{"params": [torch.nn.Parameter(torch.ones(2))], "lr": 3e-4}], CPU)
    group = opt.param_groups[0]
    assert group["lr"] == 3e-4 and not group["relative_step"] and not group["scale_parameter"]


def test_prodigy_gets_its_dreambooth_settings_and_learning_rate():
    prodigyopt = pytest.importorskip("prodigyopt")
    cfg = TrainConfig(optimizer="prodigy", method="lora")
    assert cfg.resolved_learning_rate() == 1.0 and cfg.resolved_text_encoder_learning_rate() == 1.0
    opt = make_optimizer(cfg, [{"params": [torch.nn.Parameter(torch.ones(2))], "lr": 1.0}], CPU)
    assert isinstance(opt, prodigyopt.Prodigy)
    group = opt.param_groups[0]
    assert group["betas"] == (0.9, 0.99) and group["use_bias_correction"] and group["safeguard_warmup"]
    assert group["decouple"] and group["weight_decay"] == cfg.adam_weight_decay


def test_missing_prodigy_is_a_one_line_error_naming_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "prodigyopt", None)  # makes the import fail
    with pytest.raises(DboothError, match=r"pip install prodigyopt") as info:
        make_optimizer(TrainConfig(optimizer="prodigy"), [{"params": [torch.nn.Parameter(torch.ones(2))]}], CPU)
    assert "\n" not in str(info.value)


def test_explicit_learning_rate_wins_over_prodigys_default():
    assert TrainConfig(optimizer="prodigy", learning_rate=0.5).resolved_learning_rate() == 0.5
    assert TrainConfig(optimizer="adafactor", method="lora").resolved_learning_rate() == 1e-4


def test_adamw8bit_on_cpu_says_it_needs_cuda():
    with pytest.raises(DboothError, match="CUDA"):
        make_optimizer(TrainConfig(optimizer="adamw8bit"), [{"params": [torch.nn.Parameter(torch.ones(2))]}], CPU)


def test_a_run_trains_with_adafactor(make_workspace):
    from dbooth import api

    ws = make_workspace(**{"train.method": "lora", "train.max_steps": 2, "prior.enabled": False,
                           "train.optimizer": "adafactor", "train.tensorboard": False})
    result = api.train(ws)
    assert result.steps == 2 and result.final_loss == result.final_loss  # not NaN
