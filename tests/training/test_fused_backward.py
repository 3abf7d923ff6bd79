"""``train.fused_backward``: AdamW per parameter inside backward equals the ordinary step (clipping aside)."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from dbooth import api
from dbooth.util.errors import DboothError
from dbooth.training.fused_backward import FusedBackward


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))


def _optimizer(model):
    first, second = model[0], model[2]
    return torch.optim.AdamW([{"params": list(first.parameters()), "lr": 1e-2},
                              {"params": list(second.parameters()), "lr": 3e-3}], weight_decay=1e-2, fused=True)


def test_steps_inside_backward_equal_the_ordinary_steps_and_schedule():
    plain, fused = _model(), _model()
    o_plain, o_fused = _optimizer(plain), _optimizer(fused)
    s_plain, s_fused = (torch.optim.lr_scheduler.LinearLR(o, 1.0, 0.1, total_iters=4) for o in (o_plain, o_fused))
    FusedBackward(o_fused, None)
    for _ in range(4):
        x = torch.randn(5, 8)
        plain(x).pow(2).mean().backward()
        o_plain.step()
        o_plain.zero_grad()
        fused(x).pow(2).mean().backward()
        assert all(p.grad is None for p in fused.parameters())  # freed as soon as each was used
        o_fused.step()  # finds no gradients: a no-op, as in the training loop
        for s in (s_plain, s_fused):
            s.step()
    for a, b in zip(plain.parameters(), fused.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the run's optimizer holds the states, so checkpoints carry them as for the ordinary step
    a, b = o_plain.state_dict(), o_fused.state_dict()
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for k in a["state"][i]:
            torch.testing.assert_close(a["state"][i][k], b["state"][i][k], rtol=0, atol=0)


def test_clipping_is_per_parameter():
    plain, fused = _model(), _model()
    o_plain, o_fused = _optimizer(plain), _optimizer(fused)
    FusedBackward(o_fused, 0.05)
    x = torch.randn(5, 8)
    plain(x).pow(2).mean().backward()
    for p in plain.parameters():  # each gradient on its own to norm 0.05, as kohya's fused pass does
        p.grad.mul_(min(1.0, 0.05 / (p.grad.norm() + 1e-6)))
    o_plain.step()
    fused(x).pow(2).mean().backward()
    for a, b in zip(plain.parameters(), fused.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_state_loaded_into_the_run_optimizer_reaches_the_per_parameter_steps():
    plain, fused = _model(), _model()
    o_plain, o_fused = _optimizer(plain), _optimizer(fused)
    x = torch.randn(5, 8)
    plain(x).pow(2).mean().backward()
    o_plain.step()
    o_plain.zero_grad()
    saved = copy.deepcopy(o_plain.state_dict())
    fused.load_state_dict(plain.state_dict())
    FusedBackward(o_fused, None)
    o_fused.load_state_dict(saved)  # as a resume does: a new state mapping and new param groups
    for o in (o_plain, o_fused):  # the scheduler sets the learning rate in the new groups
        for group in o.param_groups:
            group["lr"] *= 0.5
    for model in (plain, fused):
        model(x).pow(2).mean().backward()
    o_plain.step()
    for a, b in zip(plain.parameters(), fused.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _unet(run):
    return load_file(run.final_dir / "unet" / "diffusion_pytorch_model.safetensors")


@pytest.mark.slow
def test_a_run_with_fused_backward_ends_where_the_ordinary_run_ends(make_workspace):
    """Without clipping (a norm no gradient reaches) the two are the same optimisation."""
    from interrupt import InterruptAt

    from dbooth.workspace.folder import find_run

    settings = {"train.method": "full", "train.max_steps": 4, "train.max_grad_norm": 1e9,
                "train.lr_scheduler": "linear", "train.checkpoint_every": 2}
    ordinary_ws = make_workspace("ordinary", **settings)
    api.prior(ordinary_ws)
    ordinary = api.train(ordinary_ws).run
    fused_ws = make_workspace("fused", **settings, **{"train.fused_backward": True})
    api.prior(fused_ws)
    fused = api.train(fused_ws).run
    a, b = _unet(ordinary), _unet(fused)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")

    with pytest.raises(KeyboardInterrupt):  # and resuming continues the per-parameter states exactly
        api.train(fused_ws, reporter=InterruptAt(3))
    assert find_run(fused_ws, complete=False).resume_checkpoint().name == "step-000002"
    resumed = api.train(fused_ws, resume=True).run
    c = _unet(resumed)
    for name in a:
        torch.testing.assert_close(b[name], c[name], rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("setting, clash", [({"train.gradient_accumulation_steps": 2}, "gradient_accumulation_steps"),
                                            ({"train.optimizer": "adafactor"}, "optimizer: adafactor"),
                                            ({"train.mixed_precision": "fp16"}, "fp16")])
def test_settings_it_cannot_run_with_are_refused_before_loading(make_workspace, setting, clash):
    ws = make_workspace(**{"train.fused_backward": True, "prior.enabled": False, **setting})
    with pytest.raises(DboothError, match=f"train.fused_backward .* cannot run with .*{clash}"):
        api.train(ws)
